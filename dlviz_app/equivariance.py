"""Inspect's Equivariance tab: shift the input by whole pixels and see each layer's maps move with it (convolution), or
change less than the shift would move them (pooling, global layers), with one correlation a layer."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dlviz.analysis import equivariance as eq
from dlviz.analysis import features
from dlviz.errors import UserError
from dlviz.figures import inspect as figs
from dlviz.figures import style
from dlviz.model.build import Network, Summary
from dlviz.preset.registry import shape_str
from dlviz_app.text import md


@st.cache_data(max_entries=32, show_spinner=False)
def _shifts(_net: Network, key: tuple, _x, dy: int, dx: int, strides: dict) -> list[eq.LayerShift]:
    """The layers under one shift; `key` names the model and the input (neither is hashed)."""
    return eq.equivariance(_net, _x, dy, dx, strides)


def _name(r: eq.LayerShift) -> str:
    return f"{r.path.removeprefix('model.')} {r.type}"


def equivariance_tab(net: Network, summary: Summary, inp: features.ModelInput, key: tuple) -> None:
    """The shift sliders, the shifted input, the correlation of every layer, and one layer's maps side by side."""
    if inp.x.dim() != 4 or not inp.x.is_floating_point():
        st.info("Equivariance needs an input with height and width (an image): this model's input has none.")
        return
    h, w = inp.x.shape[-2:]
    left, right = st.columns(2)
    dx = left.slider(
        "Shift right (pixels)", -(w // 2), w // 2, 2, key="inspect_shift_x", help="the input moves circularly: what leaves one side enters the other"
    )
    dy = right.slider("Shift down (pixels)", -(h // 2), h // 2, 0, key="inspect_shift_y")
    try:
        shifts = _shifts(net, key, inp.x, int(dy), int(dx), eq.layer_strides(summary))
    except UserError as err:  # over the server's memory budget
        st.error(md(str(err)))
        return
    st.plotly_chart(
        figs.equivariance_figure([_name(r) for r in shifts], [r.correlation for r in shifts], [r.exact_shift for r in shifts]),
        config=style.CONFIG,
        key="inspect_equivariance",
    )
    st.caption(
        "Each bar correlates a layer's output for the shifted input with its output for the input itself, moved by the "
        "shift divided by the layer's stride. Blue: a map whose stride divides the shift; a convolution keeps it near 1 "
        "(exactly 1 with circular padding; zero padding differs at the borders). Orange: a strided map that a shift "
        "cannot move by whole positions, or a vector after Flatten or global pooling, compared with the unshifted "
        "input's vector: they change less than the input (partial invariance) or differently."
    )
    maps = [r for r in shifts if r.kind == "maps"]
    if not maps:
        return
    pixels = features.display_pixels(eq.shift_input(inp.x, int(dy), int(dx))[0])
    pick = st.selectbox("Layer", range(len(maps)), format_func=lambda i: _name(maps[i]) + " → " + shape_str(maps[i].shifted.shape), key="inspect_shift_layer")
    r = maps[pick]
    ty, tx = r.moved
    moved = f"({ty:g}, {tx:g})" if r.exact_shift else f"({ty:g}, {tx:g}), rounded to ({round(ty)}, {round(tx)})"
    a, b = st.columns(2)
    if pixels is not None:
        a.plotly_chart(figs.input_figure.unchecked(pixels, f"Input shifted by ({dy}, {dx})", height=220), config=style.CONFIG, key="inspect_shifted_input")
    b.metric("Correlation", f"{r.correlation:.4f}", help="Pearson's r between the two sets of maps: 1 when they are the same up to scale")
    b.caption(f"Stride {r.stride[0]}×{r.stride[1]}: the input's shift moves this layer's maps by {moved} positions.")
    m = float(max(np.abs(r.shifted).max(), np.abs(r.expected).max())) or 1.0
    ranges = [(-m, m)] * r.shifted.shape[0]  # one colour scale for both sides
    a, b = st.columns(2)
    a.plotly_chart(figs.layer_grid_figure.unchecked(r.shifted, ranges, "Maps of the shifted input"), config=style.CONFIG, key="inspect_shift_maps")
    b.plotly_chart(figs.layer_grid_figure.unchecked(r.expected, ranges, f"Maps of the input, moved by {moved}"), config=style.CONFIG, key="inspect_moved_maps")
