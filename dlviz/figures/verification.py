"""Plotly builders for the Vision page's Verification tab: an embedding on a plane coloured by digit, the distances of same
and different pairs against a threshold, and the ROC curve with the threshold's point on it."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from dlviz.figures.style import MARGIN, PALETTE
from dlviz.figures.style import title as style_title

SAME, DIFFERENT, THRESHOLD = PALETTE[2], PALETTE[3], "#222"


def embedding_figure(
    coords: np.ndarray,
    classes: Sequence[int],
    held_out: np.ndarray,
    explained: tuple[float, float] | None,
    title: str = "",
    names: dict[int, str] | None = None,
    height: int = 460,
) -> go.Figure:
    """Each sample's embedding on a plane (N, 2), one trace a class (a digit) in its colour; the held-out classes' points
    drawn as crosses and named so in the legend. `explained`: the principal components' variance ratios, or None for the
    raw axes; `names`: each class's name (None: its number, a digit)."""
    classes, held_out = np.asarray(classes), np.asarray(held_out, dtype=bool)
    fig = go.Figure()
    for d in sorted(set(classes.tolist())):
        pick = classes == d
        out = bool(held_out[pick].any())
        name = names[d] if names else str(d)
        fig.add_trace(
            go.Scattergl(
                x=coords[pick, 0],
                y=coords[pick, 1],
                mode="markers",
                name=f"{name} (held out)" if out else name,
                marker=dict(color=PALETTE[d % len(PALETTE)], size=7 if out else 5, symbol="x" if out else "circle", opacity=0.9 if out else 0.6),
                hovertemplate=f"{name}{' (held out)' if out else ''}<extra></extra>",
            )
        )
    axes = ("embedding 1", "embedding 2") if explained is None else tuple(f"PC{k + 1} ({v:.0%} of the variance)" for k, v in enumerate(explained))
    fig.update_layout(title=style_title(title), height=height, margin=MARGIN, xaxis_title=axes[0], yaxis_title=axes[1], legend=dict(itemsizing="constant"))
    return fig


def distance_figure(distances: np.ndarray, same: np.ndarray, threshold: float, title: str = "", height: int = 360) -> go.Figure:
    """Histograms of the distances of same pairs and of different pairs, overlaid on common bins, and the threshold below
    which a pair is called the same."""
    distances, same = np.asarray(distances, dtype=float), np.asarray(same, dtype=bool)
    top = float(distances.max()) if len(distances) else 1.0
    bins = dict(start=0.0, end=top * 1.0001 + 1e-12, size=max(top, 1e-12) / 40)
    fig = go.Figure()
    for pick, name, color in ((same, "same digit", SAME), (~same, "different digits", DIFFERENT)):
        fig.add_trace(go.Histogram(x=distances[pick], name=f"{name} ({int(pick.sum()):,} pairs)", xbins=bins, marker_color=color, opacity=0.6))
    fig.add_vline(x=threshold, line=dict(color=THRESHOLD, width=2, dash="dash"), annotation_text=f"threshold {threshold:.3g}", annotation_position="top right")
    fig.update_layout(
        title=style_title(title),
        barmode="overlay",
        height=height,
        margin=MARGIN,
        xaxis_title="distance between the embeddings",
        yaxis_title="pairs",
        legend=dict(orientation="h", x=0, y=-0.25, yanchor="top"),
    )
    return fig


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auc: float, point: tuple[float, float], title: str = "", height: int = 360) -> go.Figure:
    """The ROC curve (true positive rate against false positive rate over the thresholds), chance's diagonal, and the
    point (FPR, TPR) of the threshold chosen."""
    fig = go.Figure(
        [
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance (AUC 0.5)", line=dict(color="#aaa", dash="dot")),
            go.Scatter(x=fpr, y=tpr, mode="lines", name=f"ROC (AUC {auc:.3f})", line=dict(color=PALETTE[0], width=2)),
            go.Scatter(
                x=[point[0]],
                y=[point[1]],
                mode="markers",
                name="the threshold",
                marker=dict(color=THRESHOLD, size=11, symbol="circle-open", line=dict(width=3)),
            ),
        ]
    )
    fig.update_layout(
        title=style_title(title),
        height=height,
        margin=MARGIN,
        xaxis=dict(title="false positive rate", range=[-0.02, 1.02]),
        yaxis=dict(title="true positive rate", range=[-0.02, 1.02]),
        legend=dict(x=0.98, y=0.02, xanchor="right", yanchor="bottom"),
    )
    return fig
