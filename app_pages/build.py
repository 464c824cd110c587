"""Build: stack layers into a model and see its shapes, parameters, FLOPs and receptive fields as you edit."""

import streamlit as st

from dlviz.errors import UserError, json_path
from dlviz.figures import build as figures
from dlviz.preset import edit
from dlviz.preset.registry import ACTIVATIONS, ALL_LAYERS, BLOCK_DOCS, BLOCKS, GROUPS, INITS, shape_str
from dlviz.text import clean
from dlviz_app import session, widgets
from dlviz_app.text import md

doc = session.preset()
view = session.preview(doc)
rows = {r.path: r for r in view.summary.rows} if view.summary is not None else {}
error_layer = edit.error_layer(view.error)
ALL_TYPES = [*ALL_LAYERS, *BLOCKS]
PAGE = 25  # layers of one list drawn at a time: a long model pages through them instead of drawing a thousand editors
# A large model draws each layer's buttons and arguments only while its expander is open: Streamlit builds an
# expander's content even when it is closed, and a thousand-layer preset took 20-40 s a rerun.
LAZY = sum(1 for _ in edit.walk(doc)) > 2 * PAGE
OPEN_PANELS = "open_panels"  # the places of the layers whose panels are open, in lazy mode


def key(*parts) -> str:
    """A widget key that changes with every structural edit, so a widget never shows another layer's value."""
    return "|".join(str(p) for p in (session.rev(), *parts))


def set_input_shape(widget_key: str) -> None:
    try:
        shape = edit.parse_ints(st.session_state[widget_key], "model.input_shape")
    except UserError as err:
        st.session_state.setdefault(session.INPUT_ERRORS, {})[widget_key] = err.message
        return
    st.session_state.get(session.INPUT_ERRORS, {}).pop(widget_key, None)
    session.apply(edit.set_input_shape, shape, structural=False)


def add_from_picker() -> None:
    session.apply(edit.add_layer, edit.parse_path(st.session_state["add_target"]), st.session_state["add_type"])


def add_here(container: tuple, type_key: str) -> None:
    session.apply(edit.add_layer, container, st.session_state[type_key])


CONFIRM_ACTIVATION = "confirm_activation"
NORMALIZING = {"Softmax", "LogSoftmax"}  # turn a layer's outputs into a distribution: an output layer's job


def set_all_activations(confirmed: bool = False) -> None:
    name = st.session_state["all_activation"]
    if name in NORMALIZING and not confirmed:
        st.session_state[CONFIRM_ACTIVATION] = name
        return
    st.session_state.pop(CONFIRM_ACTIVATION, None)
    session.apply(edit.set_all_activations, name)


def model_controls() -> None:
    shape_key = key("input_shape")
    shape_col, new_col = st.columns([3, 2], vertical_alignment="bottom")
    shape_col.text_input(
        "Input shape",
        ", ".join(str(n) for n in doc["model"]["input_shape"]),
        key=shape_key,
        on_change=set_input_shape,
        args=(shape_key,),
        help="One sample's shape, without the batch: 2 for two features, 1, 28, 28 for a grey 28×28 image.",
    )
    new_col.button(
        "New empty model",
        icon=":material/note_add:",
        on_click=session.apply,
        args=(edit.empty_model,),
        help="Remove every layer; the input shape, data, loss and optimizer stay.",
        width="stretch",
    )
    if shape_key in st.session_state.get(session.INPUT_ERRORS, {}):
        st.error(md(st.session_state[session.INPUT_ERRORS][shape_key]))
    act, act_go = st.columns([3, 2], vertical_alignment="bottom")
    act.selectbox("Activation", list(ACTIVATIONS), key="all_activation")
    act_go.button("Set every activation", width="stretch", on_click=set_all_activations)
    if st.session_state.get(CONFIRM_ACTIVATION):
        name = st.session_state[CONFIRM_ACTIVATION]
        st.warning(
            f"{name} on every hidden layer squeezes each layer's outputs into a probability distribution that "
            f"sums to 1, and the network will hardly learn. {name} belongs, if anywhere, after the last layer, "
            "and CrossEntropyLoss already applies it to the logits."
        )
        with st.container(horizontal=True):
            st.button(f"Put {name} on every hidden layer", on_click=set_all_activations, args=(True,))
            st.button("Cancel", on_click=lambda: st.session_state.pop(CONFIRM_ACTIVATION, None))
    current = doc["model"].get("init", "default")
    current = current if isinstance(current, str) else current.get("type", "default")
    init, init_go = st.columns([3, 2], vertical_alignment="bottom")
    init_key = key("all_init")
    init.selectbox(
        "Init",
        list(INITS),
        key=init_key,
        index=list(INITS).index(current) if current in INITS else 0,
        help=f"The model's initialization is now {md(current)}; setting one clears every per-layer override.",
    )
    init_go.button("Set every init", width="stretch", on_click=lambda: session.apply(edit.set_all_inits, st.session_state[init_key]))


