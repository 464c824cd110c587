"""Eight people train at once on one server: no errors, no cross-talk, and the server's peak memory is reported."""

import json
import os
import threading
import time

import pytest
from browser_util import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, app_data_dir, app_url, server_pid, wait_for_app  # noqa: F401
from test_browser_train import watch_js

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SESSIONS = 8
EPOCHS = 200  # about a minute of eight runs training at once on two cores
MAX_GAP = 10.0  # seconds: the longest a person may wait between two redraws of their loss chart while their run trains


@pytest.fixture(scope="module", autouse=True)
def enough_runs_for_everyone():
    # the server fixture reads the environment when it starts; one run per person, eight people
    old = os.environ.get("DLVIZ_MAX_CONCURRENT_RUNS")
    os.environ["DLVIZ_MAX_CONCURRENT_RUNS"] = str(SESSIONS)
    yield
    if old is None:
        os.environ.pop("DLVIZ_MAX_CONCURRENT_RUNS")
    else:
        os.environ["DLVIZ_MAX_CONCURRENT_RUNS"] = old


def tree_memory(pid: int) -> dict[str, int]:
    """Resident memory of a process and all its descendants, in bytes (Linux /proc): "Rss" counts pages shared by
    the workers (torch, forked from one forkserver) once per process; "Pss" splits them, so the sum is what the tree
    really holds."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, stack = {"Rss": 0, "Pss": 0}, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    field = line.split(":", 1)[0]
                    if field in total:
                        total[field] += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total

    raise AssertionError("server process not found")


def test_eight_sessions_train_at_once(app_url, app_data_dir):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from dlviz.preset.schema import validate
    from dlviz.training.store import RunStore
    from dlviz.training.trainer import Trainer

    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium missing")
    pid = server_pid(app_url)
    peak = tree_memory(pid)
    sampling = True

    def sample():
        while sampling:
            for field, value in tree_memory(pid).items():
                peak[field] = max(peak[field], value)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    errors = []
    loads = {}  # page loads per session: more than one means the page reloaded itself after losing the server
    with sync_playwright() as pw:
        # eight people each look at their own tab: none of the pages may be throttled as a background tab
        foreground = ["--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"]
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + foreground)
        pages = []
        for i in range(SESSIONS):
            ctx = browser.new_context(viewport={"width": 1300, "height": 1000})  # its own cookies: another person
            pg = ctx.new_page()
            pg.set_default_timeout(120_000)
            pg.on("pageerror", lambda e, i=i: errors.append(f"session {i}: {e}"))
            pg.on("load", lambda _, i=i: loads.__setitem__(i, loads.get(i, 0) + 1))
            pg.goto(app_url + "/train")
            pages.append(pg)
        for i, pg in enumerate(pages):
            wait_for_app(pg, 120_000)
            pg.get_by_text("to start. The charts fill in").wait_for(timeout=120_000)
            seed = pg.get_by_role("spinbutton", name="Seed")
            seed.fill(str(100 + i))  # a different experiment per person, to catch cross-talk
            seed.press("Enter")
            wait_for_app(pg, 120_000)
            epochs = pg.get_by_role("spinbutton", name="Epochs")
            epochs.fill(str(EPOCHS))
            epochs.press("Enter")
            wait_for_app(pg, 120_000)
            pg.evaluate(watch_js(900_000))
        t0 = time.time()
        for pg in pages:
            pg.get_by_role("button", name="Train", exact=True).click()
        for i, pg in enumerate(pages):
            try:
                pg.get_by_text("finished · epoch").first.wait_for(timeout=300_000)
            except Exception:
                pg.screenshot(path=str(ARTIFACTS / f"load-session-{i}-stuck.png"), full_page=True)
                from dlviz.training.store import RunStore as _S

                runs = _S(app_data_dir / "runs.sqlite").runs()[["id", "session", "status"]].to_dict("records")
                raise AssertionError(f"session {i} did not finish; page errors: {errors}; runs: {runs}")
        elapsed = time.time() - t0
        rates, gaps, waits = [], [], []
        for i, pg in enumerate(pages):
            if pg.locator('[data-testid="stException"]').count():
                errors.append(f"session {i}: an exception is shown")
            w = pg.evaluate("() => window.__watch || null")  # gone if the page reloaded
            ups = w["updates"] if w else []
            if len(ups) > 2:
                rates.append((len(ups) - 1) / ((ups[-1] - ups[0]) / 1000))
                gap, at = max((b - a, a) for a, b in zip(ups, ups[1:]))
                gaps.append(gap / 1000)
                waits.append(f"session {i}: {gap / 1000:.1f} s from {(at - ups[0]) / 1000:.1f} s of {(ups[-1] - ups[0]) / 1000:.1f} s")
            else:
                gaps.append(float("inf"))
        pages[0].screenshot(path=str(ARTIFACTS / "load-session-0.png"))
        browser.close()
    sampling = False
    sampler.join()
    store = RunStore(app_data_dir / "runs.sqlite")
    runs = store.runs()
    assert len(runs) == SESSIONS and runs["session"].nunique() == SESSIONS, "each person has exactly their own run"
    for rid in runs["id"]:
        run = store.run(rid)
        assert run["status"] == "finished", run["reason"]
        exp = validate(run["preset"])
        assert run["result"] == json.loads(json.dumps(Trainer(exp).run())), f"run {rid} does not match its own preset"
    seeds = sorted(validate(store.run(r)["preset"]).seed for r in runs["id"])
    assert seeds == list(range(100, 100 + SESSIONS))
    report = {
        "sessions": SESSIONS,
        "errors": len(errors),
        "peak_server_rss_mb": round(peak["Rss"] / 2**20),
        "peak_server_pss_mb": round(peak["Pss"] / 2**20),
        "seconds": round(elapsed, 1),
        "reloads": sum(n - 1 for n in loads.values()),
        "epochs": EPOCHS,
        "loss_chart_hz_min_median": [round(min(rates), 2), round(sorted(rates)[len(rates) // 2], 2)] if rates else None,
        "longest_wait_s": round(max(gaps), 2),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load-test.json").write_text(json.dumps(report))
    print(report)
    assert not errors, errors
    # a page that had to reload itself had stopped hearing from the server for 30 s (livechart.watch)
    assert report["reloads"] == 0, report
    assert max(gaps) <= MAX_GAP, f"a person waited {max(gaps):.1f} s for a redraw while their run trained: {report} {waits}"
