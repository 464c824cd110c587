"""Every gallery lesson, trained headless as the Train page trains it, gets the diagnoses its text teaches and none that
contradict it or each other; the chance levels follow each loss's formula, checked against torch on zero outputs."""

import math
from functools import lru_cache

import numpy as np
import pytest
import torch

from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.diagnose import diagnose
from dlviz.training.live import FeedCallback, LiveFeed
from dlviz.training.losses import chance_level
from dlviz.training.trainer import Trainer

W, P, OK = "warning", "problem", "ok"

# lesson: (diagnoses that must appear, as (title, level); titles (or (title, level)) that must not; phrases no text may hold)
TABLE = {
    "xor": ({("Initial loss", OK)}, {("Update ratio", W), "Vanishing gradients", "Over-fitting", "Dead ReLUs"}, ()),
    # after its first epoch, a small network's big steps that bring the loss down are not "too high"
    "xor@epochs=1": (set(), {("Update ratio", W)}, ("too high",)),
    "cnn-digits@epochs=1": (set(), {("Update ratio", W)}, ("too high",)),
    "xor-no-hidden": ({("Initial loss", OK)}, {"Vanishing gradients", "Dead ReLUs", "Over-fitting"}, ()),
    # the true first loss is 3.012; the mean of the first steps, 0.271, looked fine
    "perceptron": ({("Initial loss", W)}, {("Update ratio", W), "Over-fitting"}, ()),
    "dead-relu": ({("Dead ReLUs", P)}, {"Under-fitting", ("Update ratio", W)}, ("bigger network", "ReLU with He init")),
    # the lesson's own cure: at lr 0.05 the units live and nothing says the rate is too high
    "dead-relu@lr=0.05": (set(), {"Dead ReLUs", ("Update ratio", W), "Loss rising"}, ("too high",)),
    "zero-init": ({("Loss flat", W)}, {("Update ratio", W), "Under-fitting"}, ("ReLU with He init",)),
    # default-init MLPs start 28–38 % above ln 2: above chance, said so, and no warning about the init
    "optim-sgd": ({("Initial loss", OK)}, {("Update ratio", W), "Loss rising"}, ("too high", "confidently wrong")),
    "optim-momentum": ({("Initial loss", OK)}, {("Update ratio", W), "Loss rising"}, ("too high", "confidently wrong")),
    "optim-adam": ({("Initial loss", OK)}, {("Update ratio", W), "Loss rising"}, ("too high", "confidently wrong")),
    "spiral-tanh": ({("Saturated units", W), ("Initial loss", OK)}, {"Over-fitting", ("Update ratio", W), "Vanishing gradients"}, ("confidently wrong",)),
    "vanishing-sigmoid": ({("Vanishing gradients", W), ("Initial loss", W)}, {"Under-fitting"}, ()),
    # the cure: a few units die in the deep narrow stack, yet it learns; no alarm and no learning-rate advice
    "vanishing-relu-he": (set(), {"Vanishing gradients", ("Dead ReLUs", P)}, ("ReLU with He init", "lower the learning rate")),
    "deep-plain": ({("Vanishing gradients", P), ("Loss flat", W)}, {"Under-fitting"}, ("looks too low",)),
    # its validation loss is noisy (BatchNorm's running statistics at lr 0.1), with no upward trend
    "deep-batchnorm": ({("Initial loss", OK)}, {"Vanishing gradients", "Loss flat", "Over-fitting"}, ()),
    "overfit": ({("Over-fitting", W), ("Train/validation gap", W)}, {"Under-fitting", ("Dead ReLUs", P)}, ()),
    "overfit-dropout": ({("Train/validation gap", W)}, {"Vanishing gradients", "Under-fitting"}, ()),
    "overfit-l2": ({("Train/validation gap", W)}, {"Vanishing gradients", "Under-fitting", ("Dead ReLUs", P)}, ()),
    # the training targets hold the outliers, the validation targets are clean: validation below training is no over-fit;
    # the first loss is judged against a constant prediction's
    "outliers-mse": ({("Initial loss", OK)}, {"Over-fitting", "Loss rising"}, ()),
    "outliers-l1": ({("Initial loss", OK)}, {"Over-fitting", "Loss rising"}, ()),
    "outliers-huber": ({("Initial loss", OK)}, {"Over-fitting", "Loss rising"}, ()),
    "attention-majority": ({("Initial loss", OK)}, {("Update ratio", W)}, ("too low",)),
    "lstm-sine": ({("Initial loss", OK)}, {"Over-fitting", ("Update ratio", W)}, ()),
    "attention-reverse": ({("Initial loss", OK)}, {"Over-fitting", ("Update ratio", W)}, ()),
    "attention-reverse-no-position": ({("Initial loss", OK)}, {("Update ratio", W)}, ()),
    "rnn-long-memory": ({("Initial loss", OK)}, {("Update ratio", W)}, ()),
    "lstm-long-memory": ({("Initial loss", OK)}, {("Update ratio", W)}, ()),
    "lstm-long-memory-tbptt": ({("Initial loss", OK)}, {("Update ratio", W)}, ()),
    "gru-long-memory": ({("Initial loss", OK)}, {("Update ratio", W)}, ()),
    "transformer-from-parts": ({("Initial loss", OK)}, {("Update ratio", W)}, ()),
    "brackets-next-token": ({("Initial loss", OK)}, {"Over-fitting", ("Update ratio", W)}, ()),
    "cnn-digits": ({("Initial loss", OK)}, {("Update ratio", W), "Vanishing gradients"}, ("too high",)),
    "deep-cnn-plain": ({("Loss flat", W)}, {("Update ratio", OK)}, ()),
    "deep-cnn-residual": ({("Initial loss", OK)}, {("Update ratio", W), "Vanishing gradients", "Loss flat"}, ()),
    "vgg-digits": ({("Initial loss", OK)}, {("Update ratio", W), "Vanishing gradients"}, ()),
    "inception-digits": ({("Initial loss", OK)}, {("Update ratio", W), "Vanishing gradients"}, ()),
    "lenet5-mnist": ({("Initial loss", OK)}, {("Update ratio", W), "Vanishing gradients"}, ("ReLU with He init",)),
    # detection: no training metric (its mAP@0.5, 0.59, is the validation canvases' only): no verdict may rest on one
    "detection-yolo": (set(), {"Under-fitting", "Loss flat", "Loss rising", ("Update ratio", W)}, ()),
    # segmentation: pixel accuracy starts near the background's share (0.9), so the first loss is no chance guess's
    "segmentation-unet": (set(), {"Vanishing gradients", "Loss flat", "Loss rising", ("Update ratio", W)}, ()),
    # the coins photo: a third of its pixels are coin, so the first loss is near a chance guess's; its big steps work
    "segmentation-coins": ({("Initial loss", OK)}, {"Vanishing gradients", "Loss flat", "Loss rising", "Over-fitting", ("Update ratio", W)}, ()),
    # an embedding: no accuracy, no chance-level first loss; its AUC climbs while the loss falls
    "verification-triplet": (set(), {"Vanishing gradients", "Loss flat", "Loss rising", ("Update ratio", W)}, ()),
    "transfer-pretrain": ({("Initial loss", OK)}, {("Update ratio", W), "Vanishing gradients", "Loss flat"}, ()),
    # 100 images, 20 epochs: the scratch model learns them all, and its validation loss is what the lesson compares
    "transfer-scratch": ({("Initial loss", OK)}, {"Vanishing gradients", "Loss flat"}, ()),
}
# a few seconds each on one core: the rest runs with --slow
FAST = {
    "xor",
    "xor@epochs=1",
    "perceptron",
    "dead-relu",
    "dead-relu@lr=0.05",
    "zero-init",
    "optim-sgd",
    "vanishing-sigmoid",
    "vanishing-relu-he",
    "deep-plain",
    "attention-majority",
    "outliers-mse",
    "lstm-sine",
    "attention-reverse",
    "brackets-next-token",
}
CONTRADICTIONS = [("Under-fitting", "Train/validation gap"), ("Loss rising", "Loss flat"), ("Under-fitting", "Over-fitting")]


