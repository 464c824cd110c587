"""How each loss meets the data: target conversion, the fit check done at validation time, and the metric."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from dlviz.errors import UserError
from dlviz.loop import float_labels, grid_map, one_hot_labels, predicted_classes, signed_labels, token_labels
from dlviz.preset.registry import LOSSES, shape_str
from dlviz.preset.schema import LossSpec


@dataclass(frozen=True)
class Objective:
    """A loss ready for the loop: `loss(out, y)` takes the model output and the dataset's targets as they are."""

    loss_fn: nn.Module
    prepare: Optional[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]  # None: as they are
    task: str  # "classification" | "regression" | "embedding" (class labels against embeddings: a triplet loss) | "detection" (YOLO grids)
    num_classes: int | None
    anchors: int | None = None  # a detector's anchors a cell

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(out, y) if self.prepare is None else self.loss_fn(*self.prepare(out, y))

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """Predicted classes: the largest logit, or the sign of a single binary logit."""
        return predicted_classes(out, self.num_classes)

    @property
    def score(self) -> Optional[Callable[[torch.Tensor, torch.Tensor], float]]:
        """A split's metric where evaluate's own does not fit, from all its outputs and targets: a detector's mAP@0.5
        (grid_map: NMS within each class at IoU 0.5, VOC's all-point AP); None for the other tasks."""
        return None if self.task != "detection" else (lambda out, y: grid_map(out, y, self.anchors)[0])


def make_objective(spec: LossSpec, task: str, num_classes: int | None, target_shape: tuple, out_shape: tuple) -> Objective:
    """Check that `spec` can fit a model output of `out_shape` (per sample) and the data's targets; return the Objective.

    Raises UserError("loss", ...) with a sentence saying what to change when it cannot fit."""
    entry = LOSSES[spec.type]
    name = spec.type
    out_shape, target_shape = tuple(out_shape), tuple(target_shape)
    fn = entry.cls(**spec.args)
    if entry.target == "grid":
        return _grid_objective(fn, spec, task, target_shape, out_shape)
    if entry.target == "embedding":
        return _embedding_objective(fn, spec, task, target_shape, out_shape)
    if task == "classification":
        c = num_classes
        per_token, per_pixel = len(target_shape) == 1, len(target_shape) == 2
        want = (c, *target_shape) if per_pixel else (*target_shape, c)  # per pixel: channels first, (N, C, H, W) as CrossEntropyLoss takes
        if per_pixel and name not in ("CrossEntropyLoss", "NLLLoss"):  # the losses that take (N, C, H, W) with (N, H, W) labels
            raise UserError("loss", f"{name} cannot take a class for every pixel; use CrossEntropyLoss")
        if entry.target == "value":
            raise UserError("loss", f"{name} on {c}-class labels: use CrossEntropyLoss, or one-hot targets")
        if entry.target == "binary":
            if c != 2:
                raise UserError("loss", f"{name} is for two classes but the data has {c}; use CrossEntropyLoss")
            if out_shape not in ((1,), (*target_shape, 1)):
                raise UserError(
                    "loss",
                    f"{name} needs one logit per sample but the model outputs {shape_str(out_shape)}; "
                    "make the last Linear out_features 1, or use CrossEntropyLoss with 2 outputs",
                )
            return Objective(fn, float_labels if name == "BCEWithLogitsLoss" else signed_labels, task, c)
        if out_shape != want:
            last = f"end with a Conv2d of {c} out_channels on the {shape_str(target_shape)} canvas" if per_pixel else f"make the last layer's size {c}"
            raise UserError("loss", f"the model outputs {shape_str(out_shape)} per sample but {name} on {c} classes needs {shape_str(want)}; {last}")
        if entry.target == "distribution":
            return Objective(fn, one_hot_labels, task, c)
        return Objective(fn, token_labels if per_token else None, task, c)
    # regression
    if entry.target != "value":
        raise UserError("loss", f"{name} is a classification loss but the data is regression; use MSELoss, L1Loss or HuberLoss")
    if out_shape != target_shape:
        n = math.prod(target_shape)
        raise UserError(
            "loss", f"the model outputs {shape_str(out_shape)} per sample but the targets are {shape_str(target_shape)}; make the last Linear out_features {n}"
        )
    return Objective(fn, None, task, None)


