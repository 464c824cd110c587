"""Plotly builders for the Vision page's Segmentation tab: a canvas, its true and predicted masks and the cross-entropy
of every pixel, side by side on one pixel grid."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dlviz.figures.style import MARGIN, PALETTE, SEQUENTIAL_SCALE
from dlviz.figures.style import title as style_title

BACKGROUND = "#111111"  # class 0, the background, drawn dark as the canvas is


def class_colors(num_classes: int) -> list[str]:
    """A colour per class: the background dark, then the palette's colours in order."""
    return [BACKGROUND, *(PALETTE[k % len(PALETTE)] for k in range(num_classes - 1))]


def _mask_scale(num_classes: int) -> list:
    """A discrete colorscale: class k fills [k, k + 1) / num_classes of the scale, for z from -0.5 to num_classes - 0.5."""
    scale = []
    for k, c in enumerate(class_colors(num_classes)):
        scale += [[k / num_classes, c], [(k + 1) / num_classes, c]]
    return scale


def _mask(mask: np.ndarray, class_names: Sequence[str], what: str) -> go.Heatmap:
    names = np.asarray(class_names, dtype=object)[mask]
    return go.Heatmap(
        z=mask,
        zmin=-0.5,
        zmax=len(class_names) - 0.5,
        colorscale=_mask_scale(len(class_names)),
        showscale=False,
        customdata=names,
        hovertemplate=f"row %{{y}}, column %{{x}}: {what} %{{customdata}}<extra></extra>",
    )


def segmentation_figure(
    pixels: np.ndarray, true: np.ndarray, pred: np.ndarray, loss_map: np.ndarray, class_names: Sequence[str], title: str = "", height: int = 330
) -> go.Figure:
    """Four panels of one H×W canvas: its pixels in [0, 1], the true mask, the predicted one (a colour per class, the
    background dark) and the cross-entropy of every pixel in nats (with its own colour bar)."""
    panels = ("input", "true mask", "predicted mask", "cross-entropy per pixel")
    fig = make_subplots(1, 4, subplot_titles=panels, horizontal_spacing=0.03)
    fig.add_trace(
        go.Heatmap(z=pixels, colorscale="gray", zmin=0, zmax=1, showscale=False, hovertemplate="row %{y}, column %{x}: pixel %{z:.2f}<extra></extra>"), 1, 1
    )
    fig.add_trace(_mask(true, class_names, "true"), 1, 2)
    fig.add_trace(_mask(pred, class_names, "predicted"), 1, 3)
    fig.add_trace(
        go.Heatmap(
            z=loss_map,
            colorscale=SEQUENTIAL_SCALE,
            zmin=0,
            colorbar=dict(title=dict(text="nats", side="right"), thickness=10, len=0.9),
            hovertemplate="row %{y}, column %{x}: cross-entropy %{z:.3f}<extra></extra>",
        ),
        1,
        4,
    )
    h, w = pixels.shape
    for k in range(1, 5):
        fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], constrain="domain", row=1, col=k)
        fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor=f"x{'' if k == 1 else k}", constrain="domain", row=1, col=k)
    for a in fig.layout.annotations:
        a.font = dict(size=12)
    fig.update_layout(title=style_title(title), height=height, margin={**MARGIN, "t": 60}, plot_bgcolor="white", dragmode=False)
    return fig
