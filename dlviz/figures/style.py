"""The look every figure shares: colours, margins, titles and the charts' Plotly config."""

from __future__ import annotations

import functools
from typing import Callable

import plotly.graph_objects as go
import plotly.io as pio

PLAYGROUND = [[0.0, "#f59322"], [0.5, "#e8eaeb"], [1.0, "#0877bd"]]  # TensorFlow Playground's orange / blue
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
MAP_SCALE = "RdBu_r"  # diverging around zero, as CNN Explainer draws maps: white is 0, red positive, blue negative
SEQUENTIAL_SCALE = "Viridis"  # for maps with no negative value: dark is 0, and brightness grows with the value
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}  # room for a title above, little elsewhere: the page has its own padding
CONFIG = {"displaylogo": False, "scrollZoom": False}  # no logo link out, and the page scrolls instead of zooming
# Invisible markers that turn a click on a heatmap or contour into a Plotly selection (which selects scatter points,
# not heatmap cells): plotly.js draws at most this many of them (marker.maxdisplayed), while hover and click selection
# still reach every point, since both work on the data, not on the drawing. Drawn, each was an SVG element styled on
# every redraw: the 512 of an 8×8×8 layer grid took its redraw from 13 to 42 ms.
CLICK_DRAWN = 1


def title(text: str, size: int = 13) -> dict:
    """A chart's title at the size the pages use (13 px, 14 for a chart that stands alone)."""
    return {"text": text, "font": {"size": size}}


@functools.lru_cache(maxsize=None)
def colorscale(name: str) -> list:
    """A named colorscale as plotly.py resolves it (plotly.js alone does not know them all, Turbo for one)."""
    from plotly.colors import get_colorscale

    return get_colorscale(name)


@functools.lru_cache(maxsize=1)
def template() -> dict:
    """plotly's default template, which go.Figure would put into every layout: the charts look the same either way."""
    return pio.templates[pio.templates.default].to_plotly_json()


def builder(spec: Callable[..., dict]) -> Callable[..., go.Figure]:
    """A figure builder written as a plain dict ("data" and "layout", as plotly.js takes them). Called, it returns a
    go.Figure that plotly has validated property by property (what tests and exports see); `.spec` returns the bare
    dict, and `.unchecked` a go.Figure of the same dict that skips the validation, which is what a page sends on every
    rerun: for an 8×8×8 layer grid, validation was 11 of the 12 ms the figure took to build."""

    @functools.wraps(spec)
    def build(*args, **kwargs) -> go.Figure:
        return go.Figure(spec(*args, **kwargs))

    def unchecked(*args, **kwargs) -> go.Figure:
        return go.Figure(spec(*args, **kwargs), _validate=False)

    build.spec = spec
    build.unchecked = unchecked
    return build
