"""Landscape: optimizers side by side on 2-D test functions, then the network's own loss surface with the path it took."""

import json
import threading
import time

import streamlit as st

from dlviz.analysis import optimizer_lab as landscape
from dlviz.analysis import surface
from dlviz.errors import UserError
from dlviz.figures import landscape as lf
from dlviz.figures import style
from dlviz.preset.registry import OPTIMIZERS
from dlviz.preset.schema import validate
from dlviz_app import runs, session, shared, widgets
from dlviz_app.lab import DEFAULT_TOLERANCE, SUGGESTED, TOLERANCES, default_steps, race_of, suggested
from dlviz_app.text import md

RESOLUTIONS = list(range(11, 102, 10))  # odd, so that the centre is a grid point


def state(name: str, default):
    return st.session_state.setdefault(name, default)


def bump() -> None:
    """Structural change of the optimizer list: widget keys carry the revision so no widget keeps a moved value."""
    st.session_state["ls_rev"] = state("ls_rev", 0) + 1


# ---------------------------------------------------------------- 2-D lab: settings


def optimizers(fn_name: str) -> list[dict]:
    """The session's optimizer list for one function (each function keeps its own)."""
    lists = state("ls_optimizers", {})
    if fn_name not in lists:
        lists[fn_name] = suggested(fn_name)
    return lists[fn_name]


def set_optimizers(fn_name: str, items: list[tuple[str, dict]]) -> None:
    state("ls_optimizers", {})[fn_name] = [{"type": t, "args": dict(a)} for t, a in items]
    bump()


def function_args(fn_name: str) -> dict:
    return state("ls_function_args", {}).setdefault(fn_name, {})


def start_point(fn: landscape.Function2D) -> tuple[float, float]:
    return tuple(state("ls_start", {}).get(fn.name, fn.start))


def set_start(fn_name: str, x: float, y: float) -> None:
    state("ls_start", {})[fn_name] = (float(x), float(y))
    st.session_state["ls_start_rev"] = state("ls_start_rev", 0) + 1


def clicked_start(fn_name: str) -> None:
    """A click on the contour selects one of the invisible grid points: start there."""
    points = st.session_state["ls_contour"].selection.get("points", [])
    grid = [p for p in points if p.get("curve_number") == lf.CLICK_TRACE]
    if grid:
        set_start(fn_name, grid[0]["x"], grid[0]["y"])


def main_args(kind: str) -> list[str]:
    """The arguments shown on an optimizer's row: the learning rate and its momentum (or Adam's betas)."""
    args = OPTIMIZERS[kind].args
    second = next((a for a in ("momentum", "betas", "alpha", "rho") if a in args), None)
    return ["lr"] + ([second] if second else [])


