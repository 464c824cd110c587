"""Probabilities from logits, and the round-off that feeding logits to the loss avoids.

Softmax followed by log, computed naively in float32, overflows once a logit passes ln(3.4e38) ≈ 88.7 (exp gives inf,
inf / inf gives NaN) and underflows a small probability to 0 (whose log is -inf). log_softmax(z) = z - logsumexp(z),
with logsumexp(z) = m + log Σ exp(z - m) for m = max z, never exponentiates anything above 0, and nn.CrossEntropyLoss
takes the logits and does the same."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from dlviz.preset.registry import LOSSES

FLOAT32_EXP_LIMIT = math.log(float(np.finfo(np.float32).max))  # ≈ 88.72: exp of anything larger is inf in float32
EXAMPLE_LOGITS = (2.0, 1.0, 0.1, -1.0)  # a prediction for class 0, moderately sure
SCALES = (1, 2, 5, 10, 20, 45, 50, 100, 200, 500, 1000)


def class_probabilities(logits: torch.Tensor, loss_type: Optional[str]) -> Optional[np.ndarray]:
    """The class probabilities a classifier's output stands for, under the loss it trains with: softmax over the outputs
    of a multi-class loss (for NLLLoss's log-probabilities too: softmax(log p) = p), [1 - σ(z), σ(z)] for one binary
    logit. None for a loss that does not classify, or an output of another shape."""
    target = LOSSES[loss_type].target if loss_type in LOSSES else None
    z = logits.detach().reshape(-1).double()
    if target == "class" and z.numel() >= 2 and logits.dim() == 1:
        return torch.softmax(z, 0).numpy()
    if target == "binary" and z.numel() == 1:
        p = float(torch.sigmoid(z)[0])
        return np.array([1.0 - p, p])
    return None


def naive_softmax(z: torch.Tensor) -> torch.Tensor:
    """exp(z) / Σ exp(z), as written on paper: no shift by the maximum."""
    e = torch.exp(z)
    return e / e.sum()


def logsumexp(z: torch.Tensor) -> torch.Tensor:
    """log Σ exp(z), computed as m + log Σ exp(z - m) with m = max z: no term exceeds exp(0) = 1."""
    m = z.max()
    return m + torch.log(torch.exp(z - m).sum())


@dataclass
class RoundOff:
    """One logit vector, scaled, through both routes to log-probabilities and the loss, in float32."""

    scale: float
    target: int
    logits: np.ndarray  # the scaled logits z
    naive_probs: np.ndarray  # naive softmax(z)
    naive_log: np.ndarray  # log(naive softmax(z))
    log_softmax: np.ndarray  # z - logsumexp(z)
    naive_loss: float  # -log(naive softmax(z))[target]
    stable_loss: float  # -(z - logsumexp(z))[target]
    cross_entropy: float  # nn.CrossEntropyLoss on the logits

    @property
    def naive_fails(self) -> bool:
        """Whether the naive route gave a non-finite loss or a non-finite probability."""
        return not math.isfinite(self.naive_loss) or not bool(np.isfinite(self.naive_probs).all())

    def rows(self) -> list[dict]:
        """A table row per class: the logit and each route's numbers."""
        return [
            {
                "class": i,
                "logit z": float(self.logits[i]),
                "naive softmax": float(self.naive_probs[i]),
                "log(naive softmax)": float(self.naive_log[i]),
                "z − logsumexp(z)": float(self.log_softmax[i]),
            }
            for i in range(len(self.logits))
        ]


def roundoff(logits=EXAMPLE_LOGITS, scale: float = 1.0, target: int = 0) -> RoundOff:
    """Both routes for `logits` × `scale` in float32, and CrossEntropyLoss on the same logits."""
    if not 0 <= target < len(logits):
        raise ValueError(f"target {target} is not one of the {len(logits)} classes")
    z = torch.tensor(logits, dtype=torch.float32) * torch.tensor(scale, dtype=torch.float32)
    probs = naive_softmax(z)
    naive_log = torch.log(probs)
    stable = z - logsumexp(z)
    ce = nn.CrossEntropyLoss()(z[None], torch.tensor([target]))
    return RoundOff(
        float(scale),
        target,
        z.numpy(),
        probs.numpy(),
        naive_log.numpy(),
        stable.numpy(),
        float(-naive_log[target]) + 0.0,  # + 0.0: a loss of exactly 0 reads 0, not -0
        float(-stable[target]) + 0.0,
        float(ce),
    )


def first_failure(logits=EXAMPLE_LOGITS, target: int = 0, scales=SCALES) -> Optional[float]:
    """The smallest of `scales` at which the naive route fails (None if none does)."""
    return next((s for s in scales if roundoff(logits, s, target).naive_fails), None)
