"""Exports: the standalone script prints what `train --json` prints, byte for byte; ONNX files re-run in onnxruntime; weights round trip."""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import importlib.util
import inspect
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlviz import export, loop, paths, runtime
from dlviz.__main__ import main
from dlviz.data.datasets import load_dataset
from dlviz.errors import UserError
from dlviz.model.build import build_model
from dlviz.preset import gallery
from dlviz.preset.registry import ALL_LAYERS, INITS, LOSSES, OPTIMIZERS, SCHEDULES
from dlviz.preset.schema import DATASETS, validate

ROOT = Path(__file__).resolve().parents[1]


def _doc(data, layers, shape, loss, optimizer, schedule=None, training=None, init=None, seed=1) -> dict:
    doc = {
        "format": "dlviz-preset/1",
        "name": "export test",
        "seed": seed,
        "data": data,
        "model": {"input_shape": shape, "layers": layers},
        "loss": loss,
        "optimizer": optimizer,
        "training": training or {"epochs": 2},
    }
    if init is not None:
        doc["model"]["init"] = init
    if schedule is not None:
        doc["schedule"] = schedule
    return doc


SEVEN = ["x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)", "sin(x2)"]

# Between them these use every layer, init, loss, optimizer, schedule and dataset (test_presets_cover_the_registry).
ZOO = {
    "dense-activations-inits": _doc(
        {"name": "circle", "num_samples": 120, "noise": 0.2, "features": SEVEN, "batch_size": 16, "test_fraction": 0.1},
        [
            {"type": "Linear", "out_features": 16, "init": "xavier_normal"},
            {"type": "ReLU"},
            {"type": "LeakyReLU", "negative_slope": 0.1},
            {"type": "PReLU", "num_parameters": 16, "init": 0.1},
            {"type": "ELU", "alpha": 0.5},
            {"type": "SELU"},
            {"type": "CELU"},
            {"type": "GELU", "approximate": "tanh"},
            {"type": "SiLU"},
            {"type": "Mish"},
            {
                "type": "Linear",
                "out_features": 16,
                "init": {"type": "kaiming_uniform", "a": 0.1, "mode": "fan_out", "nonlinearity": "leaky_relu", "bias": "default"},
            },
            {"type": "Sigmoid"},
            {"type": "Tanh"},
            {"type": "Softplus", "beta": 2.0},
            {"type": "Softsign"},
            {"type": "Hardtanh", "min_val": -2.0},
            {"type": "Hardswish"},
            {"type": "ReLU6"},
            {"type": "Linear", "out_features": 32, "init": {"type": "orthogonal", "gain": 0.5}},
            {"type": "Maxout", "pieces": 2},
            {"type": "Bilinear", "out_features": 8, "init": {"type": "trunc_normal", "std": 0.2}},
            {"type": "BatchNorm1d", "momentum": 0.2},
            {"type": "LayerNorm", "eps": 1e-4},
            {"type": "Dropout", "p": 0.2},
            {"type": "AlphaDropout", "p": 0.1},
            {"type": "Identity"},
            {"type": "Linear", "out_features": 8, "init": {"type": "uniform", "a": -0.3, "b": 0.3}},
            {"type": "Softmax"},
            {"type": "Linear", "out_features": 8, "init": {"type": "constant", "val": 0.01}},
            {"type": "Linear", "out_features": 8, "init": "ones"},
            {"type": "Linear", "out_features": 8, "init": "zeros"},
            {"type": "Linear", "out_features": 8, "init": "default"},
            {"type": "Linear", "out_features": 2},
            {"type": "LogSoftmax", "dim": -1},
        ],
        [7],
        {"type": "NLLLoss"},
        {"type": "SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
        {"type": "LinearLR", "start_factor": 0.5, "total_iters": 2},
        {"epochs": 2, "l1": 1e-4, "l2": 1e-4, "grad_clip": 0.5, "max_norm": 2.0},
        init="lecun_normal",
    ),
    "conv-blocks-augment-onecycle": _doc(
        {"name": "digits", "subset": 300, "batch_size": 32, "test_fraction": 0.1, "augment": {"hflip": True, "crop": 1, "noise": 0.05}},
        [
            {"type": "Conv2d", "out_channels": 8, "kernel_size": 3, "padding": "same", "padding_mode": "reflect"},
            {"type": "BatchNorm2d"},
            {"type": "ReLU"},
            {
                "type": "Sequential",
                "name": "norms",
                "layers": [
                    {"type": "GroupNorm", "num_groups": 2},
                    {"type": "InstanceNorm2d", "affine": True},
                    {"type": "LocalResponseNorm", "size": 3},
                    {"type": "Dropout2d", "p": 0.1},
                ],
            },
            {
                "type": "Residual",
                "body": [{"type": "Conv2d", "out_channels": 8, "kernel_size": [3, 1], "padding": [1, 0], "groups": 2, "bias": False}],
                "shortcut": [{"type": "Conv2d", "out_channels": 8, "kernel_size": 1, "init": "xavier_uniform"}],
            },
            {
                "type": "Concat",
                "branches": [
                    [{"type": "MaxPool2d", "kernel_size": 2, "ceil_mode": True}],
                    [{"type": "AvgPool2d", "kernel_size": 2, "count_include_pad": False}],
                    [{"type": "Conv2d", "out_channels": 4, "kernel_size": 2, "stride": 2}],
                ],
            },
            {"type": "ConvTranspose2d", "out_channels": 6, "kernel_size": 2, "stride": 2},
            {"type": "AvgPool2d", "kernel_size": 2},
            {"type": "Upsample", "scale_factor": 2.0, "mode": "bilinear", "align_corners": False},
            {"type": "Upsample", "size": [10, 10]},
            {"type": "AdaptiveMaxPool2d", "output_size": 5},
            {"type": "AdaptiveAvgPool2d", "output_size": [2, 2]},
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 10},
        ],
        [1, 8, 8],
        {"type": "CrossEntropyLoss", "label_smoothing": 0.1},
        {"type": "Adam", "lr": 0.01, "amsgrad": True},
        {"type": "OneCycleLR", "max_lr": 0.05, "anneal_strategy": "linear"},
        {"epochs": 2, "grad_clip": 1.0},
        init={"type": "kaiming_normal", "mode": "fan_out"},
    ),
    "conv1d-maxnorm-steplr": _doc(
        {"name": "reg-gauss", "num_samples": 200, "noise": 0.1, "features": SEVEN, "batch_size": 20},
        [
            {"type": "Linear", "out_features": 16},
            {"type": "Unflatten", "dim": 1, "unflattened_size": [2, 8]},
            {"type": "Conv1d", "out_channels": 4, "kernel_size": 3, "padding": 1},
            {"type": "BatchNorm1d"},
            {"type": "MaxPool1d", "kernel_size": 2},
            {"type": "AvgPool1d", "kernel_size": 2, "stride": 1},
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 1},
        ],
        [7],
        {"type": "SmoothL1Loss", "beta": 0.5},
        {"type": "AdamW", "lr": 0.01, "weight_decay": 0.05},
        {"type": "StepLR", "step_size": 1, "gamma": 0.5},
        {"epochs": 3, "max_norm": 1.5, "l1": 1e-3},
    ),
    "sequence-layers": _doc(
        {"name": "tokens", "task": "reverse", "num_samples": 120, "seq_len": 6, "vocab": 5, "batch_size": 16},
        [
            {"type": "Embedding", "num_embeddings": 5, "embedding_dim": 8, "padding_idx": 0},
            {"type": "TransformerEncoderLayer", "nhead": 2, "dim_feedforward": 16, "activation": "gelu", "norm_first": True},
            {"type": "MultiheadAttention", "num_heads": 2, "causal": True, "dropout": 0.1},
            {"type": "GRU", "hidden_size": 6, "bidirectional": True, "output": "all"},
            {"type": "LSTM", "hidden_size": 8, "num_layers": 2, "dropout": 0.1, "output": "all"},
            {"type": "RNN", "hidden_size": 8, "nonlinearity": "relu", "output": "all"},
            {"type": "Linear", "out_features": 5},
        ],
        [6],
        {"type": "CrossEntropyLoss"},
        {"type": "RMSprop", "lr": 0.005, "momentum": 0.5, "centered": True},
        {"type": "CosineAnnealingLR", "T_max": 2},
        init={"type": "normal", "std": 0.1},
    ),
    "sine-bilstm-early-stopping": _doc(
        {"name": "sine", "num_samples": 150, "seq_len": 10, "noise": 0.05, "batch_size": 16},
        [{"type": "LSTM", "hidden_size": 8, "bidirectional": True}, {"type": "Linear", "out_features": 1}],
        [10, 1],
        {"type": "L1Loss"},
        {"type": "Adam", "lr": 0.01},
        {"type": "ExponentialLR", "gamma": 0.9},
        {"epochs": 4, "early_stopping": {"patience": 1}},
    ),
    "majority-plateau": _doc(
        {"name": "tokens", "task": "majority", "num_samples": 150, "seq_len": 5, "vocab": 4, "batch_size": 16},
        [
            {"type": "Embedding", "num_embeddings": 4, "embedding_dim": 8, "max_norm": 1.0, "init": "xavier_uniform"},
            {"type": "MultiheadAttention", "num_heads": 2, "bias": False},
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 4},
        ],
        [5],
        {"type": "MultiMarginLoss", "p": 2, "margin": 0.5},
        {"type": "Adagrad", "lr": 0.05, "lr_decay": 0.01},
        {"type": "ReduceLROnPlateau", "factor": 0.5, "patience": 0},
        {"epochs": 3},
    ),
    "gauss-bce-no-restore": _doc(
        {"name": "gauss", "num_samples": 100, "noise": 0.3, "batch_size": 10, "val_fraction": 0.3},
        [{"type": "Linear", "out_features": 4}, {"type": "Tanh"}, {"type": "Linear", "out_features": 1}],
        [2],
        {"type": "BCEWithLogitsLoss"},
        {"type": "Adadelta"},
        None,
        {"epochs": 3, "early_stopping": {"patience": 2, "min_delta": 0.001, "restore_best": False}},
    ),
    "xor-softmargin-no-validation": _doc(
        {"name": "xor", "num_samples": 100, "noise": 0.1, "batch_size": 10, "val_fraction": 0.0, "test_fraction": 0.2},
        [{"type": "Linear", "out_features": 4}, {"type": "ReLU"}, {"type": "Linear", "out_features": 1}],
        [2],
        {"type": "SoftMarginLoss"},
        {"type": "NAdam", "lr": 0.01},
    ),
    "blobs-kl": _doc(
        {"name": "blobs", "classes": 4, "num_samples": 100, "noise": 0.2, "batch_size": 10},
        [{"type": "Linear", "out_features": 4}, {"type": "LogSoftmax"}],
        [2],
        {"type": "KLDivLoss"},
        {"type": "RAdam", "lr": 0.01},
    ),
    "moons-adamax": _doc(
        {"name": "moons", "num_samples": 100, "batch_size": 10, "features": ["x1", "x2", "x1*x2"]},
        [{"type": "Linear", "out_features": 4}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}],
        [3],
        {"type": "CrossEntropyLoss"},
        {"type": "Adamax"},
    ),
    "plane-huber": _doc(
        {"name": "reg-plane", "num_samples": 100, "noise": 0.2, "batch_size": 10},
        [{"type": "Linear", "out_features": 1}],
        [2],
        {"type": "HuberLoss", "delta": 0.5},
        {"type": "SGD", "lr": 0.05},
    ),
    "curve-outliers-sum": _doc(
        {"name": "curve", "function": "cubic", "num_samples": 100, "outliers": 0.1, "noise": 0.2, "batch_size": 10, "test_fraction": 0.2},
        [{"type": "Linear", "out_features": 8}, {"type": "Tanh"}, {"type": "Linear", "out_features": 1}],
        [1],
        {"type": "MSELoss", "reduction": "sum"},
        {"type": "SGD", "lr": 0.001},
    ),
    "mnist-subset": _doc(
        {"name": "mnist", "subset": 200, "batch_size": 50, "test_fraction": 0.1},
        [{"type": "Conv2d", "out_channels": 4, "kernel_size": 5, "stride": 2}, {"type": "Tanh"}, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}],
        [1, 28, 28],
        {"type": "CrossEntropyLoss"},
        {"type": "SGD", "lr": 0.05, "momentum": 0.9},
        init="xavier_uniform",
    ),
    "sort-per-token": _doc(
        {"name": "tokens", "task": "sort", "num_samples": 100, "seq_len": 4, "vocab": 3, "batch_size": 10},
        [
            {"type": "Embedding", "num_embeddings": 3, "embedding_dim": 4},
            {"type": "Flatten"},
            {"type": "Linear", "out_features": 12},
            {"type": "Unflatten", "dim": 1, "unflattened_size": [4, 3]},
        ],
        [4],
        {"type": "CrossEntropyLoss"},
        {"type": "Adam"},
    ),
    "brackets-tbptt-positional": _doc(
        {"name": "tokens", "task": "brackets", "num_samples": 120, "seq_len": 12, "vocab": 5, "batch_size": 16},
        [
            {"type": "Embedding", "num_embeddings": 5, "embedding_dim": 8},
            {"type": "PositionalEncoding", "kind": "learned"},
            {"type": "PositionalEncoding", "max_len": 16},
            {"type": "LSTM", "hidden_size": 8, "num_layers": 2, "output": "all"},
            {"type": "Linear", "out_features": 5},
        ],
        [12],
        {"type": "CrossEntropyLoss"},
        {"type": "Adam", "lr": 0.01},
        None,
        {"epochs": 2, "tbptt": 4},
    ),
    "diverges": _doc(
        {"name": "reg-plane", "num_samples": 100, "batch_size": 10},
        [{"type": "Linear", "out_features": 64}, {"type": "Linear", "out_features": 64}, {"type": "Linear", "out_features": 1}],
        [2],
        {"type": "MSELoss"},
        {"type": "SGD", "lr": 10.0},
        None,
        {"epochs": 3},
        init={"type": "normal", "std": 50.0},
    ),
    # the tables are written to the uploads folder by the csv_tables fixture; data.source finds them there by name
    "csv-classes": _doc(
        {"name": "csv", "source": "export-classes.csv", "target": "label", "batch_size": 16, "test_fraction": 0.2},
        [{"type": "Linear", "out_features": 8}, {"type": "ReLU"}, {"type": "Linear", "out_features": 3}],
        [6],
        {"type": "CrossEntropyLoss"},
        {"type": "Adam", "lr": 0.01},
    ),
    "csv-regression": _doc(
        {"name": "csv", "source": "export-regression.csv", "target": "price", "batch_size": 16, "val_fraction": 0.25, "test_fraction": 0.1},
        [{"type": "Linear", "out_features": 8}, {"type": "Tanh"}, {"type": "Linear", "out_features": 1}],
        [4],
        {"type": "MSELoss"},
        {"type": "SGD", "lr": 0.05},
        None,
        {"epochs": 3},
    ),
    # finite gradients whose float32 sum overflows: the trainer reports it instead of failing to name a culprit
    "gradient-sum-overflows": _doc(
        {"name": "reg-plane", "num_samples": 100, "batch_size": 100, "val_fraction": 0.1},
        [
            {"type": "Linear", "out_features": 64, "init": {"type": "constant", "val": 1e-36}},
            {"type": "Linear", "out_features": 1, "init": {"type": "constant", "val": 1e37}},
        ],
        [2],
        {"type": "L1Loss"},
        {"type": "SGD", "lr": 0.01},
        None,
        {"epochs": 1},
    ),
}


