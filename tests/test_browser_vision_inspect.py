"""Inspect in headless Chromium: the prediction's probabilities, the Equivariance tab's shift slider moving the maps,
and the Round-off lab; screenshots go to /tmp/dlviz-vision-inspect."""

from pathlib import Path

import pytest
from browser_util import app_url, page, settle  # noqa: F401  (pytest fixtures)

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/dlviz-vision-inspect")
FIND_JS = """(title) => [...document.querySelectorAll('.js-plotly-plot')].some(gd =>
  gd.layout && gd.layout.title && String(gd.layout.title.text || gd.layout.title).includes(title))"""


def chart(pg, title: str):
    return pg.locator(".js-plotly-plot").filter(has=pg.locator("text", has_text=title)).first


def test_probabilities_the_shift_slider_and_the_round_off_lab(app_url, page):  # noqa: F811
    pg = page
    SHOTS.mkdir(exist_ok=True)
    pg.set_viewport_size({"width": 1400, "height": 2400})
    pg.goto(f"{app_url}/inspect?{share.PARAM}={share.encode(validate(gallery.raw('lenet5-mnist')))}")
    pg.wait_for_function(FIND_JS, arg="Probabilities:", timeout=90_000)
    settle(pg)
    chart(pg, "Probabilities:").screenshot(path=str(SHOTS / "probabilities.png"))

    pg.get_by_role("tab", name="Equivariance").click()
    pg.wait_for_function(FIND_JS, arg="Maps of the input, moved by (0, 2)", timeout=60_000)
    settle(pg)
    slider = pg.get_by_role("slider").first  # "Shift right (pixels)", at 2
    slider.focus()
    slider.press("ArrowRight")  # 3 pixels: the first convolution's maps move by 3
    pg.wait_for_function(FIND_JS, arg="Maps of the input, moved by (0, 3)", timeout=60_000)
    settle(pg)
    assert "Correlation" in pg.locator('[data-testid="stMetric"]').first.inner_text()
    pg.screenshot(path=str(SHOTS / "equivariance.png"), full_page=True)

    pg.get_by_role("tab", name="Round-off lab").click()
    pg.wait_for_function(FIND_JS, arg="Loss against the scale of the logits", timeout=60_000)
    settle(pg)
    assert pg.get_by_text("naive loss first fails at ×45").count() == 1
    pg.screenshot(path=str(SHOTS / "roundoff.png"), full_page=True)
