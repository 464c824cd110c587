"""Train: pick the data, loss, optimizer and regularization, press Train, and watch the network learn live."""

import contextlib
import time

import streamlit as st

from dlviz import export
from dlviz.data import uploads
from dlviz.data.datasets import describe, read_csv_table
from dlviz.errors import UserError, clip
from dlviz.figures import train as tf
from dlviz.preset import options, sections
from dlviz.preset.diff import SHORT, differences
from dlviz.preset.edit import name_layers
from dlviz.preset.options import DATA_ARGS, DATASETS, SEED, TRAINING
from dlviz.preset.registry import LOSSES, OPTIMIZERS, SCHEDULES
from dlviz.preset.schema import DataSpec, validate
from dlviz.text import clean
from dlviz.training import fit as fitting
from dlviz.training import transfer
from dlviz.training.diagnose import diagnose, score_lines
from dlviz.training.live import LiveFeed, snapshot_from_store
from dlviz.training.store import LIVE, STORE_ERRORS
from dlviz_app import runs, session, widgets
from dlviz_app.livechart import live_chart, watch  # the charts redrawn while a run trains: updated in place in the browser
from dlviz_app.text import md

REFRESH = 0.2  # seconds between redraws of the progress, loss and accuracy while training (5 Hz asked)
SLOW_REFRESH = 1.0  # the boundary, the per-layer charts and the diagnoses: once a second is enough to read them
STALL = 30  # seconds without a redraw of a live view after which the browser reloads the page (livechart.watch)
DONE = ("finished", "stopped", "diverged", "failed", "interrupted")

doc = session.preset()
rev = session.rev()
bid = runs.browser_id()
runner = runs.runner()
runner.touch(bid)


def edit(fn, *args, structural=False):
    """A widget callback: apply one sections.* edit to the session's preset."""
    session.apply(fn, *args, structural=structural)


# ---------------------------------------------------------------- controls

st.title("Train")
store_problem = runs.store_problem()
if store_problem:  # a full disk or a read-only data directory: nothing here can be trained or saved until it is fixed
    st.error(md(store_problem), icon=":material/database:")
    st.stop()
if doc.get("look_at"):
    st.info(md(doc["look_at"]), icon=":material/visibility:")
controls, main = st.columns([1, 2.4], gap="large")

hide = set(session.hidden("controls"))  # classroom mode

