"""The Vision page's Segmentation tab in headless Chromium on a U-Net trained on crops of scikit-image's coins photo: a
validation crop's masks drawn with the run's numbers, then the whole 303×384 photo segmented at once. Screenshots go to
/tmp/vision-coins*.png."""

import copy

import pytest
from browser_util import app_data_dir, app_url, open_with_run, page, settle  # noqa: F401  (pytest fixtures)

from dlviz.preset import gallery

pytestmark = pytest.mark.browser

# Each drawn Plotly chart on the page: its title and, per heatmap, the size of its z grid (rows, columns).
CHARTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].filter(gd => gd._fullLayout).map(gd => ({
  title: String((gd.layout.title || {}).text || gd.layout.title || ''),
  maps: gd._fullData.filter(t => t.type === 'heatmap').map(t => [t.z.length, t.z[0].length])}))"""


def test_a_coins_unet_segments_a_crop_and_the_whole_photo(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    pg.set_viewport_size({"width": 1400, "height": 2600})
    doc = copy.deepcopy(gallery.raw("segmentation-coins"))
    doc["data"]["num_samples"], doc["training"]["epochs"] = 200, 2
    open_with_run(pg, app_url, app_data_dir, doc, "vision", "Segmentation")
    pg.get_by_text("The whole photo").wait_for(timeout=60_000)
    pg.wait_for_function("(js) => eval(js)().some(c => c.title.includes('The whole 303×384 photo'))", arg=CHARTS_JS, timeout=60_000)
    settle(pg)
    charts = pg.evaluate(CHARTS_JS)
    crop = next(c for c in charts if "Crop 0, 48×48" in c["title"])
    photo = next(c for c in charts if "The whole 303×384 photo" in c["title"])
    assert "run checkpoint at step" in crop["title"] and "run checkpoint at step" in photo["title"]
    # input, true mask, predicted mask and per-pixel loss, each of the crop's or the photo's own size
    assert len(crop["maps"]) >= 4 and all(m == [48, 48] for m in crop["maps"]), crop
    assert len(photo["maps"]) >= 4 and all(m == [303, 384] for m in photo["maps"]), photo
    assert pg.get_by_text("padded at the bottom and right by reflection to 304×384").is_visible()
    assert pg.get_by_text("Mean IoU, validation set").is_visible()
    assert not pg.locator('[data-testid="stException"]').count()
    pg.screenshot(path="/tmp/vision-coins.png", full_page=True)