def optimizer_editor(fn_name: str) -> None:
    items = optimizers(fn_name)
    rev = state("ls_rev", 0)
    names = list(OPTIMIZERS)
    for i, item in enumerate(items):
        kind = f"ls_type|{fn_name}|{i}|{rev}"

        def change_type(item=item, kind=kind):
            lr = item["args"].get("lr")
            item["type"], item["args"] = st.session_state[kind], ({"lr": lr} if lr is not None else {})
            bump()

        def arg(name: str, item=item, i=i) -> None:
            spec = OPTIMIZERS[item["type"]].args[name]
            widgets.arg_input(
                name,
                spec,
                item["args"].get(name, spec.default),
                f"ls_arg|{fn_name}|{i}|{item['type']}|{name}|{rev}",
                lambda v: item["args"].__setitem__(name, v),
            )

        with st.container(border=True):
            st.markdown(f":{lf.color_name(i)}[**━━ {md(landscape.optimizer_label(item['type'], item['args']))}**]")
            row = st.columns([3, 3, 3, 1, 1], vertical_alignment="bottom")
            row[0].selectbox("Optimizer", names, index=names.index(item["type"]), key=kind, on_change=change_type, help=OPTIMIZERS[item["type"]].doc)
            shown = main_args(item["type"])
            for col, name in zip(row[1:3], shown):
                with col:
                    arg(name)
            # the other arguments' widgets are made only while the popover is open: closed, it costs nothing
            more = row[3].popover("", icon=":material/more_horiz:", help="More settings", key=f"ls_more|{fn_name}|{i}|{rev}", on_change="rerun")
            with more:
                if more.open:
                    for name in OPTIMIZERS[item["type"]].args:
                        if name not in shown:
                            arg(name)
            row[4].button(
                "",
                key=f"ls_remove|{fn_name}|{i}|{rev}",
                icon=":material/delete:",
                help="Remove",
                on_click=lambda i=i: (items.pop(i), bump()),
                disabled=len(items) == 1,
            )
    add, reset = st.columns(2)
    full = len(items) >= lf.MAX_PATHS
    add.button(
        "Add optimizer",
        icon=":material/add:",
        width="stretch",
        on_click=lambda: (items.append({"type": "Adam", "args": {"lr": 0.05}}), bump()) if len(items) < lf.MAX_PATHS else None,
        disabled=full,
        help=f"At most {lf.MAX_PATHS} optimizers race at once, one colour each: remove one, or change its settings" if full else None,
    )
    reset.button(
        "Suggested settings",
        icon=":material/restart_alt:",
        width="stretch",
        on_click=lambda: set_optimizers(fn_name, SUGGESTED[fn_name]),
        help="SGD, SGD with momentum and Adam with learning rates that suit this function",
    )


@st.cache_data(max_entries=16, show_spinner=False)
def rates(kappa: float, steps: int, start: tuple) -> landscape.RateCheck:
    return landscape.rate_check(kappa, steps, start)


# ---------------------------------------------------------------- 2-D lab: page


def lab() -> None:
    st.caption(
        "Every optimizer is the real torch.optim class, stepping a 2-element parameter from the same start. Click the contour to start "
        f"somewhere else. A path of more than {lf.PATH_DOTS} steps is dotted at evenly spaced steps; point at it to read any step."
    )
    top = st.columns([2, 1, 1, 1, 1, 1])
    fn_name = top[0].selectbox("Function", list(landscape.FUNCTIONS), key="ls_function")
    entry = landscape.FUNCTIONS[fn_name]
    given = function_args(fn_name)
    for arg_name, arg in entry.args.items():
        with top[1]:
            widgets.arg_input(
                "κ (condition number)" if arg_name == "kappa" else arg_name,
                arg,
                given.get(arg_name, arg.default),
                f"ls_fnarg|{fn_name}|{arg_name}",
                lambda v, arg_name=arg_name: given.__setitem__(arg_name, v),
            )
    try:
        fn = landscape.make_function(fn_name, **given)
    except UserError as err:
        st.error(md(err))
        return
    steps = top[2].number_input("Steps", 1, 5000, default_steps(fn_name), 50, key=f"ls_steps|{fn_name}")
    tol = top[3].selectbox(
        "Tolerance",
        TOLERANCES,
        index=TOLERANCES.index(DEFAULT_TOLERANCE),
        key="ls_tol",
        format_func=lambda v: f"{v:g}",
        help="Distance to the nearest minimum that counts as arrived",
    )
    sx, sy = start_point(fn)
    srev = state("ls_start_rev", 0)
    x0 = top[4].number_input("Start x", value=float(sx), format="%.3f", step=0.1, key=f"ls_x0|{fn_name}|{srev}")
    y0 = top[5].number_input("Start y", value=float(sy), format="%.3f", step=0.1, key=f"ls_y0|{fn_name}|{srev}")
    if (x0, y0) != (sx, sy):
        state("ls_start", {})[fn_name] = (x0, y0)
    st.caption(fn.note)

    editor, contour = st.columns([1, 1.25], gap="medium")
    with editor:
        optimizer_editor(fn_name)
    items = optimizers(fn_name)
    try:
        paths = race_of(fn_name, given, (x0, y0), items, steps, tol)
    except UserError as err:
        contour.error(md(err))
        return
    longest = max(t.steps for t in paths)
    with contour:
        upto = st.slider("Show steps up to", 0, max(longest, 1), max(longest, 1), key=f"ls_upto|{fn_name}|{longest}")
        st.plotly_chart(
            lf.lab_contour(fn, paths, upto, (x0, y0)), key="ls_contour", on_select=lambda: clicked_start(fn_name), selection_mode="points", config=style.CONFIG
        )
    for t in paths:
        if t.diverged:
            st.warning(f"{t.label} diverged: {t.reason}. It is drawn until it leaves the plot.", icon=":material/trending_up:")
    # the 3-D view (WebGL, the slowest chart to draw) is drawn only while its tab is open
    loss_tab, surface_tab = st.tabs(["Loss against step", "Surface in 3-D"], key="ls_lab_view", on_change="rerun")
    with loss_tab:
        if loss_tab.open:
            st.plotly_chart(lf.lab_loss(fn, paths, upto), config=style.CONFIG)
    with surface_tab:
        if surface_tab.open:
            st.plotly_chart(lf.lab_surface(fn, paths, upto), config=style.CONFIG)
    st.dataframe(lf.trajectory_table(paths, tol), hide_index=True, width="stretch")
    if fn.eigenvalues is not None:
        momentum_lesson(fn, (x0, y0))