def _grid_objective(fn: nn.Module, spec: LossSpec, task: str, target_shape: tuple, out_shape: tuple) -> Objective:
    """YOLOLoss meets YOLO grid targets (anchors·(5 + classes), S, S) with a model output of the same shape: a detector,
    scored by its mAP@0.5."""
    per_anchor = 5 + spec.args["classes"]
    if task != "regression" or len(target_shape) != 3 or target_shape[0] % per_anchor:
        raise UserError("loss", f"{spec.type} needs YOLO grid targets of {per_anchor} numbers an anchor, as the mnist-boxes data gives")
    if out_shape != target_shape:
        raise UserError(
            "loss",
            f"the model outputs {shape_str(out_shape)} per sample but the grid targets are {shape_str(target_shape)}; "
            f"end with a Conv2d of {target_shape[0]} out_channels on a {target_shape[1]}×{target_shape[2]} map",
        )
    return Objective(fn, None, "detection", spec.args["classes"], target_shape[0] // per_anchor)


def _embedding_objective(fn: nn.Module, spec: LossSpec, task: str, target_shape: tuple, out_shape: tuple) -> Objective:
    """A triplet loss meets one class label a sample (who is whom) with one embedding vector a sample."""
    if task != "classification" or target_shape != ():
        raise UserError("loss", f"{spec.type} needs one class label a sample to tell positives from negatives, as MNIST or the digits give")
    if len(out_shape) != 1 or out_shape[0] < 2:
        raise UserError(
            "loss",
            f"{spec.type} needs one embedding vector of 2 or more numbers a sample but the model outputs {shape_str(out_shape)}; end with Flatten and Linear",
        )
    return Objective(fn, None, "embedding", None)


def chance_level(loss_type: str, args: dict, task: str, num_classes: int | None, y_train: torch.Tensor) -> tuple[float, str] | None:
    """The loss of a model that has learned nothing, and how it follows from the loss's formula; None for a sum reduction.

    Classification: every output 0 (uniform logits), what a small initialization gives, so a first loss far above it
    means the network starts out confidently wrong. Regression: predicting the targets' mean (the median for L1)."""
    if args.get("reduction", "mean") == "sum":
        return None  # a sum grows with the batch size: no fixed level to compare with
    c = num_classes
    if task == "classification":
        if loss_type in ("CrossEntropyLoss", "NLLLoss") or (loss_type == "KLDivLoss" and args.get("reduction", "batchmean") == "batchmean"):
            return math.log(c), f"−ln(1/{c})"
        if loss_type in ("BCEWithLogitsLoss", "SoftMarginLoss"):
            return math.log(2), "ln 2"
        if loss_type == "MultiMarginLoss":
            # outputs 0: each of the C−1 wrong classes costs max(0, margin − 0 + 0)^p, and the sum is divided by C
            margin, p = float(args.get("margin", 1.0)), int(args.get("p", 1))
            return margin**p * (c - 1) / c, f"margin{'²' if p == 2 else ''}·(C−1)/C = {margin:g}{'²' if p == 2 else ''}·{c - 1}/{c}"
        return None
    y = y_train.double().reshape(len(y_train), -1)
    if loss_type == "MSELoss":
        return float(((y - y.mean(0)) ** 2).mean()), "the targets' variance"
    if loss_type == "L1Loss":
        return float((y - y.median(0).values).abs().mean()), "the targets' mean distance to their median"
    if loss_type in ("HuberLoss", "SmoothL1Loss"):
        fn = LOSSES[loss_type].cls(**{k: v for k, v in args.items() if k != "reduction"})
        return float(fn(y.mean(0).expand_as(y), y)), "the loss of predicting the targets' mean"
    return None
