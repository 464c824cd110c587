"""The Playground's live frames: while a run trains, its worker draws every neuron's map over the plane and sends it,
with the weights and losses, several times a second (dlviz.model.neurons.frame); edits reach the run through its
control's command queue (Trainer.edit) and are drawn at once."""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from dlviz.model.neurons import MAP_GRID, OUTPUT_GRID, frame
from dlviz.preset.playground import ONE_D
from dlviz.training.trainer import Callback, Trainer

FRAME_SECONDS = 0.06  # at most ~16 frames a second, checked as steps are flushed: the board redraws at 10 Hz or more
MAX_LOSSES = 200  # rows of the loss sparkline


class BoardCallback(Callback):
    """Sends {"kind": "frame", "frame": …} messages to `send`: the board's maps, weights, losses and counters."""

    def __init__(self, send: Callable[[dict], None], extent: float, n: int = MAP_GRID, out_n: int = OUTPUT_GRID, clock=time.perf_counter):
        self.send, self.extent, self.n, self.out_n, self.clock = send, extent, n, out_n, clock
        self.last = -math.inf
        self.version = 0
        self.losses: list[list] = []
        self.trained = None  # the step of the first frame after training began (None: none sent yet)

    def on_train_begin(self, trainer: Trainer) -> None:
        trainer.flush_seconds = min(trainer.flush_seconds, FRAME_SECONDS)  # on_steps comes often enough to draw from
        self._frame(trainer, force=True)

    def on_steps(self, trainer: Trainer, block) -> None:
        self._frame(trainer, force=self.trained is None)  # the first steps are drawn at once: Play shows at once

    def on_edit(self, trainer: Trainer) -> None:
        self._frame(trainer, force=True)

    def on_train_end(self, trainer: Trainer, result: dict) -> None:
        self._frame(trainer, force=True, status=result["status"])

    @torch.no_grad()
    def _frame(self, trainer: Trainer, force: bool = False, status: str | None = None) -> None:
        now = self.clock()
        if not force and now - self.last < FRAME_SECONDS:
            return
        self.last = now
        f = board_frame(trainer, self.extent, self.n, self.out_n)
        if self.trained is None and trainer.step > 0:
            self.trained = trainer.step
        self.version += 1
        if not self.losses or self.losses[-1][0] != f["step"]:
            self.losses.append([f["step"], f["train_loss"], f["test_loss"]])
            if len(self.losses) > MAX_LOSSES:
                self.losses = self.losses[::2]
        f.update(version=self.version, losses=list(self.losses), status=status or trainer.status)
        self.send({"kind": "frame", "frame": f})


@torch.no_grad()
def board_frame(trainer: Trainer, extent: float, n: int = MAP_GRID, out_n: int = OUTPUT_GRID) -> dict:
    """One frame of a trainer's network as it stands: maps, weights, the data losses of the training and test
    (validation) points, the step and epoch, the learning rate and penalties in force."""
    ds = trainer.data
    f = frame(trainer.model, ds.features or ONE_D, extent, trainer.objective.task, n, out_n)
    losses = {}
    for split in ("train", "val"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        loss = trainer.evaluate(x, y)["loss"] if x is not None and len(x) else None
        losses[split] = float(loss) if loss is not None and math.isfinite(loss) else None  # a diverged run's loss: none
    f.update(
        step=trainer.step,
        epoch=trainer.epoch,
        train_loss=losses["train"],
        test_loss=losses["val"],
        lr=trainer.lr,
        l1=trainer.l1,
        l2=trainer.l2,
    )
    return f
