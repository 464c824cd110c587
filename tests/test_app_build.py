"""The app shell and the Build page driven through Streamlit's AppTest: widgets in, summary and errors out."""

import json
from pathlib import Path

import pytest
from app_util import beside, by_label, panel
from streamlit.testing.v1 import AppTest

from dlviz.model.build import summarize
from dlviz.preset import edit, gallery, share
from dlviz.preset.schema import validate

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
TOP = edit.TOP


def total(doc) -> str:
    return f"{summarize(validate(doc)).total_params:,}"


DEFAULT_DOC = gallery.raw(gallery.DEFAULT)


@pytest.fixture
def at():
    app = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not app.exception
    return app


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def button(at, label):
    return by_label(at.button, label)


def arg(at, layer_title, kind, name):
    """The widget of argument `name` in the panel of the layer titled `layer_title` ('[0] Linear'); kind is 'number_input' etc."""
    return by_label(getattr(panel(at, layer_title), kind), name)


def add_with_picker(at, group, type_name, target=TOP):
    by_label(at.selectbox, "Group").set_value(group).run()
    by_label(at.selectbox, "Layer type").set_value(type_name)
    by_label(at.selectbox, "Insert into").set_value(edit.json_path(target))
    button(at, "Add layer").click().run()
    assert not at.exception


def test_the_app_starts_on_the_default_preset(at):
    assert metric(at, "Parameters") == total(DEFAULT_DOC)
    assert at.sidebar.subheader[0].value == DEFAULT_DOC["name"]
    assert [e.label for e in at.expander] == ["[0] Linear 16 → [16]", "[1] Tanh → [16]", "[2] Linear 16 → [16]", "[3] Tanh → [16]", "[4] Linear 2 → [2]"]
    assert not at.error
    assert at.session_state["preset"] == DEFAULT_DOC


def test_adding_a_layer_with_the_picker_changes_the_count(at):
    add_with_picker(at, "dense", "Linear")
    assert metric(at, "Parameters") == total(edit.add_layer(DEFAULT_DOC, TOP, "Linear"))
    assert metric(at, "Parameters") != total(DEFAULT_DOC)
    assert at.expander[-1].label == "[5] Linear 16 → [16]"
    # the rest of the preset, which the Build page does not edit, is kept
    for section in ("data", "loss", "optimizer", "training"):
        assert at.session_state["preset"][section] == DEFAULT_DOC[section]


def test_an_impossible_stack_shows_an_error_at_the_layer_and_no_exception(at):
    add_with_picker(at, "convolution", "Conv2d")
    assert not at.exception
    assert len(at.main.error) == 2  # at the top and in the offending layer
    top, at_layer = (e.value for e in at.main.error)
    # named as the page shows the layer, then its JSON path for the CLI
    assert top.startswith("layer 5, Conv2d 8@3×3 (model.layers[5]): Conv2d") and at_layer in top
    bad = panel(at, "[5] Conv2d 8@3×3")
    assert [e.value for e in bad.error] == [at_layer]
    # the layers before it are still summarised
    assert metric(at, "Parameters") == total(DEFAULT_DOC)
    assert any("before [5]" in w.value for w in at.warning)
    # and deleting it through its own button brings back a clean page
    by_label(bad.button, "Delete").click().run()
    assert not at.error and not at.exception
    assert at.session_state["preset"] == DEFAULT_DOC


def test_editing_an_argument_through_its_widget(at):
    arg(at, "[0] Linear", "number_input", "out_features").set_value(4).run()
    assert at.session_state["preset"]["model"]["layers"][0] == {"type": "Linear", "out_features": 4}
    assert metric(at, "Parameters") == total(edit.set_arg(DEFAULT_DOC, (*TOP, 0), "out_features", 4))
    arg(at, "[0] Linear", "checkbox", "bias").uncheck().run()
    assert at.session_state["preset"]["model"]["layers"][0] == {"type": "Linear", "out_features": 4, "bias": False}
    arg(at, "[0] Linear", "checkbox", "bias").check().run()
    assert "bias" not in at.session_state["preset"]["model"]["layers"][0]  # a default is not written


def test_widgets_do_not_keep_a_moved_or_deleted_layers_value(at):
    arg(at, "[0] Linear", "number_input", "out_features").set_value(5).run()
    by_label(panel(at, "[0] Linear 5").button, "Delete").click().run()
    # layer [1] is now the old [2], which still has 16 features; its widget must show 16, not the deleted 5
    assert arg(at, "[1] Linear", "number_input", "out_features").value == 16
    by_label(panel(at, "[1] Linear").button, "Up").click().run()
    assert arg(at, "[0] Linear", "number_input", "out_features").value == 16
    assert [e.label for e in at.expander][:2] == ["[0] Linear 16 → [16]", "[1] Tanh → [16]"]
    assert not at.exception


