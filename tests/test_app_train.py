"""The Train page through Streamlit's AppTest: controls edit the preset, Train runs it, problems are one sentence."""

import time
from pathlib import Path

import pytest
import torch
from app_util import by_label, panel
from streamlit.testing.v1 import AppTest

from dlviz.preset.options import DATASETS
from dlviz_app import runs

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"


@pytest.fixture
def at():
    assert runs.runner().ready.wait(180), "the training workers did not start"
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    app.switch_page("app_pages/train.py").run()
    assert not app.exception
    return app


def button(at, label):
    return by_label(at.button, label)


def live_charts(at) -> dict:
    """The Train page's live charts (updated in place in the browser): key -> the Plotly figure each one draws."""
    import json

    out = {}
    for e in at.get("bidi_component"):
        if e.proto.component_name == "dlviz.live_chart":
            out[e.proto.id.rsplit("-", 1)[-1]] = json.loads(json.loads(e.proto.json)["figure"])
    return out


def wait_for_run(at, timeout=120):
    rid = at.session_state[runs.RUN_ID]
    h = runs.runner().handle(rid)
    t0 = time.time()
    while h.alive and time.time() - t0 < timeout:
        time.sleep(0.1)
    assert not h.alive
    return h


def train_to_the_end(at):
    """Press Train, wait for the run to finish and draw the page once more; the run's handle."""
    button(at, "Train").click().run()
    assert not at.exception and not at.error
    h = wait_for_run(at)
    assert h.feed.status == "finished", h.feed.reason
    at.run()
    assert not at.exception
    return h


def test_train_page_opens_on_a_preset_that_trains(at):
    assert button(at, "Train").proto.type == "primary"
    # the start message, or while the server's workers warm up, a caption saying so
    assert any("Press **Train**" in i.value for i in at.info) or any("Starting the training workers" in c.value for c in at.caption)
    assert at.session_state["preset"]["data"]["name"] == "spiral"


def test_pressing_train_runs_the_preset_and_shows_its_charts(at):
    train_to_the_end(at)
    text = " ".join(p.proto.text for p in at.get("progress"))
    assert "finished" in text and "step 1,500 of 1,500" in text
    charts = live_charts(at)
    assert {"loss", "metric", "boundary", "confusion", "grad", "grad_layer", "ratio", "health", "hist"} <= set(charts)
    assert charts["loss"]["layout"]["title"]["text"] == "Loss" and len(charts["loss"]["data"]) == 3  # batch, train, validation
    assert charts["boundary"]["data"][0]["type"] == "heatmap"
    assert any(m.value.startswith("**Initial loss.**") for m in list(at.success) + list(at.warning))
    downloads = {d.proto.label for d in at.get("download_button")}
    assert {"Metrics (CSV)", "PyTorch script", "Weights (safetensors)", "Weights (state dict)"} <= downloads


def test_a_loss_that_cannot_fit_is_one_sentence(at):
    by_label(panel(at, "Loss").selectbox, "Loss").set_value("MSELoss").run()
    assert at.session_state["preset"]["loss"] == {"type": "MSELoss"}
    button(at, "Train").click().run()
    assert not at.exception
    assert any("MSELoss on 2-class labels" in e.value for e in at.error)


def test_switching_the_dataset_keeps_the_split_and_drops_what_no_longer_applies(at):
    by_label(panel(at, "Data").selectbox, "Dataset").set_value("digits").run()
    data = at.session_state["preset"]["data"]
    assert data["name"] == "digits" and "noise" not in data and data["batch_size"] == 32
    assert any("set it to [1, 8, 8]" in w.value or "this data gives [1, 8, 8]" in w.value for w in at.warning)
    button(at, "Fit the model to the data").click().run()
    assert at.session_state["preset"]["model"]["input_shape"] == [1, 8, 8]