def add_picker() -> None:
    with st.container(border=True, key="add_layer"):
        group_col, type_col, target_col = st.columns(3)
        group = group_col.selectbox("Group", GROUPS, key="add_group")
        type_name = type_col.selectbox("Layer type", edit.layer_types(group), key="add_type")
        targets = {json_path(path): clean(label) for path, label in edit.containers(doc)}
        target_col.selectbox("Insert into", list(targets), format_func=targets.get, key="add_target")
        with st.container(horizontal=True, vertical_alignment="center"):
            st.button("Add layer", type="primary", icon=":material/add:", on_click=add_from_picker)
            entry = ALL_LAYERS.get(type_name)
            st.caption(entry.doc if entry else BLOCK_DOCS.get(type_name, ""))


def layer_list(container: tuple) -> None:
    layers = edit.layer_items(doc, container)
    for i in page(container, len(layers)):
        layer_editor(layers[i], (*container, i), last=i == len(layers) - 1)


def page(container: tuple, n: int) -> range:
    """The layers of a list drawn now: all of a short list, one page of a long one (the page with the problem first)."""
    if n <= PAGE:
        return range(n)
    pages = [range(start, min(start + PAGE, n)) for start in range(0, n, PAGE)]
    troubled = error_layer[len(container)] if error_layer and error_layer[: len(container)] == container else 0
    chosen = st.selectbox(
        f"Layers ({n:,} in this list)",
        range(len(pages)),
        index=troubled // PAGE,
        key=key(json_path(container), "page"),
        format_func=lambda p: f"{pages[p][0]} to {pages[p][-1]}",
    )
    return pages[chosen]


def layer_editor(layer: dict, path: tuple, last: bool) -> None:
    where = json_path(path)
    row = rows.get(where)
    title = f"[{path[-1]}] {edit.layer_label(layer)}" + (f" → {shape_str(row.output_shape)}" if row else "")
    troubled = edit.error_at(view.error, path)
    # A key gives the expander an identity apart from its title, which changes with every argument edit: without one
    # each edit drew a new, closed expander. The key is the layer's place, not the revision, so a panel also stays open
    # while a layer is added to its block.
    # A lazy expander reports whether it is open, and so takes its title into its identity: the places open in the last
    # run are remembered and reopened under the new title.
    opened = st.session_state.setdefault(OPEN_PANELS, set())
    lazily = dict(key=key(where, "open"), on_change="rerun") if LAZY else dict(key=f"panel|{where}")
    with st.expander(md(title), expanded=troubled or (LAZY and where in opened), icon=":material/error:" if troubled else None, **lazily) as box:
        if LAZY:
            (opened.add if box.open else opened.discard)(where)
        if LAZY and not (box.open or troubled):
            return
        if path == error_layer:
            st.error(md(view.error.message))
        with st.container(horizontal=True):
            st.button("Up", key=key(where, "up"), icon=":material/arrow_upward:", disabled=path[-1] == 0, on_click=session.apply, args=(edit.move, path, -1))
            st.button("Down", key=key(where, "down"), icon=":material/arrow_downward:", disabled=last, on_click=session.apply, args=(edit.move, path, 1))
            st.button("Delete", key=key(where, "delete"), icon=":material/delete:", on_click=session.apply, args=(edit.delete, path))
        name_key = key(where, "name")
        st.text_input(
            "name",
            layer.get("name", ""),
            key=name_key,
            max_chars=80,
            on_change=lambda: session.apply(edit.set_name, path, st.session_state[name_key], structural=False),
        )
        trainable_key = key(where, "trainable")
        if row is not None and row.trainable_params + row.non_trainable_params or "trainable" in layer:  # a layer with weights
            st.checkbox(
                "trainable",
                layer.get("trainable", True),
                key=trainable_key,
                help="Off: the weights stay as they start (as init_from loads them), left out of the optimizer: transfer learning's frozen layers",
                on_change=lambda: session.apply(edit.set_trainable, path, st.session_state[trainable_key], structural=False),
            )
        if layer["type"] in BLOCKS:
            block_children(layer, path)
        else:
            layer_args(layer, path, where)


