"""The Vision page's Segmentation tab on the coins photo through Streamlit's AppTest: a trained U-Net's masks of a
validation crop with the engine's cross-entropy and IoU, then the whole photo, padded to the model's stride."""

import pytest
from app_util import by_label, stored_run
from test_app_segmentation import metric, open_segmentation, short_run, title

from dlviz.analysis import segmentation
from dlviz.data.datasets import load_dataset
from dlviz.preset.schema import validate

BROWSER = "segmentation-coins-apptest"


def short_lesson() -> dict:
    return short_run("segmentation-coins", "coins U-Net, a short run", 100)


@pytest.fixture(scope="module")
def trained():
    doc = short_lesson()
    return doc, *stored_run(doc, BROWSER)


def test_a_trained_unet_its_masks_of_a_crop_and_of_the_whole_photo(trained):
    doc, run_id, tr = trained
    at = open_segmentation(doc, BROWSER)
    assert not at.exception and by_label(at.selectbox, "Weights").value == run_id
    charts = at.get("plotly_chart")
    assert len(charts) == 2 and title(charts[0]).startswith("Crop 0, 48×48") and title(charts[1]).startswith("The whole 303×384 photo")
    ds = load_dataset(validate(doc).data, doc["seed"])
    mean, per_class = segmentation.validation_iou(tr.model, ds.x_val, ds.y_val, 2)
    assert metric(at, "Mean IoU, validation set") == f"{mean:.3f}"
    by_label(at.number_input, "Validation crop (0 to 19)").set_value(5).run()
    one = segmentation.segment(tr.model, ds.x_val[5], ds.y_val[5], ds.normalization, 2)
    assert not at.exception and title(at.get("plotly_chart")[0]).startswith("Crop 5,")
    assert metric(at, "Cross-entropy, this crop") == f"{one.loss:.4f}"
    table = at.dataframe[0].value
    assert list(table["class"]) == ["background", "coin"]
    assert list(table["IoU on the 20 validation crops"]) == [f"{v:.3f}" for v in per_class.tolist()]
    whole = segmentation.whole_photo(tr.model)
    assert whole.padded == (304, 384)
    assert any("padded at the bottom and right by reflection to 304×384" in c.value for c in at.caption)
    assert f"mean IoU **{whole.mean_iou:.3f}** (background {whole.iou[0]:.3f}, coin {whole.iou[1]:.3f})" in at.markdown[-1].value
    assert not [s for s in at.slider if s.label == "Canvas side"]  # no larger canvas to draw: the photo is the larger input
