"""The learning-rate range test: its (lr, loss) pairs are those of a hand-written loop with torch.optim, it stops when the
loss blows up, its rule picks the steepest descent, and "use this rate" writes the rate into the preset."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from dlviz.__main__ import main
from dlviz.analysis.lrfind import lr_range_test, rates, suggest, with_lr
from dlviz.data.datasets import load_dataset
from dlviz.errors import UserError
from dlviz.model.build import build_model
from dlviz.preset.schema import validate


def preset(lr=0.1, optimizer="SGD", **extra):
    return {
        "format": "dlviz-preset/1",
        "seed": 3,
        "data": {"name": "circle", "num_samples": 200, "noise": 0.1, "val_fraction": 0.2, "batch_size": 16},
        "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 8}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]},
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": optimizer, "lr": lr, **extra},
        "training": {"epochs": 1},
    }


def test_pairs_equal_a_hand_written_loop_across_epochs():
    exp = validate(preset(momentum=0.9))
    steps, start, end = 25, 1e-4, 1.0  # 160 training samples in batches of 16: 10 a epoch, so the test spans three
    got = lr_range_test(exp, steps=steps, start=start, end=end, diverge=1e9)
    ds = load_dataset(exp.data, exp.seed)
    model = build_model(exp, seed=exp.seed)
    opt = torch.optim.SGD(model.parameters(), lr=start, momentum=0.9)
    gen = torch.Generator().manual_seed(exp.seed)
    lrs, losses = [], []
    while len(losses) < steps:
        perm = torch.randperm(len(ds.x_train), generator=gen)
        for i in range(0, len(perm), 16):
            if len(losses) == steps:
                break
            lr = start * (end / start) ** (len(losses) / (steps - 1))
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[i : i + 16]
            loss = nn.functional.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            lrs.append(lr)
            losses.append(loss.item())
    assert got.lrs == pytest.approx(lrs, rel=1e-12)
    assert got.losses == pytest.approx(losses, rel=1e-6)
    avg, smoothed = 0.0, []
    for i, v in enumerate(losses, 1):
        avg = 0.98 * avg + 0.02 * v
        smoothed.append(avg / (1 - 0.98**i))
    assert got.smoothed == pytest.approx(smoothed, rel=1e-6)
    assert not got.stopped_early and got.reason == ""
    assert got.suggested in got.lrs and "steepest" in got.rule


def test_stops_early_when_the_loss_blows_up():
    got = lr_range_test(validate(preset()), steps=100, start=1e-3, end=1e6)
    assert got.stopped_early
    assert len(got.lrs) < 100
    last = got.smoothed[-1]
    assert not math.isfinite(last) or last > 4 * min(got.smoothed) or "non-finite" in got.reason
    assert got.reason
    assert got.suggested < got.lrs[-1]


def test_the_rate_grows_exponentially_from_start_to_end():
    r = rates(5, 1e-4, 1.0)
    assert r[0] == pytest.approx(1e-4) and r[-1] == pytest.approx(1.0)
    assert np.diff(np.log10(r)) == pytest.approx([1.0] * 4)


def test_the_rule_picks_the_steepest_descent_before_the_minimum():
    lrs = list(np.logspace(-6, 0, 61))
    x = np.log10(lrs)
    # a loss that falls fastest at lr 1e-3 (a logistic drop centred there), bottoms out at 1e-1, then climbs
    smoothed = list(2.0 - 1.0 / (1 + np.exp(-4 * (x + 3))) + np.where(x > -1, 5 * (x + 1) ** 2, 0))
    assert suggest(lrs, smoothed) == pytest.approx(1e-3, rel=0.05)
    assert suggest(lrs[:2], smoothed[:2]) == lrs[int(np.argmin(smoothed[:2]))]


def test_with_lr_writes_the_rate_and_checks_it():
    doc = preset(lr=0.1)
    out = with_lr(doc, 0.003)
    assert out["optimizer"]["lr"] == 0.003 and doc["optimizer"]["lr"] == 0.1
    assert validate(out).optimizer.args["lr"] == 0.003
    with pytest.raises(UserError) as e:
        with_lr(doc, -1.0)
    assert e.value.path == "optimizer.lr"
    no_opt = {k: v for k, v in doc.items() if k != "optimizer"}
    with pytest.raises(UserError) as e:
        with_lr(no_opt, 0.01)
    assert e.value.path == "optimizer"


def test_cli_prints_one_json_object(capsys):
    assert main(["lr-find", "xor", "--steps", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["lrs"]) == len(out["losses"]) == len(out["smoothed"]) <= 12
    assert out["suggested"] > 0 and out["rule"]


def test_cli_text_names_the_rate_and_its_rule(capsys):
    assert main(["lr-find", "xor", "--steps", "12"]) == 0
    out = capsys.readouterr().out
    assert "suggested lr" in out and "steepest" in out
    assert main(["lr-find", "xor", "--steps", "1"]) == 2
    assert "at least 2 steps" in capsys.readouterr().err
