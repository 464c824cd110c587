"""Inspect: look inside the model, untrained or at any checkpoint of a run: feature maps, receptive fields, filters, and the convolution and activation labs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import streamlit as st

from dlviz import limits
from dlviz.analysis import activation_lab as actlab
from dlviz.analysis import conv_lab as convlab
from dlviz.analysis import features, receptive
from dlviz.data.datasets import IMAGE_SETS
from dlviz.errors import UserError
from dlviz.figures import inspect as figs
from dlviz.figures import style
from dlviz.model.build import Network, Summary, summarize
from dlviz.preset.registry import INITS, shape_str
from dlviz.preset.schema import validate
from dlviz.text import plot_text
from dlviz_app import equivariance, probabilities, runs, sequences, session, shared
from dlviz_app.text import md

UNIT = "inspect_unit"  # (layer path, channel, row, column) of the unit whose receptive field is drawn
LAYER, CHANNEL = "inspect_layer", "inspect_channel"
UNTRAINED, RUN = "This preset, untrained", "A training run"
SOURCES = ("Dataset sample", "Sample image", "Upload an image", "Random noise")


@dataclass
class Look:
    """The model and input being inspected, the key naming the pair in the session memo, and every layer's output."""

    net: Network
    summary: Summary
    inp: features.ModelInput
    key: tuple
    outputs: list[features.LayerOutput]


# ---------------------------------------------------------------- cached engine calls


@st.cache_resource(max_entries=8, show_spinner=False)
def _model(preset_text: str, run_id: str | None, step: int | None):
    """The model with the weights asked for; shared between sessions (hooked passes hold features.HOOK_LOCK)."""
    exp = validate(json.loads(preset_text))
    state = runs.store().load_checkpoint(run_id, step) if run_id else None
    return features.load_model(exp, state)


@st.cache_resource(max_entries=8, show_spinner=False)
def _summary(preset_text: str):
    return summarize(validate(json.loads(preset_text)), count_flops=False)


def _upload(data: bytes, name: str) -> features.Picture:
    """A decoded upload, kept in this session only (within DLVIZ_IMAGE_CACHE_BYTES), never in a cache other sessions share."""
    cache = st.session_state.get("inspect_uploads")
    limit = limits.current().image_cache_bytes
    if cache is None or cache.limit_bytes != limit:
        cache = st.session_state["inspect_uploads"] = features.PictureCache(limit)
    return cache.get(data, name)


@st.cache_data(max_entries=2, show_spinner=False)
def _curves() -> list[actlab.Curve]:
    return actlab.curves()


@st.cache_data(max_entries=16, show_spinner=False)
def _deep_stack(activation: str, init: str, args_text: str) -> actlab.DeepStack:
    return actlab.deep_stack(activation, init, json.loads(args_text))


@st.cache_data(max_entries=32, show_spinner=False)
def _activation_figure(highlight: str):
    return figs.activation_figure(_curves(), highlight)


def _memo(name: str, key, compute):
    """The value of `compute()` kept in the session until `key` changes: reruns for other widgets reuse it."""
    slot = st.session_state.setdefault("inspect_memo", {})
    if name not in slot or slot[name][0] != key:
        slot[name] = (key, compute())
    return slot[name][1]


def _input_key(inp: features.ModelInput) -> tuple:
    return inp.source, hashlib.sha1(inp.x.numpy().tobytes()).hexdigest()


def _text(exp) -> str:
    return json.dumps(exp.to_dict(), sort_keys=True)


# ---------------------------------------------------------------- choosing the model and the input