with controls:
    if runner.active(bid):
        st.info("A run is training: settings changed here apply to the next run, not to the one on the charts.", icon=":material/info:")

    def option_input(data: dict, key: str, arg):
        """The widget of one data option, showing what training uses: the preset's value or the catalog's default."""
        widgets.arg_input(key, arg, data.get(key, options.default(data["name"], key)), f"tr-data-{key}-{rev}", lambda v: edit(sections.set_data_option, key, v))

    def csv_file(data: dict) -> tuple[dict, bytes | None]:
        """The CSV uploader and the column picker; the data section after an upload, and the file's bytes."""
        if data.get("source"):  # the uploader forgets its file when the page's widgets are rebuilt; the preset does not
            st.caption(f"In use: **{md(uploads.shown_name(data['source']))}**. Upload another file to replace it.")
        up = st.file_uploader("Replace the CSV file" if data.get("source") else "CSV file", type=["csv", "tsv", "txt"], key=f"tr-csv-{rev}")
        if up is not None:
            try:
                name = uploads.upload_name(up.getvalue(), up.name, bid)
                if name != data.get("source"):
                    session.set_preset(sections.set_data_option(session.preset(), "source", name), structural=False)
                    data = session.preset()["data"]
            except UserError as err:
                st.error(md(err))
        if not data.get("source"):
            return data, None
        try:
            csv_bytes = uploads.read(data["source"])
            cols = list(read_csv_table(csv_bytes).columns)
            wkey = f"tr-data-target-{rev}"
            st.selectbox(
                "Column to predict",
                cols,
                index=cols.index(data["target"]) if data.get("target") in cols else None,
                key=wkey,
                on_change=lambda: edit(sections.set_data_option, "target", st.session_state[wkey]),
                placeholder="choose the target column",
                format_func=lambda c: clean(clip(c)),
            )
            return data, csv_bytes
        except UserError as err:
            st.error(md(err))
            return data, None

    def data_section():
        data = doc.get("data") or {}
        with st.expander("Data", expanded=True, icon=":material/dataset:"):
            names = list(DATASETS)
            if not data:
                st.info(
                    "**Architecture only.** This preset has no data section: it can be built, summarised and inspected, "
                    "but training needs data. Choose a dataset to add one.",
                    icon=":material/architecture:",
                )
                st.selectbox(
                    "Add data",
                    names,
                    index=None,
                    placeholder="choose a dataset",
                    key=f"tr-add-data-{rev}",
                    on_change=lambda: edit(sections.set_dataset, st.session_state[f"tr-add-data-{rev}"], structural=True),
                )
                return
            current = data.get("name")
            st.selectbox(
                "Dataset",
                names,
                index=names.index(current) if current in names else 0,
                key=f"tr-data-{rev}",
                on_change=lambda: edit(sections.set_dataset, st.session_state[f"tr-data-{rev}"], structural=True),
            )
            entry = DATASETS.get(current)
            if entry is None:
                return
            st.caption(entry.doc)
            for key, arg in entry.args.items():
                if arg.widget not in ("upload", "column"):  # a CSV's file and column: csv_file draws them
                    option_input(data, key, arg)
            data, csv_bytes = csv_file(data) if current == "csv" else (data, None)
            for key, arg in DATA_ARGS.items():
                option_input(data, key, arg)
            try:
                info = describe(DataSpec.model_validate(data), csv_bytes)
                shape, task, classes, _ = info
                what = f"{classes} classes" if task == "classification" else "regression"
                st.caption(f"Input {list(shape)} per sample · {what}")
                if list(shape) != doc["model"]["input_shape"]:
                    st.warning(f"The model takes {md(doc['model']['input_shape'])} but this data gives {list(shape)}.")

                def fit():
                    try:
                        new, msg = fitting.fit_model_to_data(session.preset(), csv_bytes)
                        session.set_preset(new)
                        st.session_state[session.NOTICE + "_ok"] = msg
                    except UserError as err:
                        session.report(err)

                st.button(
                    "Fit the model to the data",
                    on_click=fit,
                    help="set the input shape and the last Linear's size (and flatten images for a model that starts "
                    "with Linear); nothing changes unless the model can then take the data",
                )
                if st.session_state.get(session.NOTICE + "_ok"):
                    st.success(md(st.session_state.pop(session.NOTICE + "_ok")))
            except Exception as err:  # the options may be mid-edit; the Train button reports problems as one sentence
                if isinstance(err, UserError):
                    st.caption(md(err))

    if "data" not in hide:
        data_section()
        doc = session.preset()  # an upload changes the preset

    def typed_section(section, table, label, icon, optional=False):
        part = doc.get(section)
        if section in hide:
            return
        with st.expander(label, expanded=section != "schedule", icon=icon):
            options = ([None] if optional else []) + list(table)
            cur = part.get("type") if part else None
            wkey = f"tr-{section}-type-{rev}"
            st.selectbox(
                label,
                options,
                index=options.index(cur) if cur in options else 0,
                key=wkey,
                format_func=lambda v: "none" if v is None else v,
                label_visibility="collapsed",
                on_change=lambda: edit(sections.set_typed, section, st.session_state[wkey], structural=True),
            )
            if part and part.get("type") in table:
                entry = table[part["type"]]
                st.caption(entry.doc)
                for key, arg in entry.args.items():
                    widgets.arg_input(
                        key,
                        arg,
                        part.get(key, None if arg.required else arg.default),
                        f"tr-{section}-{key}-{rev}",
                        lambda v, key=key: edit(sections.set_typed_arg, section, key, v),
                    )

    if not doc.get("loss"):
        session.set_preset(sections.set_typed(doc, "loss", "CrossEntropyLoss"), structural=False)
        doc = session.preset()
    if not doc.get("optimizer"):
        session.set_preset(sections.set_typed(doc, "optimizer", "Adam"), structural=False)
        doc = session.preset()
    typed_section("loss", LOSSES, "Loss", ":material/functions:")
    typed_section("optimizer", OPTIMIZERS, "Optimizer", ":material/speed:")
    typed_section("schedule", SCHEDULES, "Learning-rate schedule", ":material/schedule:", optional=True)

    def training_section():
        with st.expander("Training and regularization", expanded=True, icon=":material/tune:"):
            tr = doc.get("training") or {}
            fields = {"epochs": TRAINING["epochs"], "seed": SEED, **TRAINING}  # the seed beside the epochs
            numbers = [(key, arg) for key, arg in fields.items() if arg.kind != "object"]
            cols = st.columns(2)
            for i, (key, arg) in enumerate(numbers):
                with cols[i % 2]:
                    value = doc.get("seed", arg.default) if key == "seed" else tr.get(key, arg.default)
                    widgets.arg_input(key, arg, value, f"tr-train-{key}-{rev}", lambda v, key=key: edit(sections.set_training, key, v))
            st.caption(
                "L1 and L2 add λ₁·Σ|w| and λ₂·Σw² to the loss (weights, not biases), so their gradient passes through the "
                "optimizer: Adam rescales it like any other gradient. The optimizer's weight_decay shrinks the weights in the update "
                "step instead; in AdamW that decay is decoupled from Adam's scaling. Both together give an elastic net."
            )
            for key, arg in fields.items():
                if arg.kind == "object":
                    widgets.arg_input(key, arg, tr.get(key, arg.default), f"tr-train-{key}-{rev}", lambda v, key=key: edit(sections.set_training, key, v))

    if "training" not in hide:
        training_section()


