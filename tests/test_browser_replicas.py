"""Two app servers sharing one PostgreSQL run store, in headless Chromium: a run started on one is seen live and in
Compare on the other; when its server dies (SIGKILL of the server and its workers) the other marks it "interrupted"
once its heartbeat stops, keeping every finished epoch, and continues it to the numbers of an uninterrupted run."""

import os
import re
import signal

import pytest
from browser_util import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve_many, settle, wait_for_app
from conftest import postgres_schema
from test_browser_runs import open_train, progress

from dlviz.preset.schema import validate
from dlviz.training.store import RunStore
from dlviz.training.trainer import Trainer

pytestmark = pytest.mark.browser

HEARTBEAT_TIMEOUT = 8  # seconds; the default (15) only makes the test longer
# A's run is paused while B loads, and trains only until B has seen it move: its epochs need only outlast B's refresh
# (once a second) and A's Pause, however fast the machine (about 170 of them on this one). At 1000 epochs, trained
# while B loaded, the test took 102-291 s on a loaded CI, most of it training the continued run and its uninterrupted twin
EPOCHS = 400


def _until(pg, test: str, what: str, timeout_s: float = 30, arg=None) -> None:
    """Wait until `test` (a JS function) holds on `pg`; else fail naming `what` and the progress the page shows."""
    try:
        pg.wait_for_function(test, arg=arg, timeout=timeout_s * 1000)
    except Exception as err:
        shown = pg.evaluate("() => [...document.querySelectorAll('[data-testid=stProgress]')].map(p => p.innerText).join(' | ')")
        raise AssertionError(f"{what}: not within {timeout_s:g} s; the page's progress: {shown!r}") from err


def _epoch(text: str) -> int:
    m = re.search(r"epoch (\d+)", text)
    return int(m.group(1)) if m else -1


def test_a_run_survives_its_replica_and_is_continued_on_another(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with postgres_schema() as url:
        env = {**os.environ, "DLVIZ_DATABASE_URL": url, "DLVIZ_DATA_DIR": str(tmp_path / "data"), "DLVIZ_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT)}
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        # server A leads a process group of its own, with its forkserver and workers: killing the group is a machine
        # that dies, with nobody left to say the run ended
        # both start at once, as two replicas of a deployment do (test_shared_store: migrations may race)
        with serve_many([(tmp_path / "a", env, os.setsid), (tmp_path / "b", env, None)]) as [(url_a, proc_a), (url_b, _)]:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    ctx = browser.new_context(viewport={"width": 1400, "height": 1800})  # one browser: the same cookies on both
                    a, b = ctx.new_page(), ctx.new_page()
                    for pg in (a, b):
                        pg.set_default_timeout(30_000)

                    # 1. a run started on A, paused until B has loaded
                    open_train(a, url_a, EPOCHS)
                    a.get_by_role("button", name="Train", exact=True).click()
                    _until(a, "() => /running · epoch [1-9]/.test(document.body.innerText)", "A trains", 90)
                    a.get_by_role("button", name="Pause", exact=True).click()
                    _until(a, "() => /paused · epoch/.test(document.body.innerText)", "A's run pauses")

                    # 2. seen on B, and in its Compare: the address carries the preset, as after a reload that a proxy
                    # sent to another replica; resumed on A, it trains live on B
                    b.goto(a.url.replace(url_a, url_b))
                    wait_for_app(b)
                    b.get_by_text("This run trains on another server").wait_for(timeout=30_000)
                    settle(b)
                    first = _epoch(progress(b))
                    assert first >= 0, progress(b)
                    a.get_by_role("button", name="Resume", exact=True).click()
                    moved = "(n) => { const p = document.querySelector('[data-testid=stProgress]'); const m = p && /epoch (\\d+)/.exec(p.innerText); return m && +m[1] > n; }"
                    _until(b, moved, "B sees the resumed run move", arg=first)
                    a.get_by_role("button", name="Pause", exact=True).click()  # A dies mid-run (step 3), however fast it trains
                    _until(a, "() => /paused · epoch/.test(document.body.innerText)", "A's run pauses again")
                    store = RunStore(url)
                    run_id = str(store.runs().iloc[0]["id"])
                    assert b.get_by_role("heading", name="Compare runs").is_visible()
                    picked = b.locator("[data-testid=stMultiSelect]").filter(has=b.get_by_text("Runs", exact=True)).inner_text()
                    assert store.run(run_id)["name"] in picked, picked
                    ARTIFACTS.mkdir(exist_ok=True)
                    b.screenshot(path=str(ARTIFACTS / "replicas-live-on-b.png"), full_page=True)

                    # 3. A dies mid-run
                    os.killpg(proc_a.pid, signal.SIGKILL)
                    a.close()

                    # 4. B shows it interrupted within the heartbeat timeout (and its own beat), every finished epoch kept
                    b.get_by_text("interrupted ·").first.wait_for(timeout=(HEARTBEAT_TIMEOUT + 20) * 1000)
                    settle(b)
                    run = store.run(run_id)
                    assert run["status"] == "interrupted"
                    kept = store.epochs(run_id)
                    assert len(kept) == run["epochs_done"] > 0 and list(kept["epoch"]) == list(range(1, len(kept) + 1))
                    assert len(store.checkpoints(run_id)) >= 2  # the initial one and at least one epoch's
                    b.screenshot(path=str(ARTIFACTS / "replicas-interrupted-on-b.png"), full_page=True)

                    # 5. Continue on B ends where an uninterrupted run ends
                    b.get_by_role("button", name="Continue this run").click()
                    b.get_by_text("finished ·").first.wait_for(timeout=240_000)
                    settle(b)
                    assert re.search(rf"finished · epoch {EPOCHS} ", progress(b)), progress(b)
                    b.screenshot(path=str(ARTIFACTS / "replicas-continued-on-b.png"), full_page=True)
                finally:
                    browser.close()
        cont = store.runs().iloc[0]
        assert cont["parent"] == run_id and cont["epochs"] == EPOCHS and cont["status"] == "finished"
        whole = Trainer(validate(store.run(cont["id"])["preset"])).run()
        assert store.run(cont["id"])["result"] == whole  # bit-identical to a run that was never interrupted
        store.close()
