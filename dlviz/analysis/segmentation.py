"""The segmentation lab's measures: intersection over union per class and its mean, a model's masks and per-pixel
cross-entropy on a canvas, and the same model on a larger canvas than it was trained on, or on the whole coins photo its
crops come from (a fully convolutional net takes any size), in plain torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlviz.data import coins, masks
from dlviz.errors import UserError
from dlviz.runtime import PIXEL_STATS, SAMPLE_STREAM


def class_iou(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> torch.Tensor:
    """IoU of each class (C,) between predicted and true masks of any shape: |pred ∩ true| / |pred ∪ true| counted in
    pixels; NaN for a class in neither mask (its union is empty, so it has no IoU)."""
    inter, union = _counts(pred, true, num_classes)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, math.nan))


def mean_iou(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> float:
    """The mean of the classes' IoU over the classes present in either mask; a class in neither is left out."""
    iou = class_iou(pred, true, num_classes)
    present = ~torch.isnan(iou)
    return float(iou[present].mean()) if present.any() else math.nan


def _counts(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the pixels in both masks and in either (float64 counts)."""
    p, t = pred.reshape(-1).long(), true.reshape(-1).long()
    inter = torch.bincount(t[p == t], minlength=num_classes)[:num_classes].double()
    either = torch.bincount(p, minlength=num_classes)[:num_classes] + torch.bincount(t, minlength=num_classes)[:num_classes]
    return inter, either.double() - inter


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The logits (N, C, H, W) of canvases x (N, 1, H, W), in eval mode (the model's mode is restored)."""
    was = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
    finally:
        model.train(was)


def validation_iou(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[float, torch.Tensor]:
    """(mean IoU, IoU per class) of a model's masks on canvases x against masks y, the pixels of all canvases counted together."""
    pred = predict(model, x).argmax(1)
    return mean_iou(pred, y, num_classes), class_iou(pred, y, num_classes)


@dataclass
class Segmented:
    """One canvas segmented: its pixels in [0, 1] (H, W), the true and predicted masks, the cross-entropy of every pixel
    (nats, (H, W)) and its mean, and the IoU of each class on this canvas (NaN for a class in neither mask) and their mean."""

    pixels: np.ndarray
    true: np.ndarray
    pred: np.ndarray
    loss_map: np.ndarray
    loss: float
    iou: np.ndarray
    mean_iou: float
    padded: tuple[int, int] | None = None  # the size the input was padded to, where the model needed another one


MULTIPLES = (2, 4, 8, 16, 32)  # sides a padded input is rounded up to, tried in turn


def _padded_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]] | None:
    """The logits of x (1, H, W) padded at the bottom and right by reflection to the smallest multiple of MULTIPLES on
    which the model's poolings and upsamplings meet again, cut back to H×W, and the padded size; None if none fits."""
    h, w = x.shape[-2:]
    for m in MULTIPLES:
        size = (-(-h // m) * m, -(-w // m) * m)
        try:
            logits = predict(model, nn.functional.pad(x[None], (0, size[1] - w, 0, size[0] - h), mode="reflect"))
        except RuntimeError:
            continue
        if logits.dim() == 4 and tuple(logits.shape[-2:]) == size:
            return logits[..., :h, :w], size
    return None


def _logits(model: nn.Module, x: torch.Tensor, pad: bool) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """The logits of x (1, H, W) and, where `pad` had to pad it (_padded_logits), the size it was padded to."""
    side, logits = tuple(x.shape[-2:]), None
    try:
        logits = predict(model, x[None])
    except RuntimeError:  # shapes that do not meet again after the poolings and transposed convolutions
        pass
    if pad and (logits is None or logits.dim() != 4 or tuple(logits.shape[-2:]) != side):
        fit = _padded_logits(model, x)
        if fit is not None:
            return fit
    if logits is None:
        raise UserError(
            "canvas", f"the model cannot run on a {side[0]}×{side[1]} canvas: its poolings and upsamplings need another side, such as a multiple of 16"
        )
    return logits, None


def segment(model: nn.Module, x: torch.Tensor, y: torch.Tensor, normalization: tuple[float, float], num_classes: int, pad: bool = False) -> Segmented:
    """A model's mask of one canvas x (1, H, W) (normalized pixels) against its true mask y (H, W); with `pad`, an input
    whose size the model cannot take is padded to one it can (_padded_logits) and the masks cut back to H×W."""
    side = tuple(x.shape[-2:])
    logits, padded = _logits(model, x, pad)
    if logits.dim() != 4 or tuple(logits.shape[-2:]) != side or logits.shape[1] != num_classes:
        raise UserError(
            "model.layers", f"the model gives {list(logits.shape[1:])} for a {side[0]}×{side[1]} canvas, not a class score per pixel ({num_classes} channels)"
        )
    loss_map = nn.functional.cross_entropy(logits, y[None], reduction="none")[0]
    pred = logits.argmax(1)[0]
    mean, std = normalization
    return Segmented(
        pixels=(x[0] * std + mean).numpy(),
        true=y.numpy(),
        pred=pred.numpy(),
        loss_map=loss_map.numpy(),
        loss=float(loss_map.mean()),
        iou=class_iou(pred, y, num_classes).numpy(),
        mean_iou=mean_iou(pred, y, num_classes),
        padded=padded,
    )


def larger_canvas(model: nn.Module, side: int, max_digits: int, binary: bool, seed: int) -> Segmented:
    """The model on a new side×side canvas of 1 to max_digits digits, drawn by the data set's own generator: a fully
    convolutional net trained on small canvases segments a larger one with the same weights."""
    x, y = masks.canvases(1, side, max_digits, binary, np.random.default_rng([seed, SAMPLE_STREAM, side]))
    return segment(model, torch.from_numpy(x[0]), torch.from_numpy(y[0]), PIXEL_STATS["mnist"], len(masks.class_names(binary)))


def whole_photo(model: nn.Module) -> Segmented:
    """The model on the whole coins photo its crops are cut from (303×384, padded where the model needs it)."""
    pixels, mask = coins.photo()
    x = torch.from_numpy(coins.normalized(pixels))[None]
    return segment(model, x, torch.from_numpy(mask.copy()), PIXEL_STATS[coins.NAME], len(coins.CLASS_NAMES), pad=True)
