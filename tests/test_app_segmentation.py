"""The Vision page's Segmentation tab through Streamlit's AppTest: a trained U-Net's masks of a validation canvas with
the engine's cross-entropy and IoU, a larger canvas, and one sentence for a preset that segments nothing."""

import copy
import json

import pytest
from app_util import by_label, open_page, stored_run

from dlviz.analysis import segmentation
from dlviz.data.datasets import load_dataset
from dlviz.preset import gallery
from dlviz.preset.schema import validate

BROWSER = "segmentation-apptest"


def short_run(lesson: str, name: str, samples: int) -> dict:
    """A segmentation lesson named `name`, on `samples` samples for one epoch."""
    doc = copy.deepcopy(gallery.raw(lesson))
    doc["name"] = name
    doc["data"]["num_samples"] = samples
    doc["training"]["epochs"] = 1
    return doc


def small_unet() -> dict:
    return short_run("segmentation-unet", "small U-Net, a short run", 200)


def open_segmentation(doc, browser: str = BROWSER):
    return open_page("app_pages/vision.py", browser, doc, {"vision_tab": "Segmentation"})


def title(chart) -> str:
    return json.loads(chart.proto.spec)["layout"]["title"]["text"]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


def test_a_preset_that_is_not_a_segmentation_model_gets_one_sentence():
    at = open_segmentation(gallery.raw("detection-yolo"))
    assert [i.value for i in at.info] == [
        "This preset is not a segmentation model: load the gallery's small U-Net (the strokes of MNIST digits segmented) to see its masks here."
    ]
    assert not at.get("plotly_chart")


def test_a_head_with_the_wrong_number_of_classes_says_what_to_change():
    doc = small_unet()
    doc["data"]["masks"] = "digits"  # 11 classes, but the head still gives 2
    at = open_segmentation(doc)
    assert len(at.error) == 1 and "end with a Conv2d of 11 out_channels" in at.error[0].value
    assert not at.get("plotly_chart")


@pytest.fixture(scope="module")
def trained():
    doc = small_unet()
    return doc, *stored_run(doc, BROWSER)


def test_a_trained_unet_its_masks_iou_and_a_larger_canvas(trained):
    doc, run_id, tr = trained
    at = open_segmentation(doc)
    assert by_label(at.selectbox, "Weights").value == run_id
    charts = at.get("plotly_chart")
    assert len(charts) == 2 and title(charts[0]).startswith("Canvas 0, 32×32") and title(charts[1]).startswith("A new 64×64 canvas")
    # the page's numbers are the engine's, on the run's final weights
    ds = load_dataset(validate(doc).data, doc["seed"])
    mean, per_class = segmentation.validation_iou(tr.model, ds.x_val, ds.y_val, 2)
    assert metric(at, "Mean IoU, validation set") == f"{mean:.3f}"
    one = segmentation.segment(tr.model, ds.x_val[3], ds.y_val[3], ds.normalization, 2)
    by_label(at.number_input, "Validation canvas (0 to 39)").set_value(3).run()
    assert not at.exception and title(at.get("plotly_chart")[0]).startswith("Canvas 3,")
    assert metric(at, "Cross-entropy, this canvas") == f"{one.loss:.4f}"
    table = at.dataframe[0].value
    assert list(table["class"]) == ["background", "stroke"]
    assert list(table["IoU on the 40 validation canvases"]) == [f"{v:.3f}" for v in per_class.tolist()]
    by_label(at.slider, "Canvas side").set_value(96).run()
    assert not at.exception and title(at.get("plotly_chart")[1]).startswith("A new 96×96 canvas")
    big = segmentation.larger_canvas(tr.model, 96, 6, True, doc["seed"])
    assert f"mean IoU **{big.mean_iou:.3f}**" in at.markdown[-1].value
