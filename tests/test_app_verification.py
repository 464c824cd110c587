"""The Vision page's Verification tab through Streamlit's AppTest: a triplet-loss run's embedding, the distances of its
held-out digits' pairs, and the threshold slider moving the point on the ROC curve; one sentence for any other preset."""

import copy
import json

import pytest
from app_util import by_label, open_page, stored_run
from streamlit.testing.v1 import AppTest

from dlviz.analysis import verification as ver
from dlviz.data.datasets import left_out_images
from dlviz.preset import gallery

BROWSER = "verification-apptest"


def short_lesson() -> dict:
    doc = copy.deepcopy(gallery.raw("verification-triplet"))
    doc["name"] = "Siamese net, a short run"
    doc["data"]["subset"], doc["training"]["epochs"] = 600, 2
    return doc


def open_tab(doc) -> AppTest:
    return open_page("app_pages/vision.py", BROWSER, doc, {"vision_tab": "Verification"})


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


@pytest.fixture(scope="module")
def trained():
    doc = short_lesson()
    run_id, tr = stored_run(doc, BROWSER)
    return doc, run_id, tr


def test_a_trained_embedding_its_pairs_and_the_roc_point(trained):
    doc, run_id, tr = trained
    at = open_tab(doc)
    assert by_label(at.selectbox, "Weights").value == run_id
    embedding, distances, roc = charts(at)
    legend = [t["name"] for t in embedding["data"]]
    assert legend == [*map(str, range(8)), "8 (held out)", "9 (held out)"]
    assert [t["name"] for t in distances["data"]] == ["same digit (1,000 pairs)", "different digits (1,000 pairs)"]
    # the page's AUC is the engine's, on the run's final weights and the held-out digits' pairs
    x, digits = left_out_images(tr.exp.data)
    v = ver.verify(ver.embed(tr.model, x), digits)
    assert metric(at, "AUC") == f"{v.roc.auc:.3f}"
    assert roc["data"][1]["name"] == f"ROC (AUC {v.roc.auc:.3f})"
    slider = by_label(at.slider, "Distance threshold")
    slider.set_value(0.0).run()
    assert (metric(at, "True positive rate"), metric(at, "False positive rate"), metric(at, "Accuracy")) == ("0.0%", "0.0%", "50.0%")
    point = charts(at)[2]["data"][2]
    assert (point["x"], point["y"]) == ([0.0], [0.0])
    middle = float(v.distances.mean())
    by_label(at.slider, "Distance threshold").set_value(middle).run()
    got = ver.at_threshold(v.distances, v.pairs.same, by_label(at.slider, "Distance threshold").value)
    point = charts(at)[2]["data"][2]
    assert (point["x"], point["y"]) == ([got["fpr"]], [got["tpr"]]) and 0 < got["fpr"] < got["tpr"] < 1
    assert metric(at, "Accuracy") == f"{got['accuracy']:.1%}"


def test_a_preset_that_is_not_a_triplet_model_gets_one_sentence():
    at = open_tab(gallery.raw("cnn-digits"))
    assert [i.value for i in at.info] == [
        "This preset is not a triplet-loss model: load the gallery's Siamese net (a triplet loss on the digits 0 to 7) to verify unseen digits here."
    ]
    assert not at.get("plotly_chart")


def test_the_untrained_lesson_draws_too():
    at = open_tab(short_lesson() | {"name": "an untried copy"})
    by_label(at.selectbox, "Weights").set_value("This preset, untrained").run()
    assert not at.exception and len(at.get("plotly_chart")) == 3
    assert "untrained" in charts(at)[0]["layout"]["title"]["text"]


def test_a_triplet_preset_that_cannot_train_or_keeps_no_validation_images_says_so():
    doc = short_lesson()
    doc["model"]["layers"][-1]["out_features"] = 1
    at = open_tab(doc)
    assert len(at.error) == 1 and "embedding vector of 2 or more numbers" in at.error[0].value and "Fix the preset on Build" in at.error[0].value
    doc = short_lesson()
    doc["data"]["val_fraction"] = 0
    at = open_tab(doc)
    assert [i.value for i in at.info] == ["This preset keeps no validation images (val_fraction is 0): set one on Train to draw its embedding."]
    assert not at.get("plotly_chart")
