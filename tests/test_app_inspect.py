"""The Inspect page through Streamlit's AppTest: dense and convolutional presets, a picked unit's receptive field, a
trained run's checkpoints and filters, and the two labs."""
from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_features import DIGITS_CNN

from dlviz.paths import data_dir
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

APP = Path(__file__).resolve().parent.parent / "app.py"
BROWSER = "inspect-apptest"


def open_inspect(doc=None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["browser_id"] = BROWSER
    at.run()
    if doc is not None:
        at.session_state["preset"] = doc
    at.switch_page("app_pages/inspect.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def text(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
                    + [e.value for e in at.error])


def charts(at) -> int:
    return len(at.get("plotly_chart"))


def open_tab(at, name: str) -> AppTest:
    """Open one of Inspect's tabs, as a click on it does: the page then draws that tab alone."""
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
    at.session_state["inspect_layer"] = "model.layers[3]"
    at.session_state["inspect_channel"] = 5
    at.session_state["inspect_unit"] = ("model.layers[3]", 5, 0, 9)
    at.run()
    assert not at.exception and not at.error
    assert "14×14 pixels, rows -2 to 11, columns 16 to 29 (dashed" in text(at)
    assert "95% of the gradient lies in" in text(at)
    # another layer chosen in the selectbox starts at its centre unit
    at.selectbox(key="inspect_layer").set_value("model.layers[5]").run()
    assert at.session_state["inspect_unit"] == ("model.layers[5]", 5, 2, 2)
    assert "16×16 pixels, rows 6 to 21" in text(at)
    at.radio(key="inspect_scale").set_value("global").run()
    assert not at.exception
    # inputs: a colour sample image becomes a grey, normalized digit-sized input; noise has a seed
    at.radio(key="inspect_source").set_value("Sample image").run()
    at.selectbox(key="inspect_sample").set_value("astronaut (scikit-image)").run()
    assert "512×512 image resized to 28×28; colour converted to greyscale (luminance); normalized like the mnist" in text(at)
    at.radio(key="inspect_source").set_value("Random noise").run()
    assert "random noise (seed 0)" in text(at)
    assert not at.exception


def test_a_trained_run_its_checkpoints_and_filters():
    exp = validate(DIGITS_CNN)
    store = RunStore(data_dir() / "runs.sqlite")
    run_id = store.create_run(exp, session=BROWSER)
    Trainer(exp, callbacks=[StoreCallback(store, run_id)]).run()
    store.close()
    at = open_inspect()
    at.radio(key="inspect_model_source").set_value("A training run").run()
    assert not at.exception and not at.error
    assert at.selectbox(key="inspect_run").value == run_id
    ckpt = at.selectbox(key=f"inspect_ckpt|{run_id}")
    assert "final" in ckpt.format_func(ckpt.value)
    assert "feature maps do not apply" not in text(at)
    assert at.session_state["inspect_unit"][0] == "model.layers[0]"
    # filters: the initial weights next to the trained ones
    open_tab(at, "Filters")
    assert sum("|w| largest" in c.value for c in at.caption) == 2
    at.selectbox(key="inspect_filter_layer").set_value("model.layers[2]").run()
    assert not at.exception
    # the initial checkpoint is the untrained model
    at.selectbox(key=f"inspect_ckpt|{run_id}").set_value(0).run()
    assert not at.exception and not at.error


def test_convolution_lab():
    at = open_tab(open_inspect(), "Convolution lab")
    at.number_input(key="lab_padding").set_value(1)
    at.number_input(key="lab_stride").set_value(2)
    at.radio(key="lab_direction").set_value("magnitude").run()
    assert not at.exception
    assert "**measured**: 48×48" in text(at) and "= **48** rows" in text(at)  # ⌊(96 + 2 − 2 − 1)/2⌋ + 1
    at.radio(key="lab_family").set_value("Typed").run()
    at.text_area(key="lab_kernel").set_value("1 2\n3").run()
    assert any("different lengths" in e.value for e in at.error)
    at.text_area(key="lab_kernel").set_value("1 1\n1 1")
    at.number_input(key="lab_dilation").set_value(8).run()
    assert "**measured**: 45×45" in text(at)  # ⌊(96 + 2 − 8 − 1)/2⌋ + 1
    # a 5×5 kernel dilated 8 spans 33 pixels, more than a padded 16×16 image
    at.text_area(key="lab_kernel").set_value("\n".join(["1 1 1 1 1"] * 5))
    at.slider(key="lab_size").set_value(16).run()
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
    at.radio(key="lab_direction").set_value("magnitude").run()
    at.radio(key="lab_family").set_value("Typed").run()
    at.text_area(key="lab_kernel").set_value("1 1\n1 1").run()  # a blur: the output is never negative
    assert not at.exception
    out = [c for c in at.get("plotly_chart") if '"Output' in c.proto.spec]
    assert out and all("RdBu" not in c.proto.spec and '"zmin":0' in c.proto.spec.replace(" ", "") for c in out)


def test_activation_lab():
    at = open_tab(open_inspect(), "Activation lab")
    at.selectbox(key="act_highlight").set_value("ReLU")
    at.selectbox(key="act_a").set_value("Tanh")
    at.selectbox(key="init_a").set_value("normal").run()
    at.number_input(key="std_a").set_value(0.01).run()
    assert not at.exception
    assert any("Tanh with normal: std of z" in c.value for c in at.caption)
    assert any("ReLU with kaiming_normal: std of z" in c.value for c in at.caption)


def test_a_model_too_large_to_build_still_has_the_labs():
    at = open_inspect(gallery.raw("alexnet"))
    assert any("parameters" in e.value and "DLVIZ_MAX_TRAIN_PARAMS" in e.value for e in at.error), [e.value for e in at.error]
    assert [t.label for t in at.tabs] == ["Convolution lab", "Activation lab"]
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
    assert at.radio(key="inspect_model_source").value == "A training run"
    assert at.selectbox(key="inspect_run").value == run_id
    ckpt = at.selectbox(key=f"inspect_ckpt|{run_id}")
    assert "final" in ckpt.format_func(ckpt.value)
    other = open_inspect(gallery.raw("xor"))
    assert other.radio(key="inspect_model_source").value == "This preset, untrained"