def test_the_table_covers_every_trainable_gallery_lesson():
    # a lesson that starts from another lesson's run (init_from) trains only after it: test_transfer.py covers it
    trainable = {e["name"] for e in gallery.listing() if gallery.raw(e["name"]).get("data") and not gallery.raw(e["name"]).get("init_from")}
    assert trainable <= {k.split("@")[0] for k in TABLE}, trainable - set(TABLE)


@lru_cache(maxsize=None)
def trained(key: str):
    """Train a lesson once (shared by the tests) and diagnose it as the Train page does: from the live feed's snapshot."""
    torch.set_num_threads(1)
    name, _, change = key.partition("@")
    doc = gallery.raw(name)
    if change:
        k, v = change.split("=")
        if k == "epochs":
            doc["training"]["epochs"] = int(v)
        else:
            doc["optimizer"][k] = float(v)
    feed = LiveFeed()
    trainer = Trainer(validate(doc), [FeedCallback(feed.handle)])
    trainer.run()
    snap = feed.snapshot()
    return snap, diagnose(snap, trainer.objective.num_classes)


def _check(key):
    must, must_not, phrases = TABLE[key]
    snap, found = trained(key)
    got = {(d.title, d.level) for d in found}
    shown = "\n".join(f"{d.level} {d.title}: {d.text}" for d in found)
    assert must <= got, f"{key}: missing {must - got}\n{shown}"
    for item in must_not:
        hit = item in got if isinstance(item, tuple) else any(t == item for t, _ in got)
        assert not hit, f"{key}: {item} should not appear\n{shown}"
    for phrase in phrases:
        assert not any(phrase in d.text for d in found), f"{key}: {phrase!r}\n{shown}"
    # no two verdicts disagree: one learning-rate direction, one level per title, no opposite pairs
    directions = {d.lr for d in found if d.lr}
    assert len(directions) <= 1, f"{key}: {directions}\n{shown}"
    titles = [d.title for d in found]
    assert len(titles) == len(set(titles)), shown
    for a, b in CONTRADICTIONS:
        assert not (a in titles and b in titles), f"{key}: {a} and {b}\n{shown}"
    text = " ".join(d.text for d in found)
    assert not ("too low" in text and ("too high" in text or "lower the learning rate" in text)), shown


