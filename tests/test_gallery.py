"""Every gallery lesson trains to the result its note promises (the presets' own epochs, kept small)."""

import math

import numpy as np
import pytest
import torch

from dlviz.model.build import summarize
from dlviz.preset import gallery
from dlviz.training.trainer import Callback, Trainer

# a lesson that starts from another lesson's run (init_from) trains in tests/test_gallery_transfer.py, after that run
LESSONS = [n for n in gallery.names() if gallery.raw(n).get("data") and not gallery.raw(n).get("init_from")]


class Recorder(Callback):
    def __init__(self):
        self.grad, self.telemetry = [], []

    def on_steps(self, trainer, block):
        self.grad.append(block.grad_norm)

    def on_telemetry(self, trainer, snapshot):
        self.telemetry.append(snapshot)


_cache = {}


def train(name):
    if name not in _cache:
        rec = Recorder()
        tr = Trainer(gallery.load(name), [rec])
        result = tr.run()
        _cache[name] = (result, tr, rec)
    return _cache[name]


def weight_grads(tr, rec):
    """Median gradient norm of each weight tensor (layers in order)."""
    g = np.median(np.concatenate(rec.grad), axis=0)
    return [v for v, n in zip(g, tr.param_names) if n.endswith("weight")]


def test_the_gallery_has_at_least_15_lessons_each_with_a_note():
    assert len(LESSONS) >= 15
    for name in gallery.names():
        doc = gallery.raw(name)
        assert doc["description"].count(". ") + doc["description"].endswith(".") >= 2, name
        assert doc["look_at"], name


# lessons whose whole run takes most of a minute here: they finish in the slow tests, and a short run of each in these
HEAVY = {"detection-yolo"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in LESSONS])
def test_every_lesson_finishes(name):
    result, _, _ = train(name)
    assert result["status"] == "finished", result


def acc(name):
    return train(name)[0]["val_accuracy"]


def test_perceptron_and_xor():
    assert acc("perceptron") >= 0.95
    assert acc("xor") >= 0.9 and acc("xor-no-hidden") <= 0.7


def test_spiral_with_tanh():
    assert acc("spiral-tanh") >= 0.9


def test_vanishing_gradients_sigmoid_against_relu_he():
    _, tr, rec = train("vanishing-sigmoid")
    g = weight_grads(tr, rec)
    assert g[-1] / g[0] > 100, "the first layer's gradient must be over 100x smaller than the last layer's"
    assert acc("vanishing-sigmoid") <= 0.6
    _, tr, rec = train("vanishing-relu-he")
    g = weight_grads(tr, rec)
    assert max(g) / min(g) < 20
    assert acc("vanishing-relu-he") >= acc("vanishing-sigmoid") + 0.1


def test_zero_init_keeps_every_hidden_unit_identical():
    _, tr, _ = train("zero-init")
    w = tr.model.layers[0].weight.detach()
    assert torch.allclose(w, w[:1].expand_as(w)), "all rows of the first layer stay equal"
    assert acc("zero-init") <= 0.65


def test_dead_relus_at_a_high_rate():
    _, _, rec = train("dead-relu")
    dead = max(v.get("dead", 0) for v in rec.telemetry[-1]["layers"].values())
    assert dead > 0.5


def test_adam_beats_momentum_beats_sgd():
    loss = {n: train(n)[0]["train_loss"] for n in ("optim-sgd", "optim-momentum", "optim-adam")}
    assert loss["optim-adam"] < loss["optim-momentum"] < loss["optim-sgd"]


def test_overfitting_then_dropout_then_l2():
    def gap(name):
        r = train(name)[0]
        return r["train_accuracy"] - r["val_accuracy"], r["val_loss"]

    base, base_val = gap("overfit")
    assert base > 0.25 and train("overfit")[0]["train_accuracy"] == 1.0
    for name in ("overfit-dropout", "overfit-l2"):
        g, v = gap(name)
        assert g < base - 0.1 and v < base_val / 2, name


def test_batchnorm_lets_the_deep_net_train():
    plain, bn = train("deep-plain")[0], train("deep-batchnorm")[0]
    assert plain["train_loss"] > 0.65 and acc("deep-plain") < 0.6
    # the lesson is about training, so it is read on the training set: validation accuracy after 12 epochs measured
    # 0.87 on one CPU and above 0.9 on another (the kernels' rounding differs), training accuracy 0.96
    assert bn["train_loss"] < math.log(2) / 2 and bn["train_accuracy"] >= 0.9 and bn["val_accuracy"] > acc("deep-plain") + 0.2


def test_convolutional_lessons():
    assert acc("lenet5-mnist") >= 0.95
    assert acc("cnn-digits") >= 0.9
    assert acc("vgg-digits") >= 0.9
    assert acc("inception-digits") >= 0.9


def test_residual_connections_rescue_the_deep_cnn():
    assert acc("deep-cnn-plain") <= 0.2 and acc("deep-cnn-residual") >= 0.9


