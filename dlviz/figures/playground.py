"""The Playground's figures besides its board: a hidden layer's view of the plane."""

from __future__ import annotations

import numpy as np

from dlviz.figures.style import MARGIN, title

ORANGE, BLUE = "#f59322", "#0877bd"  # TensorFlow Playground's −1 and +1


def hidden_space_figure(lines: np.ndarray, points: np.ndarray, labels: list, axes: tuple[str, str], layer: int, step: int | None) -> dict:
    """The input plane's grid lines as hidden layer `layer` sees them (ConvNetJS's classify2d), with the training points
    coloured by class; `lines` is (2, n, n, 2) from dlviz.model.neurons.hidden_space."""
    traces = []
    for family in lines:
        xs, ys = [], []
        for line in family:
            xs += [*line[:, 0].tolist(), None]
            ys += [*line[:, 1].tolist(), None]
        traces.append(
            {"type": "scatter", "x": xs, "y": ys, "mode": "lines", "line": {"color": "#b8c0c8", "width": 1}, "hoverinfo": "skip", "showlegend": False}
        )
    labels = np.asarray(labels, dtype=float)
    for name, colour, mask in (("+1", BLUE, labels > 0), ("−1", ORANGE, labels <= 0)):
        traces.append(
            {
                "type": "scatter",
                "x": points[mask, 0].tolist(),
                "y": points[mask, 1].tolist(),
                "mode": "markers",
                "name": f"class {name}",
                "marker": {"color": colour, "size": 5, "line": {"color": "white", "width": 0.5}},
            }
        )
    when = "untrained" if step is None else f"step {step:,}"
    return {
        "data": traces,
        "layout": {
            "title": title(f"Hidden layer {layer + 1} sees the plane like this ({when})"),
            "xaxis": {"title": {"text": axes[0]}, "zeroline": False},
            "yaxis": {"title": {"text": axes[1]}, "zeroline": False, "scaleanchor": "x" if axes[1] else None},
            "height": 420,
            "margin": {**MARGIN, "l": 50, "b": 40},
            "legend": {"orientation": "h", "y": -0.15},
        },
    }
