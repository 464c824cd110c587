"""Plotly builders for the Train page: live snapshot (see dlviz.live) in, figure out, one builder per chart.

Each builder writes the figure as a plain dict ("data" and "layout", as plotly.js takes them). `loss_figure(snap)`
returns a validated go.Figure; `loss_figure.spec(snap)` returns the bare dict, which the live Train page sends as it is:
building a go.Figure validates every property through plotly's validators, and at the page's redraw rate that
validation was half of the server's work with eight sessions training."""

from __future__ import annotations

import base64
import math
import warnings
from typing import Optional

import numpy as np

from dlviz.figures.style import PALETTE, PLAYGROUND, builder, colorscale, template
from dlviz.loop import METRIC_LABELS, metric_key
from dlviz.text import plot_text
from dlviz.training.diagnose import EXPLODING, VANISHING

TRAIN, VAL, STEP = "#1f77b4", "#ff7f0e", "rgba(31,119,180,0.35)"


_JS_TYPES = {"float64": "f8", "float32": "f4", "int32": "i4"}  # plotly.js typed arrays (it has no 64-bit integers)


def _packed(v):
    """A numeric numpy array as a plotly.js typed array (its bytes in base64), as go.Figure sends numpy arrays: a
    fraction of the size of the same numbers written as text, and read by the browser without parsing each one."""
    if not isinstance(v, np.ndarray) or v.size == 0 or v.dtype.kind not in "fiu":
        return v
    if v.dtype.kind in "iu" and str(v.dtype) not in _JS_TYPES:
        v = v.astype(np.int32) if v.min() >= -(2**31) and v.max() < 2**31 else v.astype(np.float64)
    elif v.dtype.kind == "f" and str(v.dtype) not in _JS_TYPES:
        v = v.astype(np.float64)
    out = {"dtype": _JS_TYPES[str(v.dtype)], "bdata": base64.b64encode(np.ascontiguousarray(v)).decode("ascii")}
    if v.ndim > 1:
        out["shape"] = ", ".join(map(str, v.shape))
    return out


def _pack(trace: dict) -> dict:
    return {k: ({kk: _packed(vv) for kk, vv in v.items()} if isinstance(v, dict) else _packed(v)) for k, v in trace.items()}


def _spec(
    title: str, data: list[dict], height: int = 300, xtitle: str = "", ytitle: str = "", xaxis: Optional[dict] = None, yaxis: Optional[dict] = None, **layout
) -> dict:
    # the legend goes under the axis title, so it never covers the chart's title or the x axis
    return {
        "data": [_pack(t) for t in data],
        "layout": {
            "template": template(),
            "title": {"text": title, "x": 0.01, "font": {"size": 14}},
            "height": height + 40,
            "margin": {"l": 50, "r": 15, "t": 40, "b": 40},
            "uirevision": "keep",
            "legend": {"orientation": "h", "yanchor": "top", "y": -0.28, "x": 0, "font": {"size": 10}},
            "xaxis": {"title": {"text": xtitle}, **(xaxis or {})},
            "yaxis": {"title": {"text": ytitle}, **(yaxis or {})},
            **{k: v for k, v in layout.items() if v is not None and v != []},
        },
    }


def _scatter(x, y, name: str, mode: str = "lines", **kw) -> dict:
    return {"type": "scatter", "x": x, "y": y, "mode": mode, "name": name, **kw}


