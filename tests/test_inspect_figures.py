"""The Inspect page's figure builders: grids that map clicks back to units, and charts that carry their data."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io
import plotly.tools
import pytest

from dlviz.analysis import activation_lab as actlab
from dlviz.analysis import features
from dlviz.analysis.receptive import Box, Growth
from dlviz.figures import inspect as figs


def test_a_grid_click_maps_back_to_its_channel_and_unit():
    values = np.random.default_rng(0).standard_normal((11, 5, 7)).astype(np.float32)
    fig, t = figs.layer_grid_figure(values, [(-2.0, 2.0)] * 11, "grid", selected=(4, 1, 2)), figs.tiling(*values.shape)
    assert (t.cols, t.rows) == (8, 2)
    heat, targets = fig.data
    assert heat.z.shape == (2 * 5 + 1, 8 * 7 + 7)
    assert len(targets.x) == 11 * 5 * 7  # one click target per unit, none in the gaps
    assert targets.marker.maxdisplayed == 1  # and one of them drawn: clicks and hover reach the rest through the data
    for ch, i, j in [(0, 0, 0), (4, 1, 2), (10, 4, 6), (7, 3, 5)]:
        r0, c0 = t.origin(ch)
        assert t.unit(c0 + j, r0 + i) == (ch, i, j)
        assert heat.z[r0 + i, c0 + j] == values[ch, i, j]  # one shared range: real values
        k = np.flatnonzero((np.asarray(targets.x) == c0 + j) & (np.asarray(targets.y) == r0 + i))[0]
        assert tuple(targets.customdata[k][:3]) == (ch, i, j) and targets.customdata[k][3] == values[ch, i, j]
    assert t.unit(7, 0) is None and t.unit(0, 5) is None  # the gaps
    assert t.unit(3 * 8, 8) is None  # past the last channel
    assert len(fig.layout.shapes) == 2  # the chosen map and the chosen unit


def _sent(fig: go.Figure) -> dict:
    """The figure as st.plotly_chart writes it for the browser."""
    return json.loads(plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True), validate=False))


@pytest.mark.parametrize(
    "build, args",
    [
        (figs.layer_grid_figure, (np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5), [(-1.0, 1.0), (-2.0, 2.0), (-3.0, 3.0)], "grid", 84, (1, 2, 3))),
        (figs.layer_grid_figure, (np.ones((2, 3, 3), dtype=np.float32), [(-1.0, 1.0)] * 2)),
        (figs.map_figure, (np.eye(4, dtype=np.float32), (-1.0, 1.0), "map", (1, 2))),
        (figs.map_figure, (np.eye(4, dtype=np.float32), (-1.0, 1.0))),
        (figs.input_figure, (np.linspace(0, 1, 30).reshape(5, 6), "input", Box(start=(-1, 0), end=(2, 2), lo=(0, 0), hi=(2, 2)), np.ones((5, 6)))),
        (figs.input_figure, (np.linspace(0, 1, 48).reshape(4, 4, 3), "rgb")),
        (figs.vector_figure, (np.array([0.5, -1.0, 2.0]), "vector")),
        (figs.probabilities_figure, (np.array([0.1, 0.7, 0.2]), ["cat", "dog", "fox"])),
    ],
)
def test_the_unchecked_figure_the_page_sends_is_the_validated_one(build, args):
    """The pages send `.unchecked` figures, which skip plotly's validation: the browser must get the same figure as
    from the validated builder the other tests look at (no property that only validation would resolve or reject)."""
    assert _sent(build.unchecked(*args)) == _sent(build(*args))


def test_per_map_ranges_are_drawn_as_shares():
    values = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 10.0)]).astype(np.float32)
    fig = figs.layer_grid_figure(values, [(-1.0, 1.0), (-10.0, 10.0)])
    np.testing.assert_array_equal(fig.data[0].z[:2, :2], 1.0)
    np.testing.assert_array_equal(fig.data[0].z[:2, 3:5], 1.0)
    assert fig.data[0].showscale is False


def test_the_input_figure_carries_the_box_and_the_overlay():
    pixels = np.random.default_rng(1).random((10, 12)).astype(np.float32)
    erf = np.zeros((10, 12))
    erf[2:5, 3:6] = 1.0
    box = Box(start=(-1, 3), end=(4, 8), lo=(0, 3), hi=(4, 8))
    fig = figs.input_figure(pixels, "t", box=box, erf=erf)
    assert [d.name for d in fig.data] == ["input", "effective field"]
    assert fig.data[1].z.max() == 1.0
    solid, dashed = fig.layout.shapes
    assert (solid.x0, solid.x1, solid.y0, solid.y1) == (2.5, 8.5, -0.5, 4.5)
    assert (dashed.y0, dashed.line.dash) == (-1.5, "dash")
    assert fig.layout.yaxis.range[1] < -1.5  # the view makes room for the part of the box in the padding
    rgb = figs.input_figure(np.random.default_rng(2).random((6, 6, 3)), "rgb")
    assert rgb.data[0].type == "image"


def test_filters_figures():
    w = np.random.default_rng(3).standard_normal((6, 3, 5, 5)).astype(np.float32)
    fig = figs.filters_figure(w, features.rgb_filters(w), "rgb")
    assert fig.data[0].type == "image" and fig.data[0].z.shape == (5, 6 * 6 - 1, 3)
    grey = figs.filters_figure(w[:, :1], None, "grey", zmax=9.0)
    assert grey.data[0].zmax == 9.0 and grey.data[0].z.shape == (5, 6 * 6 - 1)
    deep = figs.filters_figure(np.ones((40, 40, 3, 3), dtype=np.float32), None, "deep")
    assert deep.data[0].z.shape == (32 * 4 - 1, 32 * 4 - 1) and "first 32 of 40" in deep.layout.title.text


def test_lab_and_growth_charts_hold_their_data():
    curves = actlab.curves()
    fig = figs.activation_figure(curves, "Tanh")
    assert len(fig.data) == 2 * len(curves)
    assert len(fig.layout.shapes) == 2 * len(actlab.curve("Tanh").flat)
    f_trace, df_trace = [d for d in fig.data if d.name == "Tanh"]
    assert f_trace.line.color == df_trace.line.color and f_trace.line.width > 3
    stack = figs.deep_stack_figure(actlab.deep_stack("ReLU", "kaiming_normal", {}, depth=3, width=32, batch=64))
    assert sum(d.type == "violin" for d in stack.data) == 3 and stack.layout.yaxis2.type == "log"
    rows = [Growth("model.layers[0]", "Conv2d", (3, 3), (3, 3), (0.8, 0.8)), Growth("model.layers[1]", "ReLU", (5, 5), None, None)]
    g = figs.rf_growth_figure(rows, ["a", "b"])
    assert list(g.data[0].y) == [3, 5] and list(g.data[1].y) == [3, None]


def test_a_lab_map_without_negative_values_takes_a_sequential_scale():
    """A magnitude or a blur drawn on a red-blue scale around 0 uses only its red half, and reads as 'all positive
    response' where it is the whole range of the map."""
    image = np.random.default_rng(0).random((12, 12))
    magnitude = figs.lab_map_figure(np.abs(image - 0.5), "magnitude").data[0]
    assert magnitude.zmin == 0 and magnitude.colorscale != figs.lab_map_figure(image - 0.5, "edge").data[0].colorscale
    assert [c for _, c in magnitude.colorscale] == [c for _, c in go.Heatmap(colorscale=figs.SEQUENTIAL_SCALE).colorscale]
    signed = figs.lab_map_figure(image - 0.5, "edge").data[0]
    assert signed.zmin == -signed.zmax
