"""The look every figure shares: colours, margins, titles and the charts' Plotly config."""

from __future__ import annotations

import functools

PLAYGROUND = [[0.0, "#f59322"], [0.5, "#e8eaeb"], [1.0, "#0877bd"]]  # TensorFlow Playground's orange / blue
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
MAP_SCALE = "RdBu_r"  # diverging around zero, as CNN Explainer draws maps: white is 0, red positive, blue negative
SEQUENTIAL_SCALE = "Viridis"  # for maps with no negative value: dark is 0, and brightness grows with the value
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}  # room for a title above, little elsewhere: the page has its own padding
CONFIG = {"displaylogo": False, "scrollZoom": False}  # no logo link out, and the page scrolls instead of zooming


def title(text: str, size: int = 13) -> dict:
    """A chart's title at the size the pages use (13 px, 14 for a chart that stands alone)."""
    return {"text": text, "font": {"size": size}}


@functools.lru_cache(maxsize=None)
def colorscale(name: str) -> list:
    """A named colorscale as plotly.py resolves it (plotly.js alone does not know them all, Turbo for one)."""
    from plotly.colors import get_colorscale

    return get_colorscale(name)
