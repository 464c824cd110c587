"""Playground: TensorFlow Playground on one screen, on the session's preset: data on the left, the network with every
neuron's map in the middle, the output and its losses on the right, all redrawn while the run trains."""

import json
import math

import numpy as np
import streamlit as st
import torch

from dlviz import limits
from dlviz.errors import UserError
from dlviz.figures.playground import hidden_space_figure
from dlviz.model.neurons import encode, feature_maps, hidden_space, plane_extent
from dlviz.preset import gallery, playground
from dlviz.preset.edit import name_layers
from dlviz.preset.options import FEATURES
from dlviz.preset.registry import INITS, LOSSES, OPTIMIZERS
from dlviz.preset.schema import validate
from dlviz.runtime import CURVE_RANGE
from dlviz.training.board import board_frame
from dlviz.training.fit import check_trainable
from dlviz.training.store import STORE_ERRORS
from dlviz.training.trainer import Trainer
from dlviz_app import frames, runs, session
from dlviz_app.board import board
from dlviz_app.text import md

LRS = (0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # Playground's learning rates
RATES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # and regularization rates
RUN = "playground_run"  # this session's Playground run
SHOW_TEST, DISCRETIZE = "playground_show_test", "playground_discretize"
MAX_DRAWN = 1000  # points drawn per split
RESET_HELP = "Reset the network to its initial weights"
HANDLED = "playground_handled"  # the last run control (play, step, reset) the board sent and this server carried out
BOARD = "playground_board"
LIVE_REFRESH, POLLED_REFRESH = 0.25, 1.0  # the board's reruns while training: frames by reruns, or by the browser itself

runner = runs.runner()
bid = runs.browser_id()
runner.touch(bid)

if session.rev() == 0 and session.preset() == gallery.raw(gallery.DEFAULT):
    session.set_preset(playground.default_doc())  # a fresh visit opens on Playground's own defaults

doc = session.preset()
try:
    net = playground.network(doc)
    playground.check(net)
    if net.outputs != 1:
        raise UserError("model.layers", "the Playground's networks end in one output unit")
    exp = validate(doc)
except UserError as err:
    st.title("Playground")
    st.info(md(f"The preset on screen is not a network the Playground draws: {name_layers(doc, str(err))}."), icon=":material/info:")
    st.button("Start from the Playground's defaults", icon=":material/restart_alt:", on_click=session.set_preset, args=(playground.default_doc(),))
    st.stop()


# ---------------------------------------------------------------- what the board draws, cached by preset


def drawn(ds, split: str, classification: bool) -> tuple[np.ndarray, list]:
    """A split's points on the plane (N, 2) and their labels as the board draws them: ±1 for the two classes, the
    target for regression; a curve's points lie on its x axis (x, 0), their label its y."""
    y = getattr(ds, f"y_{split}")
    y = y.reshape(len(y), -1)[:MAX_DRAWN, 0].tolist()
    pts = getattr(ds, f"points_{split}")
    if pts is None:
        x = getattr(ds, f"x_{split}")[:MAX_DRAWN, 0].numpy()
        return np.column_stack([x, np.zeros(len(x))]), [float(v) for v in y]
    return pts[:MAX_DRAWN].numpy(), [(1.0 if v == 1 else -1.0) if classification else float(v) for v in y]


@st.cache_data(max_entries=64, show_spinner=False)
def untrained(text: str) -> dict:
    """The untrained network's frame, the data's points and the plane of a preset (its JSON text)."""
    e = validate(json.loads(text))
    tr = Trainer(e, device="cpu")
    ds = tr.dataset
    curve = ds.points_train is None  # a 1-D curve: points are (x, y), the plane is x against y
    clicked = len(e.data.points or [])
    if curve:
        extent = CURVE_RANGE
        ys = torch.cat([ds.y_train, ds.y_val]).abs()
        y_extent = float(max(1.0, math.ceil(float(ys.max()) * 1.15 * 2) / 2))
    else:
        extent = plane_extent(torch.cat([ds.points_train[: len(ds.points_train) - clicked], ds.points_val]).numpy())
        y_extent = extent
    f = board_frame(tr, extent)
    f.update(version=0, losses=[[0, f["train_loss"], f["test_loss"]]], status="untrained")
    cls = tr.objective.task == "classification"

    def rows(split):
        pts, labels = drawn(ds, split, cls)
        # a curve's point is drawn at (x, y)
        return [[float(p[0]), v if curve else float(p[1]), v] for p, v in zip(pts.tolist(), labels)]

    points = {"train": rows("train"), "test": rows("val")}
    return {"frame": f, "points": points, "extent": extent, "y_extent": y_extent, "dims": 1 if curve else 2, "task": tr.objective.task}


@st.cache_data(show_spinner=False)
def fitting_losses(regression: bool) -> list[str]:
    """The losses a one-output network can train with on this kind of problem (the trainer's own check)."""
    d = playground.with_data(playground.default_doc(), "reg-plane" if regression else "circle")
    out = []
    for name in LOSSES:
        try:
            check_trainable(validate({**d, "loss": {"type": name}}))
            out.append(name)
        except UserError:
            pass
    return out


@st.cache_data(max_entries=16, show_spinner=False)
def space(text: str, run_id: str | None, step: int | None, layer: int, extent: float):
    """Hidden layer `layer`'s view of the plane, for the untrained network or a run's checkpoint at `step`."""
    e = validate(json.loads(text))
    tr = Trainer(e, device="cpu")
    if run_id is not None and step is not None:
        tr.load_state(runs.store().load_checkpoint(run_id, step))
    pts, labels = drawn(tr.dataset, "train", tr.objective.task == "classification")
    lines, projected, axes = hidden_space(tr.model, layer, playground.network(json.loads(text)).features, extent, pts)
    return hidden_space_figure(lines, projected, labels, axes, layer, step)


@st.cache_data(max_entries=8, show_spinner=False)
def features_drawn(extent: float, one_d: bool) -> dict:
    """Each input feature's map over the plane: Playground's seven, or a curve's x alone."""
    return {name: encode(m) for name, m in feature_maps(playground.ONE_D if one_d else FEATURES, extent).items()}


@st.cache_data(max_entries=64, show_spinner=False)
def snapshot_frame(run_id: str, step: int, extent: float) -> dict:
    """The frame of a run's checkpoint at `step`: the time slider's view."""
    store = runs.store()
    tr = Trainer(store.experiment(run_id), resume=store.load_checkpoint(run_id, step), device="cpu")
    f = board_frame(tr, extent)
    epochs = store.epochs(run_id)
    upto = epochs[epochs["step"] <= step] if len(epochs) else epochs
    finite = lambda v: float(v) if math.isfinite(float(v)) else None  # noqa: E731
    history = [[int(r.step), finite(r.train_loss), finite(r.val_loss)] for r in upto.itertuples()][-200:]
    f.update(version=-step - 1, losses=[*history, [step, f["train_loss"], f["test_loss"]]], status=f"snapshot at step {step:,}")
    return f


base = untrained(json.dumps(doc, sort_keys=True))


def current():
    """This session's Playground run: (handle or None, whether it trains now)."""
    rid = st.session_state.get(RUN)
    h = runner.handle(rid) if rid else None
    return h, h is not None and h.alive


def start(paused: bool = False):
    try:
        e = validate(session.preset())
        h = runner.start(
            e, bid, address=runs.client_address(), board={"extent": untrained(json.dumps(session.preset(), sort_keys=True))["extent"]}, paused=paused
        )
        st.session_state[RUN] = h.run_id
        return h
    except UserError as err:
        session.report(err)
        return None


def stop_run(forget: bool = True):
    h, live = current()
    if live:
        runner.stop(h.run_id, block=False)
    if forget:
        st.session_state[RUN] = None


def restructure(new_doc: dict):
    """A structural edit, as Playground takes one: the network starts over, and trains on if it was training."""
    h, live = current()
    playing = live and h.run_event.is_set()
    try:
        validate(new_doc)
    except UserError as err:
        session.report(err)
        return
    stop_run()
    session.set_preset(new_doc)
    if playing:
        start()


def play():
    h, live = current()
    if not live:
        start()
    elif h.run_event.is_set():  # a statement, not a conditional expression: Streamlit's magic would write its None on the page
        h.pause()
    else:
        h.resume()


def one_step():
    h, live = current()
    if not live:
        h = start(paused=True)
    if h is not None:
        h.command({"kind": "step", "count": 1})


def set_lr(v):
    d = json.loads(json.dumps(session.preset()))
    d["optimizer"]["lr"] = v
    session.set_preset(d, structural=False)
    h, live = current()
    if live:
        h.command({"kind": "lr", "value": float(v)})  # the running training takes it at its next step


def set_regularization(kind: str, rate: float):
    d = json.loads(json.dumps(session.preset()))
    d["training"]["l1"] = rate if kind == "L1" else 0.0
    d["training"]["l2"] = rate if kind == "L2" else 0.0
    session.set_preset(d, structural=False)
    h, live = current()
    if live:
        h.command({"kind": "regularization", "l1": d["training"]["l1"], "l2": d["training"]["l2"]})


def edited(path: tuple, value):
    """A structural edit of one field of the preset."""
    d = json.loads(json.dumps(session.preset()))
    target = d
    for k in path[:-1]:
        target = target.setdefault(k, {})
    target[path[-1]] = value
    restructure(d)


def picked(key: str, shown, act):
    """The on_change of the widget keyed `key` (this run's revision appended) drawn showing `shown`: `act(value)` when its
    value differs. Streamlit also calls on_change for a widget whose last run was cut short by another rerun, with the
    value it was drawn with; that call changes nothing."""
    name = f"{key}_{session.rev()}"

    def call():
        v = st.session_state.get(name)
        if v is not None and v != shown:
            act(v)

    return call


# ---------------------------------------------------------------- top bar

h, live = current()
playing = live and h.run_event.is_set()
rev = session.rev()
tr_doc = doc.get("training") or {}
reg_kind = "L1" if tr_doc.get("l1") else "L2" if tr_doc.get("l2") else "None"
# one screen at 1400×900: Streamlit's room above the first element shrinks to a line on this page only
st.html("<style>.stMainBlockContainer { padding-top: 2.5rem; padding-bottom: 1rem; }</style>")
# Served with the frame route, the board holds play, step and reset itself: a click there reruns the board alone, and its
# first frame comes by the route, so the run starts without waiting for a rerun of the whole page.
if frames.served():
    bar = [None, None, None, *st.columns([1, 1, 1.1, 1.1, 1.3], vertical_alignment="bottom")]
else:
    bar = st.columns([0.45, 0.45, 0.45, 1, 1, 1.1, 1.1, 1.3], vertical_alignment="bottom")
    bar[0].button(
        "", icon=":material/pause:" if playing else ":material/play_arrow:", help="Pause" if playing else "Play", on_click=play, key="pg_play", width="stretch"
    )
    bar[1].button("", icon=":material/skip_next:", help="One step", on_click=one_step, key="pg_step", width="stretch")
    bar[2].button("", icon=":material/restart_alt:", help=RESET_HELP, on_click=stop_run, key="pg_reset", width="stretch")
lr = float(doc["optimizer"].get("lr", 0.03))
bar[3].selectbox("Learning rate", sorted({*LRS, lr}), index=sorted({*LRS, lr}).index(lr), key=f"pg_lr_{rev}", on_change=picked("pg_lr", lr, set_lr))
acts = {a for _, a in net.hidden}
act_choices = (playground.LINEAR, *playground.PLAIN_ACTIVATIONS)
act = next(iter(acts)) if len(acts) == 1 else None
bar[4].selectbox(
    "Activation",
    act_choices,
    index=act_choices.index(act) if act else None,
    placeholder="mixed",
    key=f"pg_act_{rev}",
    on_change=picked(
        "pg_act",
        act,
        lambda a: restructure(
            {**session.preset(), "model": {**session.preset()["model"], "layers": playground.layers_doc([(u, a) for u, _ in net.hidden], 1)}}
        ),
    ),
)
rate = float(tr_doc.get("l1") or tr_doc.get("l2") or RATES[0])
bar[5].selectbox(
    "Regularization",
    ("None", "L1", "L2"),
    index=("None", "L1", "L2").index(reg_kind),
    key=f"pg_reg_{rev}",
    on_change=picked("pg_reg", reg_kind, lambda kind: set_regularization(kind, rate)),
)
bar[6].selectbox(
    "Regularization rate",
    sorted({*RATES, rate}),
    index=sorted({*RATES, rate}).index(rate),
    key=f"pg_rate_{rev}",
    on_change=picked("pg_rate", rate, lambda r: set_regularization(reg_kind, r)),
    disabled=reg_kind == "None",
)
regression = base["task"] == "regression"
problem = "Regression" if regression else "Classification"
bar[7].selectbox(
    "Problem type",
    ("Classification", "Regression"),
    index=int(regression),
    key=f"pg_problem_{rev}",
    on_change=picked("pg_problem", problem, lambda p: restructure(playground.with_data(session.preset(), "reg-plane" if p == "Regression" else "circle"))),
)


# ---------------------------------------------------------------- data column and the board

data_col, board_col = st.columns([1.25, 6], gap="small")
data = doc["data"]
with data_col:
    sets = [s for s in playground.SETS if (s in playground.REGRESSION_SETS) == regression]
    st.selectbox(
        "Data",
        sets,
        index=sets.index(playground.data_choice(doc)),
        key=f"pg_data_{rev}",
        on_change=picked("pg_data", playground.data_choice(doc), lambda name: restructure(playground.with_data(session.preset(), name))),
    )
    ratio = round(100 * (1 - data.get("val_fraction", 0.2)))
    st.slider(
        "Ratio of training to test data",
        10,
        90,
        ratio,
        step=10,
        format="%d%%",
        key=f"pg_ratio_{rev}",
        on_change=picked("pg_ratio", ratio, lambda r: edited(("data", "val_fraction"), round(1 - r / 100, 2))),
    )
    noise = round(100 * data.get("noise", 0.0))
    st.slider("Noise", 0, 50, noise, step=5, key=f"pg_noise_{rev}", on_change=picked("pg_noise", noise, lambda n: edited(("data", "noise"), n / 100)))
    batch = min(max(int(data.get("batch_size", 10)), 1), 30)
    st.slider("Batch size", 1, 30, batch, key=f"pg_batch_{rev}", on_change=picked("pg_batch", batch, lambda b: edited(("data", "batch_size"), b)))
    st.button(
        "Regenerate",
        icon=":material/refresh:",
        width="stretch",
        on_click=lambda: edited(("seed",), int(session.preset().get("seed", 0)) + 1),
        help="New points (and weights): the next seed",
    )
    opt_names = list(OPTIMIZERS)
    st.selectbox(
        "Optimizer",
        opt_names,
        index=opt_names.index(doc["optimizer"]["type"]),
        key=f"pg_opt_{rev}",
        on_change=picked(
            "pg_opt", doc["optimizer"]["type"], lambda o: edited(("optimizer",), {"type": o, "lr": session.preset()["optimizer"].get("lr", 0.03)})
        ),
    )
    init_names = list(INITS)
    init = doc["model"].get("init", "default")
    st.selectbox(
        "Initialization",
        init_names,
        index=init_names.index(init) if init in init_names else 0,
        key=f"pg_init_{rev}",
        on_change=picked("pg_init", init if init in init_names else init_names[0], lambda i: edited(("model", "init"), i)),
    )
    losses = fitting_losses(regression)
    loss = doc["loss"]["type"]
    st.selectbox(
        "Loss",
        losses,
        index=losses.index(loss) if loss in losses else 0,
        key=f"pg_loss_{rev}",
        on_change=picked("pg_loss", loss if loss in losses else losses[0], lambda x: edited(("loss",), {"type": x})),
    )


def on_event():
    """One of the board's events, carried out before the board's fragment reruns: a run control, a structural edit (which
    starts the network over), or a weight or a point (which go to the running training)."""
    event = (st.session_state.get(BOARD) or {}).get("edit")
    if not isinstance(event, dict):
        return
    kind = event.get("kind")
    doc_now = session.preset()
    try:
        if kind in ("play", "step", "reset"):
            {"play": play, "step": one_step, "reset": stop_run}[kind]()
            st.session_state[HANDLED] = event.get("n")
        elif kind in ("feature", "layers", "units", "activation"):
            restructure(playground.edit(doc_now, event))
        elif kind == "weight":
            value = float(event["value"])
            if value != value or abs(value) == float("inf"):
                raise UserError("weight", "a weight must be a finite number")
            hh, alive = current()
            if not alive:
                hh = start(paused=True)  # an edit of the untrained network: its run starts, paused, from it
            if hh is not None:
                hh.command({"kind": "weight", "layer": int(event["layer"]), "out": int(event["out"]), "in": event.get("in"), "value": value})
        elif kind == "point":
            label = float(event["label"])
            if playground.network(doc_now).features == playground.ONE_D:
                row = [float(event["x"]), 0.0, float(event["y"])]  # a curve's point: [x, 0, y]
            else:
                row = [float(event["x"]), float(event["y"]), label if regression else (1.0 if label > 0 else 0.0)]
            d = json.loads(json.dumps(doc_now))
            d["data"]["points"] = [*d["data"].get("points", []), row]
            validate(d)  # capped by DLVIZ_MAX_SAMPLES
            session.set_preset(d, structural=False)
            hh, alive = current()
            if alive:
                hh.command({"kind": "points", "rows": [row]})  # the running training takes it from its next epoch
    except UserError as err:
        session.report(err)


# While the run trains, the fragment reruns to notice its end; while it is paused and the browser asks for frames itself,
# not at all: the frame requests keep the session alive (frames.py), and a rerun at the moment of a click on the board
# could lose the click's event.
@st.fragment(run_every=(POLLED_REFRESH if frames.served() else LIVE_REFRESH) if playing or (live and not frames.served()) else None)
def board_view():
    runner.touch(bid)
    hh, alive = current()
    if live and not alive:
        st.rerun()  # the run ended: the whole page once more, without the timer
    shown = untrained(json.dumps(session.preset(), sort_keys=True))
    f = shown["frame"]
    if hh is not None and hh.feed.frame is not None:
        f = hh.feed.frame
    if scrub is not None:
        f = snapshot_frame(hh.run_id, scrub, shown["extent"])
    net_now = playground.network(session.preset())
    state = {
        "features": [{"name": n, "on": n in net_now.features, "map": m} for n, m in features_drawn(shown["extent"], shown["dims"] == 1).items()],
        "hidden": [{"units": u, "activation": a} for u, a in net_now.hidden],
        "activations": [playground.LINEAR, *playground.PLAIN_ACTIVATIONS],
        "limits": {"units": limits.current().playground_units, "layers": limits.current().playground_layers},
        "extent": shown["extent"],
        "points": shown["points"],
        "task": shown["task"],
        "dims": shown["dims"],
        "y_extent": shown["y_extent"],
        "show_test": bool(st.session_state.get(SHOW_TEST)),
        "discretize": bool(st.session_state.get(DISCRETIZE)),
        "live": alive and scrub is None,
        "frame_url": f"{frames.PATH}/{hh.run_id}" if alive and frames.served() else "",
        "frame": f,
        "height": 500,
    }
    if frames.served():
        state["controls"] = {"playing": alive and hh.run_event.is_set(), "handled": st.session_state.get(HANDLED), "reset_help": RESET_HELP}
    event = board(state, key=BOARD, on_event=on_event)
    added = session.preset()["data"].get("points")
    if added:
        st.button(f"Remove the {len(added)} added points", on_click=lambda: edited(("data", "points"), []), key="pg_unpoint", icon=":material/backspace:")
    if event is not None:
        session.keep_in_address()
        if event.get("kind") == "sync":  # the board drew the run control's outcome: now the rest of the page follows
            st.rerun()


with board_col:
    board_slot = st.container()
    below = st.columns([1.2, 1, 1.1, 2.2], vertical_alignment="center")
    below[1].checkbox("Show test data", key=SHOW_TEST)
    below[2].checkbox("Discretize output", key=DISCRETIZE)
    steps = []  # the run's checkpoints, read once for the time slider and the hidden-space view
    if h is not None:
        try:
            steps = [int(s) for s in runs.store().checkpoints(h.run_id)["step"]]
        except (UserError, *STORE_ERRORS):
            pass
    scrub = None  # a checkpoint's step picked on the time slider, while the run does not train
    if h is not None and not playing:
        if steps:
            picked = below[3].select_slider(
                "Scrub the run",
                [*steps, "now"],
                value="now",
                key=f"pg_scrub_{h.run_id}_{len(steps)}",  # a new slider when new checkpoints arrive
                format_func=lambda s: "now" if s == "now" else f"step {s:,}",
                help="Scrub back through the run's checkpoints: the network, its maps, the output and the losses as they were",
            )
            scrub = None if picked == "now" else picked
    with board_slot:
        board_view()
    with below[0].popover("Hidden space", icon=":material/scatter_plot:", width="stretch"):
        if not net.hidden:
            st.caption("This network has no hidden layer.")
        else:
            layer = st.selectbox(
                "Layer", range(len(net.hidden)), format_func=lambda i: f"hidden layer {i + 1} ({net.hidden[i][0]} neurons)", key="pg_space_layer"
            )
            step = steps[-1] if steps else None
            fig = space(json.dumps(doc, sort_keys=True), h.run_id if step is not None else None, step, layer, base["extent"])
            st.plotly_chart(fig, width="stretch", config={"displayModeBar": False})