def _gallery(name: str, training: dict, **data) -> dict:
    doc = copy.deepcopy(gallery.raw(name))
    doc["training"] = {**doc.get("training", {}), **training}
    doc["data"].update(data)
    return doc


# The gallery's lessons with fewer epochs and samples, and the early stopping that ends a run before its last epoch.
GALLERY = {
    "xor": _gallery("xor", {"epochs": 2}),
    "perceptron": _gallery("perceptron", {"epochs": 2}),
    "spiral-tanh": _gallery("spiral-tanh", {"epochs": 2}, num_samples=300),
    "cnn-digits": _gallery("cnn-digits", {"epochs": 1}, subset=400),
    "inception-digits": _gallery("inception-digits", {"epochs": 1}, subset=300),
    "deep-cnn-residual": _gallery("deep-cnn-residual", {"epochs": 1}, subset=300),
    "deep-batchnorm": _gallery("deep-batchnorm", {"epochs": 1}),
    "lstm-sine": _gallery("lstm-sine", {"epochs": 1}, num_samples=300),
    "attention-majority": _gallery("attention-majority", {"epochs": 1}, num_samples=500),
    "outliers-huber": _gallery("outliers-huber", {"epochs": 2}),
    "overfit-dropout": _gallery("overfit-dropout", {"epochs": 3}),
    "overfit-l2": _gallery("overfit-l2", {"epochs": 3}),
    "lenet5-mnist": _gallery("lenet5-mnist", {"epochs": 1}, subset=300),
    "detection-yolo": _gallery("detection-yolo", {"epochs": 1}, num_samples=120),
    "verification-triplet": _gallery("verification-triplet", {"epochs": 1}, subset=300),
    "segmentation-unet": _gallery("segmentation-unet", {"epochs": 1}, num_samples=120),
    # crops of the coins photo, with a test strip at its right edge
    "segmentation-coins": _gallery("segmentation-coins", {"epochs": 1}, num_samples=60, test_fraction=0.15),
    "overfit-early-stop": _gallery("overfit", {"epochs": 40, "early_stopping": {"patience": 2}}, test_fraction=0.2),
}

