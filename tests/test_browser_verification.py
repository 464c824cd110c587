"""The Vision page's Verification tab in headless Chromium: a briefly trained Siamese net's embedding and its held-out
digits' pairs, then the threshold slider carrying the point along the ROC curve. Screenshots go to /tmp/verification-*.png."""

import copy
import time

import pytest
from browser_util import app_data_dir, app_url, open_with_run, page, settle, wait_for_app  # noqa: F401  (pytest fixtures)

from dlviz.preset import gallery

pytestmark = pytest.mark.browser

SHOTS = "/tmp/verification-{}.png"
# the ROC chart's point for the threshold, and the titles of every chart
POINT_JS = """() => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.layout && g.layout.title && String(g.layout.title.text).includes('ROC curve'));
  const p = gd && gd.data.find(t => t.name === 'the threshold');
  return p ? [p.x[0], p.y[0]] : null;
}"""


def metric(pg, label: str) -> str:
    return pg.locator('[data-testid="stMetric"]').filter(has_text=label).locator('[data-testid="stMetricValue"]').first.inner_text()


def wait_point(pg, changed_from, timeout_s: float = 30):
    deadline = time.time() + timeout_s
    while (point := pg.evaluate(POINT_JS)) is None or point == changed_from:
        if time.time() > deadline:
            pg.screenshot(path=SHOTS.format("failed"), full_page=True)
        assert time.time() < deadline, point
        pg.wait_for_timeout(200)
    return point


def test_a_siamese_nets_embedding_and_the_roc_point_under_the_slider(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    doc = copy.deepcopy(gallery.raw("verification-triplet"))
    doc["data"]["subset"], doc["training"]["epochs"] = 600, 2
    open_with_run(pg, app_url, app_data_dir, doc, "vision", "Verification")
    start = wait_point(pg, None, 60)
    settle(pg)
    legend = pg.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => t.name)")
    assert legend[-2:] == ["8 (held out)", "9 (held out)"]
    assert 0 < start[0] < start[1] < 1  # the most accurate threshold: more same pairs accepted than different ones
    pg.screenshot(path=SHOTS.format("page"), full_page=True)
    thumb = pg.get_by_role("slider", name="Distance threshold")
    thumb.focus()
    thumb.press("Home")  # no pair lies closer than 0: none is called the same
    assert wait_point(pg, start) == [0, 0]
    settle(pg)
    assert metric(pg, "True positive rate") == "0.0%" and metric(pg, "Accuracy") == "50.0%"
    thumb.press("End")  # every pair lies within the largest distance: all are called the same
    assert wait_point(pg, [0, 0]) == [1, 1]
    settle(pg)
    assert metric(pg, "False positive rate") == "100.0%"
    pg.locator(".js-plotly-plot").nth(2).screenshot(path=SHOTS.format("roc-end"))
    pg.locator(".js-plotly-plot").nth(1).screenshot(path=SHOTS.format("distances-end"))