@pytest.mark.parametrize("key", sorted(FAST))
def test_lesson_diagnoses(key):
    _check(key)


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(set(TABLE) - FAST))
def test_lesson_diagnoses_slow(key):
    _check(key)


def test_initial_loss_is_the_first_step_not_the_first_point_of_the_curve():
    snap, found = trained("perceptron")
    # the first step by hand: the same model, the same first batch
    trainer = Trainer(gallery.load("perceptron"))
    g = torch.Generator().manual_seed(trainer.exp.seed)
    idx = torch.randperm(len(trainer.dataset.x_train), generator=g)[: trainer.exp.data.batch_size]
    ref = torch.nn.functional.cross_entropy(trainer.model(trainer.dataset.x_train[idx]), trainer.dataset.y_train[idx]).item()
    assert snap["first_loss"] == pytest.approx(ref, rel=1e-6) and ref > 3
    assert f"{ref:.3f}" in {d.title: d for d in found}["Initial loss"].text


def test_first_loss_survives_downsampling():
    feed = LiveFeed()
    feed.handle({"kind": "begin", "param_names": ["w"], "task": "classification", "total_steps": 2000})
    losses = np.r_[3.0, np.full(1999, 0.5)]
    for i in range(0, 2000, 100):
        sl = slice(i, i + 100)
        feed.handle(
            {
                "kind": "steps",
                "block": {
                    "step": np.arange(2000)[sl],
                    "epoch": np.zeros(100),
                    "loss": losses[sl],
                    "metric": np.zeros(100),
                    "lr": np.zeros(100),
                    "grad_norm": np.ones((100, 1)),
                    "update_ratio": np.ones((100, 1)),
                },
            }
        )
    snap = feed.snapshot()
    assert snap["loss"][0] < 1 and snap["first_loss"] == 3.0  # the curve's first point is a bucket's mean