# ---------------------------------------------------------------- run controls


def start(resume_from=None):
    try:
        if resume_from:
            exp = runs.store().experiment(resume_from)
        else:
            exp = fitting.trainable(session.preset(), _csv(session.preset()))
        h = runner.start(exp, bid, csv_bytes=_csv(exp.to_dict()), resume=(resume_from, None) if resume_from else None, address=runs.client_address())
        if resume_from and resume_from == runs.picked():
            runs.pick(h.run_id)  # continuing a run picked from another preset: its continuation stays on view after it ends
        else:
            st.session_state[runs.RUN_ID] = h.run_id
    except UserError as err:
        session.report(err)


def compare_labels(table) -> dict:
    """Run id -> a label that tells runs apart: name, start time, short preset hash and the fields that differ."""
    diffs = differences(list(table["preset"]))
    return {r.id: f"{r.name} · {r.created:%H:%M:%S} · #{r.preset_hash[:SHORT]}" + (f" · {d}" if d else "") for r, d in zip(table.itertuples(), diffs)}


def _csv(d):
    data = d.get("data") or {}
    return uploads.read(data.get("source")) if data.get("name") == "csv" else None


rid = runs.current_run_id()
handle = runner.handle(rid) if rid else None
live = handle is not None and handle.alive
# a run that trains in another server sharing this run store (DLVIZ_DATABASE_URL): its charts follow the store
shown = runs.store().run(rid) if rid is not None else None
elsewhere = shown is not None and not live and shown["status"] in LIVE
warming = not runner.ready.is_set()


def run_label(run: dict) -> str:
    """Which run this is: its preset's name, when it started and the short hash of its preset."""
    return f"«{clean(clip(run['name'] or 'Untitled'))}», started {time.strftime('%H:%M:%S', time.localtime(run['created']))} · #{run['preset_hash'][:SHORT]}"


with main:
    if shown is not None:
        if shown["preset_hash"] != runs.current_hash():
            st.warning(f"Showing a run of another preset: {run_label(shown)}. Its charts are not those of the preset on screen.", icon=":material/history:")
            st.button("Back to this preset", on_click=runs.pick, args=(None,), icon=":material/undo:")
        else:
            st.caption(f"This preset's run {run_label(shown)}.")
        if elsewhere:
            st.caption("This run trains on another server of this demo: its charts follow the run store, once a second.")
        if shown.get("parent"):
            st.caption(f"Continues run {shown['parent']} from its checkpoint at step {shown['parent_step']:,}; the charts and counts are the whole run's.")
    else:
        earlier = runs.store().runs(bid)
        if len(earlier):
            st.caption("No run of this preset yet.")
            st.selectbox(
                "Show an earlier run",
                list(earlier["id"]),
                index=None,
                placeholder="an earlier run, of another preset",
                key=f"tr-pick-{len(earlier)}",
                format_func=lambda r: clean(compare_labels(earlier).get(r, r)),
                on_change=lambda: runs.pick(st.session_state[f"tr-pick-{len(earlier)}"]),
            )
    if session.preset().get("init_from"):  # where the starting weights come from, or why they cannot
        try:
            st.caption(md(transfer.plan(validate(session.preset()), runs.store()).message()))
        except UserError as err:
            st.warning(md(err), icon=":material/link_off:")


