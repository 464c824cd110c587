"""Inspect's probabilities, Equivariance tab and Round-off lab through Streamlit's AppTest."""

import base64
import json

import numpy as np
from app_util import by_label
from test_app_inspect import open_inspect, open_tab, text

from dlviz.preset import gallery


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _values(v) -> list:
    """A trace's numbers as plotly writes them: a list, or a typed array (base64 bytes and a dtype)."""
    return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist() if isinstance(v, dict) else list(v)


def _titled(at, start: str) -> list[dict]:
    return [f for f in _figures(at) if f.get("layout", {}).get("title", {}).get("text", "").startswith(start)]


def test_a_classifier_shows_its_softmax_probabilities_with_class_names():
    at = open_inspect(gallery.raw("cnn-digits"))
    assert not at.error
    (fig,) = _titled(at, "Probabilities")
    bars = fig["data"][0]
    assert _values(bars["x"]) == [str(d) for d in range(10)]
    probs = _values(bars["y"])
    assert abs(sum(probs) - 1) < 1e-9 and min(probs) > 0
    assert "softmax turns them into these probabilities" in text(at)


def test_the_shift_sliders_and_the_correlation_of_each_layer():
    at = open_tab(open_inspect(gallery.raw("lenet5-mnist")), "Equivariance")
    assert not at.error
    by_label(at.slider, "Shift right (pixels)").set_value(2).run()
    by_label(at.slider, "Shift down (pixels)").set_value(2).run()
    assert not at.exception and not at.error
    (fig,) = _titled(at, "Per layer: correlation")
    names, r = _values(fig["data"][0]["x"]), _values(fig["data"][0]["y"])
    assert names[0].startswith("layers[0] Conv2d") and names[5].startswith("layers[5] AvgPool2d") and len(names) == 12
    # the first convolution (stride 1) moves with the shift (zero padding differs at the borders only); the second
    # pooling's maps (stride 4) cannot move by half a position, nor can the vectors after Flatten
    assert r[0] > 0.95 and max(r[5:11]) < r[0] - 0.1
    assert _titled(at, "Maps of the shifted input") and _titled(at, "Maps of the input, moved by (2, 2)") and _titled(at, "Input shifted by (2, 2)")
    assert "Correlation" in [m.label for m in at.metric]


def test_the_round_off_lab_overflows_the_naive_softmax():
    at = open_tab(open_inspect(gallery.raw("cnn-digits")), "Round-off lab")
    assert not at.warning
    at.select_slider(key="roundoff_scale").set_value(1000).run()
    assert not at.exception
    assert "lost the numbers" in at.warning[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["−log(naive softmax)[true]"] == "nan" and metrics["nn.CrossEntropyLoss"] == metrics["−(z − logsumexp(z))[true]"]
    assert "first fails at ×45" in text(at)


def test_the_train_page_says_where_init_from_weights_come_from():
    from streamlit.testing.v1 import AppTest
    from test_app_inspect import APP

    doc = gallery.raw("transfer-finetune")
    doc["init_from"] = {"run": "20990101-000000-abcdef"}
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["browser_id"] = "train-init-from"
    at.run()
    at.session_state["preset"] = doc
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("no run with id 20990101-000000-abcdef in the run store" in w.value for w in at.warning), [w.value for w in at.warning]
    # a run that is there: the caption names it and the layers that start new
    from test_transfer import CNN, _doc

    from dlviz.preset.schema import validate
    from dlviz.training.store import RunStore, StoreCallback
    from dlviz.training.trainer import Trainer

    store, exp = RunStore(), validate(_doc())
    rid = store.create_run(exp, status="running")
    Trainer(exp, [StoreCallback(store, rid)]).run()
    head = [dict(layer) for layer in CNN]
    head[5]["out_features"] = 4
    at.session_state["preset"] = _doc(head, classes=(5, 6, 7, 8), init_from={"run": rid})
    at.run()
    assert not at.exception and not at.warning
    want = f"Starts from run {rid} at epoch 2: copied layers[0], layers[3].layers[0]; new (initialized as the preset says): layers[5]."
    assert any(c.value == want for c in at.caption), [c.value for c in at.caption]


def test_build_freezes_a_layer_and_counts_its_frozen_parameters():
    from app_util import panel
    from streamlit.testing.v1 import AppTest
    from test_app_inspect import APP

    at = AppTest.from_file(str(APP), default_timeout=90)
    at.session_state["browser_id"] = "build-trainable"
    at.run()
    at.session_state["preset"] = gallery.raw("transfer-scratch")
    at.run()
    trainable = lambda: next(m.value for m in at.metric if m.label == "Trainable")  # noqa: E731
    assert trainable() == "57,221"
    assert "trainable" not in [c.label for c in panel(at, "[1] ReLU").checkbox]  # no weights to freeze
    by_label(panel(at, "[0] Conv2d").checkbox, "trainable").uncheck().run()
    assert not at.exception
    assert at.session_state["preset"]["model"]["layers"][0]["trainable"] is False
    assert trainable() == f"{57_221 - (32 * 25 + 32):,}"
    # the summary table (the Build page's): a frozen column, only in a model that has frozen parameters
    from dlviz.figures.build import summary_frame
    from dlviz.model.build import summarize
    from dlviz.preset.schema import validate

    frame = summary_frame(summarize(validate(at.session_state["preset"])))
    assert frame["frozen"].iloc[0] == 832 and frame["frozen"].iloc[-1] == 832  # the layer and the total
    assert "frozen" not in summary_frame(summarize(validate(gallery.raw("transfer-scratch"))))


def test_probabilities_of_a_table_this_server_does_not_hold_are_named_by_number():
    doc = gallery.raw("xor")
    doc["data"] = {"name": "csv", "source": "not-uploaded-here.csv", "target": "y"}
    at = open_inspect(doc)  # asserts the page raised nothing
    assert not at.exception
