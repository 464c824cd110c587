"""Plotly builders for the Inspect page: inputs with receptive-field overlays, feature-map grids, filters, the convolution lab, receptive-field growth and the activation lab."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dlviz.figures.style import CLICK_DRAWN, MAP_SCALE, MARGIN, SEQUENTIAL_SCALE, builder, colorscale, template
from dlviz.figures.style import title as style_title

GAP = 1  # blank pixels between the tiles of a grid
MAX_TILES = 64  # channels drawn in one layer's grid
THEORY_COLOR = "#F58518"
EFFECTIVE_COLOR = "#E45756"
FLAT_COLORS = {True: "rgba(228,87,86,0.14)", False: "rgba(245,133,24,0.12)"}  # f′ = 0 / |f′| small


def _square_layout(height: int, shape: Optional[tuple[int, int]] = None) -> dict:
    """Square pixels, row 0 at the top; with `shape`, the axes end at the edges of an image of that many rows and columns."""
    x = {"visible": False, "constrain": "domain"}
    y = {"visible": False, "scaleanchor": "x", "constrain": "domain"}
    if shape is None:
        y["autorange"] = "reversed"
    else:
        x["range"], y["range"] = [-0.5, shape[1] - 0.5], [shape[0] - 0.5, -0.5]
    return {"height": height, "margin": MARGIN, "plot_bgcolor": "white", "dragmode": False, "xaxis": x, "yaxis": y}


def _square_axes(fig: go.Figure, height: int, shape: Optional[tuple[int, int]] = None) -> go.Figure:
    fig.update_layout(**_square_layout(height, shape))
    return fig


def _shapes(shapes: list[dict]) -> dict:
    return {"shapes": shapes} if shapes else {}  # as plotly writes a figure without shapes


def _rect(x0: float, x1: float, y0: float, y1: float, **line) -> dict:
    return {"type": "rect", "xref": "x", "yref": "y", "x0": x0, "x1": x1, "y0": y0, "y1": y1, "line": line}


def _click_targets(rows: np.ndarray, cols: np.ndarray, customdata: np.ndarray, hovertemplate: str) -> dict:
    """Invisible markers on the cells of a heatmap. Plotly selects scatter points on click but not heatmap cells, so
    these carry the clicks (and the hover text) for a heatmap drawn under them."""
    hidden = {"marker": {"opacity": 0}}
    return {
        "type": "scatter",
        "x": cols,
        "y": rows,
        "mode": "markers",
        "customdata": customdata,
        "hovertemplate": hovertemplate,
        "showlegend": False,
        "marker": {"size": 6, "opacity": 0, "color": "black", "maxdisplayed": CLICK_DRAWN},
        "selected": hidden,
        "unselected": hidden,
        "name": "",
    }


# ---------------------------------------------------------------- the input and its receptive fields


@builder
def input_figure(pixels: np.ndarray, title: str = "Input", box=None, erf: Optional[np.ndarray] = None, height: int = 420) -> dict:
    """The input image (H×W grey or H×W×3 in [0, 1]); optionally a unit's effective receptive field as a red overlay
    (a map of |gradient|, transparent where it is 0) and its theoretical field as a box: solid where it lies on the
    image, dashed where the theory reaches into the padding."""
    h, w = pixels.shape[:2]
    if pixels.ndim == 3:
        data = [{"type": "image", "z": np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8), "hoverinfo": "x+y", "name": "input"}]
    else:
        data = [
            {
                "type": "heatmap",
                "z": pixels,
                "colorscale": colorscale("gray"),
                "zmin": 0,
                "zmax": 1,
                "showscale": False,
                "name": "input",
                "hovertemplate": "row %{y}, column %{x}<br>pixel %{z:.3f}<extra></extra>",
            }
        ]
    if erf is not None and erf.max() > 0:
        data.append(
            {
                "type": "heatmap",
                "z": erf / erf.max(),
                "zmin": 0,
                "zmax": 1,
                "name": "effective field",
                "colorscale": [[0, "rgba(228,26,28,0)"], [0.05, "rgba(228,26,28,0.15)"], [1, "rgba(228,26,28,0.9)"]],
                "colorbar": {"title": {"text": "|∂y/∂x|<br>(of max)", "side": "right"}, "len": 0.6, "thickness": 12},
                "hovertemplate": "row %{y}, column %{x}<br>gradient %{z:.3f} of the largest<extra></extra>",
            }
        )
    x_range, y_range = [-0.5, w - 0.5], [h - 0.5, -0.5]
    shapes = []
    if box is not None:
        (r0, c0), (r1, c1) = box.lo, box.hi
        shapes.append({**_rect(c0 - 0.5, c1 + 0.5, r0 - 0.5, r1 + 0.5, color=THEORY_COLOR, width=3), "name": "theoretical field"})
        if box.clipped:
            (r0, c0), (r1, c1) = box.start, box.end
            shapes.append(_rect(c0 - 0.5, c1 + 0.5, r0 - 0.5, r1 + 0.5, color=THEORY_COLOR, width=2, dash="dash"))
            x_range = [min(x_range[0], c0 - 1), max(x_range[1], c1 + 1)]
            y_range = [max(y_range[0], r1 + 1), min(y_range[1], r0 - 1)]
    layout = {
        "template": template(),
        "title": style_title(title, 14),
        "height": height,
        "margin": MARGIN,
        "plot_bgcolor": "#f4f4f4",
        "dragmode": False,
        "showlegend": False,
        **_shapes(shapes),
        "xaxis": {"visible": False, "range": x_range, "constrain": "domain"},
        "yaxis": {"visible": False, "range": y_range, "scaleanchor": "x", "constrain": "domain", "autorange": False},
    }
    return {"data": data, "layout": layout}


# ---------------------------------------------------------------- feature maps


@dataclass(frozen=True)
class Tiling:
    """Where each channel of a [channels, height, width] output sits in a grid image."""

    channels: int
    height: int
    width: int
    cols: int

    @property
    def rows(self) -> int:
        return math.ceil(self.channels / self.cols)

    def origin(self, channel: int) -> tuple[int, int]:
        r, c = divmod(channel, self.cols)
        return r * (self.height + GAP), c * (self.width + GAP)

    def unit(self, x: float, y: float) -> Optional[tuple[int, int, int]]:
        """(channel, row, column) under grid point (x, y), or None in a gap or past the last channel."""
        col, row = int(round(x)), int(round(y))
        tr, i = divmod(row, self.height + GAP)
        tc, j = divmod(col, self.width + GAP)
        ch = tr * self.cols + tc
        if i >= self.height or j >= self.width or not 0 <= ch < self.channels or tc >= self.cols or row < 0 or col < 0:
            return None
        return ch, i, j


def tiling(channels: int, height: int, width: int, max_cols: int = 8) -> Tiling:
    """A near-square arrangement, at most `max_cols` tiles wide (more for many small maps)."""
    channels = min(channels, MAX_TILES)
    cols = min(channels, max(max_cols, math.ceil(math.sqrt(channels * height / max(width, 1)))))
    return Tiling(channels, height, width, cols)


@builder
def layer_grid_figure(
    values: np.ndarray, ranges: Sequence[tuple[float, float]], title: str = "", tile_px: int = 84, selected: Optional[tuple[int, int, int]] = None
) -> dict:
    """Every channel of one [channels, height, width] output as a tile of a single heatmap, each coloured over its
    own range from `ranges` (symmetric ±m; tiles that share m share a colourbar, else values are shown as a share
    of each map's m). `tiling(*values.shape)` maps a clicked point back to (channel, row, column)."""
    t = tiling(*values.shape)
    big = np.full((t.rows * (t.height + GAP) - GAP, t.cols * (t.width + GAP) - GAP), np.nan, dtype=np.float32)
    raw = np.full_like(big, np.nan)
    shared = len({m for _, m in ranges[: t.channels]}) == 1
    ch_index = np.full(big.shape, -1, dtype=np.int32)
    for c in range(t.channels):
        r0, c0 = t.origin(c)
        m = ranges[c][1]
        raw[r0 : r0 + t.height, c0 : c0 + t.width] = values[c]
        big[r0 : r0 + t.height, c0 : c0 + t.width] = values[c] if shared else values[c] / m
        ch_index[r0 : r0 + t.height, c0 : c0 + t.width] = c
    rows_i = np.arange(big.shape[0])[:, None] % (t.height + GAP)
    cols_j = np.arange(big.shape[1])[None, :] % (t.width + GAP)
    custom = np.stack([ch_index, np.broadcast_to(rows_i, big.shape), np.broadcast_to(cols_j, big.shape), raw], axis=-1).astype(np.float32)
    m = ranges[0][1] if shared else 1.0
    heat = {
        "type": "heatmap",
        "z": big,
        "zmin": -m,
        "zmax": m,
        "colorscale": colorscale(MAP_SCALE),
        "hoverinfo": "skip",
        "showscale": shared,
        "colorbar": {"thickness": 10, "len": 0.9},
    }
    cells = np.argwhere(ch_index >= 0)
    targets = _click_targets(
        cells[:, 0],
        cells[:, 1],
        custom[cells[:, 0], cells[:, 1]],
        "channel %{customdata[0]}, unit (%{customdata[1]}, %{customdata[2]})<br>value %{customdata[3]:.4g}<extra></extra>",
    )
    shapes = []
    if selected is not None and selected[0] < t.channels:
        ch, i, j = selected
        r0, c0 = t.origin(ch)
        shapes.append(_rect(c0 - 0.5, c0 + t.width - 0.5, r0 - 0.5, r0 + t.height - 0.5, color="black", width=2))
        shapes.append(_rect(c0 + j - 0.5, c0 + j + 0.5, r0 + i - 0.5, r0 + i + 0.5, color="#111111", width=2))
    px = max(24, min(tile_px, 900 // t.cols))
    height = int(t.rows * px * max(1.0, t.height / max(t.width, 1))) + 50
    layout = {"template": template(), **_square_layout(height, shape=big.shape), "title": style_title(title), **_shapes(shapes)}
    return {"data": [heat, targets], "layout": layout}


@builder
def map_figure(values: np.ndarray, zrange: tuple[float, float], title: str = "", unit: Optional[tuple[int, int]] = None, height: int = 420) -> dict:
    """One feature map, large, with a colourbar of its real values; a clicked unit is outlined."""
    lo, hi = zrange
    heat = {"type": "heatmap", "z": values, "zmin": lo, "zmax": hi, "colorscale": colorscale(MAP_SCALE), "colorbar": {"thickness": 12}, "hoverinfo": "skip"}
    rows, cols = np.indices(values.shape).reshape(2, -1)
    targets = _click_targets(rows, cols, values.reshape(-1).astype(np.float32), "unit (%{y}, %{x})<br>value %{customdata:.4g}<extra></extra>")
    shapes = []
    if unit is not None:
        i, j = unit
        shapes.append(_rect(j - 0.5, j + 0.5, i - 0.5, i + 0.5, color="black", width=3))
    layout = {"template": template(), **_square_layout(height, shape=values.shape), "title": style_title(title, 14), **_shapes(shapes)}
    return {"data": [heat, targets], "layout": layout}


@builder
def vector_figure(values: np.ndarray, title: str = "", height: int = 220) -> dict:
    """A dense layer's output as one bar per unit."""
    bar = {
        "type": "bar",
        "x": np.arange(len(values)),
        "y": values,
        "marker": {"color": np.where(values >= 0, "#D6604D", "#4393C3").tolist()},
        "hovertemplate": "unit %{x}<br>value %{y:.4g}<extra></extra>",
    }
    layout = {
        "template": template(),
        "title": style_title(title),
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 30},
        "plot_bgcolor": "white",
        "bargap": 0.05,
        "xaxis": {"title": {"text": "unit"}},
        "yaxis": {"zeroline": True, "zerolinecolor": "#999"},
    }
    return {"data": [bar], "layout": layout}


def rows_figure(values: np.ndarray, title: str = "", height: int = 240, max_lines: int = 16) -> go.Figure:
    """A [channels, length] (or [time, features]) output: one line per channel, or a heatmap when there are many."""
    if values.shape[0] <= max_lines:
        fig = go.Figure([go.Scatter(y=row, mode="lines", name=f"{i}", line=dict(width=1.5)) for i, row in enumerate(values)])
        fig.update_layout(xaxis=dict(title="position"), legend=dict(title="channel", font=dict(size=10)))
    else:
        m = float(np.abs(values).max()) or 1.0
        fig = go.Figure(
            go.Heatmap(
                z=values,
                zmin=-m,
                zmax=m,
                colorscale=MAP_SCALE,
                colorbar=dict(thickness=10),
                hovertemplate="row %{y}, position %{x}<br>value %{z:.4g}<extra></extra>",
            )
        )
        fig.update_layout(xaxis=dict(title="position"), yaxis=dict(title="channel", autorange="reversed"))
    fig.update_layout(title=style_title(title), height=height, margin=dict(l=10, r=10, t=40, b=30), plot_bgcolor="white")
    return fig


# ---------------------------------------------------------------- filters


def filters_figure(weight: np.ndarray, rgb: Optional[np.ndarray] = None, title: str = "", max_side: int = 32, zmax: Optional[float] = None) -> go.Figure:
    """Kernels of one convolution. With `rgb` (out, kh, kw, 3), first-layer colour kernels as images in a row-wrapped
    grid; one grey kernel per output channel (one input channel) likewise; otherwise a grid with one row per output
    channel and one column per input channel. Weights are coloured over ±zmax (default: their own largest |w|)."""
    out_c, in_c, kh, kw = weight.shape
    if rgb is not None:
        t = tiling(out_c, kh, kw, max_cols=16)
        big = np.full((t.rows * (kh + GAP) - GAP, t.cols * (kw + GAP) - GAP, 3), 255, dtype=np.uint8)
        for c in range(t.channels):
            r0, c0 = t.origin(c)
            big[r0 : r0 + kh, c0 : c0 + kw] = np.round(rgb[c] * 255).astype(np.uint8)
        fig = go.Figure(go.Image(z=big, hoverinfo="skip"))
        rows = t.rows
    elif in_c == 1:  # one grey kernel per output channel: wrapped into rows like the colour ones
        t = tiling(out_c, kh, kw, max_cols=16)
        big = np.full((t.rows * (kh + GAP) - GAP, t.cols * (kw + GAP) - GAP), np.nan, dtype=np.float32)
        for c in range(t.channels):
            r0, c0 = t.origin(c)
            big[r0 : r0 + kh, c0 : c0 + kw] = weight[c, 0]
        m = zmax or float(np.abs(weight).max()) or 1.0
        fig = go.Figure(
            go.Heatmap(
                z=big, zmin=-m, zmax=m, colorscale=MAP_SCALE, hoverongaps=False, colorbar=dict(thickness=10), hovertemplate="weight %{z:.4g}<extra></extra>"
            )
        )
        rows = t.rows
    else:
        n_out, n_in = min(out_c, max_side), min(in_c, max_side)
        big = np.full((n_out * (kh + GAP) - GAP, n_in * (kw + GAP) - GAP), np.nan, dtype=np.float32)
        for o in range(n_out):
            for i in range(n_in):
                big[o * (kh + GAP) : o * (kh + GAP) + kh, i * (kw + GAP) : i * (kw + GAP) + kw] = weight[o, i]
        m = zmax or float(np.abs(weight).max()) or 1.0
        fig = go.Figure(
            go.Heatmap(
                z=big, zmin=-m, zmax=m, colorscale=MAP_SCALE, hoverongaps=False, colorbar=dict(thickness=10), hovertemplate="weight %{z:.4g}<extra></extra>"
            )
        )
        rows = n_out
        if (n_out, n_in) != (out_c, in_c):
            title += f" (first {n_out} of {out_c} outputs × {n_in} of {in_c} inputs)"
    px = max(10, min(90, 700 // max(rows, 1)))
    _square_axes(fig, height=min(900, rows * px * max(1, kh // 3) + 60))
    fig.update_layout(title=style_title(title))
    return fig


# ---------------------------------------------------------------- the convolution lab


def lab_map_figure(values: np.ndarray, title: str, diverging: bool = True, height: int = 320) -> go.Figure:
    """One map of the convolution lab: grey for an image in [0, 1]; a filter's response diverging around 0, or on a
    sequential scale from 0 when it has no negative value (a magnitude, a blur), where half a diverging scale is wasted."""
    if diverging and values.size and float(np.min(values)) >= 0:
        trace = go.Heatmap(
            z=values,
            zmin=0,
            zmax=float(np.max(values)) or 1.0,
            colorscale=SEQUENTIAL_SCALE,
            colorbar=dict(thickness=10),
            hovertemplate="(%{y}, %{x})<br>%{z:.4g}<extra></extra>",
        )
    elif diverging:
        m = float(np.abs(values).max()) or 1.0
        trace = go.Heatmap(
            z=values, zmin=-m, zmax=m, colorscale=MAP_SCALE, colorbar=dict(thickness=10), hovertemplate="(%{y}, %{x})<br>%{z:.4g}<extra></extra>"
        )
    else:
        trace = go.Heatmap(z=values, colorscale="gray", showscale=False, hovertemplate="(%{y}, %{x})<br>%{z:.4g}<extra></extra>")
    fig = _square_axes(go.Figure(trace), height)
    fig.update_layout(title=style_title(title))
    return fig


def kernel_figure(kernel: np.ndarray, title: str = "Kernel", height: int = 240) -> go.Figure:
    """A small kernel with its numbers written in its cells."""
    m = float(np.abs(kernel).max()) or 1.0
    text = [[f"{v:g}" for v in row] for row in kernel]
    fig = go.Figure(
        go.Heatmap(
            z=kernel, zmin=-m, zmax=m, colorscale=MAP_SCALE, showscale=False, text=text, texttemplate="%{text}", textfont=dict(size=14), hoverinfo="skip"
        )
    )
    fig = _square_axes(fig, height)
    fig.update_layout(title=style_title(title))
    return fig


# ---------------------------------------------------------------- receptive-field growth


def rf_growth_figure(rows, labels: Sequence[str], height: int = 360) -> go.Figure:
    """Per spatial layer, the theoretical receptive-field size and the effective size (the central span holding 95%
    of the gradient) of the layer's centre unit; first spatial axis (rows)."""
    theory = [r.theory[0] for r in rows]
    eff = [r.effective[0] if r.effective else None for r in rows]
    sigma = [r.sigma[0] if r.sigma else None for r in rows]
    fig = go.Figure(
        [
            go.Scatter(x=list(labels), y=theory, mode="lines+markers", name="theoretical size", line=dict(color=THEORY_COLOR, width=3)),
            go.Scatter(
                x=list(labels),
                y=eff,
                mode="lines+markers",
                name="effective size (95% of the gradient)",
                line=dict(color=EFFECTIVE_COLOR, width=3, dash="dot"),
                customdata=sigma,
                hovertemplate="%{x}<br>effective %{y} px (σ %{customdata:.2f})<extra></extra>",
            ),
        ]
    )
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        plot_bgcolor="white",
        yaxis=dict(title="pixels", rangemode="tozero", gridcolor="#eee"),
        xaxis=dict(title="layer"),
        legend=dict(orientation="h", y=1.08, x=0),
    )
    return fig


# ---------------------------------------------------------------- the activation lab


def activation_figure(curves, highlight: str, height: int = 440) -> go.Figure:
    """f (left) and f′ (right) of every activation; `highlight` drawn bold, with its regions of |f′| < 0.1 shaded
    (red where f′ = 0, orange where it is merely small)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("f(z)", "f′(z)"), horizontal_spacing=0.08)
    palette = plotly.colors.qualitative.Dark24
    for i, c in enumerate(curves):
        on = c.name == highlight
        style = dict(width=3.5 if on else 1.2, color=palette[i % len(palette)])  # one colour for f and f′
        z = c.z.astype(np.float32)  # float32 halves what the browser is sent; the curves need no more
        for col, ys in ((1, c.f), (2, c.df)):
            fig.add_trace(
                go.Scatter(
                    x=z,
                    y=ys.astype(np.float32),
                    mode="lines",
                    name=c.name,
                    legendgroup=c.name,
                    showlegend=col == 1,
                    line=style,
                    opacity=1.0 if on else 0.35,
                    hovertemplate=f"{c.name}<br>z %{{x:.2f}}<br>%{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        if on:
            for z0, z1, zero in c.flat:
                for col in (1, 2):
                    fig.add_vrect(x0=z0, x1=z1, fillcolor=FLAT_COLORS[zero], line_width=0, layer="below", row=1, col=col)
    fig.update_yaxes(range=[-2.5, 4], row=1, col=1, gridcolor="#eee", zerolinecolor="#bbb")
    fig.update_yaxes(range=[-0.3, 1.6], row=1, col=2, gridcolor="#eee", zerolinecolor="#bbb")
    fig.update_xaxes(title="z", gridcolor="#eee", zerolinecolor="#bbb")
    fig.update_layout(height=height, margin=MARGIN, plot_bgcolor="white", legend=dict(font=dict(size=11), orientation="h", y=-0.18, x=0))
    return fig


def deep_stack_figure(stack, height: int = 380) -> go.Figure:
    """A deep stack at initialization: the distribution of each layer's pre-activations (left), and the spread of
    pre-activations and of their gradients by layer on a log scale (right)."""
    depth = len(stack.samples)
    layers = list(range(1, depth + 1))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.1, subplot_titles=("pre-activations z by layer", "std by layer (log)"))
    for l, s in zip(layers, stack.samples):
        fig.add_trace(
            go.Violin(
                x=np.full(len(s), l),
                y=s,
                name=f"layer {l}",
                showlegend=False,
                points=False,
                line=dict(width=1, color="#4C78A8"),
                fillcolor="rgba(76,120,168,0.35)",
                spanmode="hard",
                width=0.9,
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(go.Scatter(x=layers, y=stack.z_std, mode="lines+markers", name="std of z", line=dict(color="#4C78A8")), row=1, col=2)
    fig.add_trace(go.Scatter(x=layers, y=stack.grad_std, mode="lines+markers", name="std of ∂L/∂z", line=dict(color="#E45756")), row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=2, gridcolor="#eee", exponentformat="power")
    fig.update_yaxes(row=1, col=1, gridcolor="#eee", zerolinecolor="#bbb", title="z")
    fig.update_xaxes(title="layer", dtick=1)
    fig.update_layout(height=height, margin=MARGIN, plot_bgcolor="white", legend=dict(orientation="h", y=-0.2, x=0.6))
    return fig


# ---------------------------------------------------------------- probabilities, equivariance and round-off

FAIL_COLOR = "#E45756"
OK_COLOR = "#4C78A8"


@builder
def probabilities_figure(probs: np.ndarray, class_names: Sequence[str], height: int = 260) -> dict:
    """The predicted probability of each class, the largest highlighted."""
    top = int(np.argmax(probs))
    names = [str(c) for c in class_names]
    bar = {
        "type": "bar",
        "x": names,
        "y": probs,
        "marker": {"color": [THEORY_COLOR if i == top else OK_COLOR for i in range(len(probs))]},
        "text": [f"{p:.1%}" for p in probs],
        "textposition": "outside",
        "hovertemplate": "%{x}: %{y:.4f}<extra></extra>",
    }
    layout = {
        "template": template(),
        "title": style_title(f"Probabilities: {names[top]} at {probs[top]:.1%}"),
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 30},
        "plot_bgcolor": "white",
        "yaxis": {"range": [0, 1.15], "tickformat": ".0%", "gridcolor": "#eee"},
        "xaxis": {"type": "category", "title": {"text": "class"}},
    }
    return {"data": [bar], "layout": layout}


def equivariance_figure(paths: Sequence[str], correlations: Sequence[float], exact: Sequence[bool], height: int = 300) -> go.Figure:
    """Per layer, the correlation of its output for the shifted input with the unshifted output moved by the shift:
    bars of maps whose shift is a whole number of positions in one colour, the rest (strided maps, vectors) in another."""
    colors = [OK_COLOR if e else THEORY_COLOR for e in exact]
    fig = go.Figure(
        go.Bar(
            x=list(paths),
            y=list(correlations),
            marker_color=colors,
            text=[f"{c:.3f}" for c in correlations],
            textposition="outside",
            hovertemplate="%{x}<br>r = %{y:.4f}<extra></extra>",
        )
    )
    fig.add_hline(y=1.0, line=dict(color="#999", dash="dot"))
    low = min([0.0, *correlations])
    fig.update_layout(
        title=style_title("Per layer: correlation of its output for the shifted input with its moved output (1: equivariant)"),
        height=height,
        margin=dict(l=10, r=10, t=40, b=30),
        plot_bgcolor="white",
        yaxis=dict(range=[low - 0.05, 1.12], gridcolor="#eee"),
        xaxis=dict(type="category"),
    )
    return fig


def roundoff_figure(scales: Sequence[float], naive: Sequence[float], stable: Sequence[float], height: int = 320) -> go.Figure:
    """The loss against the logits' scale by both routes; where the naive route gives inf or NaN, a cross on the axis."""
    naive, stable = np.asarray(naive, dtype=float), np.asarray(stable, dtype=float)
    ok = np.isfinite(naive)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=scales, y=stable, mode="lines+markers", name="z − logsumexp(z), CrossEntropyLoss", line=dict(color=OK_COLOR)))
    fig.add_trace(go.Scatter(x=np.asarray(scales)[ok], y=naive[ok], mode="markers", name="log(naive softmax)", marker=dict(color=THEORY_COLOR, size=9)))
    if (~ok).any():
        fig.add_trace(
            go.Scatter(
                x=np.asarray(scales)[~ok],
                y=np.zeros(int((~ok).sum())),
                mode="markers",
                name="naive: inf or NaN",
                marker=dict(color=FAIL_COLOR, symbol="x", size=11),
                hovertemplate="scale %{x}: the naive loss is not a number<extra></extra>",
            )
        )
    fig.update_layout(
        title=style_title("Loss against the scale of the logits"),
        height=height,
        margin=dict(l=10, r=10, t=40, b=30),
        plot_bgcolor="white",
        xaxis=dict(type="log", title="scale"),
        yaxis=dict(title="loss", gridcolor="#eee"),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
