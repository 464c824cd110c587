"""Plotly builders for the Vision page: a detector's boxes over a canvas, with what non-max suppression did to each."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from dlviz.figures.style import MARGIN, PALETTE
from dlviz.figures.style import title as style_title

TRUTH_COLOR = "white"  # apart from every digit's colour in PALETTE
LOW_COLOR = "rgba(120,120,120,0.45)"
# how each kind of box is drawn: line dash and width, and its legend entry
STYLES = {
    "truth": ("solid", 3, "true box"),
    "kept": ("solid", 2.5, "kept by NMS"),
    "suppressed": ("dash", 1.5, "removed by NMS"),
    "low": ("dot", 1, "below the confidence threshold"),
}


def _outline(box: Sequence[float]) -> tuple[list[float], list[float]]:
    """The corners of an xyxy box in pixel edges, closed, as a line trace draws them (a heatmap's pixel i spans i ± 0.5)."""
    x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
    return [x1, x2, x2, x1, x1], [y1, y1, y2, y2, y1]


def _boxes_trace(boxes: list[dict], kind: str, color: str | None = None) -> go.Scatter:
    """One trace for every box of a kind, outlines separated by gaps, each with its hover text on its corners."""
    dash, width, name = STYLES[kind]
    xs, ys, hover = [], [], []
    for b in boxes:
        x, y = _outline(b["box"])
        xs += [*x, None]
        ys += [*y, None]
        hover += [b["text"]] * 5 + [None]
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines",
        line=dict(color=color or (TRUTH_COLOR if kind == "truth" else LOW_COLOR), dash=dash, width=width),
        name=name,
        text=hover,
        hovertemplate="%{text}<extra></extra>",
        legendgroup=kind,
    )


def _canvas(pixels: np.ndarray, height: int) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=pixels, colorscale="gray", showscale=False, hoverinfo="skip", zmin=0, zmax=1))
    h, w = pixels.shape
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x", constrain="domain")
    fig.update_layout(height=height, margin=MARGIN, plot_bgcolor="white", dragmode=False)
    return fig


def detection_figure(
    pixels: np.ndarray, rows: list[dict], truth: list[dict], grid: int, class_names: Sequence[str], title: str = "", height: int = 520
) -> go.Figure:
    """A canvas (H×W in [0, 1]) with its grid's cells, the true boxes, and the detector's boxes from
    analysis.detection.explain: kept boxes in their class's colour and labelled, boxes NMS removed dashed with the box that
    removed them and their IoU, boxes below the confidence threshold dotted and faint."""
    fig = _canvas(pixels, height)
    h, w = pixels.shape
    for k in range(1, grid):  # the cells a digit's centre falls in
        fig.add_shape(type="line", x0=k * w / grid - 0.5, x1=k * w / grid - 0.5, y0=-0.5, y1=h - 0.5, line=dict(color="rgba(255,255,255,0.25)", width=1))
        fig.add_shape(type="line", y0=k * h / grid - 0.5, y1=k * h / grid - 0.5, x0=-0.5, x1=w - 0.5, line=dict(color="rgba(255,255,255,0.25)", width=1))
    if truth:
        fig.add_trace(_boxes_trace([{"box": t["box"], "text": f"true {class_names[t['class']]}"} for t in truth], "truth"))
    low = [r for r in rows if r["status"] == "low"]
    if low:
        fig.add_trace(_boxes_trace([{"box": r["box"], "text": _hover(r, class_names)} for r in low], "low"))
    removed = [r for r in rows if r["status"] == "suppressed"]
    if removed:
        fig.add_trace(_boxes_trace([{"box": r["box"], "text": _hover(r, class_names)} for r in removed], "suppressed", PALETTE[3]))
    kept = [r for r in rows if r["status"] == "kept"]
    for k, r in enumerate(kept):  # one trace a box, in its digit's colour; the legend names the kind once
        fig.add_trace(_boxes_trace([{"box": r["box"], "text": _hover(r, class_names)}], "kept", PALETTE[r["class"] % len(PALETTE)]).update(showlegend=k == 0))
        x1, y1 = float(r["box"][0]) - 0.5, float(r["box"][1]) - 0.5
        fig.add_annotation(
            x=max(x1, -0.5),
            y=max(y1, -0.5),
            text=f"#{r['rank']}: {class_names[r['class']]} ({r['score']:.2f})",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font=dict(size=11, color="white"),
            bgcolor=PALETTE[r["class"] % len(PALETTE)],
        )
    fig.update_layout(
        title=style_title(title), legend=dict(orientation="h", y=-0.02, yanchor="top", font=dict(size=11, color="white"), bgcolor="#222"), showlegend=True
    )
    return fig


def _hover(r: dict, class_names: Sequence[str]) -> str:
    what = f"#{r['rank']} {class_names[r['class']]}, score {r['score']:.3f}"
    if r["status"] == "suppressed":
        return f"{what}: suppressed by #{r['by']}, IoU {r['iou']:.2f}"
    if r["status"] == "low":
        return f"{what}: below the confidence threshold"
    return f"{what}: kept"
