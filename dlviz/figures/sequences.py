"""Plotly builders for Inspect's Sequences tab: attention maps, gradients through time, LSTM/GRU gates, token
embeddings and the next-token distribution; data in, figure out."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

from dlviz.figures.style import MAP_SCALE, MARGIN, PALETTE, SEQUENTIAL_SCALE
from dlviz.figures.style import title as style_title
from dlviz.text import plot_text

ATTENTION_SCALE = "Blues"  # weights lie in [0, 1]: white is 0, dark blue is all of a query's attention on one key
CUT_COLOR = "#d62728"
MAX_HEADS_A_ROW = 4


def causal_blank(weights: np.ndarray) -> np.ndarray:
    """Attention weights (…, T, T) with the causal mask's upper triangle (keys after the query) set to NaN, so a
    heatmap leaves it blank instead of colouring it as a weight of 0."""
    z = np.array(weights, dtype=np.float64)
    t = z.shape[-1]
    z[..., np.triu(np.ones((t, t), dtype=bool), 1)] = np.nan
    return z


def _token_axis(labels: Sequence[str], title: str) -> dict:
    """An axis of positions 0…T-1 written as their tokens: repeated tokens stay apart, as they are in the sequence."""
    n = len(labels)
    step = max(1, -(-n // 32))  # at most 32 tick labels, so they stay readable
    return dict(
        title=dict(text=title, font=dict(size=11)),
        tickmode="array",
        tickvals=list(range(0, n, step)),
        ticktext=[plot_text(labels[i]) for i in range(0, n, step)],
        tickfont=dict(size=10),
        showgrid=False,
        zeroline=False,
    )


def attention_figure(weights: np.ndarray, labels: Sequence[str], causal: bool, title: str, height: Optional[int] = None) -> go.Figure:
    """One T×T heatmap per head of one attention layer (weights: heads × T × T): row = query, column = key, the
    tokens on both axes, row 0 at the top; a causal layer's upper triangle is blank."""
    heads, t, _ = weights.shape
    cols = min(heads, MAX_HEADS_A_ROW)
    rows = -(-heads // cols)
    z = causal_blank(weights) if causal else np.asarray(weights, dtype=np.float64)
    # a grid of panels, its layout written out: make_subplots and update_xaxes validate every axis one at a time
    hgap, vgap = 0.06, 0.12
    width, tall = (1 - hgap * (cols - 1)) / cols, (1 - vgap * (rows - 1)) / rows
    traces, axes, notes = [], {}, []
    for h in range(heads):
        r, c = divmod(h, cols)
        k = "" if h == 0 else str(h + 1)
        left, top = c * (width + hgap), 1 - r * (tall + vgap)
        traces.append(
            dict(
                type="heatmap",
                z=z[h],
                zmin=0.0,
                zmax=1.0,
                colorscale=ATTENTION_SCALE,
                showscale=h == 0,
                colorbar=dict(title=dict(text="weight", side="right"), thickness=10, len=0.8),
                hovertemplate="query at position %{y}, key at position %{x}<br>weight %{z:.3f}<extra></extra>",
                hoverongaps=False,
                name=f"head {h}",
                xaxis=f"x{k}",
                yaxis=f"y{k}",
            )
        )
        axes[f"xaxis{k}"] = dict(_token_axis(labels, "key"), domain=[left, min(1.0, left + width)], anchor=f"y{k}", constrain="domain")
        axes[f"yaxis{k}"] = dict(
            _token_axis(labels, "query"), domain=[max(0.0, top - tall), top], anchor=f"x{k}", autorange="reversed", scaleanchor=f"x{k}", constrain="domain"
        )
        notes.append(
            dict(
                text=f"head {h}", x=left + width / 2, y=top, xref="paper", yref="paper", xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=14)
            )
        )
    side = 300 if cols > 2 else 360
    return go.Figure(
        dict(
            data=traces,
            layout=dict(
                title=style_title(title),
                height=height or rows * side + 60,
                margin={**MARGIN, "t": 70, "l": 50, "b": 40},
                plot_bgcolor="white",
                dragmode=False,
                annotations=notes,
                **axes,
            ),
        )
    )