PRESETS = {**GALLERY, **ZOO}


def _csv_table(kind: str, seed: int) -> str:
    """A small table for the csv presets. "classes": commas, a text target with three classes, a true/false column,
    a text column to one-hot encode, spaces around names, an empty column and a row with a missing value.
    "regression": semicolons, CRLF line ends, a whole-number target with many values, a constant column and a row
    with an infinite value."""
    rng = np.random.default_rng(seed)
    if kind == "classes":
        n = 90
        a, b = rng.normal(0, 2, n), rng.uniform(-100, 100, n)
        flag, colour = rng.random(n) < 0.5, rng.choice(["red", "green", "blue"], n)
        score = a + b / 50 + flag
        label = np.where(score > 1, "high", np.where(score < -1, "low", "mid"))
        colour[7] = ""
        rows = [f"{x:.5f},{y:.3f},{f},{c},,{t}" for x, y, f, c, t in zip(a, b, flag, colour, label)]
        return "\n".join([" a , b ,flag,colour,notes,label", *rows]) + "\n"
    n = 80
    size, rooms, age = rng.uniform(30, 200, n), rng.integers(1, 6, n), rng.integers(0, 50, n)
    price = np.round(1000 * size + 5000 * rooms - 300 * age + rng.normal(0, 2000, n)).astype(int)
    rows = [f"{x:.1f};{r};{g};1;{p}" for x, r, g, p in zip(size, rooms, age, price)]
    rows[3] = "inf;" + rows[3].split(";", 1)[1]
    return "\r\n".join(["size;rooms;age;const;price", *rows]) + "\r\n"