def test_a_text_argument_accepts_lists_and_rejects_bad_text(at):
    add_with_picker(at, "shape", "Unflatten")
    box = arg(at, "[5] Unflatten", "text_input", "unflattened_size")
    box.set_value("1, 2, 1").run()
    assert at.session_state["preset"]["model"]["layers"][5]["unflattened_size"] == [1, 2, 1]
    assert metric(at, "Output") == "[1, 2, 1]"
    arg(at, "[5] Unflatten", "text_input", "unflattened_size").set_value("1, two").run()
    assert at.session_state["preset"]["model"]["layers"][5]["unflattened_size"] == [1, 2, 1]
    assert any("whole numbers" in e.value for e in panel(at, "[5] Unflatten").error)
    assert not at.exception


def test_blocks_show_their_children_with_their_own_add_targets(at):
    add_with_picker(at, "blocks", "Residual")

    def add_to(part):
        block = panel(at, "[5] Residual")
        pick = by_label(block.selectbox, f"Add to {part}")
        pick.set_value("Linear")
        beside(block, pick, "Add").click().run()

    add_to("body")
    # body [16] + identity [2] cannot be added: the error is shown at the block
    assert panel(at, "[5] Residual").error[0].value.startswith("Residual: the body gives [16]")
    add_to("shortcut")
    assert not at.error
    doc = at.session_state["preset"]
    assert edit.get(doc, (*TOP, 5)) == {
        "type": "Residual",
        "body": [{"type": "Linear", "out_features": 16}],
        "shortcut": [{"type": "Linear", "out_features": 16}],
    }
    assert metric(at, "Parameters") == total(doc)
    assert panel(at, "[5] Residual").label == "[5] Residual → [16]"
    assert [e.label for e in panel(at, "[5] Residual").expander] == ["[0] Linear 16 → [16]", "[0] Linear 16 → [16]"]


def test_new_empty_model_and_input_shape(at):
    button(at, "New empty model").click().run()
    assert metric(at, "Parameters") == "0"
    assert any("No layers yet" in i.value for i in at.info)
    by_label(at.text_input, "Input shape").set_value("1, 28, 28").run()
    assert metric(at, "Output") == "[1, 28, 28]"
    by_label(at.text_input, "Input shape").set_value("1, a").run()
    assert at.session_state["preset"]["model"]["input_shape"] == [1, 28, 28]
    assert any("whole numbers" in e.value for e in at.main.error)
    assert at.session_state["preset"]["optimizer"] == DEFAULT_DOC["optimizer"]


def test_set_every_activation_and_every_init(at):
    by_label(at.selectbox, "Activation").set_value("GELU")
    button(at, "Set every activation").click().run()
    assert [e.label.split(" ")[1] for e in at.expander] == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    by_label(at.selectbox, "Init").set_value("orthogonal")
    button(at, "Set every init").click().run()
    assert at.session_state["preset"]["model"]["init"] == "orthogonal"


def test_gallery_load_and_download(at):
    by_label(at.sidebar.selectbox, "Gallery").set_value("lenet5-mnist")
    button(at, "Load").click().run()
    assert metric(at, "Parameters") == "61,706"
    assert at.sidebar.subheader[0].value == gallery.raw("lenet5-mnist")["name"]
    assert at.sidebar.get("download_button")


def test_upload_a_preset_and_refuse_a_bad_one(at):
    xor = gallery.raw("xor")
    by_label(at.sidebar.file_uploader, "Open a preset file").set_value(("xor.json", json.dumps(xor).encode(), "application/json")).run()
    assert metric(at, "Parameters") == total(xor)
    assert at.sidebar.subheader[0].value == xor["name"]
    bad = {**xor, "model": {**xor["model"], "layers": [{"type": "Linear", "out_feature": 3}]}}
    by_label(at.sidebar.file_uploader, "Open a preset file").set_value(("bad.json", json.dumps(bad).encode(), "application/json")).run()
    assert [e.value for e in at.sidebar.error] == ["model.layers[0].out_feature: unknown key 'out_feature'; did you mean 'out_features'?"]
    assert at.session_state["preset"]["name"] == xor["name"]  # the current preset is kept
    by_label(at.sidebar.file_uploader, "Open a preset file").set_value(("broken.json", b"{", "application/json")).run()
    assert len(at.sidebar.error) == 1 and at.sidebar.error[0].value.startswith("preset: not valid JSON")
    assert not at.exception


def test_a_share_link_opens_its_preset():
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.query_params[share.PARAM] = share.encode(gallery.load("lenet5-mnist"))
    app.run()
    assert metric(app, "Parameters") == "61,706" and not app.error
    app.run()  # loaded once: later runs keep the session's edits
    assert app.session_state["preset"]["name"] == gallery.raw("lenet5-mnist")["name"]


def test_a_damaged_share_link_says_so_and_opens_the_default():
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.query_params[share.PARAM] = share.encode(gallery.load("lenet5-mnist"))[:-12]
    app.run()
    assert [e.value for e in app.error] == ["share.link: the share link is damaged or cut short; copy it again in full"]
    assert metric(app, "Parameters") == total(DEFAULT_DOC)
    assert not app.exception


