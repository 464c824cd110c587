"""The Vision page in headless Chromium: drag and resize the IoU lab's boxes and read the IoU the page computes, then a
trained detector's boxes collapse under NMS as its threshold slider moves. Screenshots go to /tmp/vision-*.png."""

import copy
import time

import pytest
from browser_util import app_data_dir, app_url, page, session_id, settle  # noqa: F401  (pytest fixtures)

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

pytestmark = pytest.mark.browser

SHOTS = "/tmp/vision-{}.png"

# the detection chart: its traces' names and how many outlines each draws, and its title
CHART_JS = """() => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.layout && g.layout.title && String(g.layout.title.text).includes('raw boxes'));
  if (!gd) return null;
  const removed = gd.data.find(t => t.name === 'removed by NMS');
  return {title: String(gd.layout.title.text), traces: gd.data.filter(t => t.type === 'scatter').map(t => [t.name, t.x.filter(v => v === null).length]),
          why: removed ? removed.text.filter(v => v) : []};
}"""


def metric(pg, label: str) -> str:
    return pg.locator('[data-testid="stMetric"]').filter(has_text=label).locator('[data-testid="stMetricValue"]').first.inner_text()


def wait_metric(pg, label: str, value: str, timeout_s: float = 20) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if metric(pg, label) == value:
            return
        pg.wait_for_timeout(200)
    raise AssertionError(f"{label} shows {metric(pg, label)!r}, not {value!r}")


def press_slider(pg, name: str, key: str, value: float) -> None:
    """Move a slider by a key press and wait until the page has rerun with its new value."""
    thumb = pg.get_by_role("slider", name=name)
    thumb.focus()
    thumb.press(key)
    shown = pg.locator('[data-testid="stSlider"]').filter(has_text=name).locator('[data-testid="stSliderThumbValue"]')
    deadline = time.time() + 20
    while shown.inner_text() != f"{value:.2f}":
        assert time.time() < deadline, f"{name} stays at {shown.inner_text()}"
        pg.wait_for_timeout(100)
    pg.wait_for_timeout(300)
    settle(pg)


def plane_point(pg, x: float, y: float) -> tuple[float, float]:
    """The screen position of point (x, y) of the IoU plane (a 64×64 SVG)."""
    box = pg.locator('[data-testid="iou-plane"]').bounding_box()
    return box["x"] + x / 64 * box["width"], box["y"] + y / 64 * box["height"]


def drag(pg, start: tuple[float, float], end: tuple[float, float]) -> None:
    pg.mouse.move(*plane_point(pg, *start))
    pg.mouse.down()
    for k in range(1, 6):
        x = start[0] + (end[0] - start[0]) * k / 5
        y = start[1] + (end[1] - start[1]) * k / 5
        pg.mouse.move(*plane_point(pg, x, y))
    pg.mouse.up()


def test_drag_the_boxes_then_watch_nms_collapse_a_detectors_boxes(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    pg.goto(app_url + "/vision")
    pg.locator('[data-testid="iou-plane"]').wait_for(timeout=60_000)
    settle(pg)
    # the starting boxes A (8, 8)–(40, 40) and B (24, 20)–(56, 52): 16×20 = 320 shared of 1024 + 1024 − 320
    assert metric(pg, "IoU") == "0.185"
    drag(pg, (40, 36), (24, 32))  # move B by (−16, −4): B is (8, 16)–(40, 48), overlap 32×24 = 768 of 1280
    wait_metric(pg, "IoU", "0.600")
    settle(pg)
    assert pg.get_by_text("correct: a detection this close").is_visible()
    assert pg.get_by_role("spinbutton", name="B x1").input_value() == "8"
    drag(pg, (40, 48), (40, 40))  # B's bottom-right corner up to (40, 40): B is (8, 16)–(40, 40), inside A: 768 / 1024
    wait_metric(pg, "IoU", "0.750")
    settle(pg)
    assert pg.get_by_role("spinbutton", name="B y2").input_value() == "40"
    inter = pg.locator('[data-testid="iou-intersection"]')
    assert float(inter.get_attribute("width")) == 32 and float(inter.get_attribute("height")) == 24
    pg.locator('[data-testid="dlviz-boxes"]').screenshot(path=SHOTS.format("iou"))

    # a detector trained briefly, stored as this browser's run
    doc = copy.deepcopy(gallery.raw("detection-yolo"))
    doc["data"]["num_samples"] = 300
    doc["training"]["epochs"] = 2
    store = RunStore(app_data_dir / "runs.sqlite")
    run_id = store.create_run(validate(doc), session=session_id(pg))
    Trainer(validate(doc), callbacks=[StoreCallback(store, run_id)]).run()
    store.close()

    pg.goto(f"{app_url}/vision?{share.PARAM}={share.encode(validate(doc))}")
    pg.get_by_role("tab", name="Detection").wait_for(timeout=60_000)
    settle(pg)
    pg.get_by_role("tab", name="Detection").click()
    pg.wait_for_function(f"() => ({CHART_JS})() !== null", timeout=60_000)
    settle(pg)
    press_slider(pg, "Confidence threshold", "Home", 0.0)  # every box is confident: NMS alone decides
    press_slider(pg, "NMS IoU threshold", "End", 1.0)  # no box overlaps more, so NMS removes nothing
    pg.wait_for_function(f"() => ({CHART_JS})().traces.filter(t => t[0] === 'kept by NMS').length === 16", timeout=30_000)
    before = pg.evaluate(CHART_JS)["traces"]
    assert "removed by NMS" not in dict(before) and sum(v for k, v in before if k == "kept by NMS") == 16, before
    pg.locator(".js-plotly-plot").first.screenshot(path=SHOTS.format("nms-off"))
    press_slider(pg, "NMS IoU threshold", "Home", 0.0)  # a box overlapping a kept one at all is removed
    pg.wait_for_function(f"() => ({CHART_JS})().traces.some(t => t[0] === 'removed by NMS')", timeout=30_000)
    chart = pg.evaluate(CHART_JS)
    kept = sum(v for k, v in chart["traces"] if k == "kept by NMS")
    assert kept + dict(chart["traces"])["removed by NMS"] == 16 and kept < 16, chart["traces"]
    assert all(", IoU 0." in w and ": suppressed by #" in w for w in chart["why"]), chart["why"]
    pg.locator(".js-plotly-plot").first.screenshot(path=SHOTS.format("nms-0"))
    settle(pg)
    assert metric(pg, "mAP@0.5").replace(".", "").isdigit()
    assert pg.get_by_text("after NMS at IoU 0,").is_visible()  # the score is the one at the slider's threshold
    pg.screenshot(path=SHOTS.format("page"), full_page=True)
