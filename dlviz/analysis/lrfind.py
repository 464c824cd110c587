"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3):
train a fresh model while the rate grows exponentially, and read a good rate off the loss curve."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import partial
from typing import Optional

import numpy as np
import torch

from dlviz.errors import UserError
from dlviz.loop import gradient_row, train_step
from dlviz.preset.schema import Experiment, validate

MAX_STEPS = 10_000  # Smith's test needs a few hundred at most; this bounds what a hosted page may be asked for
RULE = (
    "the rate where the smoothed loss falls fastest against log(lr) (its steepest descent), after the first tenth of the "
    "steps and before the smoothed loss reaches its minimum: the minimum sits at the edge of divergence, while the "
    "steepest descent is still well inside the range where a larger rate trains faster"
)


@dataclass(frozen=True)
class LRFind:
    """The range test's curve and the rate it suggests."""

    lrs: list[float]
    losses: list[float]  # each step's training loss (the data loss, before that step's update)
    smoothed: list[float]  # the exponentially smoothed loss, bias-corrected
    suggested: float
    rule: str
    stopped_early: bool
    reason: str

    def to_json(self) -> dict:
        return {
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
            "suggested": self.suggested,
            "rule": self.rule,
            "stopped_early": self.stopped_early,
            "reason": self.reason,
        }


def rates(steps: int, start: float, end: float) -> np.ndarray:
    """The rate of each step: start · (end/start)^(i/(steps-1)), from start to end inclusive."""
    return start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))


def suggest(lrs: list[float], smoothed: list[float]) -> float:
    """The steepest descent of the smoothed loss against log10(lr), among the points up to its minimum, the first tenth
    left out (RULE): there the average holds a few batches only, and its slope is their noise."""
    if not lrs:
        return math.nan
    s = np.asarray(smoothed)
    skip, upto = len(s) // 10, int(np.argmin(s)) + 1
    if upto - skip < 3:  # the loss never fell past the first tenth: the smallest rates are the only safe ones
        return float(lrs[int(np.argmin(s))])
    slope = np.gradient(s[skip:upto], np.log10(np.asarray(lrs[skip:upto])))
    return float(lrs[skip + int(np.argmin(slope))])


def _check(steps: int, start: float, end: float, beta: float, diverge: float) -> None:
    if not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
        raise UserError("lr_find.steps", f"the range test takes at least 2 steps and at most {MAX_STEPS:,}, got {steps}")
    if not (math.isfinite(start) and math.isfinite(end) and 0 < start < end):
        raise UserError("lr_find.start", f"the rates must grow from a start above 0 to a larger end, got {start:g} to {end:g}")
    if not 0 <= beta < 1:
        raise UserError("lr_find.beta", f"the smoothing factor must lie in [0, 1), got {beta:g}")
    if not diverge > 1:
        raise UserError("lr_find.diverge", f"the divergence factor must be above 1, got {diverge:g}")


def lr_range_test(
    exp: Experiment,
    steps: int = 100,
    start: float = 1e-7,
    end: float = 10.0,
    beta: float = 0.98,
    diverge: float = 4.0,
    csv_bytes: Optional[bytes] = None,
) -> LRFind:
    """Train a fresh model (the preset's seed) for `steps` steps of its own optimizer on its own batches, as the Trainer
    draws them, with the rate set before each step to rates(steps, start, end). The schedule is left out: the test sets
    the rate itself. Stops early when the smoothed loss exceeds `diverge` × its minimum or a loss or gradient is not
    finite."""
    from dlviz.training.trainer import Trainer

    _check(steps, start, end, beta, diverge)
    if exp.optimizer is None:
        raise UserError("optimizer", "the range test needs an optimizer; add one on the Build page")
    doc = exp.to_dict()
    doc.pop("schedule", None)
    tr = Trainer(validate(doc), csv_bytes=csv_bytes)
    ds, bs = tr.data, exp.data.batch_size
    model, optimizer, params, loss_of = tr.model, tr.optimizer, tr.params, tr.objective.loss
    _, rules = tr._rules()
    gather = partial(gradient_row, params)
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    reason = ""
    model.train()
    schedule = rates(steps, start, end)
    step = 0
    while step < steps and not reason:
        # an epoch's batches exactly as the Trainer draws them: one permutation from the preset's generator, then slices
        perm = torch.randperm(len(ds.x_train), generator=tr.generator).to(tr.device)
        xs, ys = ds.x_train[perm], ds.y_train[perm]
        for i in range(0, len(xs), bs):
            if step == steps:
                break
            lr = float(schedule[step])
            for g in optimizer.param_groups:
                g["lr"] = lr
            xb, yb = xs[i : i + bs], ys[i : i + bs]
            if exp.data.augment is not None:
                xb = ds.augment(xb, tr.generator)
            _, loss, _, _, finite = train_step(model, xb, yb, loss_of, optimizer, params, gather, *rules)
            value = float(loss.detach())
            if not finite:
                reason = f"the loss or a gradient became non-finite at lr {lr:.3g}"
                break
            step += 1
            avg = beta * avg + (1 - beta) * value
            s = avg / (1 - beta**step)  # bias correction: the average starts at 0
            lrs.append(lr)
            losses.append(value)
            smoothed.append(s)
            best = min(best, s)
            if not math.isfinite(s):
                reason = f"the smoothed loss became non-finite at lr {lr:.3g}"
                break
            if best > 0 and s > diverge * best:
                reason = f"the smoothed loss passed {diverge:g} × its minimum at lr {lr:.3g}"
                break
    return LRFind(lrs, losses, smoothed, suggest(lrs, smoothed), RULE, bool(reason), reason)


def with_lr(doc: dict, lr: float) -> dict:
    """'Use this rate': the preset document with optimizer.lr set to `lr`, validated."""
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not (math.isfinite(lr) and lr > 0):
        raise UserError("optimizer.lr", f"a learning rate is a number above 0, got {lr!r}")
    if not isinstance(doc.get("optimizer"), dict):
        raise UserError("optimizer", "the preset has no optimizer to set the rate of; add one on the Build page")
    out = copy.deepcopy(doc)
    out["optimizer"]["lr"] = float(lr)
    validate(out)
    return out
