"""The Landscape page in headless Chromium: three optimizers on Rosenbrock, a click on the contour that moves their
start, then a trained spiral network's loss surface with the path its optimizer took."""

import pytest
from browser_util import ARTIFACTS, app_data_dir, app_url, page, session_id, settle  # noqa: F401  (pytest fixtures)

from dlviz.figures import landscape as landscape_figures
from dlviz.figures.style import CLICK_DRAWN
from dlviz.preset import gallery, share
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

pytestmark = pytest.mark.browser

# In the page: the Plotly chart whose title contains `title`.
FIND_JS = """(title) => [...document.querySelectorAll('.js-plotly-plot')].find(gd =>
  gd.layout && gd.layout.title && String(gd.layout.title.text || gd.layout.title).includes(title)) || null"""

# What a chart draws: each trace's name, type, mode and number of points (_fullData holds the decoded arrays).
TRACES_JS = (
    """(title) => { const gd = (%s)(title); if (!gd) return null;
  return gd._fullData.map(t => ({name: t.name, type: t.type, mode: t.mode || '',
                            n: t.x ? t.x.length : (t.z ? t.z.length : 0),
                            x0: t.x && t.x.length ? t.x[0] : null, y0: t.y && t.y.length ? t.y[0] : null})); }"""
    % FIND_JS
)

# The screen position of data point (x, y) on a chart.
POINT_JS = (
    """([title, x, y]) => { const gd = (%s)(title);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)]; }"""
    % FIND_JS
)


# How many markers each scatter trace of a chart has drawn (SVG path.point elements), by the trace's name.
DOTS_JS = (
    """(title) => { const gd = (%s)(title);
  return [...gd.querySelectorAll('.scatterlayer .trace')].map(g => [g.__data__[0].trace.name, g.querySelectorAll('path.point').length]); }"""
    % FIND_JS
)


def paths(pg, title: str) -> list[dict]:
    return [t for t in pg.evaluate(TRACES_JS, title) or [] if t["mode"] == "lines+markers" and t["type"] == "scatter"]


SPIRAL = {**gallery.raw("spiral-tanh"), "training": {"epochs": 15}}


def train_spiral(data_dir, browser: str) -> str:
    """The gallery's spiral preset, 15 epochs, trained into the server's run store as this browser's run."""
    exp = validate(SPIRAL)
    store = RunStore(data_dir / "runs.sqlite")
    run_id = store.create_run(exp, session=browser)
    result = Trainer(exp, callbacks=[StoreCallback(store, run_id)]).run()
    store.close()
    assert result["status"] == "finished", result
    return run_id


def test_three_optimizers_then_the_trained_networks_surface(app_url, app_data_dir, page):  # noqa: F811
    pg = page
    pg.set_viewport_size({"width": 1400, "height": 2000})
    pg.goto(app_url + "/landscape")
    pg.wait_for_function("(t) => (%s)(t) !== null" % FIND_JS, arg="Rosenbrock", timeout=90_000)
    settle(pg)
    lab = paths(pg, "Rosenbrock")
    assert sorted(p["name"] for p in lab) == ["Adam (lr=0.1)", "SGD (lr=0.001)", "SGD (lr=0.001, momentum=0.9)"]
    assert all(p["n"] == 501 and [p["x0"], p["y0"]] == [-1.2, 1.0] for p in lab), lab
    # every step is on the line, but Plotly dots at most PATH_DOTS of them; the click grid's points are all in the
    # chart's data, and one of them is drawn (the click below still reaches the rest)
    dots = pg.evaluate(DOTS_JS, "Rosenbrock")
    paths_dots = [n for name, n in dots if name not in ("start here", "start", "global minimum")]
    assert len(paths_dots) == 3 and all(0 < n <= landscape_figures.PATH_DOTS + 1 for n in paths_dots), dots
    assert dict(dots)["start here"] == CLICK_DRAWN
    assert next(t["n"] for t in pg.evaluate(TRACES_JS, "Rosenbrock") if t["name"] == "start here") == landscape_figures.CLICK_GRID**2
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "landscape-lab.png"), full_page=True)

    # a click on the contour starts every optimizer there
    pg.evaluate("(t) => (%s)(t).scrollIntoView({block: 'center'})" % FIND_JS, "Rosenbrock")
    x, y = pg.evaluate(POINT_JS, ["Rosenbrock", 0.5, 2.0])
    pg.mouse.move(x, y)
    pg.wait_for_timeout(300)  # Plotly picks the point under the pointer on mousemove, then selects it on click
    pg.mouse.click(x, y)
    pg.wait_for_function(
        "(t) => { const gd = (%s)(t); const p = gd && gd._fullData.find(d => d.name === 'SGD (lr=0.001)');"
        " return p && Math.abs(p.x[0] - 0.5) < 1e-9 && Math.abs(p.y[0] - 2.0) < 1e-9; }" % FIND_JS,
        arg="Rosenbrock",
        timeout=30_000,
    )
    settle(pg)
    assert all([p["x0"], p["y0"]] == [0.5, 2.0] for p in paths(pg, "Rosenbrock"))
    pg.screenshot(path=str(ARTIFACTS / "landscape-lab-clicked.png"), full_page=True)

    train_spiral(app_data_dir, session_id(pg))
    pg.goto(f"{app_url}/landscape?{share.PARAM}={share.encode(validate(SPIRAL))}")  # the trained preset on screen
    pg.get_by_role("tab", name="Your network's loss surface").wait_for(timeout=60_000)
    settle(pg)
    pg.get_by_role("tab", name="Your network's loss surface").click()
    # the coarse grid comes first; wait for the full 31×31 one
    pg.wait_for_function("(t) => (%s)(t) !== null" % FIND_JS, arg="(961 points)", timeout=60_000)
    settle(pg)
    shown = pg.get_by_role("combobox", name="Run").input_value()  # the preset's own run, opened on by default
    assert "finished · 15 epochs" in shown and "another preset" not in shown, shown
    contour = pg.evaluate(TRACES_JS, "(961 points)")
    assert contour[0]["type"] == "contour" and contour[0]["n"] == 31
    path = next(t for t in contour if t["name"] == "training path (projected)")
    assert path["n"] > 30  # 375 steps, a snapshot every 10, subsampled to at most 100
    surface3d = pg.evaluate(TRACES_JS, "Loss surface")
    # in 3-D each step of the path is drawn with DRAPE points, so that it follows the surface between two steps
    assert [t["type"] for t in surface3d] == ["surface", "scatter3d", "scatter3d"]
    assert surface3d[1]["n"] == (path["n"] - 1) * landscape_figures.DRAPE + 1
    pg.screenshot(path=str(ARTIFACTS / "landscape-surface.png"), full_page=True)

    pg.get_by_text("PCA plane", exact=True).click()
    axis_js = "(t) => { const gd = (%s)(t); return gd ? String(gd.layout.xaxis.title.text) : ''; }" % FIND_JS
    pg.wait_for_function("(t) => (%s)(t).startsWith('PC1')" % axis_js, arg="(961 points)", timeout=60_000)
    settle(pg)
    assert "% of the path's variance" in pg.evaluate(axis_js, "(961 points)")
    pca = pg.evaluate(TRACES_JS, "(961 points)")
    assert next(t for t in pca if t["name"] == "training path (projected)")["n"] == path["n"]
    pg.screenshot(path=str(ARTIFACTS / "landscape-surface-pca.png"), full_page=True)
