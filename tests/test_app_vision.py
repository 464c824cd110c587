"""The Vision page through Streamlit's AppTest: IoU of two boxes typed in (the element's own drags are covered by
test_browser_vision.py), and a trained detector's boxes, NMS at two thresholds and its mAP."""

import copy
from pathlib import Path

import pytest
from app_util import by_label
from streamlit.testing.v1 import AppTest

from dlviz.analysis import detection
from dlviz.data.datasets import load_dataset
from dlviz.paths import data_dir
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
BROWSER = "vision-apptest"


def small_detector() -> dict:
    doc = copy.deepcopy(gallery.raw("detection-yolo"))
    doc["name"] = "tiny YOLO, a short run"
    doc["data"]["num_samples"] = 300
    doc["training"]["epochs"] = 2
    return doc


def open_vision(doc=None, tab=None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["browser_id"] = BROWSER
    at.run()
    if doc is not None:
        at.session_state["preset"] = doc
    at.switch_page("app_pages/vision.py").run()
    if tab is not None:
        at.session_state["vision_tab"] = tab  # AppTest cannot click a tab: its key in session state opens it
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


def set_box(at, name: str, box) -> AppTest:
    for coord, v in zip(("x1", "y1", "x2", "y2"), box):
        by_label(at.number_input, f"{name} {coord}").set_value(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_iou_of_typed_boxes_and_when_it_counts_as_correct():
    at = open_vision()
    assert at.get("bidi_component"), "the boxes element is mounted"
    set_box(at, "A", (0, 0, 40, 40))
    set_box(at, "B", (10, 10, 30, 30))  # inside A: 400 / 1600
    assert (metric(at, "Intersection"), metric(at, "Union"), metric(at, "IoU")) == ("400 px²", "1600 px²", "0.250")
    assert "not correct" in at.info[0].value
    set_box(at, "B", (0, 0, 40, 36))  # 1440 / 1600 = 0.9
    assert metric(at, "IoU") == "0.900" and "correct" in at.success[0].value
    set_box(at, "B", (40, 0, 60, 40))  # touching A's edge
    assert metric(at, "IoU") == "0.000"
    set_box(at, "A", (20, 20, 20, 50))  # no width
    assert metric(at, "IoU") == "0.000" and "Box A has no area" in at.warning[0].value


def test_a_preset_that_is_not_a_detector_gets_one_sentence():
    at = open_vision(gallery.raw("cnn-digits"), tab="Detection")
    assert [i.value for i in at.info] == [
        "This preset is not a detection model: load the gallery's tiny YOLO (MNIST digits boxed on a 4×4 grid) to see its boxes here."
    ]
    assert not at.get("plotly_chart")


@pytest.fixture(scope="module")
def trained():
    doc = small_detector()
    exp = validate(doc)
    store = RunStore(data_dir() / "runs.sqlite")
    run_id = store.create_run(exp, session=BROWSER)
    tr = Trainer(exp, callbacks=[StoreCallback(store, run_id)])
    tr.run()
    store.close()
    return doc, run_id, tr


def test_a_trained_detector_its_boxes_nms_and_map(trained):
    doc, run_id, tr = trained
    at = open_vision(doc, tab="Detection")
    assert by_label(at.selectbox, "Weights").value == run_id  # the preset's own run, as Inspect opens on it
    assert len(at.get("plotly_chart")) == 1
    by_label(at.slider, "Confidence threshold").set_value(0.0).run()
    by_label(at.slider, "NMS IoU threshold").set_value(1.0).run()
    assert at.markdown[-1].value.startswith("**16 kept**, 0 removed by NMS")  # nothing overlaps by more than 1: all 4×4 boxes stay
    by_label(at.slider, "NMS IoU threshold").set_value(0.0).run()
    kept = int(at.markdown[-1].value.split("**")[1].split()[0])
    assert kept < 16 and "removed by NMS" in at.markdown[-1].value
    table = at.dataframe[0].value
    assert any(str(w).startswith("suppressed by #") for w in table["what NMS did"])
    # the page's mAP is the engine's, on the run's final weights, at the same NMS threshold
    ds = load_dataset(validate(doc).data, doc["seed"])
    mean, _ = detection.validation_map(tr.model, ds.x_val, ds.y_val, 1, nms_threshold=0.0)
    assert metric(at, "mAP@0.5") == f"{mean:.3f}"
    by_label(at.number_input, "Validation canvas (0 to 59)").set_value(7).run()
    assert not at.exception and "Canvas 7" in at.get("plotly_chart")[0].proto.spec


def test_a_detector_whose_grid_does_not_fit_its_data_says_what_to_change():
    doc = small_detector()
    doc["data"]["anchors"] = 2  # 30 numbers a cell, but the head still outputs 15
    at = open_vision(doc, tab="Detection")
    assert len(at.error) == 1 and "end with a Conv2d of 30 out_channels on a 4×4 map" in at.error[0].value
    assert not at.get("plotly_chart")