def time_gradient_figure(norms: np.ndarray, cuts: Sequence[int], title: str, height: int = 360) -> go.Figure:
    """‖∂L/∂h_t‖ against the time step t on a log axis; truncated BPTT's cuts as dashed vertical lines. A norm of
    exactly 0 has no place on a log axis and leaves a gap."""
    norms = np.asarray(norms, dtype=np.float64)
    y = np.where(norms > 0, norms, np.nan)
    fig = go.Figure(
        go.Scatter(
            x=np.arange(len(norms)),
            y=y,
            mode="lines+markers" if len(norms) <= 60 else "lines",
            line=dict(color=PALETTE[0]),
            marker=dict(size=4),
            name="‖∂L/∂h_t‖",
            hovertemplate="t = %{x}<br>‖∂L/∂h_t‖ = %{y:.3e}<extra></extra>",
        )
    )
    # shapes written out, not add_vline: plotly's helper re-validates the whole layout for every line it adds
    line = dict(color=CUT_COLOR, dash="dash", width=1)
    shapes = [dict(type="line", xref="x", yref="paper", x0=cut - 0.5, x1=cut - 0.5, y0=0, y1=1, line=line) for cut in cuts]
    notes = (
        [
            dict(
                x=cuts[0] - 0.5,
                y=1,
                xref="x",
                yref="paper",
                text="tbptt cut",
                showarrow=False,
                xanchor="left",
                yanchor="top",
                font=dict(color=CUT_COLOR, size=11),
            )
        ]
        if cuts
        else []
    )
    fig.update_xaxes(title="time step t", zeroline=False)
    fig.update_yaxes(title="‖∂L/∂h_t‖", type="log", exponentformat="power")
    fig.update_layout(
        title=style_title(title), height=height, margin={**MARGIN, "l": 60, "b": 40}, showlegend=False, plot_bgcolor="white", shapes=shapes, annotations=notes
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eee")
    fig.update_yaxes(showgrid=True, gridcolor="#eee")
    return fig


def gates_figure(gates: dict[str, np.ndarray], cell: Optional[np.ndarray], hidden: np.ndarray, title: str, mode: str = "heatmap") -> go.Figure:
    """Each gate (T × hidden), then the cell state where there is one and the hidden state, over time for one sample:
    as heatmaps (time across, unit down) or, with mode "mean", as the mean over units with its min-max band."""
    panels = [*gates.items(), *((("cell state c_t", cell),) if cell is not None else ()), ("hidden state h_t", hidden)]
    if mode == "mean":
        fig = go.Figure()
        for i, (name, a) in enumerate(panels):
            a = np.asarray(a, dtype=np.float64)
            t = np.arange(a.shape[0])
            color = PALETTE[i % len(PALETTE)]
            fig.add_trace(go.Scatter(x=t, y=a.max(1), mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip", legendgroup=name))
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=a.min(1),
                    mode="lines",
                    line=dict(width=0),
                    fill="tonexty",
                    fillcolor=_faded(color),
                    showlegend=False,
                    hoverinfo="skip",
                    legendgroup=name,
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=a.mean(1),
                    mode="lines",
                    line=dict(color=color),
                    name=name,
                    legendgroup=name,
                    hovertemplate="t = %{x}<br>mean %{y:.3f}<extra>" + name + "</extra>",
                )
            )
        fig.update_xaxes(title="time step t", zeroline=False)
        fig.update_yaxes(title="mean over units (band: min to max)")
        fig.update_layout(title=style_title(title), height=380, margin={**MARGIN, "b": 40}, plot_bgcolor="white")
        return fig
    # one panel a row, sharing the time axis, written as one document (make_subplots validates it axis by axis)
    n, gap = len(panels), 0.06
    height = (1 - gap * (n - 1)) / n
    traces, layout, notes = [], {}, []
    for i, (name, a) in enumerate(panels):
        a = np.asarray(a, dtype=np.float64)
        gate = name in gates and a.min() >= 0 and a.max() <= 1  # a sigmoid gate; tanh candidates and states are signed
        bound = float(np.abs(a).max()) or 1.0
        y = "y" if i == 0 else f"y{i + 1}"
        traces.append(
            dict(
                type="heatmap",
                z=a.T,
                zmin=0.0 if gate else -bound,
                zmax=1.0 if gate else bound,
                colorscale=SEQUENTIAL_SCALE if gate else MAP_SCALE,
                showscale=False,
                name=name,
                xaxis="x",
                yaxis=y,
                hovertemplate="t = %{x}, unit %{y}<br>%{z:.3f}<extra>" + name + "</extra>",
            )
        )
        top = 1 - i * (height + gap)
        layout["yaxis" if i == 0 else f"yaxis{i + 1}"] = dict(
            domain=[max(0.0, top - height), top], anchor="x", autorange="reversed", title=dict(text="unit", font=dict(size=10))
        )
        notes.append(dict(text=name, x=0.5, y=top, xref="paper", yref="paper", xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13)))
    layout["xaxis"] = dict(anchor=f"y{n}" if n > 1 else "y", title="time step t")
    layout.update(title=style_title(title), height=150 * n + 80, margin={**MARGIN, "l": 50, "b": 40, "t": 60}, dragmode=False, annotations=notes)
    return go.Figure(dict(data=traces, layout=layout))