@pytest.mark.parametrize(
    "loss, args, classes, expected",
    [
        ("CrossEntropyLoss", {}, 10, math.log(10)),
        ("CrossEntropyLoss", {"label_smoothing": 0.1}, 4, math.log(4)),
        ("BCEWithLogitsLoss", {}, 2, math.log(2)),
        ("SoftMarginLoss", {}, 2, math.log(2)),
        ("MultiMarginLoss", {}, 10, 0.9),  # margin 1 · (C−1)/C
        ("MultiMarginLoss", {"margin": 0.5, "p": 2}, 5, 0.25 * 4 / 5),
    ],
)
def test_chance_level_is_the_loss_on_zero_outputs(loss, args, classes, expected):
    torch.manual_seed(0)
    y = torch.randint(0, classes, (64,))
    level, formula = chance_level(loss, args, "classification", classes, y)
    assert level == pytest.approx(expected, rel=1e-12) and formula
    fn = getattr(torch.nn, loss)(**args)
    if loss in ("BCEWithLogitsLoss", "SoftMarginLoss"):
        target = y.float() if loss == "BCEWithLogitsLoss" else 2 * y.float() - 1
        torch_value = fn(torch.zeros(64), target)
    else:
        torch_value = fn(torch.zeros(64, classes), y)
    assert float(torch_value) == pytest.approx(level, rel=1e-6)


def test_regression_chance_level_is_predicting_the_mean():
    y = torch.tensor([[1.0], [2.0], [4.0], [9.0]])
    mse, _ = chance_level("MSELoss", {}, "regression", None, y)
    assert mse == pytest.approx(float(torch.var(y, unbiased=False)))
    l1, _ = chance_level("L1Loss", {}, "regression", None, y)
    assert l1 == pytest.approx((1 + 0 + 2 + 7) / 4)  # any point between the middle two, 2 and 4, is a median
    assert chance_level("MSELoss", {"reduction": "sum"}, "regression", None, y) is None


def test_a_multi_margin_run_is_judged_against_its_own_chance_level():
    snap = {"task": "classification", "first_loss": 0.887, "param_names": [], "context": {"chance": 0.9, "chance_formula": "margin·(C−1)/C"}}
    d = {x.title: x for x in diagnose(snap, 10)}["Initial loss"]
    assert d.level == OK and "0.900" in d.text


def test_two_class_tolerance_is_tight():
    snap = {"task": "classification", "first_loss": 0.90, "param_names": []}
    d = {x.title: x for x in diagnose(snap, 2)}["Initial loss"]
    assert "close" not in d.text and "30% above" in d.text  # the old band called 39 % above ln 2 close
    snap["first_loss"] = 0.693 * 1.19
    assert "close to" in {x.title: x for x in diagnose(snap, 2)}["Initial loss"].text


@pytest.mark.parametrize("first, level", [(0.69, OK), (1.38, OK), (1.40, W), (3.0, W)])
def test_confidently_wrong_means_half_the_chance_probability(first, level):
    """exp(−loss) is the (geometric) mean probability of the true class: a warning once it is below half of 1/C."""
    snap = {"task": "classification", "first_loss": first, "param_names": []}
    assert {x.title: x for x in diagnose(snap, 2)}["Initial loss"].level == level
    p = math.exp(-first)
    assert (p < 0.5 / 2) == (level == W)


def test_regression_first_loss_against_a_constant_prediction():
    ctx = {"chance": 0.5, "chance_formula": "the targets' variance", "loss": "MSELoss"}
    found = {x.title: x for x in diagnose({"task": "regression", "first_loss": 0.55, "param_names": [], "context": ctx})}
    assert found["Initial loss"].level == OK and "0.500" in found["Initial loss"].text
    found = {x.title: x for x in diagnose({"task": "regression", "first_loss": 4.0, "param_names": [], "context": ctx})}
    assert found["Initial loss"].level == W and "standardize the targets" in found["Initial loss"].text


