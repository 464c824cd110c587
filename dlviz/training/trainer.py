"""The trainer: a short loop over batches that measures every step and calls callbacks for everything else."""

from __future__ import annotations

import copy
import dataclasses
import math
import queue as queue_mod
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import numpy as np
import torch
from torch import nn

from dlviz import limits as _limits
from dlviz import loop
from dlviz.loop import (
    batch_r2,
    clip_gradients_,
    divergence_reason,
    epoch_record,
    evaluate,
    json_safe,  # noqa: F401  (the CLI and the run store take it from here)
    renorm_,
    run_result,
    train_step,
    weight_penalty,
)
from dlviz.model.build import build_model
from dlviz.preset.registry import ACTIVATIONS, OPTIMIZERS, SCHEDULES
from dlviz.preset.schema import Experiment
from dlviz.runtime import set_tbptt
from dlviz.training.telemetry import StepMeter, capture_outputs, probe_plan, unit_health
from dlviz.training.transfer import start_from

FLUSH_SECONDS = 0.2
CONTROL_SECONDS = 0.02  # how often step rows are handed to callbacks (the live chart's refresh budget)
MAX_TRAJECTORY = 400  # parameter snapshots kept; the interval doubles when this would be exceeded


class Callback:
    """Hooks the loop calls; each does nothing unless overridden (Keras-style)."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_steps(self, trainer: "Trainer", block: "StepBlock") -> None: ...
    def on_telemetry(self, trainer: "Trainer", snapshot: dict) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", record: dict) -> None: ...
    def on_edit(self, trainer: "Trainer") -> None: ...
    def on_loop_end(self, trainer: "Trainer") -> None: ...
    def on_train_end(self, trainer: "Trainer", result: dict) -> None: ...


@dataclass
class StepBlock:
    """Per-step rows since the last flush: one entry per optimizer step."""

    step: np.ndarray
    epoch: np.ndarray
    loss: np.ndarray
    metric: np.ndarray  # batch accuracy (classification) or batch R² (regression)
    lr: np.ndarray
    grad_norm: np.ndarray  # steps × parameter tensors
    update_ratio: np.ndarray  # steps × parameter tensors

    def __len__(self) -> int:
        return len(self.step)


@dataclass
class Control:
    """Stop and pause requests from another thread; the loop checks them between steps. `commands`, when given, is a
    queue of edits to the running training (Trainer.edit), read between steps and while paused."""

    stop_event: threading.Event = field(default_factory=threading.Event)
    run_event: Optional[threading.Event] = None  # set: running; clear: paused. Given, it is taken as it stands
    reason: str = ""
    commands: object = None

    def __post_init__(self):
        if self.run_event is None:
            self.run_event = threading.Event()
            self.run_event.set()

    def stop(self, reason: str = "stopped by the user") -> None:
        self.reason = self.reason or reason
        self.stop_event.set()
        self.run_event.set()

    def pause(self) -> None:
        self.run_event.clear()

    def resume(self) -> None:
        self.run_event.set()

    @property
    def paused(self) -> bool:
        return not self.run_event.is_set()


def param_label(net, name: str) -> str:
    """'layers.3.body.0.weight' -> 'layers[3].body[0].weight' (the preset path, without 'model.')."""
    mod, _, leaf = name.rpartition(".")
    path = net.json_paths.get(mod, mod)
    return f"{path.removeprefix('model.')}.{leaf}"


def on_device(ds, device: torch.device):
    """The dataset with its splits' tensors on `device` (the dataset itself on the CPU, where they already are)."""
    if device.type == "cpu":
        return ds
    moved = {k: getattr(ds, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test") if getattr(ds, k) is not None}
    return dataclasses.replace(ds, **moved)


def host_copy(value):
    """A tensor's copy in CPU memory (any other value as is): what a checkpoint holds, so that it loads on any machine."""
    return value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else copy.deepcopy(value)


class Trainer:
    """Trains one preset. Same preset, seed and thread count: bit-identical numbers on CPU.

    It trains on `device` (by default DLVIZ_DEVICE's, dlviz.limits.device): the model and the data splits go there
    once, while the batch order, augmentation and metrics are drawn and summed on the CPU as before, so a GPU run
    matches the CPU's within float tolerance (dropout excepted: on a GPU it draws from CUDA's generator). Checkpoints
    hold CPU tensors; `dataset` stays the CPU dataset the callbacks read."""

    def __init__(
        self,
        exp: Experiment,
        callbacks=(),
        dataset=None,
        csv_bytes: Optional[bytes] = None,
        resume: Optional[dict] = None,
        control: Optional[Control] = None,
        device: Optional[str] = None,
    ):
        from dlviz.data.datasets import load_dataset
        from dlviz.training.fit import check_fit, require_sections

        require_sections(exp)
        self.exp = exp
        self.callbacks = list(callbacks)
        self.control = control or Control()
        self.dataset = dataset if dataset is not None else load_dataset(exp.data, exp.seed, csv_bytes)
        ds = self.dataset
        self.objective = check_fit(exp, ds.input_shape, ds.task, ds.num_classes, ds.target_shape)
        self.device = torch.device(device or _limits.device())
        self.data = on_device(ds, self.device)  # the splits the loop trains and evaluates on
        self.model = build_model(exp, seed=exp.seed).to(self.device)  # initialized on the CPU: the same weights anywhere
        # what init_from copied into the new model (a resumed run has its own weights)
        self.transfer = start_from(self.model, exp) if exp.init_from is not None and resume is None else None
        set_tbptt(self.model, exp.training.tbptt)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        names = {id(p): n for n, p in self.model.named_parameters()}
        self.param_names = [param_label(self.model, names[id(p)]) for p in self.params]
        # penalties and max-norm act on weights (≥ 2-D), not on biases or normalization scales
        self.weights = [p for p in self.params if p.dim() >= 2]
        opt_args = {k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()}
        self.optimizer = OPTIMIZERS[exp.optimizer.type].cls(self.params, **opt_args)
        self.steps_per_epoch = math.ceil(len(ds.x_train) / exp.data.batch_size)
        self.scheduler = self._make_scheduler()
        self.generator = torch.Generator().manual_seed(exp.seed)
        self.epoch = 0
        self.step = 0
        self.status = "created"
        self.reason = ""
        self.history: list[dict] = []
        self.trajectory: list[tuple[int, np.ndarray]] = []
        self.trajectory_every = exp.training.trajectory_every
        self.meter = StepMeter(self.params)
        # units are probed on one fixed set of training samples: "dead for every sample" on a batch of a few samples
        # counts units that merely missed those samples (twice the data set's figure on the circle lesson)
        samples, every, _ = probe_plan(self.model.footprint.saved, exp.data.batch_size, exp.training.epochs * self.steps_per_epoch, len(ds.x_train))
        self.probe_x = self.data.x_train[:samples]
        self.telemetry_every = exp.training.telemetry_every or every
        self.pending: list[tuple] = []  # per buffered step: (step, epoch, output, targets, lr), row j of the meter
        self.scored = 0  # how many of them _score has taken into the epoch's sums
        self.scores: list[tuple[np.ndarray, np.ndarray]] = []  # their (losses, metrics), in order
        self.stop_after_steps: Optional[int] = None  # for step-exact experiments (tests, the learning-rate finder)
        self.pause_at: Optional[int] = None  # the step after which the run pauses itself (one step of a paused run)
        self.l1, self.l2 = exp.training.l1, exp.training.l2  # the penalties in force: an edit may change them mid-run
        self.flush_seconds = FLUSH_SECONDS
        self.epoch_terms: tuple[list, list, list] = ([], [], [])  # per step: loss·batch, correct (or R²·batch), labels
        self.activation_modules = {path: mod for path, mod in self._leaf_modules().items() if type(mod).__name__ in ACTIVATIONS}
        torch.manual_seed(exp.seed)  # dropout and augmentation draw from torch's global generator
        if exp.training.early_stopping is not None:
            self.callbacks.insert(0, EarlyStopping(exp.training.early_stopping))
        if resume is not None:
            self.load_state(resume)

    # ------------------------------------------------------------ set-up helpers

    def _leaf_modules(self) -> dict[str, nn.Module]:
        mods = dict(self.model.named_modules())
        return {
            path: mods[name]
            for name, path in self.model.json_paths.items()
            if name in mods and not isinstance(mods[name], nn.Sequential) and type(mods[name]).__name__ not in ("Residual", "Concat")
        }

    def _make_scheduler(self):
        s = self.exp.schedule
        if s is None:
            return None
        args = dict(s.args)
        if SCHEDULES[s.type].step == "batch":
            args["total_steps"] = self.exp.training.epochs * self.steps_per_epoch
        return SCHEDULES[s.type].cls(self.optimizer, **args)

    @property
    def per_batch_schedule(self) -> bool:
        return self.exp.schedule is not None and SCHEDULES[self.exp.schedule.type].step == "batch"

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------ state for checkpoints and resume

    def state(self) -> dict:
        """Everything needed to continue exactly: weights, optimizer, schedule, counters and random states.

        Of the epoch records it keeps the last, the only one the result reads (the run store keeps them all): with all
        of them, the cost of a checkpoint grew with the epoch, and a small model saving one per epoch spent more time
        pickling its history than training."""
        # a copy, not a view: the optimizer's state_dict holds its live tensors, which the next step changes in place
        # (and in CPU memory, whichever device trains)
        opt = self.optimizer.state_dict()
        opt = {
            "state": {i: {k: host_copy(v) for k, v in st.items()} for i, st in opt["state"].items()},
            "param_groups": copy.deepcopy(opt["param_groups"]),
        }
        state = {
            "model": {k: host_copy(v) for k, v in self.model.state_dict().items()},
            "optimizer": opt,
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "history": [dict(h) for h in self.history[-1:]],
        }
        if self.device.type == "cuda":  # dropout's generator on the GPU, so that Continue draws what the run would have
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.generator.set_state(state["generator"])
        self.history = [dict(h) for h in state.get("history", [])]
        self.meter.reset()

    # ------------------------------------------------------------ the loop

    def run(self) -> dict:
        ds, data, tr = self.data, self.exp.data, self.exp.training
        cb = self.callbacks
        self.status = "running"
        for c in cb:
            c.on_train_begin(self)
        bs = data.batch_size
        augment = data.augment is not None
        # the loop's attribute lookups, made once (a playground step is ~0.1 ms, so each one shows)
        model, meter, params, optimizer, control = self.model, self.meter, self.params, self.optimizer, self.control
        loss_of, pending, clock = self.objective.loss, self.pending, time.perf_counter
        every, per_batch = self.telemetry_every, self.per_batch_schedule
        last_flush, last_check = -math.inf, -math.inf  # the first step is sent at once; a run started paused waits
        penalty, rules = self._rules()
        flush_every = self.flush_seconds
        diverged = False
        if not self.trajectory:
            self.trajectory.append((self.step, torch.cat([v.reshape(-1) for v in meter.values]).cpu().numpy()))
        while self.epoch < tr.epochs and not control.stop_event.is_set():
            n = len(ds.x_train)  # points added during the last epoch join this one
            if not model.training:  # Module.train() walks every submodule: only when an evaluation left eval mode on
                model.train()
            perm = torch.randperm(n, generator=self.generator).to(self.device)  # drawn on the CPU, as every run's
            # one gather per epoch, then each batch is a slice: the same batches as x[perm[i:i+bs]], fewer operations
            xs, ys = ds.x_train[perm], ds.y_train[perm]
            self.epoch_terms = ([], [], [])
            self.penalty_terms: list[float] = []  # per step: the penalty·batch, as the loss's terms
            epoch = self.epoch
            for i in range(0, n, bs):
                # the events may be multiprocessing ones, whose checks take a lock: look at most every 20 ms
                now = clock()
                if now - last_check >= CONTROL_SECONDS:
                    last_check = now
                    if control.commands is not None and self._take_commands():
                        penalty, rules = self._rules()
                    if not control.run_event.is_set():
                        self._flush()
                        self.status = "paused"
                        for c in cb:
                            c.on_edit(self)  # the paused state is drawn at once
                        # paused: edits still apply (a typed weight redraws the paused network)
                        while not control.run_event.wait(0.05 if control.commands is not None else None):
                            if self._take_commands():
                                penalty, rules = self._rules()
                        self.status = "running"
                    if control.stop_event.is_set():
                        break
                xb, yb = xs[i : i + bs], ys[i : i + bs]
                if augment:
                    xb = ds.augment(xb, self.generator)
                step = self.step
                probe = step % every == 0
                if probe:
                    outputs = self._probe()
                out, loss, pen, grads, finite = train_step(model, xb, yb, loss_of, optimizer, params, meter.record, *rules)
                if not finite:
                    self.reason = self._divergence_reason(loss, grads)
                    diverged = True
                    break
                meter.stepped()
                if penalty:
                    self.penalty_terms.append(float(pen.detach()) * len(yb))
                pending.append((step, epoch, out.detach(), yb, optimizer.param_groups[0]["lr"]))
                if probe:
                    self._telemetry(outputs)
                self.step = step = step + 1
                if step == self.pause_at:
                    self.pause_at = None
                    control.run_event.clear()
                    last_check = -math.inf  # the pause is taken before the next step
                if step == self.stop_after_steps:
                    control.stop(f"stopped after {step} steps")
                    last_check = -CONTROL_SECONDS
                if per_batch:
                    self.scheduler.step()
                if meter.full or clock() - last_flush >= flush_every:
                    self._flush()
                    last_flush = clock()
            else:  # the epoch ran to its end
                self._score()
                # exact sums (math.fsum) of per-step terms: the result cannot depend on how steps were grouped into flushes
                record = self._epoch_record()
                self.epoch += 1
                self.history.append(record)
                if self.scheduler is not None and not per_batch:
                    if SCHEDULES[self.exp.schedule.type].step == "val_loss":
                        self.scheduler.step(record["val_loss"])
                    else:
                        self.scheduler.step()
                for c in cb:
                    c.on_epoch_end(self, record)
                continue
            break  # stopped or diverged inside the epoch: a partial epoch is not recorded
        self._flush()
        if diverged:
            self.status = "diverged"
        elif control.stop_event.is_set() and self.epoch < tr.epochs:
            early = control.reason.startswith("early stopping")
            self.status = "finished" if early else "stopped"
            self.reason = control.reason or "stopped by the user"
        else:
            self.status = "finished"
        for c in cb:
            c.on_loop_end(self)
        result = self.result()
        for c in cb:
            c.on_train_end(self, result)
        return result

    def _rules(self) -> tuple[bool, tuple]:
        """Whether a penalty is on, and the step's penalty, gradient clipping (on the gradients the meter gathers in one
        row) and max-norm constraint."""
        tr, weights = self.exp.training, self.weights
        penalty = self.l1 > 0 or self.l2 > 0
        return penalty, (
            partial(weight_penalty, weights, self.l1, self.l2) if penalty else None,
            partial(clip_gradients_, self.params, max_norm=tr.grad_clip) if tr.grad_clip is not None else None,
            partial(renorm_, weights, tr.max_norm) if tr.max_norm is not None else None,
        )

    def _take_commands(self) -> bool:
        """Apply the edits waiting in the control's queue; True when there were any."""
        got = []
        while True:
            try:
                got.append(self.control.commands.get_nowait())
            except queue_mod.Empty:
                break
            except (OSError, EOFError, ValueError):  # the queue's other end has gone: the server stops this run
                break
        for command in got:
            self.edit(command)
        if got:
            for c in self.callbacks:
                c.on_edit(self)
        return bool(got)

    @torch.no_grad()
    def edit(self, command: dict) -> None:
        """One edit of the running training, taken before the next step, as TensorFlow Playground takes them:
        {"kind": "lr", "value": v}: the learning rate of every parameter group (and the schedule's base rate);
        {"kind": "regularization", "l1": a, "l2": b}: the penalties;
        {"kind": "weight", "layer": L, "out": j, "in": k, "value": v}: weight [j, k] of the L-th Linear layer (k None:
        its bias j); {"kind": "points", "rows": [[x1, x2, label], ...]}: training points, from the next epoch on;
        {"kind": "step", "count": k}: run k steps, then pause. Values were checked by whoever sent them."""
        kind = command.get("kind")
        if kind == "lr":
            for g in self.optimizer.param_groups:
                g["lr"] = float(command["value"])
            if self.scheduler is not None:
                self.scheduler.base_lrs = [float(command["value"])] * len(self.scheduler.base_lrs)
        elif kind == "regularization":
            self.l1, self.l2 = float(command.get("l1", self.l1)), float(command.get("l2", self.l2))
        elif kind == "weight":
            layer = [m for m in self.model.modules() if isinstance(m, nn.Linear)][int(command["layer"])]
            if command.get("in") is None:
                layer.bias[int(command["out"])] = float(command["value"])
            else:
                layer.weight[int(command["out"]), int(command["in"])] = float(command["value"])
        elif kind == "points":
            self._add_points(command["rows"])
        elif kind == "step":
            self.pause_at = self.step + max(1, int(command.get("count", 1)))
            self.control.run_event.set()

    def _add_points(self, rows: list) -> None:
        from dlviz.runtime import add_points

        for ds in {id(d): d for d in (self.dataset, self.data)}.values():
            (ds.x_train, *_), (ds.y_train, *_) = add_points([ds.x_train], [ds.y_train], rows, ds.features)
            if ds.points_train is not None:
                extra = torch.tensor([r[:2] for r in rows], dtype=ds.points_train.dtype)
                ds.points_train = torch.cat([ds.points_train, extra.to(ds.points_train.device)])

    def _divergence_reason(self, loss: torch.Tensor, grads: torch.Tensor) -> str:
        bad = [self.param_names[i] for i in self.meter.first_bad(grads)]
        return divergence_reason(float(loss.detach()), bad, self.epoch, self.step)

    def _score(self) -> None:
        """Loss and accuracy (or R²) of the buffered steps not scored yet, added to the epoch's exact sums.

        Called at the end of each epoch and before each flush, so a flush need not wait for an epoch to end."""
        j0, j1 = self.scored, len(self.pending)
        if j1 == j0:
            return
        new = self.pending[j0:j1]
        # the float32 losses widened exactly to float64; the products and sums below are the exported script's
        losses = self.meter.loss_rows(j0, j1)
        sizes = np.array([len(p[3]) for p in new], dtype=np.float64)
        with torch.no_grad():
            if self.key == "map":  # a detector is scored on the validation canvases only (loop.epoch_record)
                metric = np.full(len(new), np.nan)
            else:
                out, y = torch.cat([p[2] for p in new]).cpu(), torch.cat([p[3] for p in new]).cpu()
                if self.objective.task == "classification":
                    labels = np.array([p[3].numel() for p in new])
                    hits = (self.objective.predict(out) == y).reshape(-1).numpy()
                    correct = np.add.reduceat(hits, np.cumsum(labels) - labels, dtype=np.int64).astype(np.float64)
                    metric = correct / labels
                    self.epoch_terms[1].extend(correct.tolist())
                    self.epoch_terms[2].extend(labels.tolist())
                else:
                    metric = (loop.batch_auc if self.key == "auc" else batch_r2)(out, y, torch.tensor([p[3].numel() for p in new])).numpy()
                    self.epoch_terms[1].extend((metric * sizes).tolist())
        self.epoch_terms[0].extend((losses * sizes).tolist())
        self.scores.append((losses, metric))
        self.scored = j1

    def _flush(self) -> None:
        """Turn the buffered steps into one StepBlock: per-step metrics and the meter's norms, computed in bulk."""
        self._score()
        pending = list(self.pending)
        self.pending.clear()  # the loop holds this list
        self.scored = 0
        gn, ratio, after = self.meter.flush()
        if not pending:
            return
        losses, metric = (np.concatenate(part) for part in zip(*self.scores))
        self.scores = []
        first = pending[0][0]
        steps = np.arange(first, first + len(pending))  # steps are buffered in order, one per row
        every = self.trajectory_every
        for j in range((every - 1 - first) % every, len(pending), every):  # the rows j with (step_j + 1) % every == 0
            self._keep_trajectory(first + j + 1, after[j])
        block = StepBlock(steps, np.array([p[1] for p in pending]), losses, metric, np.array([p[4] for p in pending], dtype=np.float64), gn, ratio)
        for c in self.callbacks:
            c.on_steps(self, block)

    def _keep_trajectory(self, step: int, params: np.ndarray) -> None:
        self.trajectory.append((step, params.copy()))
        if len(self.trajectory) > MAX_TRAJECTORY:
            self.trajectory = self.trajectory[::2]
            self.trajectory_every *= 2

    @torch.no_grad()
    def _probe(self) -> dict:
        """The activation layers' outputs on the probe set, as the network stands before this step. In eval mode: it
        draws no random numbers (dropout) and moves no running statistics (BatchNorm), so training is unchanged."""
        self.model.eval()
        with capture_outputs(self.activation_modules) as outputs:
            self.model(self.probe_x)
        self.model.train()
        return dict(outputs)

    def _telemetry(self, outputs: dict) -> None:
        # every statistic stays a tensor until one stack and one host copy at the end
        stats = {path: unit_health(type(self.activation_modules[path]).__name__, y) for path, y in outputs.items() if torch.is_tensor(y)}
        keys = [(path, key) for path, st in stats.items() for key in st]
        values = torch.stack([stats[p][k] for p, k in keys]).tolist() if keys else []
        layers: dict[str, dict] = {path: {"type": type(self.activation_modules[path]).__name__} for path in stats}
        for (path, key), v in zip(keys, values):
            layers[path][key] = v
        ranges, counts = self.meter.histograms()
        hist = {
            name: {"weight": {"range": ranges[0][i], "counts": counts[0][i]}, "grad": {"range": ranges[1][i], "counts": counts[1][i]}}
            for i, (name, p) in enumerate(zip(self.param_names, self.params))
            if p.dim() >= 2
        }
        snap = {"step": self.step, "epoch": self.epoch, "layers": layers, "histograms": hist, "probe_samples": len(self.probe_x)}
        for c in self.callbacks:
            c.on_telemetry(self, snap)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch: int = 1024, restore: bool = True) -> dict:
        """Loss and accuracy (or R²) on a split, in eval mode, plus the predictions for the confusion matrix or fit plot.

        restore=False leaves the model in eval mode (the epoch's end: the loop switches training back on when the next
        epoch starts, so the two walks over every submodule are not paid twice)."""
        was_training = self.model.training
        obj = self.objective
        x, y = x.to(self.device), y.to(self.device)
        loss, metric, pred = evaluate(self.model, x, y, obj.loss, obj.num_classes if obj.task == "classification" else None, batch, obj.score)
        if restore and was_training:
            self.model.train()
        return {"loss": loss, self.key: metric, "pred": pred.cpu()}

    @property
    def key(self) -> str:
        """The metric's name: accuracy for classification, auc (verification) for an embedding, r2 for regression."""
        return loop.metric_key(self.objective.task)

    def _epoch_record(self) -> dict:
        ds, key = self.data, self.key
        val = self.evaluate(ds.x_val, ds.y_val, restore=False) if len(ds.x_val) else None
        loss_terms, metric_terms, labels = self.epoch_terms
        rec = epoch_record(
            self.epoch + 1,
            len(ds.x_train),
            loss_terms,
            metric_terms,
            math.fsum(labels),
            (val["loss"], val[key]) if val else (math.nan, math.nan),
            key,
            self.lr,
            self.penalty_terms if self.penalty_terms or self.l1 > 0 or self.l2 > 0 else None,
        )
        rec["step"] = self.step
        self.last_val = val
        return rec

    def result(self) -> dict:
        """The final JSON object of `train --json`: status and the last metrics."""
        ds, key = self.data, self.key
        best = getattr(self, "best_epoch", None)
        if best is not None:  # early stopping restored the best weights: report what the model now scores
            val = self.evaluate(ds.x_val, ds.y_val)
            best = (best, val["loss"], val[key])
        test = None
        if ds.x_test is not None and len(ds.x_test) and self.status != "diverged":
            test = self.evaluate(ds.x_test, ds.y_test)
            test = (test["loss"], test[key])
        return run_result(self.status, self.epoch, self.step, self.history[-1] if self.history else None, key, best, self.reason, test)


class EarlyStopping(Callback):
    """Stops when the validation loss has not improved by min_delta for `patience` epochs; can restore the best weights."""

    def __init__(self, spec):
        self.rule = loop.EarlyStopping(spec.patience, spec.min_delta, spec.restore_best)

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        stop = self.rule.update(trainer.model, record["val_loss"], record["epoch"])
        if stop:
            trainer.control.stop(stop)

    def on_loop_end(self, trainer: Trainer) -> None:
        if self.rule.restore(trainer.model, trainer.status):
            trainer.best_epoch = self.rule.best_epoch
