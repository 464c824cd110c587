"""Transfer learning: frozen layers (trainable: false) stay as they were through training, init_from copies a stored
run's weights exactly where names and shapes match, bad references get one sentence, and the exported script
reproduces a frozen, init_from run."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlviz.__main__ import main
from dlviz.errors import UserError
from dlviz.model.build import build_model, summarize
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training import transfer
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]

CNN = [
    {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel_size": 2},
    {"type": "Sequential", "layers": [{"type": "Conv2d", "out_channels": 6, "kernel_size": 3}, {"type": "ReLU"}]},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 3},
]


def _doc(layers=CNN, classes=(0, 1, 2), **top) -> dict:
    return {
        "format": "dlviz-preset/1",
        "name": "transfer test",
        "seed": 3,
        "data": {"name": "digits", "classes": list(classes), "subset": 300, "batch_size": 32},
        "model": {"input_shape": [1, 8, 8], "layers": copy.deepcopy(layers)},
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
        "training": {"epochs": 2},
        **top,
    }


def _frozen(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["model"]["layers"][0]["trainable"] = False
    doc["model"]["layers"][3]["trainable"] = False  # a block: its layers freeze with it
    return doc


@pytest.fixture(scope="module")
def source_run():
    """A finished run in the run store init_from reads (the test session's own), and its final weights."""
    store = RunStore()
    exp = validate(_doc())
    tr = Trainer(exp)
    rid = store.create_run(exp, status="running")
    tr.callbacks.append(StoreCallback(store, rid))
    assert tr.run()["status"] == "finished"
    return rid, {k: v.clone() for k, v in tr.model.state_dict().items()}


def test_frozen_layers_are_unchanged_by_training_with_momentum_and_weight_decay():
    exp = validate(_frozen(_doc()))
    tr = Trainer(exp)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.run()
    after = tr.model.state_dict()
    for name in ("layers.0.weight", "layers.0.bias", "layers.3.0.weight", "layers.3.0.bias"):
        assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["layers.5.weight"], before["layers.5.weight"])  # the head trained
    assert {id(p) for g in tr.optimizer.param_groups for p in g["params"]} == {id(tr.model.layers[5].weight), id(tr.model.layers[5].bias)}


def test_the_summary_counts_frozen_parameters():
    s = summarize(validate(_frozen(_doc())))
    rows = {r.path: r for r in s.rows}
    assert rows["model.layers[0]"].non_trainable_params == 4 * 9 + 4 and rows["model.layers[0]"].trainable_params == 0
    assert rows["model.layers[3].layers[0]"].non_trainable_params == 6 * 4 * 9 + 6
    assert s.trainable_params == rows["model.layers[5]"].trainable_params == 6 * 2 * 2 * 3 + 3
    assert s.to_json()["non_trainable_params"] == 40 + 222
    assert _frozen(_doc())["model"]["layers"][0] == validate(_frozen(_doc())).to_dict()["model"]["layers"][0]


def test_a_model_frozen_everywhere_gets_one_sentence():
    doc = _frozen(_doc())
    doc["model"]["layers"][5]["trainable"] = False
    with pytest.raises(UserError) as e:
        Trainer(validate(doc))
    assert e.value.path == "model.layers" and "nothing to change" in e.value.message


def test_trainable_must_be_a_boolean():
    doc = _doc()
    doc["model"]["layers"][0]["trainable"] = "no"
    with pytest.raises(UserError) as e:
        validate(doc)
    assert e.value.path == "model.layers[0].trainable"


def test_init_from_copies_matching_layers_exactly(source_run):
    rid, weights = source_run
    # a new head (4 outputs instead of 3): its shape differs, so it keeps the new model's initial weights
    layers = copy.deepcopy(CNN)
    layers[5]["out_features"] = 4
    exp = validate(_doc(layers, classes=(5, 6, 7, 8), init_from={"run": rid}))
    tr = Trainer(exp)
    fresh = build_model(exp, seed=exp.seed).state_dict()
    got = tr.model.state_dict()
    for name in ("layers.0.weight", "layers.0.bias", "layers.3.0.weight", "layers.3.0.bias"):
        assert torch.equal(got[name], weights[name]), name
    for name in ("layers.5.weight", "layers.5.bias"):
        assert torch.equal(got[name], fresh[name]), name
    t = tr.transfer
    assert t.new == ["layers.5.weight", "layers.5.bias"] and len(t.copied) == 4
    assert t.message() == f"Starts from run {rid} at epoch 2: copied layers[0], layers[3].layers[0]; new (initialized as the preset says): layers[5]."
    assert transfer.plan(exp).message() == t.message()  # what the Train page says before the run


def test_init_from_an_epoch_s_checkpoint(source_run):
    rid, _ = source_run
    exp = validate(_doc(init_from={"run": rid, "epoch": 0}))
    initial = RunStore().load_checkpoint(rid, 0)["model"]
    got = Trainer(exp).model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in initial.items())
    with pytest.raises(UserError) as e:
        Trainer(validate(_doc(init_from={"run": rid, "epoch": 7})))
    have = ", ".join(map(str, sorted(set(RunStore().checkpoints(rid)["epoch"].tolist()))))  # epoch 1's is kept only if a second passed
    assert e.value.path == "init_from.epoch" and e.value.message == f"run {rid} has no checkpoint at epoch 7; it has epochs {have}"