@pytest.fixture(scope="module", autouse=True)
def csv_tables():
    """The csv presets' tables, generated with a fixed seed into the uploads folder (the test session's own)."""
    for kind in ("classes", "regression"):
        (paths.uploads_dir() / f"export-{kind}.csv").write_bytes(_csv_table(kind, seed=0).encode())


def load_script(text: str, folder: Path, name: str = "script"):
    """Import an exported script as a module (its main() does not run)."""
    path = folder / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"exported_{name}_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _main(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- the script's parts against dlviz's, in process


@pytest.mark.parametrize("key", PRESETS)
def test_script_data_and_model_are_dlviz_s(key, tmp_path):
    """The same tensors for every split, and the same weights drawn in the same order from the same seed."""
    exp = validate(PRESETS[key])
    mod = load_script(export.script(exp), tmp_path)
    ds = load_dataset(exp.data, exp.seed)
    xs, ys = mod.load_data()
    want = [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]
    for (wx, wy), x, y in zip(want, xs, ys):
        if wx is None:
            assert len(x) == 0 and len(y) == 0
            continue
        assert x.dtype == wx.dtype and y.dtype == wy.dtype
        assert torch.equal(x, wx) and torch.equal(y, wy)
        assert x.stride() == wx.stride(), "the same values in another layout: a convolution may compute other bits"
    ref = build_model(exp, seed=exp.seed)
    ref_rng = torch.get_rng_state()
    torch.manual_seed(exp.seed)
    net = mod.Net()
    if hasattr(mod, "init_weights"):
        mod.init_weights(net)
    assert torch.equal(torch.get_rng_state(), ref_rng), "the script draws a different amount of randomness while building"
    a, b = ref.state_dict(), net.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert repr(net.layers) == repr(ref.layers).replace("Stack(", "Sequential(")
    ref.eval(), net.eval()
    x = xs[0][:4]
    with torch.no_grad():
        assert torch.equal(net(x), ref(x))