def _faded(color: str, alpha: float = 0.15) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def embedding_figure(coords: np.ndarray, labels: Sequence[str], explained: tuple[float, float], title: str, height: int = 420) -> go.Figure:
    """The token embeddings projected on their first two principal components, each point labelled by its token."""
    text = [plot_text(s) for s in labels]
    fig = go.Figure(
        go.Scatter(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="markers+text" if len(labels) <= 100 else "markers",
            text=text,
            textposition="top center",
            textfont=dict(size=14, color="#222"),
            cliponaxis=False,  # a label above the topmost point stays whole
            marker=dict(size=9, color=PALETTE[0]),
            hovertemplate="token %{text}<br>PC 1 %{x:.3f}, PC 2 %{y:.3f}<extra></extra>",
            name="tokens",
        )
    )
    fig.update_xaxes(title=f"PC 1 ({explained[0]:.0%} of the variance)", zeroline=True, zerolinecolor="#ccc", showgrid=False)
    fig.update_yaxes(title=f"PC 2 ({explained[1]:.0%} of the variance)", zeroline=True, zerolinecolor="#ccc", showgrid=False, scaleanchor="x")
    fig.update_layout(title=style_title(title), height=height, margin={**MARGIN, "l": 60, "b": 40}, plot_bgcolor="white", showlegend=False)
    return fig


def next_token_figure(before: np.ndarray, after: np.ndarray, labels: Sequence[str], title: str, height: int = 340) -> go.Figure:
    """The next-token distribution side by side: softmax of the logits as the model gives them, and after
    temperature and top-k (the tokens top-k drops have probability 0)."""
    text = [plot_text(s) for s in labels]
    x = list(range(len(labels)))
    traces, axes, notes = [], {}, []
    for i, (name, p, color, heading) in enumerate(
        (("before", before, PALETTE[7], "softmax(logits)"), ("after", after, PALETTE[0], "after temperature and top-k"))
    ):
        k, left = "" if i == 0 else "2", i * 0.525
        traces.append(
            dict(
                type="bar",
                x=x,
                y=np.asarray(p, dtype=np.float64),
                marker=dict(color=color),
                name=name,
                customdata=text,
                hovertemplate="token %{customdata}<br>p = %{y:.3f}<extra></extra>",
                xaxis=f"x{k}",
                yaxis=f"y{k}",
            )
        )
        axes[f"xaxis{k}"] = dict(domain=[left, left + 0.475], anchor=f"y{k}", tickmode="array", tickvals=x, ticktext=text, title=dict(text="next token"))
        axes[f"yaxis{k}"] = dict(anchor=f"x{k}", range=[0, 1], **({"title": dict(text="probability")} if i == 0 else {"matches": "y", "showticklabels": False}))
        notes.append(
            dict(text=heading, x=left + 0.2375, y=1, xref="paper", yref="paper", xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=14))
        )
    layout = dict(
        title=style_title(title),
        height=height,
        margin={**MARGIN, "t": 60, "b": 40},
        showlegend=False,
        plot_bgcolor="white",
        bargap=0.15,
        annotations=notes,
        **axes,
    )
    return go.Figure(dict(data=traces, layout=layout))
