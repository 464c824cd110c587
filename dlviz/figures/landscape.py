"""Plotly figures and tables for the Landscape page: optimizer paths on 2-D functions and a network's loss surface."""

from __future__ import annotations

import base64
import functools
import io
import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import sample_colorscale

from dlviz.analysis.optimizer_lab import Function2D, RateCheck, Trajectory
from dlviz.analysis.surface import Surface
from dlviz.figures.style import CLICK_DRAWN, colorscale

# Streamlit's named text colours, so that a path and its optimizer's label on the page share a colour
PATH_COLORS = {"red": "#ff4b4b", "blue": "#1c83e1", "green": "#21c354", "orange": "#ffa421", "violet": "#803df5", "gray": "#808495"}
MAX_PATHS = len(PATH_COLORS)  # optimizers the lab races at once: one colour each, and each costs the server its steps
LAB_SCALE = "Greys_r"  # a grey landscape under coloured paths: the valley dark, the walls light
LAB_LEVELS, LAB_PIXELS = 30, 400  # the lab's contours: shades, and pixels per side of their image
# invisible points per side that turn a click on the contour into a start point, a sixteenth of the range apart (Start x
# and Start y take any other; style.CLICK_DRAWN says why they cost the browser nothing). A click picks the nearest
# point within CLICK_REACH pixels (Plotly's hoverdistance): on the page's chart, 400 to 700 pixels wide, the points are
# 25 to 44 pixels apart, so that every click reaches one (at most 31 pixels away)
CLICK_GRID, CLICK_REACH = 17, 40
PATH_DOTS = 100  # at most this many steps of a path are dotted (evenly spaced over those in view); the line has every step
CLICK_TRACE = 0  # the index of that grid among lab_contour's traces, as a Plotly selection reports it
HEIGHT = 480
# a legend at the foot of the figure, which pushes the plot up by its own height: one placed below the plot in the
# plot's own units ran into the x axis's title when a narrow column wrapped it onto more lines
BELOW = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0)


def color_name(i: int) -> str:
    return list(PATH_COLORS)[i % len(PATH_COLORS)]


def color(i: int) -> str:
    return PATH_COLORS[color_name(i)]


def _shown(points: np.ndarray, upto: Optional[int]) -> np.ndarray:
    return points if upto is None else points[: upto + 1]


def _log_height(fn: Function2D, z: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """log10 of the height above the minimum: the colour scale that shows a valley's floor and its walls at once."""
    base = fn.min_value if fn.min_value is not None else float(np.nanmin(z))
    return np.log10(np.maximum(z - base, 0) + floor)


def contour_image(fn: Function2D, levels: int = LAB_LEVELS, pixels: int = LAB_PIXELS) -> dict:
    """The filled contours of f as a Plotly layout image over the function's range: `levels` bands of equal width in
    log height above the minimum, each one shade of LAB_SCALE, as a palette PNG of pixels × pixels.

    A 201 × 201 contour trace was 0.6 MB of figure that plotly.js contoured again on every rerun of the lab (a click
    on the contour, a new function, an optimizer's setting); this image is 4-11 kB, which the browser only scales.
    It depends on the function alone, so each function's is drawn once (20 ms) and kept."""
    return dict(_contour_image(fn, levels, pixels))


@functools.lru_cache(maxsize=32)  # the lab's functions (a handful), at one or two sizes
def _contour_image(fn: Function2D, levels: int, pixels: int) -> dict:
    xs, ys, z = fn.grid(pixels)
    h = _log_height(fn, z)
    finite = np.isfinite(h)
    lo, hi = (float(h[finite].min()), float(h[finite].max())) if finite.any() else (0.0, 1.0)
    band = np.floor((h - lo) / ((hi - lo) or 1.0) * levels)
    band = np.where(finite, np.clip(band, 0, levels - 1), levels - 1).astype(np.uint8)
    shades = sample_colorscale(colorscale(LAB_SCALE), (np.arange(levels) + 0.5) / levels, colortype="tuple")
    image = Image.fromarray(band[::-1], "P")  # the image's first row is the top of the plot: the largest y
    image.putpalette([round(255 * c) for shade in shades for c in shade])
    png = io.BytesIO()
    image.save(png, "PNG")
    # each pixel is centred on its grid point: the image reaches half a pixel beyond the range on every side
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    return dict(
        source="data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii"),
        xref="x",
        yref="y",
        x=xs[0] - dx / 2,
        y=ys[-1] + dy / 2,
        sizex=xs[-1] - xs[0] + dx,
        sizey=ys[-1] - ys[0] + dy,
        sizing="stretch",
        layer="below",
        name="f",
    )