def momentum_lesson(fn: landscape.Function2D, start: tuple) -> None:
    st.subheader("Why momentum works")
    l1, ln = fn.eigenvalues
    kappa = ln / l1
    st.markdown(
        f"On a quadratic whose curvatures run from λ1 = {l1:g} to λn = {ln:g} (κ = {kappa:g}), the best fixed step for "
        "gradient descent, α = 2/(λ1 + λn), shrinks the distance to the minimum by (κ − 1)/(κ + 1) per step. Heavy-ball "
        "momentum with α = (2/(√λ1 + √λn))² and β = ((√λn − √λ1)/(√λn + √λ1))² shrinks it by (√κ − 1)/(√κ + 1): the "
        "square root of the condition number takes its place (Goh, *Why Momentum Really Works*, Distill 2017). "
        "Below, both run as torch.optim.SGD from the start above, and the rate is measured as the geometric mean of "
        "d[k+1]/d[k] over the second half of the run."
    )
    check = rates(kappa, 300, start)
    info, plot = st.columns([1.3, 1])
    with info:
        st.dataframe(lf.rate_table(check), hide_index=True, width="stretch")
        st.caption(
            "At its best β, momentum's error falls as k·rateᵏ (the two roots of its recurrence coincide), so a "
            "finite window reads a little above the rate; the gap shrinks as the run gets longer."
        )
        ga, ma, mb = check.gd_alpha, check.momentum_alpha, check.momentum_beta
        st.button(
            "Race these two",
            icon=":material/sports_score:",
            key="ls_use_best",
            on_click=lambda: set_optimizers(fn.name, [("SGD", {"lr": ga}), ("SGD", {"lr": ma, "momentum": mb})]),
        )
    plot.plotly_chart(lf.rate_figure(check), config=style.CONFIG)


# ---------------------------------------------------------------- the network's surface


def _problem(doc: dict, model_state=None) -> surface.Problem:
    exp = validate(doc)
    if exp.data is None:
        raise UserError("data", "this preset has no data section; a loss surface needs data and a loss")
    return surface.make_problem(exp, model_state, shared.dataset(exp))


def run_surface(run_id: str, step: int, mode: str, radius: float, n: int, seed: int, **report) -> surface.Surface:
    store = runs.store()
    exp = store.experiment(run_id)
    problem = _problem(exp.to_dict(), store.load_checkpoint(run_id, step)["model"])
    steps, snaps = store.trajectory(run_id)
    initial = None
    if mode == "line":
        first = int(store.checkpoints(run_id)["step"].min())
        start = _problem(exp.to_dict(), store.load_checkpoint(run_id, first)["model"])
        initial = start.weights()
    return surface.network_surface(problem, mode, radius, n, initial=initial, steps=steps, snapshots=snaps, center_step=step, seed=seed, **report)


