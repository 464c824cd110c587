"""The Tune page in headless Chromium at 1400×1000: the sanity checks of the spiral, a 12-trial random search over the
learning rate and L2 of the digits CNN, Optuna's parallel-coordinate plot of it, and its best trial loaded as the
preset that the page's address then carries.

Each step's screenshot is saved under artifacts/tune/."""

import hashlib
import json
import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, session_id, settle, wait_for_app  # noqa: F401

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore

pytestmark = pytest.mark.browser

SHOTS = ARTIFACTS / "tune"
VIEWPORT = {"width": 1400, "height": 1000}
TRIALS = 12
SEARCH_TIMEOUT_MS = 240_000

# Whether the chart titled "Parallel coordinates" draws at least n lines (a trial each) across its axes.
PARCOORDS_LINES_JS = """(n) => {
  const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p => (p.querySelector('.gtitle') || {}).textContent?.startsWith('Parallel coordinates'));
  if (!plot) return false;
  const lines = [...plot.querySelectorAll('.scatterlayer .trace path.js-line')].filter(l => (l.getAttribute('d') || '').split(/[LM]/).length > 3);
  return lines.length >= n;
}"""


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"))


def open_tune(pg, url: str, doc: dict) -> None:
    pg.goto(f"{url}/tune?{share.PARAM}={share.encode(validate(doc))}")
    wait_for_app(pg)
    pg.get_by_role("heading", name="Tune").wait_for(timeout=60_000)


def small_digits() -> dict:
    """Gallery 'cnn-digits' trained for one epoch on 300 of the images: a trial takes a moment."""
    doc = gallery.raw("cnn-digits")
    doc["training"]["epochs"] = 1
    doc["data"]["subset"] = 300
    return doc


def address_preset(url: str):
    q = parse_qs(urlparse(url).query)
    assert share.PARAM in q, f"the address carries no preset token: {url}"
    return share.decode(q[share.PARAM][0])


def test_tune_script(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    pg.set_viewport_size(VIEWPORT)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))

    # 1. the spiral's sanity checks: a table of five verdicts
    open_tune(pg, app_url, gallery.raw("spiral-tanh"))
    pg.locator(".st-key-tune_checks button").click()
    verdict = pg.locator("[data-testid=stAlert]").filter(has_text=re.compile(r"checks (passed|failed)"))
    verdict.wait_for(timeout=120_000)
    settle(pg)
    table = pg.locator("[data-testid=stDataFrame]").first
    table.wait_for()
    assert table.bounding_box()["height"] > 150, "a table of five checks"
    assert re.fullmatch(r"All 5 checks passed\.|\d of 5 checks failed\.", verdict.inner_text().strip()), verdict.inner_text()
    shot(pg, "01-spiral-sanity-checks")

    # 2. a 12-trial random search over lr and l2 of the digits CNN
    digits = small_digits()
    open_tune(pg, app_url, digits)
    pg.get_by_role("tab", name="Hyperparameter search").click()
    area = pg.locator("[class*=st-key-tune_space_] textarea")
    area.wait_for()
    assert set(json.loads(area.input_value())["params"]) == {"optimizer.lr", "training.l2"}, "the default space is lr and l2"
    trials = pg.locator(".st-key-tune_trials input")
    trials.fill(str(TRIALS))
    trials.press("Enter")
    settle(pg)
    assert trials.input_value() == str(TRIALS)
    pg.locator(".st-key-tune_search_go button").click()
    t0 = time.time()
    pg.get_by_text(re.compile(rf"Study .*: 1 of {TRIALS} trials finished")).wait_for(timeout=120_000)
    shot(pg, "02a-search-running")
    pg.get_by_text(re.compile(rf"Study .*: {TRIALS} of {TRIALS} trials finished$")).wait_for(timeout=SEARCH_TIMEOUT_MS)
    took = time.time() - t0
    settle(pg)
    load = pg.locator(".st-key-tune_load_best button")
    load.wait_for()
    pg.wait_for_function("() => !document.querySelector('.st-key-tune_load_best button').disabled", timeout=30_000)
    shot(pg, "02-search-finished")
    print(f"{TRIALS} trials in {took:.0f} s")

    # the trials are this session's runs in the server's store; the best is the one of least validation loss
    store = RunStore(app_data_dir / "runs.sqlite")  # the browser modules share a server: this page's runs only
    try:
        table = store.runs(session=session_id(pg))
    finally:
        store.close()
    table = table[table["preset"].map(lambda p: p.get("name") == digits["name"])]
    assert len(table) == TRIALS and set(table["status"]) == {"finished"}, table[["id", "status"]]
    results = table["result"].map(lambda r: json.loads(r) if isinstance(r, str) else r)
    best = table.loc[results.map(lambda r: r["val_loss"]).idxmin()]
    best_loss = min(r["val_loss"] for r in results)
    label = load.inner_text()
    assert re.search(rf"Load trial \d+ \(validation loss {best_loss:.4g}\)", label), (label, best_loss)

    # 3. Optuna's parallel-coordinate plot, drawn: Optuna draws it as a line of a scatter trace per trial on shared axes
    plot = pg.locator(".js-plotly-plot").filter(has=pg.locator(".gtitle", has_text="Parallel coordinates"))
    plot.wait_for(timeout=30_000)
    plot.scroll_into_view_if_needed()
    pg.wait_for_function(PARCOORDS_LINES_JS, arg=TRIALS, timeout=30_000)
    ticks = plot.locator("text").all_text_contents()
    assert {"Objective Value", "optimizer.lr", "training.l2"} <= set(ticks), ticks
    time.sleep(0.5)
    shot(pg, "03-parallel-coordinates")
    plot.screenshot(path=str(SHOTS / "03b-parallel-coordinates-chart.png"))

    # 4. load the best trial: the page shows its preset, and the address carries it
    load.scroll_into_view_if_needed()
    load.click()
    settle(pg)
    want = validate(best["preset"]).to_dict()
    tag = "#" + hashlib.sha256(json.dumps(want, sort_keys=True).encode()).hexdigest()[:7]
    pg.get_by_text(re.compile(r"Every check runs on the preset on screen: .*" + tag)).wait_for(timeout=20_000)
    lr = want["optimizer"]["lr"]
    deadline = time.time() + 20
    while True:
        doc = address_preset(pg.url)
        if doc.optimizer.args.get("lr") == pytest.approx(lr) or time.time() > deadline:
            break
        time.sleep(0.3)
    shot(pg, "04-best-trial-loaded")
    assert pg.locator('[data-testid="stException"]').count() == 0
    assert not errors, errors
    assert doc.optimizer.args.get("lr") == pytest.approx(lr), f"the page shows the best trial's preset ({tag}) but the address still carries another"
    assert doc.training.l2 == pytest.approx(want["training"]["l2"])
    assert doc.training.epochs == 1 and doc.data.name == "digits"
