"""Name → constructor tables a preset reads: layers and activations (from dlviz.preset.layers), inits, losses,
optimizers and schedules. Adding an entry is one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from dlviz import loop, runtime
from dlviz.preset.args import Arg
from dlviz.preset.layers import (  # noqa: F401  (the catalog is read through this module)
    ACTIVATIONS,
    ALL_LAYERS,
    BLOCK_DOCS,
    BLOCKS,
    GROUPS,
    LAYERS,
    RELU_FAMILY,
    SATURATING,
    LayerEntry,
    Shape,
    ShapeError,
    lookup_layer,
    noting_calls,
    shape_str,
)
from dlviz.runtime import lecun_normal_

# ---------------------------------------------------------------- initializations


@dataclass(frozen=True)
class InitEntry:
    """An initialization: fills one weight tensor (≥ 2-D) in place."""

    args: dict[str, Arg]
    fill: Callable[..., None]
    doc: str = ""


_GAIN = Arg("float", 1.0, gt=0)
_KAIMING = {
    "a": Arg("float", 0.0, ge=0),
    "mode": Arg("choice", "fan_in", choices=("fan_in", "fan_out")),
    "nonlinearity": Arg("choice", "relu", choices=("relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu")),
}

INITS: dict[str, InitEntry] = {
    "default": InitEntry({}, lambda t: None, "PyTorch's own initialization for each layer"),
    "zeros": InitEntry({}, nn.init.zeros_, "all weights 0: every unit in a layer stays identical (symmetry)"),
    "ones": InitEntry({}, nn.init.ones_, "all weights 1"),
    "constant": InitEntry({"val": Arg("float", 0.0)}, nn.init.constant_, "all weights equal to val"),
    "normal": InitEntry({"mean": Arg("float", 0.0), "std": Arg("float", 1.0, ge=0)}, nn.init.normal_, "N(mean, std²)"),
    "uniform": InitEntry({"a": Arg("float", 0.0), "b": Arg("float", 1.0)}, nn.init.uniform_, "U(a, b)"),
    "trunc_normal": InitEntry(
        {"mean": Arg("float", 0.0), "std": Arg("float", 1.0, ge=0), "a": Arg("float", -2.0), "b": Arg("float", 2.0)},
        nn.init.trunc_normal_,
        "N(mean, std²) cut to [a, b]",
    ),
    "xavier_uniform": InitEntry({"gain": _GAIN}, nn.init.xavier_uniform_, "Glorot: Var = 2/(fan_in + fan_out)"),
    "xavier_normal": InitEntry({"gain": _GAIN}, nn.init.xavier_normal_, "Glorot: Var = 2/(fan_in + fan_out)"),
    "kaiming_uniform": InitEntry(_KAIMING, nn.init.kaiming_uniform_, "He: Var = 2/fan_in for ReLU"),
    "kaiming_normal": InitEntry(_KAIMING, nn.init.kaiming_normal_, "He: Var = 2/fan_in for ReLU"),
    "lecun_normal": InitEntry({"gain": _GAIN}, lecun_normal_, "LeCun: N(0, 1/fan_in); pairs with SELU"),
    "orthogonal": InitEntry({"gain": _GAIN}, nn.init.orthogonal_, "a (semi-)orthogonal matrix, scaled by gain"),
}
BIAS_CHOICES = ("zeros", "default")  # what a named init does to biases; zeros is the common practice


# ---------------------------------------------------------------- losses, optimizers, schedules


@dataclass(frozen=True)
class TypedEntry:
    """A loss, optimizer or schedule: the torch class and the arguments a preset may set."""

    cls: Callable
    args: dict[str, Arg]
    doc: str = ""
    target: str = ""  # losses: "class" (integer labels), "binary", "value" (same shape as the output), "distribution", "grid" (YOLO), "embedding" (class labels against embeddings)
    step: str = "epoch"  # schedules: stepped each "epoch", each "batch" (given total_steps), or on the "val_loss"


_RED = {"reduction": Arg("choice", "mean", choices=("mean", "sum"))}
LOSSES: dict[str, TypedEntry] = {
    "CrossEntropyLoss": TypedEntry(
        nn.CrossEntropyLoss, {"label_smoothing": Arg("float", 0.0, ge=0, le=1), **_RED}, "softmax + negative log-likelihood on logits", "class"
    ),
    "NLLLoss": TypedEntry(nn.NLLLoss, dict(_RED), "negative log-likelihood; the model must end in LogSoftmax", "class"),
    "BCEWithLogitsLoss": TypedEntry(nn.BCEWithLogitsLoss, dict(_RED), "sigmoid + binary cross-entropy on one logit", "binary"),
    "MSELoss": TypedEntry(nn.MSELoss, dict(_RED), "mean squared error (L2): fast, pulled by outliers", "value"),
    "L1Loss": TypedEntry(nn.L1Loss, dict(_RED), "mean absolute error: robust to outliers, tends to the median", "value"),
    "HuberLoss": TypedEntry(nn.HuberLoss, {"delta": Arg("float", 1.0, gt=0), **_RED}, "quadratic near 0, linear beyond delta", "value"),
    "SmoothL1Loss": TypedEntry(nn.SmoothL1Loss, {"beta": Arg("float", 1.0, ge=0), **_RED}, "Huber scaled by 1/beta", "value"),
    "MultiMarginLoss": TypedEntry(
        nn.MultiMarginLoss, {"p": Arg("choice", 1, choices=(1, 2)), "margin": Arg("float", 1.0, ge=0), **_RED}, "multi-class hinge loss (SVM)", "class"
    ),
    "KLDivLoss": TypedEntry(
        nn.KLDivLoss,
        {"reduction": Arg("choice", "batchmean", choices=("batchmean", "mean", "sum"))},
        "KL divergence; the model must output log-probabilities (LogSoftmax)",
        "distribution",
    ),
    "SoftMarginLoss": TypedEntry(nn.SoftMarginLoss, dict(_RED), "binary logistic loss on ±1 labels", "binary"),
    "YOLOLoss": TypedEntry(
        loop.YOLOLoss,
        {"lambda_coord": Arg("float", 5.0, ge=0), "lambda_noobj": Arg("float", 0.5, ge=0), "classes": Arg("int", 10, ge=1)},
        "YOLO's detection loss on an S×S grid: objectness, box and class per cell (the mnist-boxes data)",
        "grid",
    ),
    "TripletMarginLoss": TypedEntry(
        loop.MinedTripletLoss,
        {
            "margin": Arg("float", 1.0, gt=0),
            "mining": Arg("choice", "random", choices=("random", "semi-hard"), help="how each anchor's negative is drawn in the batch"),
            "squared": Arg("bool", False, help="squared Euclidean distances, as in FaceNet"),
            "seed": Arg("int", 0, ge=0, help="seed of the mining draws"),
        },
        "triplet loss on embeddings: each anchor nearer its class than another class by a margin; triplets mined per batch",
        "embedding",
    ),
}

_LR = Arg("float", 1e-3, gt=0, le=100, help="learning rate")
_WD = Arg("float", 0.0, ge=0, help="weight decay (L2 inside the optimizer; decoupled in AdamW)")
_BETAS = Arg("floats", [0.9, 0.999], ge=0, lt=1, dims=2)
_EPS = Arg("float", 1e-8, gt=0)
OPTIMIZERS: dict[str, TypedEntry] = {
    "SGD": TypedEntry(
        torch.optim.SGD,
        {
            "lr": Arg("float", 0.01, gt=0, le=100),
            "momentum": Arg("float", 0.0, ge=0, lt=1),
            "dampening": Arg("float", 0.0, ge=0, le=1),
            "weight_decay": _WD,
            "nesterov": Arg("bool", False),
        },
        "w ← w − lr·g, with optional momentum",
    ),
    "Adagrad": TypedEntry(
        torch.optim.Adagrad,
        {
            "lr": Arg("float", 0.01, gt=0, le=100),
            "lr_decay": Arg("float", 0.0, ge=0),
            "weight_decay": _WD,
            "initial_accumulator_value": Arg("float", 0.0, ge=0),
            "eps": Arg("float", 1e-10, gt=0),
        },
        "per-weight rates from the sum of squared gradients",
    ),
    "Adadelta": TypedEntry(
        torch.optim.Adadelta,
        {"lr": Arg("float", 1.0, gt=0, le=100), "rho": Arg("float", 0.9, ge=0, lt=1), "eps": Arg("float", 1e-6, gt=0), "weight_decay": _WD},
        "Adagrad with decaying averages of gradients and updates",
    ),
    "RMSprop": TypedEntry(
        torch.optim.RMSprop,
        {
            "lr": Arg("float", 0.01, gt=0, le=100),
            "alpha": Arg("float", 0.99, ge=0, lt=1),
            "eps": _EPS,
            "weight_decay": _WD,
            "momentum": Arg("float", 0.0, ge=0, lt=1),
            "centered": Arg("bool", False),
        },
        "per-weight rates from a decaying average of g²",
    ),
    "Adam": TypedEntry(
        torch.optim.Adam,
        {"lr": _LR, "betas": _BETAS, "eps": _EPS, "weight_decay": _WD, "amsgrad": Arg("bool", False)},
        "momentum plus RMSprop with bias correction",
    ),
    "AdamW": TypedEntry(
        torch.optim.AdamW,
        {"lr": _LR, "betas": _BETAS, "eps": _EPS, "weight_decay": Arg("float", 0.01, ge=0), "amsgrad": Arg("bool", False)},
        "Adam with decoupled weight decay",
    ),
    "NAdam": TypedEntry(
        torch.optim.NAdam,
        {"lr": Arg("float", 2e-3, gt=0, le=100), "betas": _BETAS, "eps": _EPS, "weight_decay": _WD, "momentum_decay": Arg("float", 4e-3, ge=0)},
        "Adam with Nesterov momentum",
    ),
    "RAdam": TypedEntry(
        torch.optim.RAdam, {"lr": _LR, "betas": _BETAS, "eps": _EPS, "weight_decay": _WD}, "Adam with a rectified variance estimate (built-in warm-up)"
    ),
    "Adamax": TypedEntry(
        torch.optim.Adamax, {"lr": Arg("float", 2e-3, gt=0, le=100), "betas": _BETAS, "eps": _EPS, "weight_decay": _WD}, "Adam with the infinity norm"
    ),
}

SCHEDULES: dict[str, TypedEntry] = {
    "StepLR": TypedEntry(
        torch.optim.lr_scheduler.StepLR,
        {"step_size": Arg("int", ge=1, help="epochs between decays"), "gamma": Arg("float", 0.1, gt=0, le=1)},
        "multiply the rate by gamma every step_size epochs",
    ),
    "ExponentialLR": TypedEntry(torch.optim.lr_scheduler.ExponentialLR, {"gamma": Arg("float", gt=0, le=1)}, "multiply the rate by gamma every epoch"),
    "CosineAnnealingLR": TypedEntry(
        torch.optim.lr_scheduler.CosineAnnealingLR,
        {"T_max": Arg("int", ge=1, help="epochs to reach eta_min"), "eta_min": Arg("float", 0.0, ge=0)},
        "cosine decay to eta_min",
    ),
    "OneCycleLR": TypedEntry(
        torch.optim.lr_scheduler.OneCycleLR,
        {
            "max_lr": Arg("float", gt=0, le=100),
            "pct_start": Arg("float", 0.3, gt=0, lt=1),
            "anneal_strategy": Arg("choice", "cos", choices=("cos", "linear")),
            "div_factor": Arg("float", 25.0, gt=0),
            "final_div_factor": Arg("float", 1e4, gt=0),
        },
        "warm up to max_lr, then anneal; stepped every batch",
        step="batch",
    ),
    "LinearLR": TypedEntry(
        torch.optim.lr_scheduler.LinearLR,
        {"start_factor": Arg("float", 1 / 3, gt=0, le=1), "end_factor": Arg("float", 1.0, gt=0, le=1), "total_iters": Arg("int", 5, ge=1)},
        "linear warm-up over total_iters epochs",
    ),
    "ReduceLROnPlateau": TypedEntry(
        torch.optim.lr_scheduler.ReduceLROnPlateau,
        {"factor": Arg("float", 0.1, gt=0, lt=1), "patience": Arg("int", 10, ge=0), "threshold": Arg("float", 1e-4, ge=0), "min_lr": Arg("float", 0.0, ge=0)},
        "divide the rate when the validation loss stops improving",
        step="val_loss",
    ),
}

CURVES = tuple(runtime.CURVES)  # 1-D regression curves of the `curve` dataset
TOKEN_TASKS = ("reverse", "sort", "majority", "brackets")  # toy sequence tasks of the `tokens` dataset

TABLES = {"layer": ALL_LAYERS, "init": INITS, "loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}
