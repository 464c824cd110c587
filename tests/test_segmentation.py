"""The segmentation lab's numbers: the masks against the canvas's own pixels, per-pixel cross-entropy and pixel accuracy
against loops written by hand, IoU by hand, and a trained-shape model on a canvas of another size."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlviz.analysis.segmentation import class_iou, larger_canvas, mean_iou, segment, validation_iou
from dlviz.errors import UserError
from dlviz.loop import INK, evaluate, mnist_masks
from dlviz.preset.schema import DataSpec, LossSpec
from dlviz.runtime import mnist_digits
from dlviz.training.losses import make_objective


@pytest.fixture(scope="module")
def mnist():
    return mnist_digits()


def masks_spec(**kw):
    return DataSpec.model_validate({"name": "mnist-masks", "num_samples": 40, **kw})


@pytest.mark.parametrize("binary", [False, True])
def test_a_pixel_is_a_stroke_exactly_where_the_canvas_is_brighter_than_the_ink_threshold(mnist, binary):
    images, labels = mnist
    x, y = mnist_masks(images, labels, 60, 48, 3, binary, np.random.default_rng(1))
    assert x.shape == (60, 1, 48, 48) and y.shape == (60, 48, 48) and y.dtype == np.int64
    assert np.array_equal(y > 0, x[:, 0] > INK)
    assert set(np.unique(y)) == ({0, 1} if binary else set(range(11)))


def test_a_single_digit_canvas_is_labelled_with_that_digit(mnist):
    images, labels = mnist
    rng = np.random.default_rng(5)
    x, y = mnist_masks(images, labels, 30, 32, 1, False, rng)
    # the same draws again: which image each canvas took
    rng = np.random.default_rng(5)
    for k in range(30):
        rng.integers(1, 2)
        side = int(rng.integers(16, 24))
        i = int(rng.integers(len(images)))
        rng.integers(0, 32 - side + 1, 2)  # the place, drawn after the image
        assert set(np.unique(y[k])) == {0, 1 + int(labels[i])}


def test_the_data_set_is_seeded_split_and_described():
    from dlviz.data.datasets import describe, load_dataset

    a, b, c = (load_dataset(masks_spec(), s) for s in (0, 0, 1))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val) and not torch.equal(a.x_train, c.x_train)
    assert (len(a.x_train), len(a.x_val)) == (32, 8) and a.y_train.dtype == torch.int64
    assert describe(masks_spec(canvas=48, masks="strokes")) == ((1, 48, 48), "classification", 2, (48, 48))
    assert a.target_shape == (32, 32) and a.num_classes == 11 and a.class_names[0] == "background" and "40 32×32 canvases" in a.note
    assert torch.equal(a.y_train > 0, a.pixels(a.x_train)[:, 0] > INK)


def test_too_many_canvases_or_a_bad_option_is_one_sentence():
    from dlviz.data.datasets import load_dataset
    from dlviz.preset.schema import validate

    with pytest.raises(UserError) as e:
        load_dataset(masks_spec(num_samples=50_000, canvas=64), 0)
    assert e.value.path == "data.num_samples" and "DLVIZ_MAX_SAMPLES" in str(e.value)
    with pytest.raises(UserError) as e:
        validate({"format": "dlviz-preset/1", "data": {"name": "mnist-masks", "canvas": 40}, "model": {"input_shape": [1, 40, 40]}})
    assert e.value.path == "data.canvas"


def test_per_pixel_cross_entropy_is_the_mean_of_minus_log_softmax_over_every_pixel():
    torch.manual_seed(0)
    out, y = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    objective = make_objective(LossSpec.model_validate({"type": "CrossEntropyLoss"}), "classification", 3, (4, 5), (3, 4, 5))
    terms = []
    for n in range(2):
        for i in range(4):
            for j in range(5):
                z = out[n, :, i, j].double()
                terms.append(math.log(float(z.exp().sum())) - float(z[y[n, i, j]]))
    assert float(objective.loss(out, y)) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert torch.allclose(objective.loss(out, y), nn.functional.cross_entropy(out, y))
    # pixel accuracy: the share of pixels whose largest logit is their class
    hits = sum(int(out[n, :, i, j].argmax() == y[n, i, j]) for n in range(2) for i in range(4) for j in range(5))
    loss, accuracy, pred = evaluate(nn.Identity(), out, y, objective.loss, 3)
    assert accuracy == hits / 40 and pred.shape == (2, 4, 5) and loss == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_a_per_pixel_loss_other_than_cross_entropy_or_a_wrong_head_is_one_sentence():
    with pytest.raises(UserError, match="cannot take a class for every pixel"):
        make_objective(LossSpec.model_validate({"type": "MultiMarginLoss"}), "classification", 3, (4, 5), (3, 4, 5))
    with pytest.raises(UserError, match="end with a Conv2d of 3 out_channels"):
        make_objective(LossSpec.model_validate({"type": "CrossEntropyLoss"}), "classification", 3, (4, 5), (4, 4, 5))


def test_iou_by_hand():
    true = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 0, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0], [2, 0, 0, 0]])
    # class 0: both at 5 pixels ((0,0),(1,0),(1,1),(2,2),(2,3)); true has 6, pred has 7 → union 8
    # class 1: both at 3 ((0,2),(0,3),(1,2)); true 4, pred 4 → union 5
    # class 2: both at 1 ((2,0)); true 2, pred 1 → union 2
    iou = class_iou(pred, true, 4)
    assert iou[:3].tolist() == pytest.approx([5 / 8, 3 / 5, 1 / 2])
    assert math.isnan(float(iou[3]))  # class 3 is in neither mask: no IoU
    assert mean_iou(pred, true, 4) == pytest.approx((5 / 8 + 3 / 5 + 1 / 2) / 3)  # the absent class is left out


def test_a_class_predicted_but_absent_counts_as_0_and_perfect_masks_score_1():
    true = torch.zeros(3, 3, dtype=torch.long)
    pred = true.clone()
    pred[0, 0] = 2
    assert class_iou(pred, true, 3).tolist()[0] == pytest.approx(8 / 9) and class_iou(pred, true, 3)[2] == 0
    assert mean_iou(pred, true, 3) == pytest.approx((8 / 9 + 0) / 2)
    assert mean_iou(true, true, 3) == 1.0


class PixelThreshold(nn.Module):
    """A fully convolutional 'model': class 1 where the normalized pixel is above the ink threshold."""

    def forward(self, x):
        bright = x - (INK - 0.1307) / 0.3081
        return torch.cat([-bright, bright], 1) * 100


def test_a_model_that_thresholds_the_ink_segments_any_canvas_perfectly():
    from dlviz.data.datasets import load_dataset

    ds = load_dataset(masks_spec(masks="strokes"), 0)
    mean, per_class = validation_iou(PixelThreshold(), ds.x_val, ds.y_val, 2)
    assert mean > 0.99 and len(per_class) == 2
    one = segment(PixelThreshold(), ds.x_val[0], ds.y_val[0], ds.normalization, 2)
    assert one.pixels.shape == one.true.shape == one.pred.shape == one.loss_map.shape == (32, 32)
    assert one.loss == pytest.approx(float(one.loss_map.mean()))
    big = larger_canvas(PixelThreshold(), 96, 8, True, seed=0)
    assert big.pred.shape == (96, 96) and big.mean_iou > 0.99 and (big.true > 0).sum() > (one.true > 0).sum()


def test_a_model_that_cannot_take_the_canvas_says_so_in_one_sentence():
    pool_up = nn.Sequential(nn.MaxPool2d(2), nn.ConvTranspose2d(1, 2, 2, stride=2))
    with pytest.raises(UserError, match="cannot run on a 33×33 canvas") as e:
        x = torch.zeros(1, 33, 33)
        segment(nn.Sequential(pool_up, nn.Flatten(0, -1), nn.Unflatten(0, (2, 33, 33))), x, torch.zeros(33, 33, dtype=torch.long), (0.0, 1.0), 2)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="not a class score per pixel"):
        segment(nn.Conv2d(1, 3, 1), torch.zeros(1, 8, 8), torch.zeros(8, 8, dtype=torch.long), (0.0, 1.0), 2)


def test_the_figure_draws_four_panels_and_each_class_in_its_own_colour():
    from dlviz.figures.segmentation import class_colors, segmentation_figure

    names = ["background", *(f"digit {d}" for d in range(10))]
    true = np.arange(11 * 3).reshape(3, 11) % 11
    fig = segmentation_figure(np.zeros((3, 11)), true, true[::-1], np.ones((3, 11)), names, "a canvas")
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 4 and fig.layout.title.text == "a canvas"
    mask = heatmaps[1]
    for k, color in enumerate(class_colors(11)):  # class k's value falls in a band of the scale in the class's own colour only
        at = (k - mask.zmin) / (mask.zmax - mask.zmin)
        below = [c for p, c in mask.colorscale if p <= at][-1]  # plotly blends the stops on either side of the value
        above = next(c for p, c in mask.colorscale if p >= at)
        assert below == above == color
    assert mask.customdata[0][1] == "digit 0" and len(set(class_colors(11))) == 11