def layer_args(layer: dict, path: tuple, where: str) -> None:
    entry = ALL_LAYERS[layer["type"]]
    st.caption(entry.doc)
    cols = st.columns(3)
    for n, (name, arg) in enumerate(entry.args.items()):
        with cols[n % 3]:
            widgets.arg_input(
                name,
                arg,
                edit.arg_value(layer, name),
                key(where, name),
                lambda value, name=name: session.apply(edit.set_arg, path, name, value, structural=False),
            )


def block_children(layer: dict, path: tuple) -> None:
    st.caption(BLOCK_DOCS[layer["type"]])
    parts = edit.child_lists(layer, path)
    for container, part in parts:
        where = json_path(container)
        head, remove = st.columns([4, 1], vertical_alignment="center")
        note = " (empty: the identity)" if part == "shortcut" else ""
        head.markdown(f"**{part}**{note}")
        if layer["type"] == "Concat" and len(parts) > 1:
            remove.button("Remove", key=key(where, "remove"), help=f"Remove {part}", on_click=session.apply, args=(edit.remove_branch, path, container[-1]))
        layer_list(container)
        type_key = key(where, "type")
        pick, add = st.columns([3, 1], vertical_alignment="bottom")
        pick.selectbox(f"Add to {part}", ALL_TYPES, key=type_key, index=ALL_TYPES.index("Conv2d"))
        add.button("Add", key=key(where, "add"), icon=":material/add:", on_click=add_here, args=(container, type_key))
    if layer["type"] == "Concat":
        st.button("Add branch", key=key(json_path(path), "branch"), icon=":material/call_split:", on_click=session.apply, args=(edit.add_branch, path))


def summary_numbers() -> None:
    s = view.summary
    if s is None:
        st.info("Fix the problem above to see the summary and the architecture.")
        return
    if view.partial:
        st.warning(f"Showing the layers before [{error_layer[2]}]; the rest cannot be computed until the problem is fixed.")
    rf = s.receptive_field
    params, trainable, flops, out, field = st.columns([3, 3, 2, 2, 2])
    params.metric("Parameters", f"{s.total_params:,}")
    trainable.metric("Trainable", f"{s.trainable_params:,}")
    flops.metric("FLOPs", figures.human_count(s.flops), help=f"{s.flops:,} floating-point operations for one sample")
    out.metric("Output", shape_str(s.output_shape))
    field.metric(
        "Receptive field",
        figures.size_text(rf["size"]) if rf else "–",
        help=(
            f"Of the last spatial layer: size {figures.size_text(rf['size'])}, "
            f"stride {figures.size_text(rf['stride'])}, padding {figures.size_text(rf['padding'])}."
            if rf
            else "The model has no spatial layers."
        ),
    )


def summary_panel() -> None:
    s = view.summary
    if s is None:
        return
    # the table only while its tab is open: a hidden st.dataframe still has the browser load the data grid's scripts
    graph, table = st.tabs(["Architecture", "Table"], key="summary_tab", on_change="rerun")
    with graph:
        st.markdown(session.architecture(doc), unsafe_allow_html=True)  # an SVG drawn on the server (figures.architecture_svg)
    if table.open:
        with table:
            frame = figures.summary_frame(s)
            number = st.column_config.NumberColumn(format="localized")
            st.dataframe(frame, hide_index=True, width="stretch", height=min(38 + 35 * len(frame), 1200), column_config={"params": number, "FLOPs": number})


st.title("Build")
if doc.get("look_at"):
    st.caption(md(doc["look_at"]))
if view.error is not None:
    st.error(md(edit.name_layers(doc, str(view.error))))
summary_numbers()

edit_col, summary_col = st.columns([5, 6], gap="large")
with summary_col:  # first: the browser starts loading the graph's scripts while the editor's widgets are still sent
    summary_panel()
with edit_col:
    model_controls()
    add_picker()
    layer_list(edit.TOP)
    if not doc["model"].get("layers"):
        st.info("No layers yet: pick a type above and press Add layer.")