def test_redraws_slow_down_only_when_more_runs_train_than_there_are_cores():
    from types import SimpleNamespace

    from dlviz_app.runs import redraw_factor

    def runner(n):
        return SimpleNamespace(active=lambda: [object()] * n)

    assert [redraw_factor(runner(n), cores=2) for n in (0, 1, 2, 3, 4, 5, 8, 9)] == [1, 1, 1, 2, 2, 4, 4, 8]
    assert redraw_factor(runner(8), cores=8) == 1


def _index_gaps(deltas) -> list[list[int]]:
    """Elements the browser could not place: an index past the end of a parent block (its "Bad delta path index").
    A block sent again starts empty; a parent never sent here (the page's roots) may hold anything from before."""
    children: dict[tuple, int] = {}
    gaps = []
    for m in deltas:
        kind = m.delta.WhichOneof("type")
        if kind not in ("new_element", "add_block"):
            continue
        path = tuple(m.metadata.delta_path)
        parent, i = path[:-1], path[-1]
        if parent in children:
            if i > children[parent]:
                gaps.append(list(path))
            children[parent] = max(children[parent], i + 1)
        if kind == "add_block":
            children[path] = 0
    return gaps


def test_a_fragment_rerun_that_overtakes_the_full_run_leaves_no_gap_in_the_page(at, monkeypatch):
    """When a fragment's rerun starts before the server has sent the last full run, Streamlit drops that run's unsent
    elements of the fragment (the rerun redraws them). What is still sent must be a page the browser can build: the
    live views sat side by side once, and eight sessions training at once met "Bad delta path index" in the browser."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
    from streamlit.runtime.scriptrunner_utils.script_run_context import ScriptRunContext

    sent = []
    enqueue = ScriptRunContext.enqueue

    def record(self, msg):
        copy = ForwardMsg()
        copy.CopyFrom(msg)
        sent.append(copy)
        enqueue(self, msg)

    monkeypatch.setattr(ScriptRunContext, "enqueue", record)
    button(at, "Train").click().run()  # a full run with a run training: both live views on their timers
    runs.runner().stop(at.session_state[runs.RUN_ID])
    deltas = [m for m in sent if m.WhichOneof("type") == "delta"]
    fragments = {m.delta.fragment_id for m in deltas} - {""}
    assert len(fragments) == 2 and not _index_gaps(deltas)
    for fragment in fragments:
        queue = ForwardMsgQueue()
        for m in deltas:
            queue.enqueue(m)
        queue.clear(retain_lifecycle_msgs=True, fragment_ids_this_run=[fragment])
        kept = queue.flush()
        assert len(kept) < len(deltas)
        assert not _index_gaps(kept), f"after dropping fragment {fragment}'s elements, the browser cannot place {_index_gaps(kept)}"


def test_a_failed_run_with_checkpoints_offers_continue_and_continues(at):
    """A worker killed for memory leaves a failed run whose checkpoints are intact: Continue starts from the last one."""
    from dlviz.preset.schema import validate
    from dlviz.training.trainer import Trainer

    store = runs.store()
    exp = validate({**at.session_state["preset"], "training": {"epochs": 2}})
    at.session_state["preset"] = exp.to_dict()  # the page shows the runs of the preset on screen
    rid = store.create_run(exp, "someone", status="running")
    store.save_checkpoint(rid, Trainer(exp).state(), "initial")
    store.set_status(
        rid, "failed", "the training process was killed, most likely for lack of memory, at batch size 32: try a smaller batch size or a smaller model"
    )
    at.session_state[runs.RUN_ID] = rid
    at.run()
    assert not at.exception
    assert any("lack of memory, at batch size 32" in e.value for e in at.error)
    button(at, "Continue this run").click().run()
    assert not at.exception and at.session_state[runs.RUN_ID] != rid
    h = wait_for_run(at)
    assert h.feed.status == "finished", h.feed.reason
    failed = store.create_run(exp, "someone", status="failed")  # failed before its first checkpoint: nothing to continue
    at.session_state[runs.RUN_ID] = failed
    at.run()
    assert not any(b.label == "Continue this run" for b in at.button)


def test_a_second_browser_from_the_same_address_is_refused_with_the_limit(at, monkeypatch):
    from dlviz.preset.schema import validate

    monkeypatch.setenv("DLVIZ_MAX_RUNS_PER_ADDRESS", "1")
    monkeypatch.setattr(runs, "client_address", lambda: "198.51.100.20")
    other = runs.runner().start(validate({**at.session_state["preset"], "training": {"epochs": 1000}}), "another browser", address="198.51.100.20")
    try:
        button(at, "Train").click().run()
        assert not at.exception
        refused = [e.value.replace("\\", "") for e in at.error]
        assert any("limit per address is 1, DLVIZ_MAX_RUNS_PER_ADDRESS" in e for e in refused), refused
        assert runs.RUN_ID not in at.session_state or at.session_state[runs.RUN_ID] != other.run_id
    finally:
        runs.runner().stop(other.run_id)


def headless_run(doc: dict, browser: str) -> str:
    """A short run of `doc`, trained here and written to the app's run store as `browser`'s run."""
    from dlviz.preset.schema import validate
    from dlviz.training.store import StoreCallback
    from dlviz.training.trainer import Trainer

    exp = validate(doc)
    rid = runs.store().create_run(exp, session=browser)
    Trainer(exp, [StoreCallback(runs.store(), rid)]).run()
    return rid


def short(doc: dict, **training) -> dict:
    return {**doc, "training": {**(doc.get("training") or {}), "epochs": 2, **training}}


def test_a_new_preset_shows_its_own_run_or_none_and_another_preset_s_run_only_when_picked(at):
    """Train the spiral, then Load XOR: the page is XOR's and empty, not the spiral's curves under XOR's title; the
    spiral's run is shown when picked, labelled as another preset's; loading the spiral again brings its run back."""
    from dlviz.preset import gallery

    spiral = short(at.session_state["preset"])
    at.session_state["preset"] = spiral
    at.run()
    rid = headless_run(spiral, at.session_state["browser_id"])
    at.session_state[runs.RUN_ID] = None  # as after a reload: the page finds the run by its preset
    at.run()
    assert not at.exception and at.session_state[runs.RUN_ID] == rid
    assert any("This preset's run" in c.value for c in at.caption)
    assert len(live_charts(at)["loss"]["data"][0]["x"]) > 0

    by_label(at.sidebar.selectbox, "Gallery").set_value("xor")
    button(at, "Load").click().run()
    assert not at.exception and at.session_state["preset"]["name"] == gallery.raw("xor")["name"]
    assert at.session_state[runs.RUN_ID] is None
    assert any("Press **Train**" in i.value for i in at.info)
    assert any(c.value == "No run of this preset yet." for c in at.caption)
    assert all(len(t.get("x") or []) == 0 for t in live_charts(at)["loss"]["data"])
    assert not any(b.label == "Continue this run" for b in at.button)

    pick = by_label(at.selectbox, "Show an earlier run")
    pick.set_value(rid).run()
    assert not at.exception and at.session_state[runs.RUN_ID] == rid
    assert any("Showing a run of another preset" in w.value and spiral["name"] in w.value for w in at.warning)
    button(at, "Back to this preset").click().run()
    assert at.session_state[runs.RUN_ID] is None and not any("another preset" in w.value for w in at.warning)

    by_label(at.sidebar.selectbox, "Gallery").set_value(gallery.DEFAULT)
    button(at, "Load").click().run()
    assert at.session_state[runs.RUN_ID] is None  # the gallery's spiral has 400 epochs: not the 2-epoch run's preset
    at.session_state["preset"] = spiral
    at.run()
    assert at.session_state[runs.RUN_ID] == rid and not any("another preset" in w.value for w in at.warning)


def test_compare_labels_tell_runs_apart_by_time_preset_hash_and_the_fields_that_differ(at):
    from dlviz.preset.diff import preset_hash
    from dlviz.preset.schema import validate

    base = short(at.session_state["preset"])
    other = {**base, "optimizer": {**base["optimizer"], "lr": 0.5}}
    for doc in (base, other):
        headless_run(doc, at.session_state["browser_id"])
    at.session_state["preset"] = other
    at.run()
    assert not at.exception
    compare = by_label(at.multiselect, "Runs")
    labels = [compare.format_func(o) for o in compare.options]
    assert len(set(labels)) == 2
    for doc, lr in ((base, base["optimizer"]["lr"]), (other, 0.5)):
        label = next(t for t in labels if f"#{preset_hash(validate(doc))[:6]}" in t)
        assert f"optimizer.lr {lr:g}" in label
    assert not any(t.endswith("· 202612") for t in labels)


def test_an_architecture_only_preset_says_so_and_offers_to_add_data(at):
    from dlviz.preset import gallery

    at.session_state["preset"] = gallery.raw("resnet18")
    at.run()
    assert not at.exception
    assert any("Architecture only" in i.value for i in at.info)
    assert button(at, "Train").disabled
    add = by_label(at.selectbox, "Add data")
    assert add.value is None  # no dataset shown as if it were the preset's
    add.set_value("digits").run()
    assert not at.exception and at.session_state["preset"]["data"] == {"name": "digits"}
    assert not any("Architecture only" in i.value for i in at.info) and not button(at, "Train").disabled


def test_the_csv_in_use_is_named_after_an_edit_rebuilds_the_uploader(at):
    from test_data import IRIS_LIKE

    from dlviz.data import uploads

    source = uploads.upload_name(IRIS_LIKE, "iris.csv", at.session_state["browser_id"])
    doc = {**at.session_state["preset"], "data": {"name": "csv", "source": source, "target": "species"}}
    at.session_state["preset"] = doc
    at.session_state["rev"] += 1  # as after a structural edit: every widget of the page is new
    at.run()
    assert not at.exception
    assert any("In use: **iris.csv**" in c.value for c in at.caption)
    assert any(u.label == "Replace the CSV file" for u in at.get("file_uploader"))


def test_settings_say_they_apply_to_the_next_run_while_a_run_trains(at):
    at.session_state["preset"] = {**at.session_state["preset"], "training": {"epochs": 1000}}
    at.run()
    assert not any("apply to the next run" in i.value for i in at.info)
    button(at, "Train").click().run()
    try:
        assert any("apply to the next run" in i.value for i in at.info)
    finally:
        runs.runner().stop(at.session_state[runs.RUN_ID])
    wait_for_run(at)
    at.run()
    assert not any("apply to the next run" in i.value for i in at.info)


def test_a_classroom_lesson_opens_on_its_own_run_or_none(at):
    """A lesson whose classroom section hides the gallery and the data: another preset's run, newer than any of the
    lesson's, is not shown under the lesson's title."""
    from dlviz.preset import gallery

    lesson = short(gallery.raw("vanishing-sigmoid"))
    lesson["classroom"] = {"hide_controls": ["gallery", "data"]}
    other = short(at.session_state["preset"])
    headless_run(other, at.session_state["browser_id"])
    at.session_state["preset"] = lesson
    at.session_state[runs.RUN_ID] = None
    at.run()
    assert not at.exception and at.session_state[runs.RUN_ID] is None
    assert any("Press **Train**" in i.value for i in at.info)
    mine = headless_run(lesson, at.session_state["browser_id"])
    at.run()
    assert at.session_state[runs.RUN_ID] == mine and any("This preset's run" in c.value for c in at.caption)


def test_continuing_a_run_picked_from_another_preset_keeps_its_continuation_on_view(at):
    from dlviz.preset.schema import validate
    from dlviz.training.store import StoreCallback
    from dlviz.training.trainer import Trainer

    other = short(at.session_state["preset"], epochs=4)
    exp = validate(other)
    rid = runs.store().create_run(exp, session=at.session_state["browser_id"])
    trainer = Trainer(exp, [StoreCallback(runs.store(), rid)])
    trainer.stop_after_steps = 2 * trainer.steps_per_epoch + 3
    trainer.run()
    at.session_state["preset"] = short(at.session_state["preset"], epochs=3)  # another preset on screen
    at.run()
    assert at.session_state[runs.RUN_ID] is None
    by_label(at.selectbox, "Show an earlier run").set_value(rid).run()
    button(at, "Continue this run").click().run()
    assert not at.exception
    h = wait_for_run(at)
    assert h.feed.status == "finished", h.feed.reason
    at.run()
    assert at.session_state[runs.RUN_ID] == h.run_id
    assert any("Showing a run of another preset" in w.value for w in at.warning)
    assert any("finished · epoch 4 ·" in p.proto.text for p in at.get("progress"))


def data_widgets(at) -> list:
    """Every input widget of the Data panel."""
    box = panel(at, "Data")
    return [*box.number_input, *box.slider, *box.selectbox, *box.multiselect, *box.checkbox]


@pytest.mark.parametrize("name", ["tokens", *[n for n in DATASETS if n != "tokens"]])
def test_each_dataset_s_widgets_show_what_training_uses(at, name):
    """Switching the dataset shows its options at the values the data layer uses when the preset leaves them out."""
    from dlviz.data.datasets import describe, load_dataset, option
    from dlviz.preset.options import DATA_ARGS
    from dlviz.preset.schema import DataSpec

    by_label(panel(at, "Data").selectbox, "Dataset").set_value(name).run()
    assert not at.exception
    data = at.session_state["preset"]["data"]
    assert data["name"] == name
    spec = DataSpec.model_validate({**data, "target": "y"} if name == "csv" else data)
    shown = data_widgets(at)
    for key, arg in {**DATASETS[name].args, **DATA_ARGS}.items():
        if arg.widget in ("upload", "column"):  # a CSV's file and column are picked, not set
            continue
        if arg.kind == "points":  # clicked onto the Playground's plane: counted here, not typed
            assert any(c.value.startswith(f"{arg.label}: 0") for c in panel(at, "Data").caption), (name, key)
            continue
        if arg.kind == "object":  # one widget a field, each at the field's default
            for field, sub in arg.fields.items():
                assert by_label(shown, sub.label).value == sub.default, (name, key, field)
            assert option(spec, key) is None
            continue
        value = option(spec, key)
        if value is None and arg.kind == "choices":  # a multiselect left empty stands for the option left out
            value = []
        assert by_label(shown, arg.label).value == value, (name, key)
    if name == "tokens":  # and those values are the data training gets
        ds = load_dataset(spec, 0)
        widget = lambda label: by_label(shown, label).value  # noqa: E731
        assert describe(spec) == (ds.input_shape, ds.task, ds.num_classes, ds.target_shape)
        assert len(ds.x_train) + len(ds.x_val) == widget("Samples")
        assert ds.input_shape == (widget("Sequence length"),) and ds.num_classes == widget("Vocabulary")
        assert torch.equal(ds.y_train, ds.x_train.flip(1)) and widget("Task") == "reverse"


def test_the_training_panel_shows_the_preset_s_values_and_the_defaults_of_the_rest(at):
    from dlviz.preset.options import SEED, TRAINING
    from dlviz.preset.schema import validate

    exp = validate(at.session_state["preset"])
    box = panel(at, "Training")
    shown = [*box.number_input, *box.checkbox]
    assert by_label(shown, SEED.label).value == exp.seed
    for key, arg in TRAINING.items():
        if arg.kind == "object":
            assert by_label(shown, arg.label).value == (getattr(exp.training, key) is not None)
        else:
            assert by_label(shown, arg.label).value == getattr(exp.training, key), key
    by_label(shown, "Early stopping").check().run()
    assert at.session_state["preset"]["training"]["early_stopping"] == {}
    patience = by_label(panel(at, "Training").number_input, "Patience (epochs)")
    assert patience.value == TRAINING["early_stopping"].fields["patience"].default
    patience.set_value(3).run()
    assert at.session_state["preset"]["training"]["early_stopping"] == {"patience": 3}
    assert validate(at.session_state["preset"]).training.early_stopping.patience == 3
