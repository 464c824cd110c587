"""The Landscape page's figures: 3-D paths drawn above the surface they run on, all along, and legends at the foot of
the figure, clear of the axis titles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from dlviz.analysis import optimizer_lab as landscape
from dlviz.analysis.surface import Surface
from dlviz.figures import landscape as lf


def _surface_height(trace) -> RegularGridInterpolator:
    """The drawn surface as plotly.js meshes it between its grid points (bilinear within each cell)."""
    return RegularGridInterpolator((np.asarray(trace.y), np.asarray(trace.x)), np.asarray(trace.z), bounds_error=False)


def _never_below(surface_trace, path_trace, margin: float) -> None:
    """Every drawn point of the path, and the middle of every segment between two drawn points, lies at least
    `margin` above the surface: a line that dips under the surface between its points is hidden there."""
    h = _surface_height(surface_trace)
    x, y, z = (np.asarray(v, dtype=float) for v in (path_trace.x, path_trace.y, path_trace.z))
    drawn = np.isfinite(z)
    assert drawn.sum() >= 2
    assert (z[drawn] >= h(np.column_stack([y, x])[drawn]) + margin).all()
    pair = drawn[:-1] & drawn[1:]
    mid = np.column_stack([(y[:-1] + y[1:]) / 2, (x[:-1] + x[1:]) / 2])[pair]
    assert ((z[:-1] + z[1:])[pair] / 2 >= h(mid) + margin / 2).all()


@pytest.mark.parametrize("name", ["Rosenbrock", "Himmelblau", "Rastrigin"])
def test_lab_paths_run_above_the_surface(name):
    fn = landscape.make_function(name)
    paths = landscape.run_optimizers(fn, fn.start, [("SGD", {"lr": 0.001, "momentum": 0.9}), ("Adam", {"lr": 0.1})], 200)
    fig = lf.lab_surface(fn, paths)
    surface, *drawn = fig.data
    lift = lf.LIFT * (np.nanmax(surface.z) - np.nanmin(surface.z))
    for t, trace in zip(paths, drawn):
        _never_below(surface, trace, 0.9 * lift)
        steps = np.asarray(trace.marker.size) > 0
        assert steps.sum() == len(t.points)  # each optimizer step marked, the pieces between them not
        assert np.allclose(np.asarray(trace.x, dtype=float)[steps], t.points[:, 0], equal_nan=True)
    assert surface.opacity < 1  # a path behind a valley's near wall shows through it


def test_a_diverging_path_is_cut_where_it_leaves_the_box():
    fn = landscape.make_function("Rosenbrock")
    _, wild = landscape.run_optimizers(fn, fn.start, [("Adam", {"lr": 0.1}), ("SGD", {"lr": 100.0})], 500)
    trace = lf.lab_surface(fn, [wild]).data[1]
    x, y = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
    shown = np.isfinite(x)
    assert shown.any() and not shown.all()
    assert (x[shown] >= fn.x_range[0]).all() and (x[shown] <= fn.x_range[1]).all() and (y[shown] <= fn.y_range[1]).all()


def test_the_network_path_runs_above_its_surface():
    a = b = np.linspace(-1, 1, 11)
    aa, bb = np.meshgrid(a, b)
    loss = 1 + aa**2 + 3 * np.sin(2 * bb) ** 2  # bumps between the path's steps
    t = np.linspace(0, 1, 6)
    path = np.column_stack([0.9 - 0.9 * t, -0.8 + 0.8 * t])
    path_loss = 1 + path[:, 0] ** 2 + 3 * np.sin(2 * path[:, 1]) ** 2
    s = Surface("pca", a, b, loss, 1.0, ("PC1", "PC2"), path=path, path_loss=path_loss, path_steps=np.arange(6) * 10)
    fig = lf.surface_3d(s)
    surface, trace, centre = fig.data
    _never_below(surface, trace, 0.9 * lf.LIFT * np.ptp(loss))
    steps = np.asarray(trace.marker.size) > 0
    assert [v for v in trace.text if v] == [f"step {k}" for k in range(0, 60, 10)] and steps.sum() == 6
    assert centre.z[0] > 1.0  # the checkpoint's marker sits on the surface, not in it


def test_landscape_legends_sit_at_the_foot_of_the_figure():
    """A legend placed below the plot in the plot's own units ran into the x axis's title once a narrow column
    wrapped it; one anchored to the foot of the figure pushes the plot up instead."""
    fn = landscape.make_function("Rosenbrock")
    paths = landscape.run_optimizers(fn, fn.start, [("SGD", {"lr": 0.001, "momentum": 0.9}), ("Adam", {"lr": 0.1})], 50)
    a = b = np.linspace(-1, 1, 5)
    s = Surface("pca", a, b, np.add.outer(b**2, a**2), 0.0, ("PC1", "PC2"), path=np.zeros((2, 2)), path_loss=np.zeros(2), path_steps=np.arange(2))
    line = Surface("line", a, None, a**2, 0.0, ("t", ""))
    for fig in (
        lf.lab_contour(fn, paths),
        lf.lab_loss(fn, paths),
        lf.rate_figure(landscape.rate_check(10.0, steps=50)),
        lf.surface_contour(s),
        lf.surface_line(line),
    ):
        legend = fig.layout.legend
        assert (legend.yref, legend.y, legend.yanchor) == ("container", 0, "bottom"), fig.layout.title.text


def _decoded(image: dict) -> tuple[np.ndarray, list]:
    """The band of every pixel (rows from the top) and the RGB palette of a layout image given as a PNG data URI."""
    import base64
    import io

    from PIL import Image

    head, data = image["source"].split(",", 1)
    assert head == "data:image/png;base64"
    png = Image.open(io.BytesIO(base64.b64decode(data)))
    assert png.mode == "P"
    palette = png.getpalette()
    return np.asarray(png), [tuple(palette[3 * i : 3 * i + 3]) for i in range(lf.LAB_LEVELS)]


def test_the_lab_contours_are_an_image_of_equal_bands_of_log_height_over_the_functions_range():
    """Rosenbrock's contours, checked against its formula written out here: each pixel's band is the tenth of the log
    height above the minimum (of 30 equal bands between the grid's lowest and highest) that its grid point falls in."""
    fn = landscape.make_function("Rosenbrock")
    paths = landscape.run_optimizers(fn, fn.start, [("Adam", {"lr": 0.1})], 20)
    fig = lf.lab_contour(fn, paths)
    assert not [t for t in fig.data if t.type == "contour"]  # drawn as an image, not contoured by plotly.js
    grid = fig.data[lf.CLICK_TRACE]
    assert grid.name == "start here" and len(grid.x) == lf.CLICK_GRID**2
    assert fig.layout.hoverdistance == lf.CLICK_REACH
    (image,) = fig.layout.images
    n = lf.LAB_PIXELS
    step_x, step_y = 4 / (n - 1), 4 / (n - 1)  # x in [-2, 2], y in [-1, 3]
    assert (image.xref, image.yref, image.sizing, image.layer) == ("x", "y", "stretch", "below")
    assert image.x == pytest.approx(-2 - step_x / 2) and image.sizex == pytest.approx(4 + step_x)
    assert image.y == pytest.approx(3 + step_y / 2) and image.sizey == pytest.approx(4 + step_y)  # the top edge
    bands, palette = _decoded(image.to_plotly_json())
    assert bands.shape == (n, n)

    xs, ys = np.linspace(-2, 2, n), np.linspace(-1, 3, n)
    xx, yy = np.meshgrid(xs, ys)
    log_height = np.log10((1 - xx) ** 2 + 100 * (yy - xx**2) ** 2 + 1e-3)
    lo, hi = log_height.min(), log_height.max()
    expected = np.clip(np.floor((log_height - lo) / (hi - lo) * lf.LAB_LEVELS), 0, lf.LAB_LEVELS - 1)[::-1]  # top row: y = 3
    assert (bands == expected).mean() > 0.999  # a pixel exactly on a band's edge may round either way
    rows, cols = np.nonzero(bands == 0)  # the lowest band lies along the valley floor y = x² (which an upside-down image misses)
    assert len(rows) and np.abs(ys[n - 1 - rows] - xs[cols] ** 2).max() < 0.05
    assert bands[-1, 0] == bands[-1, -1] == lf.LAB_LEVELS - 1  # the bottom corners (y = -1), the highest walls
    assert bands[0, 0] < lf.LAB_LEVELS - 1
    # the valley dark and the walls light: one shade of grey per band, each lighter than the one below
    greys = [r for r, g, b in palette]
    assert all(r == g == b for r, g, b in palette) and greys == sorted(greys) and len(set(greys)) == lf.LAB_LEVELS
    assert greys[0] < 20 and greys[-1] > 235