def lab_contour(fn: Function2D, trajectories: Sequence[Trajectory], upto: Optional[int] = None, start=None) -> go.Figure:
    """Filled contours of f (shade: log height above the minimum) with each optimizer's path up to step `upto`.

    The axes keep the function's range, so a path that diverges is seen leaving the plot. An invisible grid of points
    lets a click (a Plotly selection) choose a new start."""
    fig = go.Figure()
    fig.add_layout_image(contour_image(fn))
    gx, gy = np.meshgrid(np.linspace(*fn.x_range, CLICK_GRID), np.linspace(*fn.y_range, CLICK_GRID))
    fig.add_trace(
        go.Scatter(
            x=gx.ravel(),
            y=gy.ravel(),
            mode="markers",
            marker=dict(size=9, color="white", opacity=0.01, maxdisplayed=CLICK_DRAWN),
            name="start here",
            showlegend=False,
            hovertemplate="start at (%{x:.2f}, %{y:.2f})<extra></extra>",
        )
    )
    # the last optimizer is drawn first and the first on top, each a little thinner, so that paths along the same
    # valley floor stay visible; the legend keeps the optimizers' order
    for i, t in reversed(list(enumerate(trajectories))):
        p = _shown(t.points, upto)
        fig.add_trace(
            go.Scatter(
                x=p[:, 0],
                y=p[:, 1],
                mode="lines+markers",
                name=t.label + (" (diverged)" if t.diverged else ""),
                line=dict(color=color(i), width=max(1.5, 2 + 0.8 * i)),
                marker=dict(size=3, color=color(i), maxdisplayed=PATH_DOTS),
                legendrank=1 + i,
                hovertemplate=f"{t.label}<br>step %{{customdata}}<br>(%{{x:.4g}}, %{{y:.4g}})<extra></extra>",
                customdata=np.arange(len(p)),
            )
        )
    if fn.minima:  # drawn over the paths, which end on them
        m = np.asarray(fn.minima)
        fig.add_trace(
            go.Scatter(
                x=m[:, 0],
                y=m[:, 1],
                mode="markers",
                name="global minimum",
                marker=dict(symbol="star", size=16, color="#ffd700", line=dict(color="black", width=1)),
            )
        )
    s = start if start is not None else (trajectories[0].points[0] if trajectories else fn.start)
    fig.add_trace(
        go.Scatter(x=[s[0]], y=[s[1]], mode="markers", name="start", marker=dict(symbol="circle", size=12, color="white", line=dict(color="black", width=2)))
    )
    fig.update_layout(
        height=HEIGHT,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=BELOW,
        # no grid lines across the contours (drawn as an image, under them)
        xaxis=dict(range=list(fn.x_range), title="x", constrain="domain", showgrid=False, zeroline=False),
        yaxis=dict(range=list(fn.y_range), title="y", showgrid=False, zeroline=False),
        title=f"{fn.name}: {fn.formula}",
        dragmode="pan",
        clickmode="event+select",
        hoverdistance=CLICK_REACH,
    )
    return fig


def _inside(fn: Function2D, p: np.ndarray) -> np.ndarray:
    return (p[:, 0] >= fn.x_range[0]) & (p[:, 0] <= fn.x_range[1]) & (p[:, 1] >= fn.y_range[0]) & (p[:, 1] <= fn.y_range[1])


