"""Plotly builders for the Train page: live snapshot (see dlviz.live) in, go.Figure out, one builder per chart."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import plotly.graph_objects as go

from .diagnose import EXPLODING, VANISHING

TRAIN, VAL, STEP = "#1f77b4", "#ff7f0e", "rgba(31,119,180,0.35)"
PLAYGROUND = [[0.0, "#f59322"], [0.5, "#e8eaeb"], [1.0, "#0877bd"]]  # TensorFlow Playground's orange / blue
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _layout(fig: go.Figure, title: str, height: int = 300, **kw) -> go.Figure:
    # the legend goes under the axis title, so it never covers the chart's title or the x axis
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), height=height + 40, margin=dict(l=50, r=15, t=40, b=40),
                      legend=dict(orientation="h", yanchor="top", y=-0.28, x=0, font=dict(size=10)), uirevision="keep", **kw)
    return fig


MAX_EPOCH_POINTS = 200  # per-epoch series drawn: more would not show on a chart a few hundred pixels wide
MARKERS_UP_TO = 40  # per-epoch points get markers up to this many; beyond, every marker is a redrawn SVG node for nothing


def _epoch_rows(epochs: list[dict]) -> list[dict]:
    """The epochs to draw: all of them, or an even subset that keeps the first and the last."""
    n = len(epochs)
    if n <= MAX_EPOCH_POINTS:
        return epochs
    idx = np.unique(np.linspace(0, n - 1, MAX_EPOCH_POINTS).round().astype(int))
    return [epochs[i] for i in idx]


def _epoch_traces(fig: go.Figure, epochs: list[dict], train_key: str, val_key: str) -> None:
    """The per-epoch training and validation curves of a live chart."""
    ep = _epoch_rows(epochs)
    if not ep:
        return
    # numpy arrays travel to plotly.js packed (and are not walked value by value); NaN marks a missing value
    x = np.array([e.get("step", i) for i, e in enumerate(ep)], dtype=float)
    mode = "lines+markers" if len(ep) <= MARKERS_UP_TO else "lines"
    for key, name, color in ((train_key, "train", TRAIN), (val_key, "validation", VAL)):
        y = np.array(_finite(e.get(key) for e in ep), dtype=float)  # None -> NaN
        fig.add_scatter(x=x, y=y, mode=mode, name=name, line=dict(color=color))


def _finite(values) -> list:
    return [v if v is not None and isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def _waiting(fig: go.Figure, snap: dict) -> None:
    """Before the first step, say where the curve will appear instead of showing bare axes."""
    if len(snap["step"]) == 0:
        fig.add_annotation(text="press Train: the curve appears with the first steps", showarrow=False, xref="paper",
                           yref="paper", x=0.5, y=0.5, font=dict(color="#888"))


def loss_figure(snap: dict) -> go.Figure:
    """Loss per step (thin) and per epoch for training and validation, against the step."""
    fig = go.Figure()
    fig.add_scatter(x=snap["step"], y=snap["loss"], mode="lines", name="batch loss", line=dict(color=STEP, width=1))
    _epoch_traces(fig, snap["epochs"], "train_loss", "val_loss")
    _waiting(fig, snap)
    return _layout(fig, "Loss", xaxis_title="step", yaxis_title="loss")


def metric_figure(snap: dict) -> go.Figure:
    """Accuracy (classification) or R² (regression) per step and per epoch."""
    key = "accuracy" if snap.get("task") != "regression" else "r2"
    label = "accuracy" if key == "accuracy" else "R²"
    fig = go.Figure()
    fig.add_scatter(x=snap["step"], y=snap["metric"], mode="lines", name=f"batch {label}", line=dict(color=STEP, width=1))
    _epoch_traces(fig, snap["epochs"], f"train_{key}", f"val_{key}")
    _waiting(fig, snap)
    fig.update_yaxes(range=[0, 1.02] if key == "accuracy" else None)
    return _layout(fig, label.capitalize() if key == "accuracy" else label, xaxis_title="step", yaxis_title=label)


def _weights_only(names: list[str]) -> list[int]:
    idx = [i for i, n in enumerate(names) if not n.rsplit(".", 1)[-1].startswith("bias")]
    return idx or list(range(len(names)))


def _per_tensor(snap: dict, key: str, title: str, ytitle: str, bands: list[tuple[float, float, str, str]]) -> go.Figure:
    names = snap["param_names"]
    logs = np.asarray(snap[key])
    fig = go.Figure()
    for y0, y1, color, text in bands:
        fig.add_hrect(y0=y0, y1=y1, fillcolor=color, opacity=0.12, line_width=0, annotation_text=text,
                      annotation_position="top left", annotation_font_size=10)
    for j, i in enumerate(_weights_only(names)):
        if logs.size:
            fig.add_scatter(x=snap["step"], y=10 ** logs[:, i], mode="lines", name=names[i], line=dict(color=PALETTE[j % len(PALETTE)], width=1.5))
    fig.update_yaxes(type="log", exponentformat="power")
    return _layout(fig, title, xaxis_title="step", yaxis_title=ytitle)


def grad_norm_figure(snap: dict) -> go.Figure:
    """Gradient norm of each weight tensor on a log scale, with the vanishing and exploding bands."""
    return _per_tensor(snap, "log_grad_norm", "Gradient norm per layer", "‖g‖",
                       [(1e-12, VANISHING, "#d62728", "vanishing"), (EXPLODING, 1e12, "#d62728", "exploding")])


def update_ratio_figure(snap: dict) -> go.Figure:
    """‖Δw‖/‖w‖ per step for each weight tensor; about 1e-3 is healthy."""
    fig = _per_tensor(snap, "log_update_ratio", "Update / weight ratio", "‖Δw‖ / ‖w‖", [(1e-4, 1e-2, "#2ca02c", "healthy ≈ 1e-3")])
    fig.add_hline(y=1e-3, line_dash="dot", line_color="#2ca02c")
    return fig


def unit_health_figure(snap: dict) -> go.Figure:
    """Fraction of dead ReLU units and of saturated sigmoid/tanh outputs per activation layer over time."""
    tel = snap.get("telemetry") or []
    fig = go.Figure()
    paths = []
    for t in tel:
        for p in t["layers"]:
            if p not in paths:
                paths.append(p)
    for j, path in enumerate(paths):
        for key, dash in (("dead", "solid"), ("saturated", "dash")):
            xs = [t["step"] for t in tel if key in t["layers"].get(path, {})]
            if xs:
                ys = [t["layers"][path][key] for t in tel if key in t["layers"].get(path, {})]
                kind = tel[-1]["layers"].get(path, {}).get("type", "")
                fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=f"{path.removeprefix('model.')} {kind} {key}",
                                line=dict(color=PALETTE[j % len(PALETTE)], dash=dash))
    fig.add_hrect(y0=0.5, y1=1.0, fillcolor="#d62728", opacity=0.08, line_width=0)
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return _layout(fig, "Dead and saturated units", xaxis_title="step", yaxis_title="fraction")


def histogram_figure(snap: dict, tensor: str, which: str = "weight") -> go.Figure:
    """How one tensor's weight (or gradient) distribution moved during training: a heatmap of counts over steps."""
    tel = [t for t in (snap.get("telemetry") or []) if tensor in t["histograms"] and t["histograms"][tensor].get(which)]
    fig = go.Figure()
    if tel:
        top = max(t["histograms"][tensor][which]["range"] for t in tel)
        edges = np.linspace(-top, top, 41)
        centres = (edges[:-1] + edges[1:]) / 2
        z = []
        for t in tel:
            h = t["histograms"][tensor][which]
            m, counts = h["range"], np.asarray(h["counts"], dtype=float)
            bins = len(counts)
            own = np.linspace(-m, m, bins + 1)
            mids = (own[:-1] + own[1:]) / 2
            z.append(np.histogram(mids, bins=edges, weights=counts)[0])
        z = np.asarray(z).T
        fig.add_heatmap(x=[t["step"] for t in tel], y=centres, z=np.log1p(z), colorscale="Viridis", showscale=False,
                        hovertemplate="step %{x}<br>value %{y:.3g}<extra></extra>")
    return _layout(fig, f"{'Weights' if which == 'weight' else 'Gradients'} of {tensor} over time", xaxis_title="step", yaxis_title="value")