def choose_model():
    """(experiment, network, run id, checkpoint step, checkpoints table); the network is None, with the reason shown,
    when there is no model to look at, and the experiment too when the preset itself is invalid."""
    browser_runs = runs.store().runs(runs.browser_id())
    options = [UNTRAINED, RUN] if len(browser_runs) else [UNTRAINED]
    current = runs.current_run_id()  # the preset's own latest run: right after training, Inspect opens on its weights
    left, mid, right = st.columns([2, 3, 2], vertical_alignment="bottom")
    source = left.radio(
        "Model",
        options,
        key="inspect_model_source",
        index=options.index(RUN) if current else 0,
        help="The preset as it is now on Build, with its initial weights, or the weights of a run's checkpoint.",
    )
    if len(browser_runs) == 0:
        left.caption("No runs yet: train one on the Train page to inspect its checkpoints.")
    if source == UNTRAINED:
        try:
            exp = validate(session.preset())
        except UserError as err:
            st.error(f"{md(err)} Fix the preset on Build to inspect it.")
            return None, None, None, None, None
        return exp, _build(_text(exp), None, None), None, None, None
    ids = [str(i) for i in browser_runs["id"]]
    run_id = mid.selectbox("Run", ids, format_func=runs.run_titles(browser_runs).get, key="inspect_run", index=ids.index(current) if current in ids else 0)
    exp = runs.store().experiment(run_id)
    step, ckpts = runs.pick_checkpoint(run_id, right, "inspect")
    if step is None:
        st.info("This run has no checkpoint yet; its first one is written when training starts.")
        return exp, None, run_id, None, ckpts
    return exp, _build(_text(exp), run_id, step), run_id, step, ckpts


def _build(text: str, run_id, step):
    try:
        return _model(text, run_id, step)
    except UserError as err:
        st.error(md(err))
        return None


def choose_input(exp, net) -> features.ModelInput:
    image_shaped = len(exp.model.input_shape) == 3 and net.input_dtype.is_floating_point
    sources = [s for s in SOURCES if (s != "Dataset sample" or exp.data is not None) and (s not in ("Sample image", "Upload an image") or image_shaped)]
    left, right = st.columns([2, 3], vertical_alignment="bottom")
    source = left.radio("Input", sources, horizontal=True, key="inspect_source")
    try:
        if source == "Dataset sample":
            ds = shared.dataset(exp)
            n = len(ds.x_val)
            index = right.number_input(f"Validation sample (0 to {n - 1:,})", 0, max(n - 1, 0), 0, key="inspect_index")
            return features.dataset_input(exp, ds, int(index))
        normalization, data_name = None, ""
        if exp.data is not None and exp.data.name in IMAGE_SETS:  # images enter as the training images did
            normalization, data_name = shared.dataset(exp).normalization, exp.data.name
        if source == "Sample image":
            name = right.selectbox("Sample image", list(features.SAMPLE_IMAGES), key="inspect_sample")
            return features.image_input(features.sample_image(name), exp.model.input_shape, normalization, data_name)
        if source == "Upload an image":
            file = right.file_uploader(
                "Image file",
                type=list(features.IMAGE_EXTENSIONS),
                key="inspect_upload",
                help="A PNG, JPEG, GIF, BMP, TIFF or WebP image; it is cropped to the input's shape, resized and converted to its channels.",
            )
            if file is not None:
                picture = _upload(file.getvalue(), file.name)
                return features.image_input(picture, exp.model.input_shape, normalization, data_name)
            st.caption("No file yet: showing random noise.")
        seed = right.number_input("Noise seed", 0, 10_000, 0, key="inspect_seed") if source == "Random noise" else 0
        return features.noise_input(net, int(seed))
    except UserError as err:
        st.error(md(err))
        return features.noise_input(net, 0)


# ---------------------------------------------------------------- the selected unit


def set_unit(path: str, channel: int, row: int, col: int) -> None:
    st.session_state[UNIT] = (path, int(channel), int(row), int(col))
    st.session_state[LAYER] = path
    st.session_state[CHANNEL] = int(channel)


def _first_point(chart_key: str):
    state = st.session_state.get(chart_key)
    points = state.selection.points if state is not None else []
    return points[0] if points else None


def pick_from_grid(chart_key: str, path: str, tiling: figs.Tiling) -> None:
    p = _first_point(chart_key)
    hit = tiling.unit(p["x"], p["y"]) if p and "x" in p and "y" in p else None
    if hit is not None:
        set_unit(path, *hit)


def pick_from_map(chart_key: str, path: str, channel: int) -> None:
    p = _first_point(chart_key)
    if p and "x" in p and "y" in p:
        set_unit(path, channel, round(p["y"]), round(p["x"]))