def controls():
    """Train, Pause or Resume, Stop and Continue. They sit in the live fragment (view_fast), so that a click reruns the
    fragment alone: Pause and Stop show their new state at once, instead of after a run of the whole page. A run
    started here (Train, Continue) sets the page's timers, so it reruns the whole page."""
    if runs.current_run_id() != rid:
        st.rerun()
    b1, b2, b3, b4 = st.columns([1.2, 1, 1, 2])
    b1.button(
        "Train",
        type="primary",
        icon=":material/play_arrow:",
        on_click=start,
        disabled=live or not doc.get("data"),
        width="stretch",
        help=None if doc.get("data") else "architecture only: add data to train it",
    )
    if live and handle.feed.status == "paused":
        b2.button("Resume", icon=":material/play_circle:", on_click=handle.resume, width="stretch")
    else:
        b2.button("Pause", icon=":material/pause:", on_click=handle.pause if live else None, disabled=not live, width="stretch")
    if elsewhere:  # the server training it stops it at its next heartbeat, within HEARTBEAT_SECONDS
        b3.button("Stop", icon=":material/stop:", on_click=runs.store().ask_stop, args=(rid,), width="stretch", help="the run trains on another server")
    else:
        b3.button("Stop", icon=":material/stop:", on_click=(lambda: runner.stop(rid, block=False)) if live else None, disabled=not live, width="stretch")
    if rid and not live and runs.store().continuable(rid):
        b4.button("Continue this run", icon=":material/resume:", on_click=start, args=(rid,), help="start a new run from this run's last checkpoint")


@st.cache_data(max_entries=16, show_spinner=False)
def stored_snapshot(run_id: str, updated: float) -> dict:
    return snapshot_from_store(runs.store(), run_id)


def chart(fig, key):
    st.plotly_chart(fig, key=key, width="stretch", config={"displayModeBar": False})


def snapshot():
    """What to draw: the live feed of this session's run, or the stored run; None before the first run."""
    runner.touch(bid)
    rid = runs.current_run_id()
    if rid is None:
        return None
    h = runner.handle(rid)
    if h is not None:
        if live and not h.alive:
            st.rerun()  # the run ended: redraw the whole page once, without the timers
        return h.feed.snapshot()
    run = runs.store().run(rid)
    if run["status"] in LIVE:
        with contextlib.suppress(*STORE_ERRORS):
            runs.store().show(rid)  # the server training it keeps it for this browser, which moved here
    if elsewhere and run["status"] not in LIVE:
        st.rerun()  # the other server's run ended (or was taken for interrupted): redraw once, without the timers
    return stored_snapshot(rid, run["updated"])


def view_fast():
    """The run's controls, progress, loss and accuracy: redrawn every REFRESH seconds while a run trains."""
    if warming and runner.ready.is_set() and not live:
        st.rerun()  # the workers are ready: redraw the whole page once, without the timer
    controls()
    snap = snapshot()
    if snap is None:
        if runner.ready.is_set():
            st.info("Press **Train** to start. The charts fill in as the network learns.", icon=":material/play_arrow:")
        else:
            st.caption("Starting the training workers: this takes a few seconds after the server starts.")
        # the empty charts are drawn before the first run, so pressing Train only updates them (the browser has
        # loaded the charting code already and keeps the same chart elements)
        snap = LiveFeed().snapshot()
    else:
        done, total = snap["steps_done"], max(snap["total_steps"], 1)
        eta = f" · about {snap['eta']:.0f} s left" if snap.get("eta") and snap["status"] == "running" else ""
        st.progress(min(done / total, 1.0), text=f"{snap['status']} · epoch {len(snap['epochs'])} · step {done:,} of {total:,}{eta}")
        if snap["status"] in ("diverged", "failed"):
            st.error(md(snap["reason"] or snap["status"]))
        elif snap["reason"]:
            st.caption(md(snap["reason"]))
    watch(max(STALL, 20 * REFRESH * slower) if live else 0)
    c1, c2 = st.columns(2)
    with c1:
        live_chart(tf.loss_figure.spec(snap), "loss")
    with c2:
        live_chart(tf.metric_figure.spec(snap), "metric")