def boundary_figure(boundary: Optional[dict], points: Optional[dict], task: str) -> go.Figure:
    """TensorFlow-Playground-style decision boundary: the model's output over the plane and the data points on it."""
    fig = go.Figure()
    if boundary:
        classes = boundary.get("classes")
        binary = task == "classification" and (classes or 2) <= 2
        fig.add_heatmap(x=boundary["x"], y=boundary["y"], z=boundary["z"], zsmooth="fast", showscale=task != "classification" or not binary,
                        colorscale=PLAYGROUND if binary or task == "regression" else "Turbo", zmin=0 if binary else None, zmax=1 if binary else None,
                        opacity=0.85, hovertemplate="x1 %{x:.2f}<br>x2 %{y:.2f}<br>output %{z:.2f}<extra></extra>")
    if points:
        for split, symbol in (("train", "circle"), ("val", "circle-open")):
            xy = np.asarray(points.get(split) or np.zeros((0, 2)))
            if len(xy):
                labels = np.asarray(points[f"{split}_labels"])
                cs = PLAYGROUND if task != "classification" or len(set(labels.tolist())) <= 2 else "Turbo"
                fig.add_scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=split,
                                marker=dict(color=labels, colorscale=cs, symbol=symbol, size=6, line=dict(width=0 if split == "train" else 1.5, color="#333")))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return _layout(fig, "Decision boundary" if task == "classification" else "Prediction over the plane", height=380,
                   xaxis_title="x1", yaxis_title="x2", plot_bgcolor="white")