def test_inception_reductions_cut_parameters():
    doc = gallery.raw("inception-digits")
    block = next(layer for layer in doc["model"]["layers"] if layer["type"] == "Concat")
    with_reduction = summarize(gallery.load("inception-digits")).total_params
    # the same block with the 1x1 reductions removed: the 3x3 and 5x5 convolutions see all 16 channels
    for branch in block["branches"][1:3]:
        del branch[:2]
    from dlviz.preset.schema import validate

    without = summarize(validate(doc)).total_params
    assert with_reduction < without


def test_lstm_forecasts_the_sine():
    assert train("lstm-sine")[0]["val_r2"] >= 0.9


def test_self_attention_finds_the_majority():
    assert acc("attention-majority") >= 0.9


def test_robust_losses_ignore_the_outliers():
    r2 = {n: train(n)[0]["val_r2"] for n in ("outliers-mse", "outliers-l1", "outliers-huber")}
    assert r2["outliers-l1"] > r2["outliers-mse"] + 0.5 and r2["outliers-huber"] > r2["outliers-mse"] + 0.5
    assert r2["outliers-l1"] >= 0.9


@pytest.mark.slow
def test_the_tiny_yolo_finds_the_digits():
    """The detection lesson's promise: the run's own metric, mAP@0.5 on its validation canvases, over 0.5 (0.59
    measured, one thread), with every digit among the validation canvases' true boxes."""
    from dlviz.loop import grid_map

    result, tr, _ = train("detection-yolo")
    with torch.no_grad():
        mean, per_class = grid_map(tr.model.eval()(tr.dataset.x_val), tr.dataset.y_val, anchors=1)
    assert result["val_map"] > 0.5 and "val_r2" not in result
    assert mean == result["val_map"] and len(per_class) == 10


def test_a_short_yolo_run_starts_finding_digits():
    """The quick version: a fifth of the canvases and epochs lift the run's mAP@0.5 from nothing to over 0.04 (0.085 measured)."""
    from dlviz.preset.schema import validate

    doc = gallery.raw("detection-yolo")
    doc["data"]["num_samples"], doc["training"]["epochs"] = 1000, 5
    tr = Trainer(validate(doc))
    before = tr.evaluate(tr.dataset.x_val, tr.dataset.y_val)["map"]
    result = tr.run()
    assert result["status"] == "finished"
    assert before < 0.01 and result["val_map"] > 0.04


@pytest.mark.slow
def test_the_small_unet_segments_the_strokes():
    """The segmentation lesson's promise: mean IoU over 0.8 on its validation canvases (0.89 measured, one thread), and
    over 0.7 on a 64×64 canvas of up to 6 digits, twice the side it was trained on (0.87 measured)."""
    from dlviz.analysis.segmentation import larger_canvas, validation_iou

    _, tr, _ = train("segmentation-unet")
    mean, per_class = validation_iou(tr.model, tr.dataset.x_val, tr.dataset.y_val, 2)
    assert mean > 0.8 and len(per_class) == 2
    assert larger_canvas(tr.model, 64, 6, True, seed=0).mean_iou > 0.7


def test_a_short_unet_run_starts_segmenting():
    """The quick version: half the canvases and 2 epochs lift mean IoU from under 0.1 to over 0.4 (0.53 measured)."""
    from dlviz.analysis.segmentation import validation_iou
    from dlviz.preset.schema import validate

    doc = gallery.raw("segmentation-unet")
    doc["data"]["num_samples"], doc["training"]["epochs"] = 300, 2
    tr = Trainer(validate(doc))
    ds = tr.dataset
    before, _ = validation_iou(tr.model, ds.x_val, ds.y_val, 2)
    assert tr.run()["status"] == "finished"
    after, _ = validation_iou(tr.model, ds.x_val, ds.y_val, 2)
    assert before < 0.1 and after > 0.4


def test_the_coins_unet_segments_crops_it_never_saw_and_the_whole_photo():
    """The coins lesson's promise: mean IoU over 0.95 on its validation crops, cut from a strip of the photo that no
    training crop touches (0.979 measured, one thread; 0.25 untrained), and over 0.9 on the whole 303×384 photo padded to
    304×384 (0.945 measured; 0.17 untrained). About 5 s of training on one core."""
    from dlviz.analysis.segmentation import validation_iou, whole_photo

    untrained = Trainer(gallery.load("segmentation-coins")).model
    _, tr, _ = train("segmentation-coins")
    ds = tr.dataset
    mean, per_class = validation_iou(tr.model, ds.x_val, ds.y_val, 2)
    assert validation_iou(untrained, ds.x_val, ds.y_val, 2)[0] < 0.5 and mean > 0.95 and min(per_class.tolist()) > 0.9
    photo = whole_photo(tr.model)
    assert photo.padded == (304, 384) and whole_photo(untrained).mean_iou < 0.5 and photo.mean_iou > 0.9
