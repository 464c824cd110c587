"""The Vision page's Segmentation tab in headless Chromium: a briefly trained U-Net's masks of a validation canvas, then
the larger canvas growing as its slider moves. Screenshots go to /tmp/segmentation-*.png."""

import copy
import time

import pytest
from browser_util import app_data_dir, app_url, open_with_run, page, settle, wait_for_app  # noqa: F401  (pytest fixtures)

from dlviz.preset import gallery

pytestmark = pytest.mark.browser

SHOTS = "/tmp/segmentation-{}.png"
TITLES_JS = "() => [...document.querySelectorAll('.js-plotly-plot')].map(g => g.layout && g.layout.title ? String(g.layout.title.text) : '')"


def wait_title(pg, start: str, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while not any(start in t for t in pg.evaluate(TITLES_JS)):
        assert time.time() < deadline, pg.evaluate(TITLES_JS)
        pg.wait_for_timeout(200)


def test_a_unets_masks_and_a_larger_canvas(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    doc = copy.deepcopy(gallery.raw("segmentation-unet"))
    doc["data"]["num_samples"], doc["training"]["epochs"] = 300, 2
    open_with_run(pg, app_url, app_data_dir, doc, "vision", "Segmentation")
    wait_title(pg, "Canvas 0, 32×32 (run checkpoint")
    wait_title(pg, "A new 64×64 canvas")
    settle(pg)
    heatmaps = pg.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(g => g.data.filter(t => t.type === 'heatmap').length)")
    assert heatmaps == [4, 4]
    pg.locator(".js-plotly-plot").first.screenshot(path=SHOTS.format("canvas"))
    thumb = pg.get_by_role("slider", name="Canvas side")
    thumb.focus()
    thumb.press("End")  # four times the training canvas
    wait_title(pg, "A new 128×128 canvas")
    settle(pg)
    pg.locator(".js-plotly-plot").nth(1).screenshot(path=SHOTS.format("larger"))
    assert "mean IoU" in pg.get_by_text("pixel accuracy").last.inner_text()
    pg.screenshot(path=SHOTS.format("page"), full_page=True)