def test_a_continued_runs_initial_loss_is_the_whole_runs_and_says_so():
    snap = {"task": "classification", "first_loss": 0.70, "param_names": [], "continued": {"run": "r1", "step": 2980, "epoch": 298}}
    d = {x.title: x for x in diagnose(snap, 2)}["Initial loss"]
    assert "run r1" in d.text and "2,980" in d.text and "0.700" in d.text


def test_validation_noise_without_a_trend_is_no_over_fitting():
    """deep-batchnorm's twelve epochs: the validation loss jumps about (0.176, 0.544, 0.062, 0.283) as the training loss falls."""
    tl = [0.719, 0.717, 0.578, 0.49, 0.322, 0.394, 0.358, 0.209, 0.211, 0.228, 0.168, 0.114]
    vl = [0.725, 0.826, 0.568, 0.176, 0.182, 0.544, 0.2, 0.283, 0.269, 0.108, 0.062, 0.283]
    epochs = [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(zip(tl, vl))]
    assert "Over-fitting" not in {d.title for d in diagnose({"task": "classification", "param_names": [], "epochs": epochs}, 2)}
    # the same run whose validation loss then climbs for three epochs does over-fit
    epochs += [{"epoch": 13 + i, "train_loss": 0.1 - 0.01 * i, "val_loss": v} for i, v in enumerate([0.45, 0.6, 0.75])]
    d = {x.title: x for x in diagnose({"task": "classification", "param_names": [], "epochs": epochs}, 2)}["Over-fitting"]
    assert "averaged over 3 epochs" in d.text


def test_dead_units_in_a_network_that_learns_are_lost_capacity_not_a_learning_rate_problem():
    tel = [{"step": 100, "probe_samples": 256, "layers": {"model.layers[1]": {"type": "ReLU", "dead": 0.6}}}]
    learning = [{"epoch": i, "train_loss": 0.7 - 0.3 * i, "train_accuracy": 0.6 + 0.15 * i} for i in (0, 1, 2)]
    d = {x.title: x for x in diagnose(_snap(telemetry=tel, epochs=learning), 2)}["Dead ReLUs"]
    assert d.level == W and d.lr is None and "learns with the units it has left" in d.text
    stuck = [{"epoch": i, "train_loss": 0.69, "train_accuracy": 0.5} for i in (0, 1, 2)]
    d = {x.title: x for x in diagnose(_snap(telemetry=tel, epochs=stuck), 2)}["Dead ReLUs"]
    assert d.level == P and d.lr == "lower"


def test_no_over_fitting_on_noise():
    epochs = [
        {"epoch": i + 1, "train_loss": 0.02 - 0.001 * i, "val_loss": v, "train_accuracy": 0.995, "val_accuracy": 0.995}
        for i, v in enumerate([0.009, 0.006, 0.008, 0.011])
    ]
    found = {d.title for d in diagnose({"task": "classification", "param_names": [], "epochs": epochs}, 2)}
    assert "Over-fitting" not in found


def _snap(**over):
    snap = {
        "task": "classification",
        "param_names": ["layers[0].weight", "layers[2].weight", "layers[4].weight"],
        "log_grad_norm": np.zeros((0, 3)),
        "log_update_ratio": np.zeros((0, 3)),
        "epochs": [],
        "telemetry": [],
        "context": {"chance": math.log(2), "weights": [0, 1, 2], "activations": ["ReLU"], "init": "kaiming_normal"},
    }
    snap.update(over)
    return snap


def test_saturated_tanh_in_the_red_band_is_reported_even_when_the_task_is_learned():
    tel = [{"step": 100, "probe_samples": 256, "layers": {"model.layers[1]": {"type": "Tanh", "saturated": 0.6}}}]
    epochs = [{"epoch": i, "train_loss": 0.02, "val_loss": 0.02, "train_accuracy": 0.995, "val_accuracy": 0.995} for i in (1, 2, 3)]
    d = {x.title: x for x in diagnose(_snap(telemetry=tel, epochs=epochs), 2)}["Saturated units"]
    assert "60%" in d.text and "256 training samples" in d.text