def view_slow():
    """Decision boundary, diagnoses, evaluation, per-layer charts and histograms: redrawn once a second."""
    snap = snapshot()
    if snap is None:
        return
    if not len(snap["step"]) and snap["status"] in ("starting", "queued", "running"):
        # nothing measured yet: the per-layer charts appear with the first steps, a second later at most
        st.caption("The decision boundary, the diagnoses and the per-layer charts appear with the first steps.")
        return
    if snap.get("boundary") is not None:
        c1, _ = st.columns(2)
        with c1:
            live_chart(tf.boundary_figure.spec(snap["boundary"], snap.get("points"), snap["task"]), "boundary")
    c1, c2 = st.columns(2)
    with c1:
        for line in score_lines(snap):  # the penalty beside the data loss, and the test split's score
            st.caption(md(line))
        st.markdown("**Diagnoses**")
        ev = snap.get("evaluation") or {}
        classes = len(ev["classes"]) if "classes" in ev else None
        if classes is None and snap["task"] == "classification":
            try:
                classes = describe(DataSpec.model_validate(doc["data"]))[2]
            except Exception:  # data options mid-edit: the diagnosis of the initial loss waits
                classes = None
        found = diagnose(snap, classes)
        for d in found:
            # layers named as Build shows them, when the run is of the preset on screen
            text = d.text if runs.picked() else name_layers(doc, d.text)
            {"ok": st.success, "warning": st.warning, "problem": st.error}[d.level](f"**{d.title}.** {text}")
        if not found:
            st.caption("Nothing to report yet.")
    with c2:
        if ev and "confusion" in ev:
            live_chart(tf.confusion_figure.spec(ev), "confusion")
        elif ev and "note" in ev:
            st.caption(ev["note"])
        elif ev:
            live_chart(tf.fit_figure.spec(ev), "fit")
        else:
            st.caption("The confusion matrix or the fit appears after the first epoch.")
    c1, c2 = st.columns(2)
    with c1:
        live_chart(tf.grad_norm_figure.spec(snap), "grad")
        live_chart(tf.grad_by_layer_figure.spec(snap), "grad_layer")  # the same norms against depth: the vanishing slope
    with c2:
        live_chart(tf.update_ratio_figure.spec(snap), "ratio")
        live_chart(tf.lr_figure.spec(snap), "lr")
    c1, c2 = st.columns(2)
    with c1:
        live_chart(tf.unit_health_figure.spec(snap), "health")
    with c2:
        tensors = [n for n in snap["param_names"] if not n.rsplit(".", 1)[-1].startswith("bias")]
        if tensors and snap.get("telemetry"):
            pick = st.selectbox("Histogram of", tensors, key="hist-tensor", label_visibility="collapsed")
            which = st.radio("values", ["weight", "grad"], horizontal=True, key="hist-which", label_visibility="collapsed")
            live_chart(tf.histogram_figure.spec(snap, pick, which), "hist")


with main:
    slower = runs.redraw_factor(runner)  # set when the page runs in full: when Train is pressed, and when the run ends
    # each fragment sits alone in a container the full run draws. When a fragment's rerun starts before the server has
    # sent the last full run, Streamlit drops that run's unsent elements of the fragment (the rerun redraws them); had
    # the two fragments been siblings, the second would then arrive before the first and the browser would fail with
    # "Bad delta path index" (seen with eight sessions training)
    fast_box, slow_box = st.container(), st.container()
    with fast_box:
        st.fragment(run_every=REFRESH * slower if live or warming else SLOW_REFRESH if elsewhere else None)(view_fast)()
    with slow_box:
        st.fragment(run_every=SLOW_REFRESH * slower if live or elsewhere else None)(view_slow)()