def test_each_kind_of_argument_widget_writes_back(at):
    by_label(at.sidebar.selectbox, "Gallery").set_value("lenet5-mnist")
    button(at, "Load").click().run()
    conv = "[0] Conv2d"
    arg(at, conv, "text_input", "kernel_size").set_value("3, 5").run()
    arg(at, conv, "selectbox", "padding_mode").set_value("reflect").run()
    arg(at, conv, "text_input", "padding").set_value("same").run()
    layer = at.session_state["preset"]["model"]["layers"][0]
    assert (layer["kernel_size"], layer["padding_mode"], layer["padding"]) == ([3, 5], "reflect", "same")
    assert panel(at, "[0] Conv2d 6@3×5").label == "[0] Conv2d 6@3×5 → [6, 28, 28]"
    add_with_picker(at, "regularization", "Dropout")
    arg(at, "[12] Dropout", "number_input", "p").set_value(0.25).run()
    assert at.session_state["preset"]["model"]["layers"][12] == {"type": "Dropout", "p": 0.25}
    assert metric(at, "Parameters") == total(at.session_state["preset"])
    assert not at.exception


def test_resnet18_renders_every_nested_block(at):
    by_label(at.sidebar.selectbox, "Gallery").set_value("resnet18")
    button(at, "Load").click().run()
    assert not at.exception and not at.error
    assert metric(at, "Parameters") == "11,689,512"
    doc = at.session_state["preset"]
    # a model this large draws a layer's content only while its expander is open: its blocks' children among them
    assert len(at.expander) == len(edit.layer_items(doc, TOP))
    at.session_state[panel(at, "[5] Sequential").key] = True  # the person opens stage 2, then its first block
    at.run()
    at.session_state[panel(at, "[0] Residual → [128, 28, 28]").key] = True
    at.run()
    assert not at.exception
    downsample = panel(at, "[0] Residual → [128, 28, 28]")
    assert [e.label for e in downsample.expander] == [
        "[0] Conv2d 128@3×3 /2 → [128, 28, 28]",
        "[1] BatchNorm2d → [128, 28, 28]",
        "[2] ReLU → [128, 28, 28]",
        "[3] Conv2d 128@3×3 → [128, 28, 28]",
        "[4] BatchNorm2d → [128, 28, 28]",
        "[0] Conv2d 128@1×1 /2 → [128, 28, 28]",
        "[1] BatchNorm2d → [128, 28, 28]",
    ]


def test_undo_and_redo_take_back_delete_new_empty_model_set_every_activation_and_argument_edits(at):
    assert button(at, "Undo").disabled and button(at, "Redo").disabled
    steps = [DEFAULT_DOC]
    arg(at, "[0] Linear", "number_input", "out_features").set_value(5).run()
    steps.append(at.session_state["preset"])
    by_label(panel(at, "[0] Linear").button, "Delete").click().run()
    steps.append(at.session_state["preset"])
    by_label(at.selectbox, "Activation").set_value("GELU")
    button(at, "Set every activation").click().run()
    steps.append(at.session_state["preset"])
    button(at, "New empty model").click().run()
    steps.append(at.session_state["preset"])
    assert not at.session_state["preset"]["model"]["layers"]
    for want in reversed(steps[:-1]):
        button(at, "Undo").click().run()
        assert at.session_state["preset"] == want
    assert button(at, "Undo").disabled
    # the restored layer's widgets show its own values again
    assert arg(at, "[0] Linear", "number_input", "out_features").value == DEFAULT_DOC["model"]["layers"][0]["out_features"]
    for want in steps[1:]:
        button(at, "Redo").click().run()
        assert at.session_state["preset"] == want
    assert button(at, "Redo").disabled
    button(at, "Undo").click().run()
    assert not button(at, "Redo").disabled
    by_label(at.selectbox, "Activation").set_value("ReLU")
    button(at, "Set every activation").click().run()
    assert button(at, "Redo").disabled  # a new edit starts a new future
    assert not at.exception


def test_undo_history_is_bounded(at):
    from dlviz_app import session

    for n in range(session.HISTORY + 10):
        arg(at, "[0] Linear", "number_input", "out_features").set_value(n + 2).run()
    assert len(at.session_state["undo"]) == session.HISTORY
    while not button(at, "Undo").disabled:
        button(at, "Undo").click().run()
    assert at.session_state["preset"]["model"]["layers"][0]["out_features"] == 11


def test_set_every_activation_asks_before_putting_softmax_on_every_hidden_layer(at):
    by_label(at.selectbox, "Activation").set_value("Softmax")
    button(at, "Set every activation").click().run()
    assert at.session_state["preset"] == DEFAULT_DOC  # nothing changed yet
    assert any("Softmax on every hidden layer" in w.value for w in at.warning)
    button(at, "Cancel").click().run()
    assert at.session_state["preset"] == DEFAULT_DOC and not at.warning
    button(at, "Set every activation").click().run()
    button(at, "Put Softmax on every hidden layer").click().run()
    assert [e.label.split(" ")[1] for e in at.expander] == ["Linear", "Softmax", "Linear", "Softmax", "Linear"]
    assert not at.warning and not at.exception