def untrained_surface(preset_json: str, radius: float, n: int, seed: int, **report) -> surface.Surface:
    return surface.network_surface(_problem(json.loads(preset_json)), "random", radius, n, seed=seed, **report)


class Surfaces:
    """The surfaces computed on this server, the last KEEP of them, shared read-only between sessions: a surface seen
    before is drawn at once. (Not st.cache_data, whose cached function could not draw the coarse picture and the
    progress while it computes.)"""

    KEEP = 32

    def __init__(self):
        self.lock = threading.Lock()
        self.kept: dict[tuple, surface.Surface] = {}

    def get(self, key: tuple):
        with self.lock:
            s = self.kept.pop(key, None)
            if s is not None:
                self.kept[key] = s  # the most recently used, the last to go
            return s

    def put(self, key: tuple, s: surface.Surface) -> None:
        with self.lock:
            self.kept.pop(key, None)
            self.kept[key] = s
            while len(self.kept) > self.KEEP:
                del self.kept[next(iter(self.kept))]


@st.cache_resource(show_spinner=False)
def surfaces() -> Surfaces:
    return Surfaces()


def surface_controls(modes: list[str]) -> tuple[str, float, int, int]:
    cols = st.columns([2, 1, 1, 1])
    labels = {"random": "Random plane", "pca": "PCA plane", "line": "Interpolation"}
    mode = cols[0].segmented_control(
        "Surface",
        modes,
        format_func=labels.get,
        default=modes[0],
        key=f"ls_mode|{len(modes)}",
        required=True,
        help="; ".join(f"{labels[m]}: {surface.MODES[m]}" for m in modes),
    )
    if mode == "line":
        n = cols[1].select_slider("Steps from 0 to 1", [10, 20, 40, 60, 100], 40, key="ls_line_n")
        radius = cols[2].slider("Beyond each end", 0.0, 2.0, 0.5, 0.25, key="ls_line_margin")
    else:
        n = cols[1].select_slider("Resolution", RESOLUTIONS, 31, key="ls_res", help="Points per side of the grid")
        if mode == "pca":
            radius = cols[2].slider("Range (× the path's extent)", 0.25, 4.0, 1.25, 0.25, key="ls_pca_range")
        else:
            radius = cols[2].slider("Range", 0.05, 3.0, 1.0, 0.05, key="ls_random_range", help="1 moves each filter by its own norm")
    seed = cols[3].number_input("Direction seed", 0, 2**31 - 1, 0, key="ls_seed", disabled=mode != "random")
    return mode, float(radius), int(n), int(seed)


def draw_surface(s: surface.Surface, slots, note: str) -> None:
    if s.b is None:
        slots[0].plotly_chart(lf.surface_line(s), config=style.CONFIG)
        slots[1].empty()
    else:
        slots[0].plotly_chart(lf.surface_contour(s), config=style.CONFIG)
        slots[1].plotly_chart(lf.surface_3d(s), config=style.CONFIG)
    slots[2].caption(note)


