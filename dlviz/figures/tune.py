"""The Tune page's figures: the gradient check per parameter tensor and the learning-rate range test."""

from __future__ import annotations

import math

from dlviz.figures.style import MARGIN, title

FINE, WRONG = 1e-7, 1e-2  # relative-error thresholds of the gradient check (below: fine; above: wrong)
GREEN, AMBER, RED = "#2ca02c", "#ff9f1c", "#d62728"


def gradcheck_figure(names: list[str], errors: list[float], verdicts: list[str]) -> dict:
    """The worst relative error of each parameter tensor on a log axis, with the bands of the usual thresholds."""
    colours = {"fine": GREEN, "doubtful": AMBER, "wrong": RED}
    floor = 1e-16  # an error of exactly 0 (both gradients 0) is drawn at the axis' bottom
    ys = [max(e, floor) if math.isfinite(e) else 1.0 for e in errors]
    lo = min(min(ys), 1e-10) / 10
    band = lambda y0, y1, c: {  # noqa: E731
        "type": "rect",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": "y",
        "y0": y0,
        "y1": y1,
        "fillcolor": c,
        "opacity": 0.08,
        "line": {"width": 0},
        "layer": "below",
    }
    return {
        "data": [
            {
                "type": "bar",
                "x": names,
                "y": ys,
                "marker": {"color": [colours.get(v, AMBER) for v in verdicts]},
                "text": [f"{e:.1e}" for e in errors],
                "textposition": "outside",
                "hovertemplate": "%{x}: relative error %{text}<extra></extra>",
            }
        ],
        "layout": {
            "title": title("Worst relative error |a − n| / max(|a|, |n|) of each parameter tensor", 14),
            "yaxis": {"type": "log", "title": {"text": "relative error"}, "range": [math.log10(lo), 1]},
            "shapes": [band(lo, FINE, GREEN), band(FINE, WRONG, AMBER), band(WRONG, 10, RED)],
            "annotations": [
                {"text": "fine below 1e-7", "xref": "paper", "x": 1, "xanchor": "right", "y": math.log10(FINE), "yanchor": "top", "showarrow": False},
                {"text": "wrong above 1e-2", "xref": "paper", "x": 1, "xanchor": "right", "y": math.log10(WRONG), "yanchor": "bottom", "showarrow": False},
            ],
            "height": 360,
            "margin": {**MARGIN, "l": 60, "b": 80},
            "showlegend": False,
        },
    }


def lrfind_figure(lrs: list[float], losses: list[float], smoothed: list[float], suggested: float) -> dict:
    """Loss against the learning rate on a log axis: each step's loss (light), the smoothed loss, and the suggested rate."""
    finite = [v for v in smoothed if v is not None and math.isfinite(v)]
    top = max(finite[0] * 2.5, min(finite) * 4) if finite else None  # keep the divergence from squashing the curve
    return {
        "data": [
            {"type": "scatter", "x": lrs, "y": losses, "mode": "lines", "name": "loss of each step", "line": {"color": "rgba(31,119,180,0.3)", "width": 1}},
            {"type": "scatter", "x": lrs, "y": smoothed, "mode": "lines", "name": "smoothed loss", "line": {"color": "#1f77b4", "width": 2}},
        ],
        "layout": {
            "title": title("Learning-rate range test: the loss as the rate grows each step", 14),
            "xaxis": {"type": "log", "title": {"text": "learning rate"}},
            "yaxis": {"title": {"text": "training loss"}, **({"range": [0, top]} if top else {})},
            "shapes": [
                {"type": "line", "x0": suggested, "x1": suggested, "xref": "x", "yref": "paper", "y0": 0, "y1": 1, "line": {"color": "#d62728", "dash": "dash"}}
            ],
            "annotations": [
                {
                    "text": f"suggested {suggested:.2g}",
                    "x": math.log10(suggested),
                    "xref": "x",
                    "y": 1,
                    "yref": "paper",
                    "yanchor": "bottom",
                    "showarrow": False,
                }
            ],
            "height": 380,
            "margin": {**MARGIN, "l": 60, "b": 50},
            "legend": {"orientation": "h", "y": -0.2},
        },
    }