def _mesh_height(xs: np.ndarray, ys: np.ndarray, z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The drawn surface's height at (x, y): z (rows along y) interpolated between its four nearest grid points."""

    def locate(grid, v):
        f = np.clip((v - grid[0]) / (grid[1] - grid[0]), 0, len(grid) - 1)
        i = np.minimum(np.floor(f).astype(int), len(grid) - 2)
        return i, f - i

    (i, s), (j, t) = locate(xs, x), locate(ys, y)
    return z[j, i] * (1 - s) * (1 - t) + z[j, i + 1] * s * (1 - t) + z[j + 1, i] * (1 - s) * t + z[j + 1, i + 1] * s * t


DRAPE = 8  # points a path's step is drawn with in 3-D, so that the line follows the surface between two steps
LIFT = 0.02  # of the surface's height range: a path drawn this far above the surface stays in front of it


def _draped(points: np.ndarray, heights, xs, ys, z: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """A path in 3-D that lies just above the drawn surface all along, not only at its steps: each step is cut into
    DRAPE pieces, each piece at the higher of the path's own height and the surface's there, plus a lift.

    A straight segment between two steps on the surface cuts through any bump of the surface between them, and a
    path at the surface's own height sinks into its triangles; in both the surface hid the path. Steps not in `keep`
    (outside the box, not finite) break the line. Returns x, y, z and the marker size (steps marked, pieces not)."""
    n = len(points)
    if n == 0:
        return (np.zeros(0),) * 4
    piece = np.arange((n - 1) * DRAPE + 1)
    step = piece % DRAPE == 0
    u = piece / DRAPE
    k = np.minimum(np.floor(u).astype(int), max(n - 2, 0))
    f = (u - k)[:, None]
    nxt = np.minimum(k + 1, n - 1)
    p = points[k] * (1 - f) + points[nxt] * f
    ok = keep[k] & keep[nxt] | step & keep[np.rint(u).astype(int)]
    inside = (p[:, 0] >= xs[0]) & (p[:, 0] <= xs[-1]) & (p[:, 1] >= ys[0]) & (p[:, 1] <= ys[-1])
    lift = LIFT * (float(np.nanmax(z) - np.nanmin(z)) or 1.0)
    with np.errstate(invalid="ignore"):
        h = np.fmax(heights(p[:, 0], p[:, 1]), _mesh_height(xs, ys, z, np.clip(p[:, 0], xs[0], xs[-1]), np.clip(p[:, 1], ys[0], ys[-1])))
    ok &= inside & np.isfinite(h)
    size = np.where(step, 3.0, 0.0)
    return (*(np.where(ok, v, np.nan) for v in (p[:, 0], p[:, 1], h + lift)), size)


def lab_surface(fn: Function2D, trajectories: Sequence[Trajectory], upto: Optional[int] = None) -> go.Figure:
    """The 3-D surface of f with the paths on it; a path that leaves the box is cut where it leaves."""
    xs, ys, z = fn.grid(101)
    # a higher floor than the contour's: a grid point that lands on a minimum would otherwise drill a spike
    height = _log_height(fn, z, 1e-2)
    # a see-through surface: a path down a valley stays in sight behind the valley's near wall
    fig = go.Figure(go.Surface(x=xs, y=ys, z=height, colorscale=LAB_SCALE, showscale=False, opacity=0.7, name="f", hoverinfo="skip"))
    for i, t in enumerate(trajectories):
        p = _shown(t.points, upto)
        with np.errstate(invalid="ignore", over="ignore"):
            keep = _inside(fn, p) & np.isfinite(p).all(1)
        x, y, zz, size = _draped(p, lambda a, b: _log_height(fn, fn.value(a, b), 1e-2), xs, ys, height, keep)
        fig.add_trace(
            go.Scatter3d(
                x=x,
                y=y,
                z=zz,
                mode="lines+markers",
                name=t.label,
                line=dict(color=color(i), width=5),
                marker=dict(size=size, color=color(i)),
                connectgaps=False,
            )
        )
    fig.update_layout(
        height=HEIGHT,
        margin=dict(l=0, r=0, t=30, b=0),
        showlegend=False,
        title="log₁₀ height above the minimum",
        scene=dict(
            xaxis=dict(range=list(fn.x_range), title="x"),
            yaxis=dict(range=list(fn.y_range), title="y"),
            zaxis=dict(title="log₁₀(f − f*)"),
            aspectmode="manual",
            aspectratio=dict(x=1, y=1, z=0.6),
            camera=dict(eye=dict(x=-0.9, y=-1.3, z=2.0)),
        ),
    )  # high enough to look into the valleys
    return fig


def lab_loss(fn: Function2D, trajectories: Sequence[Trajectory], upto: Optional[int] = None) -> go.Figure:
    """f − f* against step on a log scale (f itself, linear, for a function without a minimum)."""
    fig = go.Figure()
    log = fn.min_value is not None
    for i, t in enumerate(trajectories):
        v = _shown(t.values, upto)
        y = np.maximum(v - fn.min_value, 1e-300) if log else v
        fig.add_trace(go.Scatter(x=np.arange(len(v)), y=y, mode="lines", name=t.label, line=dict(color=color(i))))
    fig.update_layout(
        height=HEIGHT,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="step",
        yaxis=dict(title="f − f*" if log else "f", type="log" if log else "linear", exponentformat="power"),
        title="Loss against step",
        legend=BELOW,
    )
    return fig


def trajectory_table(trajectories: Sequence[Trajectory], tol: float) -> pd.DataFrame:
    rows = []
    for t in trajectories:
        rows.append(
            {
                "optimizer": t.label,
                f"steps to within {tol:g} of a minimum": "not reached" if t.steps_to_tolerance is None else f"{t.steps_to_tolerance:,}",
                "final distance to nearest minimum": "—" if math.isnan(t.final_distance) else f"{t.final_distance:.3g}",
                "final f": f"{t.values[-1]:.4g}" if len(t.values) else "—",
                "status": f"diverged: {t.reason}" if t.diverged else f"ran {t.steps} steps",
            }
        )
    return pd.DataFrame(rows)


def rate_figure(check: RateCheck) -> go.Figure:
    """Distance to the minimum against step for gradient descent and momentum at their best settings, with the
    theoretical rates as dashed lines d₀·rateᵏ."""
    fig = go.Figure()
    for i, (name, t, rate) in enumerate((("gradient descent", check.gd, check.gd_theory), ("momentum", check.momentum, check.momentum_theory))):
        d = np.linalg.norm(t.points, axis=1)  # the minimum is the origin
        k = np.arange(len(d))
        fig.add_trace(go.Scatter(x=k, y=d, mode="lines", name=f"{name}, measured", line=dict(color=color(i))))
        fig.add_trace(go.Scatter(x=k, y=d[0] * rate**k, mode="lines", name=f"{name}, theory rate {rate:.4f}", line=dict(color=color(i), dash="dash")))
    fig.update_layout(
        height=320,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="step",
        yaxis=dict(title="distance to the minimum", type="log", exponentformat="power"),
        title=f"Quadratic with κ = {check.kappa:g}",
        legend=BELOW,
    )
    return fig


def rate_table(check: RateCheck) -> pd.DataFrame:
    def measured(m: float, theory: float) -> tuple[str, str]:
        return ("—", "—") if math.isnan(m) else (f"{m:.5f}", f"{100 * (m / theory - 1):+.2f} %")

    gd, mom = measured(check.gd_measured, check.gd_theory), measured(check.momentum_measured, check.momentum_theory)
    return pd.DataFrame(
        [
            {
                "method": "gradient descent",
                "step α": f"{check.gd_alpha:.5g}",
                "momentum β": "0",
                "theory rate": f"{check.gd_theory:.5f}",
                "measured rate": gd[0],
                "difference": gd[1],
            },
            {
                "method": "momentum",
                "step α": f"{check.momentum_alpha:.5g}",
                "momentum β": f"{check.momentum_beta:.5g}",
                "theory rate": f"{check.momentum_theory:.5f}",
                "measured rate": mom[0],
                "difference": mom[1],
            },
        ]
    )


# ---------------------------------------------------------------- a network's surface


def _path_text(s: Surface) -> list[str]:
    return [f"step {int(k)}" for k in s.path_steps]


def surface_contour(s: Surface) -> go.Figure:
    """Contour of the loss over the plane, the projected training path on it, the initial point and the centre."""
    fig = go.Figure(
        go.Contour(
            x=s.a,
            y=s.b,
            z=s.loss,
            colorscale="Viridis",
            ncontours=30,
            name="loss",
            colorbar=dict(title="loss"),
            hovertemplate="(%{x:.3g}, %{y:.3g})<br>loss %{z:.4g}<extra></extra>",
        )
    )
    if s.path is not None:
        fig.add_trace(
            go.Scatter(
                x=s.path[:, 0],
                y=s.path[:, 1],
                mode="lines+markers",
                name="training path (projected)",
                line=dict(color="#E45756", width=2),
                marker=dict(size=4, color="#E45756"),
                text=_path_text(s),
                hovertemplate="%{text}<br>loss on the plane %{customdata:.4g}<extra></extra>",
                customdata=s.path_loss,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=s.path[:1, 0],
                y=s.path[:1, 1],
                mode="markers",
                name="start of training",
                marker=dict(symbol="circle", size=12, color="white", line=dict(color="black", width=2)),
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[0.0], y=[0.0], mode="markers", name="these weights", marker=dict(symbol="star", size=15, color="white", line=dict(color="black", width=1))
        )
    )
    fig.update_layout(
        height=HEIGHT,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title=s.axis_titles[0],
        yaxis_title=s.axis_titles[1],
        legend=BELOW,
        title=f"Loss over the plane ({s.points:,} points)",
        xaxis=dict(range=[float(s.a[0]), float(s.a[-1])]),
        yaxis=dict(range=[float(s.b[0]), float(s.b[-1])]),
    )
    return fig


def surface_3d(s: Surface) -> go.Figure:
    """The loss surface in 3-D with the projected training path drawn on it."""
    fig = go.Figure(go.Surface(x=s.a, y=s.b, z=s.loss, colorscale="Viridis", showscale=False, opacity=0.9, name="loss"))
    lift = LIFT * (float(np.ptp(s.loss)) or 1.0)
    if s.path is not None and len(s.path):
        # between two steps the path's own loss is not known: the surface's height stands for it there
        x, y, z, size = _draped(s.path, lambda a, b: np.full(len(a), -np.inf), s.a, s.b, s.loss, np.isfinite(s.path).all(1))
        steps = size > 0
        z[steps] = np.where(np.isnan(z[steps]), np.nan, np.fmax(z[steps], s.path_loss + lift))  # each step's own loss
        text = np.full(len(x), "", dtype=object)
        text[steps] = _path_text(s)
        fig.add_trace(
            go.Scatter3d(
                x=x,
                y=y,
                z=z,
                mode="lines+markers",
                name="training path",
                line=dict(color="#E45756", width=6),
                marker=dict(size=size, color="#E45756"),
                text=text,
                connectgaps=False,
            )
        )
    fig.add_trace(
        go.Scatter3d(
            x=[0.0],
            y=[0.0],
            z=[s.center_loss + lift],
            mode="markers",
            name="these weights",
            marker=dict(size=5, color="white", line=dict(color="black", width=1)),
        )
    )
    fig.update_layout(
        height=HEIGHT,
        margin=dict(l=0, r=0, t=30, b=0),
        showlegend=False,
        title="Loss surface",
        scene=dict(
            xaxis_title="direction 1" if s.mode == "random" else "PC1",
            yaxis_title="direction 2" if s.mode == "random" else "PC2",
            zaxis_title="loss",
            aspectmode="manual",
            aspectratio=dict(x=1, y=1, z=0.6),
        ),
    )
    return fig


def surface_line(s: Surface) -> go.Figure:
    """The loss along the straight line from the initial weights (t = 0) to the checkpoint (t = 1) and beyond."""
    fig = go.Figure(go.Scatter(x=s.a, y=s.loss, mode="lines", name="loss on the line", line=dict(color="#4C78A8", width=2)))
    ends = [(0.0, "initial weights", "circle-open"), (1.0, "these weights", "star")]
    for t, name, symbol in ends:
        i = int(np.argmin(np.abs(s.a - t)))
        fig.add_trace(
            go.Scatter(
                x=[s.a[i]], y=[s.loss[i]], mode="markers", name=name, marker=dict(symbol=symbol, size=13, color="#E45756", line=dict(width=2, color="#E45756"))
            )
        )
    fig.update_layout(
        height=HEIGHT,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title=s.axis_titles[0],
        yaxis_title="loss",
        title=f"Loss along the line ({s.points:,} points)",
        legend=BELOW,
    )
    return fig