def progressive(compute, key: tuple, mode: str, n: int) -> None:
    """The surface `compute(**report)` gives, drawn as it comes: a coarse picture within about a second, then a progress
    bar until the whole grid replaces it in the same places; a surface seen before is drawn at once."""
    left, right = st.columns(2)
    slots = [left.empty(), right.empty(), st.empty()]
    progress = st.empty()
    size = f"{n}×{n} grid" if mode != "line" else "line"
    try:
        if mode != "line":
            surface.check_grid(n * n)  # before the cache: a result computed under a higher limit is not shown either
        s = surfaces().get(key)
        if s is None:
            started = time.perf_counter()

            def coarse(c: surface.Surface) -> None:
                fewer = f" on the first {c.samples:,} of its {c.samples_asked:,} samples" if c.samples < c.samples_asked else ""
                draw_surface(c, slots, f"A coarse {len(c.a)}×{len(c.a)} grid{fewer} in {c.seconds:.1f} s; computing the {size}…")

            def report(done: int, total: int) -> None:
                eta = f", about {(time.perf_counter() - started) / done * (total - done):.0f} s left" if done else ""
                progress.progress(done / total, text=f"Computing the {size}: {done:,} of {total:,} points{eta}")

            progress.progress(0.0, text=f"Computing the {size}…")
            s = compute(on_coarse=coarse, on_progress=report)
            surfaces().put(key, s)
            progress.empty()
    except UserError as err:
        progress.empty()
        slots[2].error(md(err))
        return
    shape = f"{len(s.a)} points" if s.b is None else f"{n}×{n} grid"
    explained = ""
    if s.explained is not None:
        explained = f" The two axes hold {100 * s.explained.sum():.1f} % of the path's variance."
    elif s.path is not None:
        explained = (
            " Two random directions in a space of many weights are almost at right angles to the path, so it "
            "projects close to the centre; the PCA plane is the one that contains it."
        )
    fewer = (
        (f" (the first {s.samples:,} of {s.samples_asked:,}: more would pass the server's budget of operations for one surface, DLVIZ_MAX_SURFACE_FLOPS)")
        if s.samples < s.samples_asked
        else ""
    )
    draw_surface(
        s,
        slots,
        f"{shape} on a fixed batch of {s.samples:,} training samples{fewer}, model in eval mode, computed in "
        f"{s.seconds:.1f} s. Loss at these weights: {s.center_loss:.5g}.{explained}",
    )


UNTRAINED = ""  # the Run picker's entry for the preset on screen with its initial weights


def network() -> None:
    table = runs.store().runs(runs.browser_id())
    if not len(table):
        st.info(
            "Train first: the Train page runs the preset and saves its checkpoints and path. Meanwhile, here is the "
            "loss around the model's current, untrained weights.",
            icon=":material/model_training:",
        )
        untrained(session.preset())
        return
    # the preset on screen, untrained, unless it has a run: a run of another preset is shown only when picked
    current = runs.current_run_id()
    options = [UNTRAINED, *(str(i) for i in table["id"])]
    titles = {UNTRAINED: "The preset on screen, untrained", **runs.run_titles(table)}
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    run_id = left.selectbox("Run", options, index=options.index(current) if current in options else 0, format_func=titles.get, key="ls_run")
    if run_id == UNTRAINED:
        untrained(session.preset())
        return
    if "another preset" in titles[run_id]:
        st.caption("A run of another preset than the one on screen: the surface is of that run's model.")
    step, _ = runs.pick_checkpoint(run_id, right, "ls")
    if step is None:
        st.info("This run has no checkpoint yet (it saves one when it starts and after every epoch); here is the loss around its model's untrained weights.")
        untrained(runs.store().run(run_id)["preset"])
        return
    mode, radius, n, seed = surface_controls(["random", "pca", "line"])
    progressive(lambda **report: run_surface(run_id, step, mode, radius, n, seed, **report), ("run", run_id, step, mode, radius, n, seed), mode, n)


def untrained(doc: dict) -> None:
    """A random plane around the initial weights of the preset `doc`."""
    mode, radius, n, seed = surface_controls(["random"])
    text = json.dumps(doc, sort_keys=True)
    progressive(lambda **report: untrained_surface(text, radius, n, seed, **report), ("untrained", text, radius, n, seed), mode, n)


# ---------------------------------------------------------------- the page

st.title("Landscape")
lab_tab, net_tab = st.tabs(["Optimizers on 2-D functions", "Your network's loss surface"], key="ls_tab", on_change="rerun")
with lab_tab:
    if lab_tab.open:
        st.fragment(lab)()  # a click or setting in the lab reruns the lab alone, not the sidebar and the page around it
with net_tab:
    if net_tab.open:
        network()
