"""Diagnoses cite their numbers, and real runs that show a problem get the matching diagnosis."""

import numpy as np

from dlviz.preset.schema import validate
from dlviz.training.diagnose import diagnose
from dlviz.training.live import FeedCallback, LiveFeed
from dlviz.training.trainer import Trainer


def base(**over):
    snap = {
        "task": "classification",
        "param_names": ["layers[0].weight", "layers[2].weight"],
        "loss": np.array([2.30, 2.2]),
        "log_grad_norm": np.zeros((0, 2)),
        "log_update_ratio": np.zeros((0, 2)),
        "epochs": [],
        "telemetry": [],
    }
    snap.update(over)
    return snap


def titles(found):
    return {d.title: d for d in found}


def test_initial_loss_against_ln_c():
    ok = titles(diagnose(base(first_loss=2.30), 10))["Initial loss"]
    assert ok.level == "ok" and "2.303" in ok.text and "2.300" in ok.text
    bad = titles(diagnose(base(first_loss=9.0), 10))["Initial loss"]
    assert bad.level == "warning" and "9.000" in bad.text


def test_vanishing_and_exploding_gradients():
    g = np.log10(np.array([[1e-8, 1e-1]] * 10))
    d = titles(diagnose(base(log_grad_norm=g), 2))
    assert "Vanishing gradients" in d and "1.0e-08" in d["Vanishing gradients"].text
    g = np.log10(np.array([[1e4, 1e5]] * 10))
    assert "Exploding gradients" in titles(diagnose(base(log_grad_norm=g), 2))


def test_update_ratio_and_dead_relus_and_overfitting():
    u = np.log10(np.full((10, 2), 0.2))
    assert "Update ratio" in titles(diagnose(base(log_update_ratio=u), 2))
    tel = [{"step": 10, "layers": {"model.layers[1]": {"type": "ReLU", "dead": 0.75, "mean": 0, "std": 0}}}]
    d = titles(diagnose(base(telemetry=tel), 2))["Dead ReLUs"]
    assert "75%" in d.text and "model.layers[1]" in d.text
    epochs = [
        {"epoch": i + 1, "train_loss": 1 / (i + 1), "val_loss": v, "train_accuracy": 0.99, "val_accuracy": 0.7} for i, v in enumerate([0.8, 0.6, 0.7, 0.9, 1.2])
    ]
    d = titles(diagnose(base(epochs=epochs), 2))
    assert "Over-fitting" in d and "0.700" in d["Over-fitting"].text and "Train/validation gap" in d


def test_a_real_run_with_a_huge_rate_is_told_the_rate_is_too_high():
    exp = validate(
        {
            "format": "dlviz-preset/1",
            "seed": 0,
            "data": {"name": "circle", "num_samples": 300, "batch_size": 10},
            "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 16}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}]},
            "loss": {"type": "CrossEntropyLoss"},
            "optimizer": {"type": "SGD", "lr": 3.0},
            "training": {"epochs": 5},
        }
    )
    feed = LiveFeed()
    Trainer(exp, [FeedCallback(feed.handle)]).run()
    found = titles(diagnose(feed.snapshot(), 2))
    assert {"Update ratio", "Dead ReLUs"} & set(found), found