def _band(y0: float, y1: float, color: str, opacity: float) -> dict:
    """A horizontal band across the whole width of the plot, between y0 and y1 in data units."""
    return {"type": "rect", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": y0, "y1": y1, "fillcolor": color, "opacity": opacity, "line": {"width": 0}}


MAX_EPOCH_POINTS = 200  # per-epoch series drawn: more would not show on a chart a few hundred pixels wide
MARKERS_UP_TO = 40  # per-epoch points get markers up to this many; beyond, every marker is a redrawn SVG node for nothing


def _epoch_rows(epochs: list[dict]) -> list[dict]:
    """The epochs to draw: all of them, or an even subset that keeps the first and the last."""
    n = len(epochs)
    if n <= MAX_EPOCH_POINTS:
        return epochs
    idx = np.unique(np.linspace(0, n - 1, MAX_EPOCH_POINTS).round().astype(int))
    return [epochs[i] for i in idx]


def _epoch_traces(epochs: list[dict], train_key: str, val_key: str) -> list[dict]:
    """The per-epoch training and validation curves of a live chart."""
    ep = _epoch_rows(epochs)
    if not ep:
        return []
    # numpy arrays travel to plotly.js packed (and are not walked value by value); NaN marks a missing value
    x = np.array([e.get("step", i) for i, e in enumerate(ep)], dtype=float)
    mode = "lines+markers" if len(ep) <= MARKERS_UP_TO else "lines"
    return [
        _scatter(x, np.array(_finite(e.get(key) for e in ep), dtype=float), name, mode, line={"color": color})  # None -> NaN
        for key, name, color in ((train_key, "train", TRAIN), (val_key, "validation", VAL))
    ]


def _finite(values) -> list:
    return [v if v is not None and isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def _probe_count(tel: list[dict]) -> list[dict]:
    """A chart drawn from one probe says so: one dot, or one stretched column, is not a history."""
    if len(tel) != 1:
        return []
    return [
        {
            "text": f"one probe so far (step {tel[0]['step']}): the probes come every few steps",
            "showarrow": False,
            "xref": "paper",
            "yref": "paper",
            "x": 0.5,
            "y": 0.95,
            "font": {"color": "#888"},
        }
    ]


def _waiting(snap: dict) -> list[dict]:
    """Before the first step, say where the curve will appear instead of showing bare axes."""
    if len(snap["step"]):
        return []
    return [
        {
            "text": "press Train: the curve appears with the first steps",
            "showarrow": False,
            "xref": "paper",
            "yref": "paper",
            "x": 0.5,
            "y": 0.5,
            "font": {"color": "#888"},
        }
    ]


@builder
def loss_figure(snap: dict) -> dict:
    """Loss per step (thin) and per epoch for training and validation, against the step; with a penalty on, the
    epoch's penalty and its total with the data loss (what the optimizer minimises) beside the data loss."""
    data = [_scatter(snap["step"], snap["loss"], "batch loss", line={"color": STEP, "width": 1})]
    data += _epoch_traces(snap["epochs"], "train_loss", "val_loss")
    ep = _epoch_rows(snap["epochs"])
    if any(e.get("train_penalty") is not None for e in ep):
        x = np.array([e.get("step", i) for i, e in enumerate(ep)], dtype=float)
        for key, name, dash in (("train_penalty", "penalty", "dot"), ("train_total", "train total (data + penalty)", "dash")):
            y = np.array(_finite(e.get(key) for e in ep), dtype=float)
            data.append(_scatter(x, y, name, line={"color": TRAIN, "dash": dash}))
    title = "Loss (the batch and epoch curves are the data loss)" if len(data) > 3 else "Loss"
    return _spec(title, data, xtitle="step", ytitle="loss", annotations=_waiting(snap))


@builder
def lr_figure(snap: dict) -> dict:
    """The learning rate at each step, on a log axis: a schedule's shape, and the rate each step really used."""
    lr = np.asarray(snap["lr"], dtype=float)
    data = [_scatter(snap["step"], lr, "learning rate", line={"color": TRAIN})]
    positive = lr[np.isfinite(lr) & (lr > 0)]
    yaxis = {"type": "log"} if len(positive) else None
    return _spec("Learning rate", data, height=200, xtitle="step", ytitle="lr", yaxis=yaxis, showlegend=False, annotations=_waiting(snap))


@builder
def metric_figure(snap: dict) -> dict:
    """Accuracy (classification), verification AUC (an embedding), R² (regression) or mAP@0.5 (a detector) per step and
    per epoch; a detector's mAP is the validation canvases' only, scored at each epoch's end, which the chart says."""
    key = metric_key(snap.get("task") or "classification")
    label, detector = METRIC_LABELS[key], key == "map"
    data = [] if detector else [_scatter(snap["step"], snap["metric"], f"batch {label}", line={"color": STEP, "width": 1})]
    data += [t for t in _epoch_traces(snap["epochs"], f"train_{key}", f"val_{key}") if not detector or t["name"] == "validation"]
    note = "scored on the validation canvases at each epoch's end, not per batch" + ("" if data else ": the first point ends epoch 1")
    return _spec(
        f"{label} (validation)" if detector else label.capitalize() if key == "accuracy" else label,
        data,
        xtitle="step",
        ytitle=label,
        yaxis={"range": [0, 1.02]} if key in ("accuracy", "map") else None,
        annotations=_waiting(snap) or ([_corner_note(note)] if detector else []),
    )


def _weights_only(names: list[str]) -> list[int]:
    idx = [i for i, n in enumerate(names) if not n.rsplit(".", 1)[-1].startswith("bias")]
    return idx or list(range(len(names)))


def _layer_label(names: list[str], i: int, j: int) -> str:
    """`j`-th weight tensor (from the input) as a short label: its position first, so the legend reads in layer order."""
    return plot_text(f"{j + 1} · {names[i].removeprefix('model.').removesuffix('.weight')}")


def _layer_colors(n: int) -> list[str]:
    """One colour a layer, from the first (dark purple) to the last (green-yellow) along Viridis: every colour distinct,
    and the order of the layers readable from the colour alone. Viridis's last tenth is too pale on the plot background."""
    from plotly.colors import sample_colorscale

    return sample_colorscale(colorscale("Viridis"), list(np.linspace(0, 0.9, n)) if n > 1 else [0.0])


NEAR_DECADES = 2.0  # a band this close to the data (in powers of ten) still shows, as context


def _fitted_log_axis(logs: np.ndarray, bands: list[tuple[float, float, str, str]]) -> tuple[dict, list]:
    """A log axis fitted to the finite values of `logs` (log10 of the data), and the bands that fall in or near it,
    clipped to it. A fixed 1e-12…1e12 axis squeezed eleven layers two decades apart into one line."""
    v = logs[np.isfinite(logs)] if logs.size else logs
    if not v.size:
        return {"type": "log", "exponentformat": "power"}, bands
    lo, hi = float(v.min()), float(v.max())
    pad = max(0.25, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    shown = []
    for y0, y1, color, text in bands:
        a, b = math.log10(y0), math.log10(y1)
        if a > hi + NEAR_DECADES or b < lo - NEAR_DECADES:
            continue
        if b - a > 4:  # the vanishing and exploding bands run on forever: show their edge and half a decade of them
            lo, hi = (min(lo, b - 0.5), hi) if b < lo else (lo, max(hi, a + 0.5)) if a > hi else (lo, hi)
        else:  # a band of healthy values shows whole, its middle line included
            lo, hi = min(lo, a - 0.1), max(hi, b + 0.1)
        shown.append((y0, y1, color, text))
    clipped = [(max(y0, 10**lo), min(y1, 10**hi), color, text) for y0, y1, color, text in shown]
    return {"type": "log", "exponentformat": "power", "range": [lo, hi], "autorange": False}, clipped


# the layer charts' legend lists many tensors: beside the plot, in one column, it cannot run into the step axis's title
SIDE_LEGEND = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top", "font": {"size": 10}, "tracegroupgap": 0}


def _band_notes(bands: list[tuple[float, float, str, str]]) -> list[dict]:
    # on a log axis plotly.js places annotations by log10 of the value (shapes take the value itself)
    return [
        {
            "text": text,
            "showarrow": False,
            "xref": "x domain",
            "x": 0,
            "xanchor": "left",
            "yref": "y",
            "y": math.log10(y1),
            "yanchor": "top",
            "font": {"size": 10},
        }
        for y0, y1, color, text in bands
    ]


def _per_tensor(snap: dict, key: str, title: str, ytitle: str, bands: list[tuple[float, float, str, str]], shapes=()) -> dict:
    names = snap["param_names"]
    logs = np.asarray(snap[key])
    weights = _weights_only(names)
    colors = _layer_colors(len(weights))
    data = (
        [_scatter(snap["step"], 10 ** logs[:, i], _layer_label(names, i, j), line={"color": colors[j], "width": 1.5}) for j, i in enumerate(weights)]
        if logs.size
        else []
    )
    yaxis, bands = _fitted_log_axis(logs[:, weights] if logs.size else logs, bands)
    return _spec(
        title,
        data,
        xtitle="step",
        ytitle=ytitle,
        yaxis=yaxis,
        legend=SIDE_LEGEND,
        shapes=[_band(y0, y1, color, 0.12) for y0, y1, color, _ in bands] + list(shapes),
        annotations=_band_notes(bands),
    )


GRAD_BANDS = [(1e-12, VANISHING, "#d62728", "vanishing"), (EXPLODING, 1e12, "#d62728", "exploding")]


@builder
def grad_norm_figure(snap: dict) -> dict:
    """Gradient norm of each weight tensor on a log scale fitted to the run, with the vanishing and exploding bands
    where they come near it."""
    return _per_tensor(snap, "log_grad_norm", "Gradient norm per layer", "‖g‖", GRAD_BANDS)


MOMENTS = 4  # moments of the run drawn against the layer index: the start, two between, the latest


def _moments(steps: np.ndarray, n_rows: int) -> list[tuple[int, slice]]:
    """A few moments of the run as (step, rows): each the median of a short window, since one batch's norms jitter."""
    w = max(1, n_rows // 20)
    ends = sorted({int(round(f * (n_rows - w))) for f in np.linspace(0, 1, MOMENTS)}) if n_rows > w else [0]
    return [(int(steps[min(e + w, n_rows) - 1]), slice(e, min(e + w, n_rows))) for e in ends]


def _corner_note(text: str) -> dict:
    return {"text": text, "showarrow": False, "xref": "paper", "x": 0, "xanchor": "left", "yref": "paper", "y": 1, "yanchor": "bottom", "font": {"size": 11}}


@builder
def grad_by_layer_figure(snap: dict) -> dict:
    """Gradient norm against the layer index, from the input to the output, at a few moments of the run: vanishing
    gradients are a slope down towards the input, and the ratio of the last layer's norm to the first's is written."""
    names = snap["param_names"]
    logs = np.asarray(snap["log_grad_norm"])
    weights = _weights_only(names)
    data, notes = [], []
    if logs.size and len(snap["step"]):
        logs = logs[:, weights]
        moments = _moments(np.asarray(snap["step"]), len(logs))
        shades = [f"rgba(68,1,84,{a:.2f})" for a in np.linspace(0.25, 1.0, len(moments))]  # fainter is earlier
        x = np.arange(1, len(weights) + 1)
        for k, ((step, rows), color) in enumerate(zip(moments, shades)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a tensor whose norms are all NaN here: not drawn
                med = np.nanmedian(logs[rows], axis=0)  # a zero gradient (log −inf) stays zero
            latest = k == len(moments) - 1
            data.append(
                _scatter(
                    x,
                    10**med,
                    f"step {step:,}" + (" (latest)" if latest else ""),
                    "lines+markers",
                    line={"color": color, "width": 2.5 if latest else 1.5},
                    marker={"size": 7 if latest else 5},
                )
            )
        last = data[-1]["y"]
        if len(weights) > 1 and last[0] == 0 and last[-1] > 0:
            notes.append(_corner_note("latest: the first layer's gradient is 0"))
        elif len(weights) > 1 and np.isfinite(last[[0, -1]]).all() and last[0] > 0:
            ratio = last[-1] / last[0]
            times = ratio if ratio >= 1 else 1 / ratio
            times = f"{times:,.0f}" if times >= 100 else f"{times:.3g}"
            say = f"latest: the last layer's gradient is {times}× the first's" if ratio >= 1 else f"latest: the first layer's gradient is {times}× the last's"
            notes.append(_corner_note(say))
    with np.errstate(divide="ignore"):
        yaxis, bands = _fitted_log_axis(np.log10(np.concatenate([d["y"] for d in data])) if data else np.zeros(0), GRAD_BANDS)
    ticks = [_layer_label(names, i, j) for j, i in enumerate(weights)]
    return _spec(
        "Gradient norm by layer (input → output)",
        data,
        xtitle="layer",
        ytitle="‖g‖",
        yaxis=yaxis,
        legend=SIDE_LEGEND,
        xaxis={"tickmode": "array", "tickvals": list(range(1, len(weights) + 1)), "ticktext": ticks, "tickangle": -45, "automargin": True},
        shapes=[_band(y0, y1, color, 0.12) for y0, y1, color, _ in bands],
        annotations=_band_notes(bands) + notes,
    )


@builder
def update_ratio_figure(snap: dict) -> dict:
    """‖Δw‖/‖w‖ per step for each weight tensor; about 1e-3 is healthy."""
    healthy = {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": 1e-3, "y1": 1e-3, "line": {"color": "#2ca02c", "dash": "dot"}}
    return _per_tensor(snap, "log_update_ratio", "Update / weight ratio", "‖Δw‖ / ‖w‖", [(1e-4, 1e-2, "#2ca02c", "healthy ≈ 1e-3")], shapes=[healthy])


@builder
def unit_health_figure(snap: dict) -> dict:
    """Fraction of dead ReLU units and of saturated sigmoid/tanh outputs per activation layer over time."""
    tel = snap.get("telemetry") or []
    paths = []
    for t in tel:
        for p in t["layers"]:
            if p not in paths:
                paths.append(p)
    data = []
    for j, path in enumerate(paths):
        for key, dash in (("dead", "solid"), ("saturated", "dash")):
            xs = [t["step"] for t in tel if key in t["layers"].get(path, {})]
            if xs:
                ys = [t["layers"][path][key] for t in tel if key in t["layers"].get(path, {})]
                kind = tel[-1]["layers"].get(path, {}).get("type", "")
                data.append(
                    _scatter(xs, ys, f"{path.removeprefix('model.')} {kind} {key}", "lines+markers", line={"color": PALETTE[j % len(PALETTE)], "dash": dash})
                )
    n = tel[-1].get("probe_samples") if tel else None
    title = f"Dead and saturated units (on {n} training samples)" if n else "Dead and saturated units"
    return _spec(
        title,
        data,
        xtitle="step",
        ytitle="fraction",
        yaxis={"range": [0, 1], "tickformat": ".0%"},
        shapes=[_band(0.5, 1.0, "#d62728", 0.08)],
        annotations=_probe_count(tel),
    )


@builder
def histogram_figure(snap: dict, tensor: str, which: str = "weight") -> dict:
    """How one tensor's weight (or gradient) distribution moved during training: a heatmap of counts over steps."""
    tel = [t for t in (snap.get("telemetry") or []) if tensor in t["histograms"] and t["histograms"][tensor].get(which)]
    data = []
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
        data.append(
            {
                "type": "heatmap",
                "x": [t["step"] for t in tel],
                "y": centres,
                "z": np.log1p(z),
                "colorscale": colorscale("Viridis"),
                "showscale": False,
                "hovertemplate": "step %{x}<br>value %{y:.3g}<extra></extra>",
            }
        )
    return _spec(f"{'Weights' if which == 'weight' else 'Gradients'} of {tensor} over time", data, xtitle="step", ytitle="value", annotations=_probe_count(tel))


def _predicted(boundary: dict, xy: np.ndarray, binary: bool) -> np.ndarray:
    """The class the drawn boundary gives each point: P(class 1) interpolated between the grid's corners as the heatmap
    shades it (two classes), or the class of the nearest grid cell (more)."""
    gx, gy, z = np.asarray(boundary["x"]), np.asarray(boundary["y"]), np.asarray(boundary["z"], dtype=float)

    def locate(grid, v):
        f = np.clip((v - grid[0]) / (grid[1] - grid[0]), 0, len(grid) - 1)
        i = np.minimum(np.floor(f).astype(int), len(grid) - 2)
        return i, f - i

    (i, s), (j, t) = locate(gx, xy[:, 0]), locate(gy, xy[:, 1])
    if not binary:
        return z[np.rint(j + t).astype(int), np.rint(i + s).astype(int)].round()
    p = z[j, i] * (1 - s) * (1 - t) + z[j, i + 1] * s * (1 - t) + z[j + 1, i] * (1 - s) * t + z[j + 1, i + 1] * s * t
    return (p > 0.5).astype(float)


MISCLASSIFIED = {"symbol": "x-thin-open", "size": 8, "color": "#111", "line": {"width": 1.6}}  # the point's colour shows through


@builder
def boundary_figure(boundary: Optional[dict], points: Optional[dict], task: str) -> dict:
    """TensorFlow-Playground-style decision boundary: the model's output over the plane and the data points on it, each
    point the model misclassifies crossed out (its colour alone matches the region it sits in)."""
    data, wrong = [], {"x": [], "y": [], "count": []}
    binary = task == "classification" and ((boundary or {}).get("classes") or 2) <= 2
    if boundary:
        heat = {
            "type": "heatmap",
            "x": np.asarray(boundary["x"]),
            "y": np.asarray(boundary["y"]),
            # float32 packs the 60 x 60 grid into a fifth of its text size, at a precision no colour can show
            "z": np.asarray(boundary["z"], dtype=np.float32),
            "zsmooth": "fast",
            "showscale": task != "classification" or not binary,
            "colorscale": PLAYGROUND if binary or task == "regression" else colorscale("Turbo"),
            "opacity": 0.85,
            "hovertemplate": "x1 %{x:.2f}<br>x2 %{y:.2f}<br>output %{z:.2f}<extra></extra>",
        }
        if binary:
            heat.update(zmin=0, zmax=1)
        if task != "classification" or not binary:
            heat["colorbar"] = {"thickness": 10, "x": 1.02, "xanchor": "left"}
        data.append(heat)
    if points:
        for split, symbol in (("train", "circle"), ("val", "circle-open")):
            xy = np.asarray(points.get(split) or np.zeros((0, 2)), dtype=float)
            if len(xy):
                labels = np.asarray(points[f"{split}_labels"])
                cs = PLAYGROUND if task != "classification" or len(set(labels.tolist())) <= 2 else colorscale("Turbo")
                data.append(
                    _scatter(
                        xy[:, 0],
                        xy[:, 1],
                        split,
                        "markers",
                        marker={
                            "color": labels,
                            "colorscale": cs,
                            "symbol": symbol,
                            "size": 6,
                            # a white rim lifts a filled point off a region of its own colour
                            "line": {"width": 0.7 if split == "train" else 1.5, "color": "white" if split == "train" else "#333"},
                        },
                    )
                )
                own = np.asarray((boundary or {}).get("predicted", {}).get(split, []), dtype=float)
                off = None
                if boundary and task == "classification" and len(own) == len(xy):
                    off = own != labels.astype(float)  # the model's own mistakes
                elif boundary and task == "classification" and len(boundary["x"]) > 1 and len(boundary["y"]) > 1:
                    off = _predicted(boundary, xy, binary) != labels.astype(float)  # a stored grid without predictions
                if off is not None:
                    wrong["x"].append(xy[off, 0])
                    wrong["y"].append(xy[off, 1])
                    wrong["count"].append(f"{int(off.sum())} {split}")
    if wrong["x"]:
        data.append(
            _scatter(
                np.concatenate(wrong["x"]),
                np.concatenate(wrong["y"]),
                "misclassified: " + ", ".join(wrong["count"]),
                "markers",
                marker=MISCLASSIFIED,
                hoverinfo="skip",
            )
        )
    # both axes at one scale and the axes no wider than the grid: the column's extra width showed as a blank band on
    # either side of the data; the legend sits in the bottom margin, below the x axis's title
    ranges = {}
    if boundary and len(boundary["x"]) > 1 and len(boundary["y"]) > 1:
        dx, dy = (boundary["x"][1] - boundary["x"][0]) / 2, (boundary["y"][1] - boundary["y"][0]) / 2
        ranges = {"x": [boundary["x"][0] - dx, boundary["x"][-1] + dx], "y": [boundary["y"][0] - dy, boundary["y"][-1] + dy]}
    return _spec(
        "Decision boundary" if task == "classification" else "Prediction over the plane",
        data,
        height=400,
        xtitle="x1",
        ytitle="x2",
        xaxis={"constrain": "domain", **({"range": ranges["x"]} if ranges else {})},
        yaxis={"scaleanchor": "x", "scaleratio": 1, "constrain": "domain", **({"range": ranges["y"]} if ranges else {})},
        legend={"orientation": "h", "x": 0, "y": 0, "yref": "container", "yanchor": "bottom", "font": {"size": 10}},
        margin={"l": 50, "r": 15, "t": 40, "b": 75},
        plot_bgcolor="white",
    )


@builder
def confusion_figure(evaluation: dict) -> dict:
    """Validation confusion matrix: rows are the true class, columns the predicted one."""
    cm = np.asarray(evaluation["confusion"])
    classes = [plot_text(c) for c in evaluation["classes"]]  # a CSV's own class names
    heat = {
        "type": "heatmap",
        "z": cm,
        "x": classes,
        "y": classes,
        "colorscale": colorscale("Blues"),
        "text": cm,
        "texttemplate": "%{text}",
        "showscale": False,
        "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z} samples<extra></extra>",
    }
    return _spec(
        "Confusion matrix (validation)",
        [heat],
        height=360,
        xtitle="predicted",
        ytitle="true",
        xaxis={"type": "category"},
        yaxis={"autorange": "reversed", "type": "category", "automargin": True},
    )  # class names can be long


@builder
def fit_figure(evaluation: dict) -> dict:
    """Regression fit on validation data: prediction against target, with the line of perfect fit."""
    t, p = np.asarray(evaluation["target"]), np.asarray(evaluation["pred"])
    data = [_scatter(t, p, "validation", "markers", marker={"size": 5, "color": TRAIN, "opacity": 0.6})]
    if len(t):
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        data.append(_scatter([lo, hi], [lo, hi], "perfect fit", line={"color": "#333", "dash": "dot"}))
    return _spec("Fit (validation)", data, height=360, xtitle="target", ytitle="prediction")


@builder
def compare_figure(runs: dict[str, list[dict]], key: str) -> dict:
    """Overlay one per-epoch metric of several runs (name -> epoch records), named as a person reads it ("val mAP@0.5")."""
    data = [
        _scatter([e["epoch"] for e in epochs], _finite(e.get(key) for e in epochs), plot_text(name), "lines+markers", line={"color": PALETTE[j % len(PALETTE)]})
        for j, (name, epochs) in enumerate(runs.items())
    ]
    title = " ".join(METRIC_LABELS.get(word, word) for word in key.split("_", 1))  # "val_map": "val mAP@0.5"
    return _spec(title, data, xtitle="epoch", ytitle=title)