def test_bad_init_from_gets_one_sentence(source_run):
    rid, _ = source_run
    with pytest.raises(UserError) as e:
        Trainer(validate(_doc(init_from={"run": "20990101-000000-abcdef"})))
    assert e.value.path == "init_from.run" and e.value.message.startswith("no run with id 20990101-000000-abcdef in the run store")
    dense = [{"type": "Flatten"}, {"type": "Linear", "out_features": 3}]
    with pytest.raises(UserError) as e:
        Trainer(validate(_doc(dense, init_from={"run": rid})))
    assert e.value.path == "init_from"
    assert e.value.message == (
        f"run {rid} at epoch 2 is a different architecture: no weights match this model in name and shape; none of its 6 entries has a name of this model"
    )
    other = copy.deepcopy(CNN)
    other[0]["out_channels"] = 5
    other[3]["layers"][0]["out_channels"] = 7
    other[5]["out_features"] = 4
    with pytest.raises(UserError) as e:
        Trainer(validate(_doc(other, classes=(0, 1, 2, 3), init_from={"run": rid})))
    assert "6 entries match in name only, their shapes differ (layers[0].weight is [4, 1, 3, 3] there and [5, 1, 3, 3] here)" in e.value.message
    with pytest.raises(UserError) as e:
        Trainer(validate(_doc(init_from={"preset": "transfer-pretrain"})))
    assert e.value.path == "init_from.preset" and "train that lesson first" in e.value.message
    with pytest.raises(UserError) as e:
        Trainer(validate(_doc(init_from={"preset": "transfer-pretrian"})))
    assert "did you mean 'transfer-pretrain'" in e.value.message.lower()
    with pytest.raises(UserError) as e:
        validate(_doc(init_from={"run": rid, "preset": "transfer-pretrain"}))
    assert e.value.path == "init_from" and "needs one of" in e.value.message


def test_the_exported_script_reproduces_a_frozen_init_from_run(source_run, tmp_path):
    rid, _ = source_run
    doc = _frozen(_doc(init_from={"run": rid}))
    preset, script = tmp_path / "preset.json", tmp_path / "fine.py"
    preset.write_text(json.dumps(doc))
    assert main(["export", str(preset), "--format", "py", "-o", str(script)]) == 0
    assert (tmp_path / "fine.init.pt").is_file()
    text = script.read_text()
    assert "import dlviz" not in text and "FROZEN = " in text and 'INIT_FROM = "fine.init.pt"' in text
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    train = subprocess.run([sys.executable, "-m", "dlviz", "train", str(preset), "--json"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, cwd=tmp_path, env=clean, timeout=300)
    assert train.returncode == run.returncode == 0, (train.stderr, run.stderr)
    assert run.stdout == train.stdout and train.stdout.strip()
    assert train.stderr.startswith(f"Starts from run {rid} at epoch 2: all 6 weight tensors copied.")


def test_init_from_a_gallery_preset_takes_its_newest_finished_run_saved_by_the_cli(tmp_path, capsys):
    pre = gallery.raw("transfer-pretrain")
    pre["data"]["subset"], pre["training"]["epochs"] = 200, 1  # the lesson's title, quicker
    path = tmp_path / "pre.json"
    path.write_text(json.dumps(pre))
    assert main(["train", str(path), "--save", "--json"]) == 0
    rid = capsys.readouterr().err.split()[1]
    assert RunStore().run(rid)["status"] == "finished"
    fine = gallery.raw("transfer-finetune")
    fine["data"]["subset"] = 100
    tr = Trainer(validate(fine))
    assert tr.transfer.run_id == rid and tr.transfer.source.startswith(f"the newest finished run of 'transfer-pretrain' ({rid})")
    weights = RunStore().load_checkpoint(rid)["model"]
    assert all(torch.equal(v, weights[k]) for k, v in tr.model.state_dict().items())


def test_classes_keeps_the_digits_listed_relabelled_in_that_order():
    from sklearn.datasets import load_digits

    from dlviz.data.datasets import describe, load_dataset

    exp = validate(_doc(classes=(7, 2, 9)))
    ds = load_dataset(exp.data, exp.seed)
    assert describe(exp.data)[2] == ds.num_classes == 3 and ds.class_names == ["7", "2", "9"]
    d = load_digits()
    pixels = {tuple(np.round(img.ravel() / 16.0, 6)): int(t) for img, t in zip(d.images, d.target)}
    mean, std = 0.3053, 0.3760
    for x, y in zip(ds.x_train[:40], ds.y_train[:40]):
        digit = pixels[tuple(np.round(x.numpy().ravel() * std + mean, 6))]
        assert [7, 2, 9][int(y)] == digit
    assert len(ds.x_train) + len(ds.x_val) == 300
    with pytest.raises(UserError) as e:
        load_dataset(validate(_doc(classes=(0,))).data.model_copy(update={"subset": 1000}), 0)
    assert e.value.path == "data.subset" and "the digits set has 178 of the digits [0]" in e.value.message


def test_a_stored_run_s_starting_weights_are_its_first_checkpoint(source_run):
    from dlviz import export

    rid, _ = source_run
    exp = validate(_frozen(_doc(init_from={"run": rid})))
    tr = Trainer(exp)
    start = {k: v.clone() for k, v in tr.model.state_dict().items()}
    store = RunStore()
    fine = store.create_run(exp, status="running")
    tr.callbacks.append(StoreCallback(store, fine))
    tr.run()
    got = export.init_weights(exp, fine)
    assert got.keys() == start.keys() and all(torch.equal(got[k], v) for k, v in start.items())
