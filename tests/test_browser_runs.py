"""Which run the Train page shows, in headless Chromium: a preset's own run or none after Load and a reload, another
preset's run only when picked, and a stopped run continued to the numbers of one never stopped."""

import re

import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, session_id, settle, wait_for_app  # noqa: F401
from test_browser_build import choose
from test_browser_train import CHART_JS

from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore
from dlviz.training.trainer import Trainer

pytestmark = pytest.mark.browser

POINTS_JS = "() => { const gd = (%s)('Loss'); return gd && gd._fullData[0] ? Array.from(gd._fullData[0].x) : null; }" % CHART_JS


def open_train(pg, url: str, epochs: int) -> None:
    pg.set_viewport_size({"width": 1400, "height": 1800})
    pg.goto(url + "/train")
    wait_for_app(pg)
    pg.get_by_text("to start. The charts fill in").wait_for(timeout=90_000)
    field = pg.get_by_role("spinbutton", name="Epochs")
    field.fill(str(epochs))
    field.press("Enter")
    settle(pg)


def progress(pg) -> str:
    return pg.locator('[data-testid="stProgress"]').first.inner_text()


def test_loading_another_lesson_shows_its_own_empty_page_and_the_old_run_only_when_picked(app_url, page):  # noqa: F811
    pg = page
    open_train(pg, app_url, 3)
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.get_by_text("finished ·").first.wait_for(timeout=60_000)
    assert pg.get_by_text("This preset's run").first.is_visible()
    assert len(pg.evaluate(POINTS_JS) or []) > 0
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "runs-spiral-trained.png"), full_page=True)

    xor = gallery.raw("xor")["name"]
    choose(pg, "Gallery", xor)
    pg.get_by_role("button", name="Load", exact=True).click()
    settle(pg)
    pg.get_by_text("No run of this preset yet.").wait_for()
    assert pg.get_by_role("heading", name=xor).first.is_visible()
    assert pg.get_by_text("finished ·").count() == 0
    assert not pg.evaluate(POINTS_JS), "the XOR page must not draw the spiral's loss"
    pg.screenshot(path=str(ARTIFACTS / "runs-xor-loaded.png"), full_page=True)

    pg.get_by_role("combobox", name="Show an earlier run", exact=True).click()
    pg.get_by_role("option").first.click()
    settle(pg)
    pg.get_by_text("Showing a run of another preset").wait_for()
    # the caption can be on screen a moment before the picked run's chart is drawn
    pg.wait_for_function("() => ((%s)() || []).length > 0" % POINTS_JS, timeout=30_000)
    assert len(pg.evaluate(POINTS_JS) or []) > 0
    pg.screenshot(path=str(ARTIFACTS / "runs-picked.png"), full_page=True)

    pg.reload()
    wait_for_app(pg)
    pg.get_by_text("No run of this preset yet.").wait_for(timeout=60_000)
    settle(pg)
    pg.screenshot(path=str(ARTIFACTS / "runs-reloaded.png"), full_page=True)
    assert pg.get_by_text("Showing a run of another preset").count() == 0 and not pg.evaluate(POINTS_JS)


# A run paused as soon as it shows its second epoch: a few dozen epochs pass before Pause lands on a fast machine, and
# the continuation trains the rest, so more epochs only make the test longer.
EPOCHS = 200


def test_a_stopped_run_continued_counts_and_draws_the_whole_run(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    open_train(pg, app_url, EPOCHS)
    pg.get_by_role("button", name="Train", exact=True).click()
    pg.wait_for_function("() => /running · epoch ([2-9]|\\d\\d)/.test(document.body.innerText)", timeout=60_000)
    # paused first: on an idle machine the run can otherwise reach its end before Stop lands
    pg.get_by_role("button", name="Pause", exact=True).click()
    pg.wait_for_function("() => /paused · epoch/.test(document.body.innerText)", timeout=30_000)
    pg.get_by_role("button", name="Stop", exact=True).click()
    pg.get_by_text("stopped ·").first.wait_for(timeout=15_000)
    settle(pg)
    stopped_at = int(re.search(r"stopped · epoch \d+ · step ([\d,]+)", progress(pg)).group(1).replace(",", ""))
    pg.get_by_role("button", name="Continue this run").click()
    pg.get_by_text("finished ·").first.wait_for(timeout=180_000)
    settle(pg)
    text = progress(pg)
    steps = EPOCHS * 25  # 800 training points in batches of 32
    assert re.search(rf"finished · epoch {EPOCHS} · step {steps:,} of {steps:,}", text), text
    xs = pg.evaluate(POINTS_JS)
    # the curve's points are means over buckets of steps: its first lies in the first bucket, well before the stop
    assert xs and xs[0] < min(stopped_at, 100) and xs[-1] > steps - 100, ("the curve must cover the whole run", xs[:3], stopped_at)
    pg.get_by_text("Continues run").first.wait_for()
    pg.screenshot(path=str(ARTIFACTS / "runs-continued.png"), full_page=True)

    store = RunStore(app_data_dir / "runs.sqlite")
    cont = store.runs(session=session_id(pg)).iloc[0]  # the browser modules share a server: this page's newest run
    assert cont["parent"] and cont["epochs"] == EPOCHS
    whole = Trainer(validate(store.run(cont["id"])["preset"])).run()
    assert store.run(cont["id"])["result"] == whole  # bit-identical to a run that was never stopped
    store.close()