def _used(docs) -> dict[str, set]:
    used = {k: set() for k in ("layer", "init", "loss", "optimizer", "schedule", "data")}

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") in ALL_LAYERS:
                used["layer"].add(node["type"])
            init = node.get("init")
            if isinstance(init, (str, dict)) and not (node.get("type") == "PReLU"):
                used["init"].add(init if isinstance(init, str) else init["type"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for doc in docs:
        walk(doc["model"])
        used["loss"].add(doc["loss"]["type"])
        used["optimizer"].add(doc["optimizer"]["type"])
        if "schedule" in doc:
            used["schedule"].add(doc["schedule"]["type"])
        used["data"].add(doc["data"]["name"])
    return used


def test_presets_cover_the_registry():
    used = _used(PRESETS.values())
    assert used["layer"] == set(ALL_LAYERS)
    assert used["init"] == set(INITS)
    assert used["loss"] == set(LOSSES)
    assert used["optimizer"] == set(OPTIMIZERS)
    assert used["schedule"] == set(SCHEDULES)
    assert used["data"] == set(DATASETS)


def test_script_reads_as_plain_pytorch(tmp_path):
    text = export.script(validate(ZOO["conv-blocks-augment-onecycle"]))
    compile(text, "script.py", "exec")
    assert "dlviz" not in "\n".join(line for line in text.splitlines() if "import" in line)
    assert "THREADS = 1" in text and "torch.set_num_threads(THREADS)" in text
    # only the blocks this model uses are written out, and its own dataset's code
    assert "class Residual" in text and "class Concat" in text and "class Recurrent" not in text
    assert "def augment(" in text and "load_digits" in text and "mnist" not in text and "def spiral(" not in text
    assert 'nn.Conv2d(1, 8, 3, padding="same", padding_mode="reflect")' in text
    assert 'OneCycleLR(optimizer, max_lr=0.05, anneal_strategy="linear", total_steps=EPOCHS * steps_per_epoch)' in text
    code, out, err = _main("export", "xor", "--format", "py", "-o", "-")
    assert code == 0 and err == "" and out == export.script(gallery.load("xor"))


def test_script_kernels_are_the_runtime_s_own_source():
    """Every function and class a script defines that the kernel modules (runtime, loop) also define is their source, to
    the letter; the export package keeps no copy of one as text."""
    kernels = {
        name: obj
        for module in (runtime, loop)
        for name, obj in vars(module).items()
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__
    }
    seen = set()
    for doc in PRESETS.values():
        text = export.script(validate(doc))
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in kernels:
                assert inspect.getsource(kernels[node.name]) in text, node.name
                seen.add(node.name)
            else:
                assert getattr(node, "name", None) not in kernels
    assert {"split", "Residual", "Concat", "SelfAttention", "augment", "evaluate", "lecun_normal_", "read_table"} <= seen
    source = "".join(p.read_text() for p in (ROOT / "dlviz" / "export").glob("*.py"))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for name in kernels:
                assert f"def {name}(" not in node.value and f"class {name}(" not in node.value, name


# ---------------------------------------------------------------- what is refused


def test_refusals_are_user_errors(monkeypatch):
    no_data = {k: v for k, v in GALLERY["xor"].items() if k != "data"}
    with pytest.raises(UserError, match="no data section"):
        export.script(validate(no_data))
    no_params = copy.deepcopy(GALLERY["xor"])
    no_params["model"]["layers"] = [{"type": "Identity"}]
    with pytest.raises(UserError, match="no trainable parameters"):
        export.script(validate(no_params))
    # a layer made by a call the registry did not note is refused with its path, never guessed
    monkeypatch.setitem(ALL_LAYERS, "Tanh", dataclasses.replace(ALL_LAYERS["Tanh"], make=lambda shape: nn.Tanh()))
    with pytest.raises(UserError) as e:
        export.script(validate(ZOO["curve-outliers-sum"]))
    assert e.value.path == "model.layers[1]" and "Tanh" in e.value.message


def test_cli_export_errors_are_one_line(tmp_path):
    preset = tmp_path / "xor.json"
    preset.write_text(json.dumps(GALLERY["xor"]))
    for argv, words in [
        (["--format", "py", "-o", str(tmp_path / "no" / "such" / "x.py")], "does not exist"),
        (["--format", "py", "-o", str(tmp_path / "x.py"), "--run", "abc"], "--run applies"),
        (["--format", "pt", "-o", str(tmp_path / "w.pt"), "--run", "no-such-run"], "no checkpoint"),
        (["--format", "onnx", "-o", "-"], "binary"),
    ]:
        code, out, err = _main("export", str(preset), *argv)
        assert code == 2 and out == "" and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and words in err, err


def test_csv_export_without_its_table_is_train_s_error(tmp_path):
    doc = copy.deepcopy(PRESETS["csv-regression"])
    doc["data"]["source"] = str(tmp_path / "gone.csv")
    preset = tmp_path / "gone.json"
    preset.write_text(json.dumps(doc))
    code, out, err = _main("export", str(preset), "--format", "py", "-o", str(tmp_path / "run.py"))
    assert code == 2 and out == "" and "Traceback" not in err and not (tmp_path / "run.py").exists()
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: data.source: no file") and "gone.csv" in err, err
    assert _main("train", str(preset), "--json") == (2, "", err)


# ---------------------------------------------------------------- byte-identical runs in fresh processes

CLI_RUNNER = """
import contextlib, io, json, sys
from dlviz.__main__ import main
runs = []
for path in sys.argv[1:]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", path, "--json"])
    runs.append({"stdout": out.getvalue(), "stderr": err.getvalue(), "code": code})
print(json.dumps(runs))
"""

SCRIPT_RUNNER = """
import contextlib, importlib.abc, io, json, runpy, sys

class NoDlviz(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "dlviz":
            raise ImportError("an exported script must not import dlviz")

sys.meta_path.insert(0, NoDlviz())
runs = []
for path in sys.argv[1:]:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [path]  # as `python path` sets it
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(path, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code
    runs.append({"stdout": out.getvalue(), "stderr": err.getvalue(), "code": code, "dlviz": "dlviz" in sys.modules})
print(json.dumps(runs))
"""


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every preset trained by the CLI's code in one fresh process and by its exported script in another, side by side.

    The scripts run in isolated mode (-I: no PYTHONPATH, no current folder on the path) from a folder without dlviz,
    and an import hook makes any import of dlviz fail."""
    folder = tmp_path_factory.mktemp("scripts")
    presets, scripts = [], []
    for key, doc in PRESETS.items():
        p = folder / f"{key}.json"
        p.write_text(json.dumps(doc))
        s = folder / f"{key}.py"
        s.write_text(export.script(validate(doc)))
        presets.append(str(p)), scripts.append(str(s))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cli = subprocess.Popen([sys.executable, "-c", CLI_RUNNER, *presets], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    script = subprocess.Popen(
        [sys.executable, "-I", "-c", SCRIPT_RUNNER, *scripts], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder, env=_clean_env()
    )
    (a, a_err), (b, b_err) = cli.communicate(timeout=600), script.communicate(timeout=600)
    assert cli.returncode == 0, a_err
    assert script.returncode == 0, b_err
    return dict(zip(PRESETS, zip(json.loads(a), json.loads(b))))


@pytest.mark.parametrize("key", PRESETS)
def test_script_prints_what_train_json_prints(key, runs):
    cli, script = runs[key]
    assert not script["dlviz"]
    assert script["stdout"] == cli["stdout"]
    assert script["code"] == cli["code"]
    assert _errors(script["stderr"]) == _errors(cli["stderr"])
    lines = [json.loads(line) for line in cli["stdout"].splitlines()]
    assert lines and "status" in lines[-1]


def test_runs_reach_the_interesting_ends(runs):
    """The comparisons above include a divergence, early stops and held-out test sets."""
    last = {key: json.loads(cli["stdout"].splitlines()[-1]) for key, (cli, _) in runs.items()}
    assert last["diverges"]["status"] == "diverged" and runs["diverges"][0]["code"] == 3
    assert last["gradient-sum-overflows"]["reason"].startswith("the gradients grew too large to add up")
    assert last["overfit-early-stop"]["reason"].startswith("early stopping") and last["overfit-early-stop"]["epochs"] < 40
    assert "best_epoch" in last["overfit-early-stop"] and "test_accuracy" in last["overfit-early-stop"]
    assert last["xor-softmargin-no-validation"]["val_loss"] is None and "test_loss" in last["xor-softmargin-no-validation"]
    assert "test_r2" in last["curve-outliers-sum"]
    # a detector is scored by mAP@0.5 of its validation canvases, by the same kernel in the script
    detector = [json.loads(line) for line in runs["detection-yolo"][0]["stdout"].splitlines()]
    assert 0 <= detector[-1]["val_map"] <= 1 and all("val_r2" not in r and "train_map" not in r for r in detector)
    assert "def grid_map(" in export.script(validate(GALLERY["detection-yolo"]))


def _standalone(doc: dict, folder: Path, via_cli: bool = False) -> None:
    """`python script.py` and `python -m dlviz train PRESET --json` as two processes: the same stdout, stderr and exit code."""
    preset = folder / "preset.json"
    preset.write_text(json.dumps(doc))
    script = folder / "run.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if via_cli:
        code, out, err = _main("export", str(preset), "--format", "py", "-o", str(script))
        assert code == 0 and out.startswith(f"wrote {script}") and err == "", err
    else:
        script.write_text(export.script(validate(doc)))
    train = subprocess.Popen(
        [sys.executable, "-m", "dlviz", "train", str(preset), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    run = subprocess.Popen([sys.executable, "-I", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder, env=_clean_env())
    (a, a_err), (b, b_err) = train.communicate(timeout=300), run.communicate(timeout=300)
    assert b == a and b_err == a_err and run.returncode == train.returncode, (a, a_err, b, b_err)
    assert a.strip()


def test_csv_script_reads_the_table_named_by_its_argument(tmp_path, runs):
    """`python run.py other.csv` trains on other.csv exactly as dlviz trains a preset whose data.source is that file."""
    (tmp_path / "other.csv").write_text(_csv_table("classes", seed=1))
    doc = copy.deepcopy(PRESETS["csv-classes"])
    doc["data"]["source"] = str(tmp_path / "other.csv")
    preset = tmp_path / "other.json"
    preset.write_text(json.dumps(doc))
    text = export.script(validate(PRESETS["csv-classes"]))
    assert f"CSV_PATH = {json.dumps(str((paths.uploads_dir() / 'export-classes.csv').resolve()))}" in text
    script = tmp_path / "run.py"
    script.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    train = subprocess.Popen(
        [sys.executable, "-m", "dlviz", "train", str(preset), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    run = subprocess.Popen(
        [sys.executable, "-I", str(script), "other.csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_clean_env()
    )
    (a, a_err), (b, b_err) = train.communicate(timeout=300), run.communicate(timeout=300)
    assert b == a and run.returncode == train.returncode == 0, (a, a_err, b, b_err)
    assert b != runs["csv-classes"][1]["stdout"]  # not the exported table's numbers
    # a table whose target dlviz would read as the other task is refused, not trained on
    mod = load_script(text, tmp_path, "module")
    (tmp_path / "numbers.csv").write_text("a,label\n" + "".join(f"{i},{i * 0.37:.2f}\n" for i in range(30)))
    with pytest.raises(ValueError, match="regress"):
        mod.load_data(str(tmp_path / "numbers.csv"))


def test_exported_script_runs_as_its_own_program(tmp_path):
    _standalone(GALLERY["overfit-dropout"], tmp_path, via_cli=True)


def test_diverging_script_exits_like_the_cli(tmp_path):
    _standalone(ZOO["diverges"], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("key", PRESETS)
def test_every_script_runs_as_its_own_program(key, tmp_path):
    _standalone(PRESETS[key], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "spiral-tanh",
        "cnn-digits",
        "deep-cnn-residual",
        "lstm-sine",
        "attention-majority",
        "lstm-long-memory-tbptt",
        "transformer-from-parts",
        "outliers-mse",
        "vanishing-sigmoid",
        "optim-momentum",
        "dead-relu",
        "zero-init",
    ],
)
def test_gallery_scripts_at_full_length(name, tmp_path):
    _standalone(gallery.raw(name), tmp_path)


# ---------------------------------------------------------------- ONNX


def _onnxruntime(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", ["xor", "cnn-digits", "deep-cnn-residual", "lstm-sine"], ids=["mlp", "cnn", "residual", "lstm"])
def test_onnx_round_trip(name, tmp_path):
    exp = gallery.load(name)
    path = tmp_path / "model.onnx"
    if name == "cnn-digits":  # through the command line
        code, out, err = _main("export", name, "--format", "onnx", "-o", str(path))
        assert code == 0 and err == "" and out.startswith(f"wrote {path}: checked in onnxruntime for any batch size")
    else:
        info = export.onnx(exp, path)
        assert info["dynamic_batch"] and info["max_abs_diff"] < 1e-5
    import onnx

    onnx.checker.check_model(str(path))
    net = build_model(exp, seed=exp.seed).eval()
    x = torch.randn(3, *exp.model.input_shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = net(x).numpy()
    got = _onnxruntime(path, x.numpy())
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_onnx_carries_given_weights_and_refuses_what_it_cannot_trace(tmp_path):
    exp = gallery.load("xor")
    net = build_model(exp, seed=exp.seed)
    trained = {k: v + 0.5 for k, v in net.state_dict().items()}
    export.onnx(exp, tmp_path / "trained.onnx", state_dict=trained)
    net.load_state_dict(trained)
    x = torch.randn(4, 2)
    with torch.no_grad():
        assert np.abs(_onnxruntime(tmp_path / "trained.onnx", x.numpy()) - net.eval()(x).numpy()).max() < 1e-5
    with pytest.raises(UserError, match="do not fit"):
        export.onnx(gallery.load("perceptron"), tmp_path / "x.onnx", state_dict=trained)

    class DataDependent(nn.Module):
        input_shape = (4,)

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x) if float(x.sum()) > 0 else -self.linear(x)  # Python control flow on a value

    with pytest.raises(UserError) as e:
        export.onnx(DataDependent(), tmp_path / "bad.onnx")
    assert str(e.value).startswith("this model cannot be exported to ONNX: torch.export cannot trace it")
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


# ---------------------------------------------------------------- weights


def _trained_run():
    from dlviz.training.store import RunStore, StoreCallback
    from dlviz.training.trainer import Trainer

    exp = validate(GALLERY["xor"])
    store = RunStore()
    run_id = store.create_run(exp)
    trainer = Trainer(exp, callbacks=[StoreCallback(store, run_id)])
    trainer.run()
    return exp, run_id, trainer.model.state_dict()


def test_weights_round_trip():
    from safetensors.torch import load

    exp = validate(PRESETS["conv-blocks-augment-onecycle"])  # BatchNorm buffers, an int64 counter, a bias-free conv
    state = build_model(exp, seed=5).state_dict()
    for back in (load(export.safetensors_bytes(state)), torch.load(io.BytesIO(export.state_dict_bytes(state)), weights_only=True)):
        assert set(back) == set(state)
        for k, v in state.items():
            assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
        net = build_model(exp, seed=0)
        net.load_state_dict(back)
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), state.values()))


def test_a_run_s_weights_load_into_the_script_s_model(tmp_path):
    exp, run_id, trained = _trained_run()
    assert all(torch.equal(a, b) for a, b in zip(export.run_weights(run_id).values(), trained.values()))
    preset = tmp_path / "xor.json"
    preset.write_text(json.dumps(GALLERY["xor"]))
    code, out, err = _main("export", str(preset), "--format", "safetensors", "-o", str(tmp_path / "w.safetensors"), "--run", run_id)
    assert code == 0 and err == "" and "final weights" in out
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "w.safetensors"))
    mod = load_script(export.script(exp), tmp_path)
    net = mod.Net()
    net.load_state_dict(weights)  # dlviz's parameter names are the script's
    ref = build_model(exp, seed=exp.seed)
    ref.load_state_dict(trained)
    x = torch.randn(5, 2)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), ref.eval()(x))
    code, out, err = _main("export", str(preset), "--format", "pt", "-o", str(tmp_path / "w.pt"), "--run", run_id)
    assert code == 0
    back = torch.load(tmp_path / "w.pt", weights_only=True)
    assert all(torch.equal(back[k], v) for k, v in trained.items())
    code, out, err = _main("export", "perceptron", "--format", "pt", "-o", str(tmp_path / "p.pt"), "--run", run_id)
    assert code == 2 and "do not fit" in err