# ---------------------------------------------------------------- compare and export

st.divider()
mine = runs.store().runs(bid)
if len(mine):
    st.subheader("Compare runs")
    # the widget keeps its selection as the option labels, so a label must not change while the run list stays the
    # same: the status (which does change) is left to the chart legends
    labels = compare_labels(mine)
    legends = {r.id: f"{r.name} · {r.status} · {r.created:%H:%M:%S} · #{r.preset_hash[:SHORT]}" for r in mine.itertuples()}
    # keyed by the list of runs: a new run makes a new selection (the three newest), instead of reusing a widget state
    # whose options have changed under it
    picked = st.multiselect(
        "Runs",
        list(labels),
        default=list(labels)[: min(3, len(labels))],
        format_func=lambda r: clean(labels.get(r, r)),
        key=f"compare-{len(labels)}-{next(iter(labels))}",
    )
    if picked:
        records = {legends[r]: runs.store().epochs(r).to_dict("records") for r in picked if r in legends}
        keys = [
            k for k in ("val_loss", "train_loss", "val_accuracy", "val_r2", "val_auc", "val_map") if any(k in (e[0] if e else {}) for e in records.values())
        ]
        cols = st.columns(2)
        for i, key in enumerate(keys[:4]):
            with cols[i % 2]:
                chart(tf.compare_figure(records, key), f"compare-{key}")
if rid:
    st.subheader("Export this run")
    run_exp = runs.store().experiment(rid)
    e1, e2, e3, e4, e5 = st.columns(5)
    # the files are made when a button is clicked (a callable `data`), not on every rerun of the page
    e1.download_button(
        "Metrics (CSV)", lambda: runs.store().export_csv(rid), file_name=f"run-{rid}.csv", mime="text/csv", on_click="ignore", icon=":material/table:"
    )
    try:
        text = export.script(run_exp, f"run-{rid}.py")
        e2.download_button(
            "PyTorch script",
            text,
            file_name=f"run-{rid}.py",
            mime="text/x-python",
            on_click="ignore",
            icon=":material/code:",
            help="a standalone script (PyTorch and the data code, no dlviz) that reproduces this run exactly",
        )
        if run_exp.init_from is not None:  # the script reads them from a file beside it
            e2.download_button(
                "Starting weights",
                lambda: export.state_dict_bytes(export.init_weights(run_exp, rid)),
                file_name=export.init_file(f"run-{rid}.py"),
                on_click="ignore",
                icon=":material/download:",
                help="the weights init_from starts this run from: save them beside the script, which loads them",
            )
    except UserError as err:
        e2.caption(md(err))
    if len(runs.store().checkpoints(rid)):
        weights = lambda: runs.store().load_checkpoint(rid)["model"]  # noqa: E731
        e3.download_button(
            "Weights (safetensors)",
            lambda: export.safetensors_bytes(weights()),
            file_name=f"run-{rid}.safetensors",
            on_click="ignore",
            icon=":material/download:",
        )
        e4.download_button(
            "Weights (state dict)",
            lambda: export.state_dict_bytes(weights()),
            file_name=f"run-{rid}.pt",
            on_click="ignore",
            icon=":material/download:",
            help="load with torch.load(path, weights_only=True)",
        )
        if e5.button("Make ONNX", icon=":material/deployed_code:", help="export the trained model and check it in onnxruntime"):
            import tempfile

            with tempfile.TemporaryDirectory() as d:
                path = f"{d}/model.onnx"
                try:
                    report = export.onnx(run_exp, path, state_dict=weights())
                    st.session_state["onnx"] = (rid, open(path, "rb").read(), report)
                except UserError as err:
                    st.session_state[session.NOTICE] = str(err)
        made = st.session_state.get("onnx")
        if made and made[0] == rid:
            e5.download_button("Download ONNX", made[1], file_name=f"run-{rid}.onnx", on_click="ignore", icon=":material/download:")
    else:
        e3.caption("The weights can be downloaded once the run has saved a checkpoint (after its first epoch).")