def test_vanishing_advice_follows_the_network():
    g = np.log10(np.array([[1e-3, 1e-2, 5e-1]] * 10))  # 500× from the first weight layer to the last
    relu_he = {x.title: x for x in diagnose(_snap(log_grad_norm=g), 2)}["Vanishing gradients"]
    assert "500×" in relu_he.text and "ReLU with He init" not in relu_he.text and "already has ReLUs and He init" in relu_he.text
    ctx = {"chance": math.log(2), "weights": [0, 1, 2], "activations": ["Sigmoid"], "init": "normal"}
    sigmoid = {x.title: x for x in diagnose(_snap(log_grad_norm=g, context=ctx), 2)}["Vanishing gradients"]
    assert "try ReLU with He init" in sigmoid.text
    g = np.log10(np.array([[1e-2, 1e-2, 5e-1]] * 10))  # 50×: under the line the lessons draw
    assert "Vanishing gradients" not in {x.title for x in diagnose(_snap(log_grad_norm=g), 2)}


def test_dead_units_and_a_small_ratio_give_one_learning_rate_direction():
    tel = [{"step": 100, "probe_samples": 256, "layers": {"model.layers[1]": {"type": "ReLU", "dead": 0.8}}}]
    u = np.log10(np.full((10, 3), 1e-5))
    found = diagnose(_snap(telemetry=tel, log_update_ratio=u), 2)
    assert "Dead ReLUs" in {d.title for d in found}
    assert not any("too low" in d.text for d in found) and {d.lr for d in found if d.lr} == {"lower"}


def test_update_ratio_reads_weights_only():
    # biases move fast (1e-1) and the weights at a healthy 1e-3: nothing to report
    snap = _snap(
        param_names=["layers[0].weight", "layers[0].bias", "layers[2].weight", "layers[2].bias"],
        log_update_ratio=np.log10(np.array([[1e-3, 1e-1, 1e-3, 1e-1]] * 10)),
    )
    snap["context"]["weights"] = [0, 2]
    assert "Update ratio" not in {d.title for d in diagnose(snap, 2)}


def test_dead_layers_share_one_box_and_a_deep_stack_is_pointed_to_shortcuts():
    layers = {f"model.layers[{i}]": {"type": "ReLU", "dead": d} for i, d in ((1, 0.2), (3, 0.6), (5, 0.9), (7, 1.0))}
    found = diagnose(_snap(telemetry=[{"step": 9, "probe_samples": 64, "layers": layers}]), 2)
    dead = [d for d in found if d.title == "Dead ReLUs"]
    assert len(dead) == 1 and "model.layers[1]" not in dead[0].text
    assert "model.layers[3] (ReLU, 60%), model.layers[5] (ReLU, 90%) and model.layers[7] (ReLU, 100%)" in dead[0].text
    assert "64 training samples" in dead[0].text and "residual connections" in dead[0].text


def test_a_stored_run_gets_the_same_diagnoses_as_the_live_one(tmp_path):
    """After a reload the page diagnoses the run from the store: the same first loss, context and verdicts."""
    from dlviz.training.live import snapshot_from_store
    from dlviz.training.store import RunStore, StoreCallback

    exp = gallery.load("dead-relu")
    store = RunStore(tmp_path / "r.sqlite")
    rid = store.create_run(exp)
    feed = LiveFeed()
    Trainer(exp, [StoreCallback(store, rid), FeedCallback(feed.handle)]).run()
    live, stored = feed.snapshot(), snapshot_from_store(store, rid)
    assert stored["first_loss"] == pytest.approx(live["first_loss"], rel=1e-6) and stored["context"] == live["context"]
    assert [(d.level, d.title) for d in diagnose(stored, 2)] == [(d.level, d.title) for d in diagnose(live, 2)]
    assert len(stored["telemetry"]) == len(live["telemetry"]) == 25  # 125 steps, a probe every 5 (the preset's own)