def confusion_figure(evaluation: dict) -> go.Figure:
    """Validation confusion matrix: rows are the true class, columns the predicted one."""
    cm = np.asarray(evaluation["confusion"])
    classes = [str(c) for c in evaluation["classes"]]
    fig = go.Figure(go.Heatmap(z=cm, x=classes, y=classes, colorscale="Blues", text=cm, texttemplate="%{text}", showscale=False,
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z} samples<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category", automargin=True)  # class names can be long
    fig.update_xaxes(type="category")
    return _layout(fig, "Confusion matrix (validation)", height=360, xaxis_title="predicted", yaxis_title="true")


def fit_figure(evaluation: dict) -> go.Figure:
    """Regression fit on validation data: prediction against target, with the line of perfect fit."""
    t, p = np.asarray(evaluation["target"]), np.asarray(evaluation["pred"])
    fig = go.Figure()
    fig.add_scatter(x=t, y=p, mode="markers", name="validation", marker=dict(size=5, color=TRAIN, opacity=0.6))
    if len(t):
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect fit", line=dict(color="#333", dash="dot"))
    return _layout(fig, "Fit (validation)", height=360, xaxis_title="target", yaxis_title="prediction")


def compare_figure(runs: dict[str, list[dict]], key: str) -> go.Figure:
    """Overlay one per-epoch metric of several runs (name -> epoch records)."""
    fig = go.Figure()
    for j, (name, epochs) in enumerate(runs.items()):
        fig.add_scatter(x=[e["epoch"] for e in epochs], y=_finite(e.get(key) for e in epochs), mode="lines+markers", name=name,
                        line=dict(color=PALETTE[j % len(PALETTE)]))
    return _layout(fig, key.replace("_", " "), xaxis_title="epoch", yaxis_title=key)