def resolve_unit(maps: dict) -> tuple[str, int, int, int]:
    """The chosen unit, made to fit the layer and channel chosen now: a new layer starts at its centre unit, a new
    channel keeps the row and column. Runs before the layer and channel widgets are drawn (it may set their values)."""
    path = st.session_state.get(LAYER)
    path = path if path in maps else next(iter(maps))
    c, h, w = maps[path].values.shape
    channel = st.session_state.get(CHANNEL, 0)
    channel = channel if isinstance(channel, int) and 0 <= channel < c else 0
    unit = st.session_state.get(UNIT)
    if unit is None or unit[0] != path or not (0 <= unit[2] < h and 0 <= unit[3] < w):
        unit = (path, channel, h // 2, w // 2)
    unit = (path, channel, unit[2], unit[3])
    st.session_state[UNIT] = unit
    st.session_state[LAYER], st.session_state[CHANNEL] = path, channel
    return unit


# ---------------------------------------------------------------- sections


def show_input(inp: features.ModelInput) -> None:
    if inp.pixels is not None:
        st.plotly_chart(
            figs.input_figure.unchecked(inp.pixels, "Input" + (f" (label {plot_text(inp.label)})" if inp.label else ""), height=260),
            config=style.CONFIG,
            key="inspect_input_fig",
        )
    elif inp.x.dim() == 2:
        st.plotly_chart(figs.vector_figure.unchecked(inp.x[0].float().numpy(), "Input features"), config=style.CONFIG)
    elif inp.x.dim() == 3 and inp.x.is_floating_point():
        st.plotly_chart(figs.rows_figure(inp.x[0].numpy(), "Input"), config=style.CONFIG)
    st.caption(md(" · ".join(p for p in (inp.source, inp.note) if p)))


def _title(o: features.LayerOutput) -> str:
    return f"{o.path.removeprefix('model.')} {o.type} → {shape_str(o.values.shape)}"


def feature_maps_tab(look: Look) -> None:
    outputs = look.outputs
    if not features.has_maps(outputs):
        st.info(
            "This model has no spatial layers with 2-D maps (outputs of [channels, height, width]), so feature maps do not apply. "
            "Below is what every layer outputs for this input."
        )
        dense_view(outputs)
        return
    mode = st.radio(
        "Colour scale",
        features.SCALES,
        index=1,
        horizontal=True,
        key="inspect_scale",
        help="Per map: each map uses its own range. Per layer: the maps of one layer share a range. "
        "Global: every map in the network shares one range, so layers can be compared.",
    )
    maps = {o.path: o for o in outputs if o.kind == "maps"}
    path, channel, row, col = resolve_unit(maps)
    index = {o.path: i for i, o in enumerate(outputs)}
    st.caption("Click a unit in any map to see the input pixels it depends on.")
    for o in outputs:
        i = index[o.path]
        if o.kind == "maps":
            ranges = [features.color_range(outputs, i, c, mode) for c in range(min(o.values.shape[0], figs.MAX_TILES))]
            chosen = (channel, row, col) if o.path == path else None
            fig, tiling = figs.layer_grid_figure.unchecked(o.values, ranges, _title(o), selected=chosen), figs.tiling(*o.values.shape)
            key = f"inspect_grid|{o.path}"
            st.plotly_chart(fig, config=style.CONFIG, key=key, on_select=lambda k=key, p=o.path, t=tiling: pick_from_grid(k, p, t), selection_mode="points")
            if o.values.shape[0] > figs.MAX_TILES:
                st.caption(f"The first {figs.MAX_TILES} of {o.values.shape[0]} channels; pick any channel below.")
        elif o.kind == "vector":
            st.plotly_chart(figs.vector_figure.unchecked(o.values, _title(o)), config=style.CONFIG, key=f"inspect_vec|{o.path}")
        elif o.kind == "rows":
            st.plotly_chart(figs.rows_figure(o.values, _title(o)), config=style.CONFIG, key=f"inspect_rows|{o.path}")
    st.divider()
    closer(look, maps, mode)


def closer(look: Look, maps: dict, mode: str) -> None:
    outputs = look.outputs
    st.subheader("One map, and the receptive field of one unit")
    paths = list(maps)
    pick_l, pick_c = st.columns([3, 1])
    pick_l.selectbox("Layer", paths, key=LAYER, format_func=lambda p: _title(maps[p]))
    c = maps[st.session_state[LAYER]].values.shape[0]
    pick_c.number_input(f"Channel (0 to {c - 1})", 0, c - 1, key=CHANNEL)
    path, channel, row, col = st.session_state[UNIT]
    values = maps[path].values[channel]
    i = [o.path for o in outputs].index(path)
    zrange = features.color_range(outputs, i, channel, mode)
    left, right = st.columns(2)
    with left:
        key = f"inspect_map|{path}|{channel}"
        st.plotly_chart(
            figs.map_figure.unchecked(values, zrange, f"{_title(maps[path])}, channel {channel}", unit=(row, col)),
            config=style.CONFIG,
            key=key,
            on_select=lambda: pick_from_map(key, path, channel),
            selection_mode="points",
        )
        lo, hi = float(values.min()), float(values.max())
        a, b, m = st.columns(3)
        a.metric("Min", f"{lo:.4g}")
        b.metric("Max", f"{hi:.4g}")
        m.metric("Unit value", f"{float(values[row, col]):.4g}")
    with right:
        rf_overlay(look, path, channel, row, col)


def rf_overlay(look: Look, path: str, channel: int, row: int, col: int) -> None:
    inp = look.inp
    fields = {f.path: f for f in receptive.theoretical(look.summary)}
    field = fields.get(path)
    box = receptive.unit_box(field, (row, col), inp.x.shape[2:]) if field is not None and inp.x.dim() == 4 else None
    erf = refused = None
    if inp.x.is_floating_point() and inp.x.dim() == 4:
        try:
            erf = _memo("erf", (look.key, path, channel, row, col), lambda: receptive.input_gradient(look.net, inp.x, path, (row, col), channel))
        except UserError as err:
            refused = err
    pixels = inp.pixels if inp.pixels is not None else features.display_pixels(inp.x[0])
    if pixels is None:
        st.info("The input is not an image, so there is no receptive field to draw on it.")
        return
    st.plotly_chart(
        figs.input_figure.unchecked(pixels, f"Unit ({row}, {col}) of channel {channel}: its field on the input", box=box, erf=erf, height=420),
        config=style.CONFIG,
        key="inspect_rf_fig",
    )
    lines = []
    if box is not None:
        (r0, c0), (r1, c1) = box.start, box.end
        lines.append(
            f"**Theoretical field** (orange box): {field.size[0]:g}×{field.size[1]:g} pixels, rows {r0} to {r1}, "
            f"columns {c0} to {c1}" + (" (dashed: the part in the padding, outside the image)" if box.clipped else "")
        )
    s = receptive.spread(erf) if erf is not None else None
    if refused is not None:
        lines.append(f"**Effective field**: {md(str(refused))}")
    elif s is None:
        lines.append(
            "**Effective field**: no gradient reaches the input from this unit for this input (an inactive unit, "
            "for example a ReLU at 0); pick another unit or the layer before the activation."
        )
    else:
        lines.append(
            f"**Effective field** (red, |∂unit/∂input|): 95% of the gradient lies in {s.size[0]}×{s.size[1]} pixels, "
            f"σ = {s.sigma[0]:.2f} × {s.sigma[1]:.2f} pixels."
        )
    st.markdown("  \n".join(lines))


def dense_view(outputs) -> None:
    for o in outputs:
        if o.kind == "vector":
            st.plotly_chart(figs.vector_figure.unchecked(o.values, _title(o)), config=style.CONFIG, key=f"inspect_dense|{o.path}")
        elif o.kind == "rows":
            st.plotly_chart(figs.rows_figure(o.values, _title(o)), config=style.CONFIG, key=f"inspect_dense|{o.path}")


def receptive_tab(look: Look) -> None:
    inp = look.inp
    fields = receptive.theoretical(look.summary)
    if not fields:
        st.info("This model has no spatial layers, so its units have no receptive field on an image: every dense unit sees the whole input.")
        return
    st.markdown(
        "Each unit of a convolutional map depends on a window of the input, its **theoretical receptive field**: "
        "$r_0 = 1 + \\sum_{l=1}^{L} (k_l - 1) \\prod_{i=1}^{l-1} s_i$, where layer $l$ has kernel size $k_l$ "
        "(dilation included) and stride $s_l$. Its **effective** field is where the gradient of the unit with "
        "respect to the input is large (Luo et al. 2016); it is often much smaller, and Gaussian-like."
    )
    rows = None
    if inp.x.is_floating_point() and inp.x.dim() == 4:
        try:
            rows = _memo("growth", look.key, lambda: receptive.growth(look.net, look.summary, inp.x))
        except UserError as err:
            st.error(md(str(err)))
    if rows is not None:
        labels = [f"{r.path.removeprefix('model.')} {r.type}" for r in rows]
        st.plotly_chart(figs.rf_growth_figure(rows, labels), config=style.CONFIG, key="inspect_growth")
        st.caption("Effective sizes are measured at each layer's centre unit, averaged over up to 8 of its channels, for this input and these weights.")
    st.dataframe(
        [
            {
                "layer": f.path.removeprefix("model."),
                "type": f.type,
                "output": shape_str(f.output_shape),
                "RF size": "×".join(f"{v:g}" for v in f.size),
                "RF stride": "×".join(f"{v:g}" for v in f.stride),
                "RF padding": "×".join(f"{v:g}" for v in f.padding),
            }
            for f in fields
        ],
        hide_index=True,
    )


def filters_tab(exp, net, run_id, ckpts) -> None:
    now = features.conv_filters(net)
    if not now:
        st.info("This model has no 2-D convolution, so it has no filters to draw.")
        return
    paths = [f.path for f in now]
    path = st.selectbox(
        "Convolution",
        paths,
        key="inspect_filter_layer",
        format_func=lambda p: f"{p.removeprefix('model.')} ({shape_str(next(f for f in now if f.path == p).weight.shape)})",
    )
    chosen = next(f for f in now if f.path == path)
    first = path == paths[0]
    initial = None
    if run_id is not None and ckpts is not None and (ckpts["label"] == "initial").any():
        step0 = int(ckpts.loc[ckpts["label"] == "initial", "step"].iloc[0])
        initial = next(f for f in features.conv_filters(_model(_text(exp), run_id, step0)) if f.path == path)
    panels = [("Initial weights", initial), ("This checkpoint", chosen)] if initial is not None else [("Weights", chosen)]
    if initial is None and run_id is None:
        st.caption("These are the untrained weights; choose a training run above to compare them with trained ones.")
    zmax = max(float(np.abs(f.weight).max()) for _, f in panels) or 1.0  # one colour scale, so growth shows
    cols = st.columns(len(panels))
    for col, (label, f) in zip(cols, panels):
        with col:
            rgb = features.rgb_filters(f.weight) if first and f.rgb else None
            layout = (
                "colour kernels, each scaled to its own largest |w|"
                if rgb is not None
                else "one kernel per output channel"
                if f.weight.shape[1] == 1
                else "one row per output channel, one column per input channel"
            )
            st.plotly_chart(figs.filters_figure(f.weight, rgb, f"{label}: {layout}", zmax=zmax), config=style.CONFIG, key=f"inspect_filters|{label}")
            st.caption(f"|w| largest {np.abs(f.weight).max():.3g}, norm {np.linalg.norm(f.weight):.3g}")


def conv_lab_tab(inp: features.ModelInput | None) -> None:
    st.markdown("A convolution slides a kernel over the image and writes Σ kernel × pixels at each stop. Output size: ⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1.")
    images = ["Step edge", *features.SAMPLE_IMAGES] + (["The inspected input"] if inp is not None and inp.pixels is not None else [])
    a, b, c = st.columns(3)
    image_name = a.selectbox("Image", images, key="lab_image")
    size = b.slider("Image size (pixels)", 16, 256, 96, step=8, key="lab_size", disabled=image_name == "The inspected input")
    family = c.radio("Kernel", [*convlab.EDGE_KERNELS, "Typed"], horizontal=True, key="lab_family")
    d, e, f, g = st.columns(4)
    padding = d.number_input("Padding", 0, 16, 0, key="lab_padding")
    stride = e.number_input("Stride", 1, 8, 1, key="lab_stride")
    dilation = f.number_input("Dilation", 1, 8, 1, key="lab_dilation")
    if image_name == "Step edge":
        image = convlab.step_edge(size, size)
    elif image_name == "The inspected input":
        image = inp.pixels if inp.pixels.ndim == 2 else inp.pixels @ features.LUMA
    else:
        image = features.grey_pixels(features.sample_image(image_name), size)
    try:
        if family == "Typed":
            text = g.text_area(
                "Kernel rows", "0 -1 0\n-1 4 -1\n0 -1 0", key="lab_kernel", height=100, help="One row a line, numbers separated by spaces or commas."
            )
            kernel = convlab.parse_kernel(text)
            direction = None
            result = convlab.convolve(image, kernel, padding, stride, dilation)
        else:
            direction = g.radio("Direction", convlab.DIRECTIONS, horizontal=True, key="lab_direction")
            if direction == "magnitude":
                kernel = convlab.edge_kernel(family, "x")
                result = convlab.gradient_magnitude(image, family, padding, stride, dilation)
            else:
                kernel = convlab.edge_kernel(family, direction)
                result = convlab.convolve(image, kernel, padding, stride, dilation)
    except UserError as err:
        st.error(md(err))
        return
    (n_h, n_w), (k_h, k_w) = image.shape, kernel.shape
    p_h, p_w = result.predicted
    st.markdown(
        f"**Formula**: ⌊({n_h} + 2·{padding} − {dilation}·({k_h} − 1) − 1) / {stride}⌋ + 1 = **{p_h}** rows, "
        f"⌊({n_w} + 2·{padding} − {dilation}·({k_w} − 1) − 1) / {stride}⌋ + 1 = **{p_w}** columns · "
        f"**measured**: {result.measured[0]}×{result.measured[1]}"
    )
    one, two, three = st.columns([3, 2, 3])
    one.plotly_chart(figs.lab_map_figure(image, f"Image {n_h}×{n_w}", diverging=False), config=style.CONFIG, key="lab_in")
    kernel_title = f"{family} {direction}" if direction and direction != "magnitude" else (f"{family} x (and its transpose y)" if direction else "Typed kernel")
    two.plotly_chart(figs.kernel_figure(kernel, kernel_title), config=style.CONFIG, key="lab_kernel_fig")
    out_title = f"Output {result.measured[0]}×{result.measured[1]}" + (" (√(gx² + gy²))" if direction == "magnitude" else "")
    three.plotly_chart(figs.lab_map_figure(result.output, out_title), config=style.CONFIG, key="lab_out")
    h, k = st.columns([1, 3])
    pool_k = h.number_input("Pool size (stride = size)", 2, 8, 2, key="lab_pool")
    try:
        pooled = {kind: convlab.pool(result.output, kind, int(pool_k)) for kind in convlab.POOLS}
    except UserError as err:
        k.error(md(err))
        return
    cols = st.columns(2)
    for col, (kind, arr) in zip(cols, pooled.items()):
        col.plotly_chart(
            figs.lab_map_figure(arr, f"{kind.capitalize()} pooling {pool_k}×{pool_k} → {arr.shape[0]}×{arr.shape[1]}", height=280),
            config=style.CONFIG,
            key=f"lab_pool_{kind}",
        )


def activation_tab() -> None:
    curves = _curves()
    names = [c.name for c in curves]
    highlight = st.selectbox("Highlight", names, index=names.index("Sigmoid"), key="act_highlight")
    st.plotly_chart(_activation_figure(highlight), config=style.CONFIG, key="act_curves")
    left_out = ", ".join(f"{n} ({why})" for n, why in actlab.NOT_ELEMENTWISE.items())
    st.caption(
        f"Shaded: where |f′| < {actlab.SLOPE_FLOOR:g}, red where f′ is exactly 0 (a unit there is dead), orange where it "
        f"is small (saturation): little gradient passes. Not drawn, as they are not functions of one number: {left_out}."
    )
    st.subheader("Ten layers at initialization")
    st.markdown(
        "A batch of N(0, 1) inputs goes through 10 Linear(256, 256) layers, each followed by the activation. "
        "Left: the pre-activations z of each layer. Right: their spread, and the spread of the gradient flowing back. "
        "Sigmoid with N(0, 1) weights pushes z to ±10 and beyond, where most units saturate (f′ ≈ 0); ReLU with He "
        "initialization keeps the spread of z and of the gradient steady through every layer. Try tanh with a normal "
        "std of 0.01 (activations and gradients vanish) or 1 (gradients explode towards the input)."
    )
    inits = list(INITS)
    acts = actlab.elementwise()
    cols = st.columns(2)
    for col, (side, act, init) in zip(cols, (("a", "Sigmoid", "normal"), ("b", "ReLU", "kaiming_normal"))):
        with col:
            x, y = st.columns(2)
            a = x.selectbox("Activation", acts, index=acts.index(act), key=f"act_{side}")
            i = y.selectbox("Init", inits, index=inits.index(init), key=f"init_{side}", help=INITS[st.session_state.get(f"init_{side}", init)].doc)
            args = {}
            if i in ("normal", "trunc_normal"):
                args["std"] = st.number_input("std", 0.0, 10.0, 1.0, step=0.01, format="%g", key=f"std_{side}")
            try:
                stack = _deep_stack(a, i, json.dumps(args))
            except UserError as err:
                st.error(md(err))
                continue
            st.plotly_chart(figs.deep_stack_figure(stack), config=style.CONFIG, key=f"act_stack_{side}")
            st.caption(
                f"{a} with {i}: std of z from {stack.z_std[0]:.3g} (layer 1) to {stack.z_std[-1]:.3g} (layer 10); "
                f"gradient std from {stack.grad_std[-1]:.3g} (layer 10) to {stack.grad_std[0]:.3g} (layer 1); "
                f"{stack.flat_fraction[-1]:.0%} of layer 10's units have |f′| < {actlab.SLOPE_FLOOR:g}."
            )


# ---------------------------------------------------------------- the page


TABS = ["Feature maps", "Receptive fields", "Filters", "Sequences", "Equivariance", "Convolution lab", "Activation lab", "Round-off lab"]


def inspect(exp, net, run_id, step, ckpts) -> None:
    """Everything about one model: its input, then the open tab alone (its maps and fields, its filters, or a lab)."""
    inp = choose_input(exp, net)
    show_input(inp)
    key = (hashlib.sha1(_text(exp).encode()).hexdigest(), run_id, step, *_input_key(inp))
    probabilities.prediction(exp, net, inp, key)
    maps_tab, rf_tab, filter_tab, seq_tab, eq_tab, lab_tab, act_tab, round_tab = st.tabs(TABS, key="inspect_tab", on_change="rerun")
    look = None
    if maps_tab.open or rf_tab.open:  # the layers' outputs, which only these two tabs draw
        try:
            look = Look(net, _summary(_text(exp)), inp, key, _memo("maps", key, lambda: features.feature_maps(net, inp.x)))
        except UserError as err:  # over the server's memory budget: the other tabs still work
            (maps_tab if maps_tab.open else rf_tab).error(md(str(err)))
    with maps_tab:
        if maps_tab.open and look:
            feature_maps_tab(look)
    with rf_tab:
        if rf_tab.open and look:
            receptive_tab(look)
    with filter_tab:
        if filter_tab.open:
            filters_tab(exp, net, run_id, ckpts)
    with seq_tab:
        if seq_tab.open:
            sequences.sequences_tab(exp, net, run_id, step, ckpts, inp.x)
    with eq_tab:
        if eq_tab.open:
            equivariance.equivariance_tab(net, _summary(_text(exp)), inp, key)
    with lab_tab:
        if lab_tab.open:
            conv_lab_tab(inp)
    with act_tab:
        if act_tab.open:
            activation_tab()
    with round_tab:
        if round_tab.open:
            probabilities.roundoff_lab()


def labs_only() -> None:
    st.caption("The convolution, activation and round-off labs work without a model.")
    lab_tab, act_tab, round_tab = st.tabs(TABS[-3:], key="inspect_lab_tab", on_change="rerun")
    with lab_tab:
        if lab_tab.open:
            conv_lab_tab(None)
    with act_tab:
        if act_tab.open:
            activation_tab()
    with round_tab:
        if round_tab.open:
            probabilities.roundoff_lab()


st.title("Inspect")
chosen = choose_model()
if chosen[1] is None:
    labs_only()
else:
    inspect(*chosen)
