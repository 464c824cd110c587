"""The Inspect page through Streamlit's AppTest: dense and convolutional presets, a picked unit's receptive field, a
trained run's checkpoints and filters, and the two labs."""

from pathlib import Path

from app_util import by_label
from streamlit.testing.v1 import AppTest
from test_features import DIGITS_CNN

from dlviz.paths import data_dir
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
BROWSER = "inspect-apptest"


def open_inspect(doc=None, browser: str = BROWSER) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["browser_id"] = browser
    at.run()
    if doc is not None:
        at.session_state["preset"] = doc
    at.switch_page("app_pages/inspect.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def text(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info] + [e.value for e in at.error])


def charts(at) -> int:
    return len(at.get("plotly_chart"))


def open_tab(at, name: str) -> AppTest:
    """Open one of Inspect's tabs, as a click on it does: the page then draws that tab alone."""
    # AppTest cannot click a tab: the tab's own key in session state is the only way to open it
    at.session_state["inspect_tab" if "inspect_tab" in at.session_state else "inspect_lab_tab"] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_dense_model_says_feature_maps_do_not_apply():
    at = open_inspect()  # the default preset: an MLP on the spiral
    assert "feature maps do not apply" in text(at)
    assert charts(at) >= 4  # the input and one bar chart per layer
    assert "no receptive field on an image" in text(open_tab(at, "Receptive fields"))
    assert "no filters to draw" in text(open_tab(at, "Filters"))
    assert not at.error


def test_lenet_maps_and_the_receptive_field_of_a_picked_unit():
    at = open_inspect(gallery.raw("lenet5-mnist"))
    assert not at.error
    assert at.session_state["inspect_unit"] == ("model.layers[0]", 0, 14, 14)
    assert "5×5 pixels, rows 12 to 16, columns 12 to 16" in text(at)
    assert "validation sample 0" in text(at)
    # a unit in the corner of the second convolution: its 14-pixel field starts 2 pixels into the padding
    # (a click on a map, which AppTest cannot make, sets these three, as the page's on_select callback does)
    at.session_state["inspect_layer"] = "model.layers[3]"
    at.session_state["inspect_channel"] = 5
    at.session_state["inspect_unit"] = ("model.layers[3]", 5, 0, 9)
    at.run()
    assert not at.exception and not at.error
    assert "14×14 pixels, rows -2 to 11, columns 16 to 29 (dashed" in text(at)
    assert "95% of the gradient lies in" in text(at)
    # another layer chosen in the selectbox starts at its centre unit
    by_label(at.selectbox, "Layer").set_value("model.layers[5]").run()
    assert at.session_state["inspect_unit"] == ("model.layers[5]", 5, 2, 2)
    assert "16×16 pixels, rows 6 to 21" in text(at)
    by_label(at.radio, "Colour scale").set_value("global").run()
    assert not at.exception
    # inputs: a colour sample image becomes a grey, normalized digit-sized input; noise has a seed
    by_label(at.radio, "Input").set_value("Sample image").run()
    by_label(at.selectbox, "Sample image").set_value("astronaut (scikit-image)").run()
    assert "512×512 image resized to 28×28; colour converted to greyscale (luminance); normalized like the mnist" in text(at)
    by_label(at.radio, "Input").set_value("Random noise").run()
    assert "random noise (seed 0)" in text(at)
    assert not at.exception


def test_a_trained_run_its_checkpoints_and_filters():
    exp = validate(DIGITS_CNN)
    store = RunStore(data_dir() / "runs.sqlite")
    run_id = store.create_run(exp, session=BROWSER)
    Trainer(exp, callbacks=[StoreCallback(store, run_id)]).run()
    store.close()
    at = open_inspect()
    by_label(at.radio, "Model").set_value("A training run").run()
    assert not at.exception and not at.error
    assert by_label(at.selectbox, "Run").value == run_id
    ckpt = by_label(at.selectbox, "Checkpoint")
    assert "final" in ckpt.format_func(ckpt.value)
    assert "feature maps do not apply" not in text(at)
    assert at.session_state["inspect_unit"][0] == "model.layers[0]"
    # filters: the initial weights next to the trained ones
    open_tab(at, "Filters")
    assert sum("|w| largest" in c.value for c in at.caption) == 2
    by_label(at.selectbox, "Convolution").set_value("model.layers[2]").run()
    assert not at.exception
    # the initial checkpoint is the untrained model
    by_label(at.selectbox, "Checkpoint").set_value(0).run()
    assert not at.exception and not at.error


def test_convolution_lab():
    at = open_tab(open_inspect(), "Convolution lab")
    by_label(at.number_input, "Padding").set_value(1)
    by_label(at.number_input, "Stride").set_value(2)
    by_label(at.radio, "Direction").set_value("magnitude").run()
    assert not at.exception
    assert "**measured**: 48×48" in text(at) and "= **48** rows" in text(at)  # ⌊(96 + 2 − 2 − 1)/2⌋ + 1
    by_label(at.radio, "Kernel").set_value("Typed").run()
    by_label(at.text_area, "Kernel rows").set_value("1 2\n3").run()
    assert any("different lengths" in e.value for e in at.error)
    by_label(at.text_area, "Kernel rows").set_value("1 1\n1 1")
    by_label(at.number_input, "Dilation").set_value(8).run()
    assert "**measured**: 45×45" in text(at)  # ⌊(96 + 2 − 8 − 1)/2⌋ + 1
    # a 5×5 kernel dilated 8 spans 33 pixels, more than a padded 16×16 image
    by_label(at.text_area, "Kernel rows").set_value("\n".join(["1 1 1 1 1"] * 5))
    by_label(at.slider, "Image size (pixels)").set_value(16).run()
    assert any("the dilated kernel spans 33×33 pixels, more than the padded 18×18 image" in e.value for e in at.error)


def test_the_receptive_field_formula_is_written_for_streamlit_to_render():
    """Subscripts and sums outside $…$ reach the reader as raw markup (∏_{i<l} s_i)."""
    import re

    at = open_tab(open_inspect(DIGITS_CNN), "Receptive fields")
    (formula,) = [m.value for m in at.markdown if "theoretical receptive field" in m.value]
    outside_math = re.sub(r"\$[^$]+\$", "", formula)
    assert "$r_0 = " in formula and not re.search(r"[_{}^\\]", outside_math), formula


def test_a_non_negative_lab_output_is_drawn_on_a_sequential_scale():
    at = open_tab(open_inspect(), "Convolution lab")
    by_label(at.radio, "Direction").set_value("magnitude").run()
    by_label(at.radio, "Kernel").set_value("Typed").run()
    by_label(at.text_area, "Kernel rows").set_value("1 1\n1 1").run()  # a blur: the output is never negative
    assert not at.exception
    out = [c for c in at.get("plotly_chart") if '"Output' in c.proto.spec]
    assert out and all("RdBu" not in c.proto.spec and '"zmin":0' in c.proto.spec.replace(" ", "") for c in out)


def lab_sides(at) -> list:
    """The Activation lab's two sides, left then right: the columns that hold both an Activation and an Init picker."""
    sides = [c for c in at.columns if {"Activation", "Init"} <= {w.label for w in c.selectbox}]
    assert len(sides) == 2, [[w.label for w in c.selectbox] for c in sides]
    return sides


def test_activation_lab():
    at = open_tab(open_inspect(), "Activation lab")
    by_label(at.selectbox, "Highlight").set_value("ReLU")
    left, _ = lab_sides(at)
    by_label(left.selectbox, "Activation").set_value("Tanh")
    by_label(left.selectbox, "Init").set_value("normal").run()
    left, _ = lab_sides(at)
    by_label(left.number_input, "std").set_value(0.01).run()
    assert not at.exception
    assert any("Tanh with normal: std of z" in c.value for c in at.caption)
    assert any("ReLU with kaiming_normal: std of z" in c.value for c in at.caption)


def test_a_model_too_large_to_build_still_has_the_labs():
    at = open_inspect(gallery.raw("alexnet"))
    assert any("parameters" in e.value and "DLVIZ_MAX_TRAIN_PARAMS" in e.value for e in at.error), [e.value for e in at.error]
    assert [t.label for t in at.tabs] == ["Convolution lab", "Activation lab", "Round-off lab"]
    assert "labs work without a model" in text(at)
    assert "Output" in "".join(c.proto.spec for c in at.get("plotly_chart"))  # the convolution lab, open first
    assert not open_tab(at, "Activation lab").exception and any("std of z" in c.value for c in at.caption)


def test_only_the_open_tab_is_computed(monkeypatch):
    """The feature maps are computed for the two tabs that draw them, not for the filters or the labs."""
    from dlviz.analysis import features

    calls = []
    real = features.feature_maps
    monkeypatch.setattr(features, "feature_maps", lambda *a, **k: calls.append(1) or real(*a, **k))
    at = open_inspect(DIGITS_CNN)
    assert len(calls) == 1 and charts(at) > 3
    for tab in ("Filters", "Convolution lab", "Activation lab"):
        at.session_state["inspect_memo"] = {}  # forget the maps: a tab that needed them would compute them again
        open_tab(at, tab)
        assert len(calls) == 1, tab
    open_tab(at, "Receptive fields")
    assert len(calls) == 2 and "theoretical receptive field" in text(at)


def test_inspect_opens_on_the_latest_checkpoint_of_the_preset_s_own_run():
    """Right after a run, Inspect shows its trained weights, not the untrained preset; a run of another preset does not
    change what it opens on."""
    doc = {**DIGITS_CNN, "name": "digits CNN, opened on its run", "training": {"epochs": 1}}
    exp = validate(doc)
    store = RunStore(data_dir() / "runs.sqlite")
    run_id = store.create_run(exp, session=BROWSER)
    Trainer(exp, callbacks=[StoreCallback(store, run_id)]).run()
    store.close()
    at = open_inspect(doc)
    assert by_label(at.radio, "Model").value == "A training run"
    assert by_label(at.selectbox, "Run").value == run_id
    ckpt = by_label(at.selectbox, "Checkpoint")
    assert "final" in ckpt.format_func(ckpt.value)
    other = open_inspect(gallery.raw("xor"))
    assert by_label(other.radio, "Model").value == "This preset, untrained"
