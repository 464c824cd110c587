"""The penalty is recorded beside the data loss: an epoch's data loss, penalty and their total match a hand-written loop,
and more regularization shows as a higher total."""

import copy
import math

import pytest
import torch
from torch import nn

from dlviz.preset.schema import validate
from dlviz.training.trainer import Trainer


def preset(l1=0.0, l2=0.0):
    return validate(
        {
            "format": "dlviz-preset/1",
            "seed": 3,
            "data": {"name": "circle", "num_samples": 200, "noise": 0.1, "val_fraction": 0.2, "test_fraction": 0.1, "batch_size": 16},
            "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 8}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]},
            "loss": {"type": "CrossEntropyLoss"},
            "optimizer": {"type": "SGD", "lr": 0.1},
            "training": {"epochs": 1, "l1": l1, "l2": l2},
        }
    )


def test_data_loss_penalty_and_total_match_a_hand_written_loop():
    tr = Trainer(preset(l1=0.01, l2=0.02))
    ref = copy.deepcopy(tr.model)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ds = tr.dataset
    perm = torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(3))
    data, pen = [], []
    for i in range(0, len(perm), 16):
        idx = perm[i : i + 16]
        weights = [p for p in ref.parameters() if p.dim() >= 2]
        d = nn.functional.cross_entropy(ref(ds.x_train[idx]), ds.y_train[idx])
        p = 0.01 * sum(w.abs().sum() for w in weights) + 0.02 * sum((w**2).sum() for w in weights)
        opt.zero_grad()
        (d + p).backward()
        opt.step()
        data.append(d.item() * len(idx))
        pen.append(p.item() * len(idx))
    n = len(ds.x_train)
    tr.run()
    rec = tr.history[-1]
    assert rec["train_loss"] == pytest.approx(math.fsum(data) / n, rel=1e-6)
    assert rec["train_penalty"] == pytest.approx(math.fsum(pen) / n, rel=1e-5)
    assert rec["train_total"] == pytest.approx(rec["train_loss"] + rec["train_penalty"], rel=1e-12)


def test_more_regularization_raises_the_total_and_no_penalty_adds_no_keys():
    plain = Trainer(preset()).run()
    assert "train_penalty" not in plain and "train_total" not in plain
    small, big = Trainer(preset(l2=0.001)).run(), Trainer(preset(l2=0.1)).run()
    assert big["train_penalty"] > small["train_penalty"] > 0
    assert big["train_total"] > small["train_total"]
