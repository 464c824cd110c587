"""The live feed of a run: the trainer's callback turns steps into messages; LiveFeed keeps a bounded copy for drawing."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Callable, Optional

import numpy as np
import torch

from dlviz.model.build import device_of
from dlviz.training.diagnose import run_context
from dlviz.training.store import LIVE
from dlviz.training.trainer import Callback, StepBlock, Trainer

MAX_POINTS = 400  # per series on screen: plenty for a chart, small enough for the browser to redraw 4 times a second
BOUNDARY_SECONDS = 0.4  # how often the decision boundary is recomputed while training
# how often the validation evaluation (confusion matrix or fit) and the unit telemetry are sent to the live view: a
# small model finishes tens of epochs a second, and the page redraws those charts once a second
EVALUATION_SECONDS = 0.5
TELEMETRY_SECONDS = 0.25
FEED_SECONDS = 0.05  # the longest a run's steps and epoch records wait before they are sent (the page redraws every 0.2 s)
BOUNDARY_GRID = 60
KEEP_TELEMETRY = 64  # probes the live view keeps: thinned to every other one past this, so never fewer than 32


class Decimator:
    """Keeps at most `cap` points of a series of rows by averaging neighbours into buckets whose size doubles."""

    def __init__(self, width: int, cap: int = MAX_POINTS):
        self.cap = cap
        self.width = width
        self.bucket = 1
        self.rows = np.zeros((0, width))
        self.pending = np.zeros((0, width))

    def add(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.width)
        self.pending = np.concatenate([self.pending, rows])
        full = len(self.pending) // self.bucket * self.bucket
        if full:
            merged = np.nanmean(self.pending[:full].reshape(-1, self.bucket, self.width), axis=1) if self.bucket > 1 else self.pending[:full]
            self.rows = np.concatenate([self.rows, merged])
            self.pending = self.pending[full:]
        while len(self.rows) > self.cap:
            n = len(self.rows) // 2 * 2
            tail = self.rows[n:]
            self.rows = np.concatenate([np.nanmean(self.rows[:n].reshape(-1, 2, self.width), axis=1), tail])
            self.bucket *= 2

    def values(self) -> np.ndarray:
        return self.rows.copy()


class LiveFeed:
    """What the Train page draws, updated from messages; every read is a copy taken under a lock."""

    def __init__(self, total_steps: int = 0):
        self._lock = threading.Lock()
        self.total_steps = total_steps
        self.started = time.time()
        self.first_step_at: Optional[float] = None
        self.first_step = 0
        self.status = "starting"
        self.reason = ""
        self.param_names: list[str] = []
        self.task = ""
        self.series: Optional[Decimator] = None
        self.layers: Optional[Decimator] = None
        self.epochs: list[dict] = []
        self.telemetry: list[dict] = []
        self.boundary: Optional[dict] = None
        self.evaluation: Optional[dict] = None
        self.result: Optional[dict] = None
        self.points: Optional[dict] = None
        self.first_loss: Optional[float] = None  # the loss of step 0 itself (the series keeps bucket means of it)
        self.context: dict = {}  # what the diagnoses need to know of the run (diagnose.run_context)
        self.steps_done = 0
        self.version = 0
        self.continued: Optional[dict] = None  # {"run": id, "step": s, "epoch": e} when this run continues another
        self.frame: Optional[dict] = None  # a Playground run's latest board frame (dlviz.training.board)

    def handle(self, msg: dict) -> None:
        kind = msg["kind"]
        with self._lock:
            self.version += 1
            if kind == "begin":
                # a continued run's feed already holds the run it continues: its series go on from there
                keep = self.series is not None and list(msg["param_names"]) == self.param_names
                self.param_names, self.task = msg["param_names"], msg["task"]
                self.total_steps = msg["total_steps"]
                self.steps_done = msg.get("step", 0)
                self.status = "running"
                self.points = msg.get("points")
                self.context = msg.get("context") or self.context
                if not keep:
                    self.series = Decimator(5)
                    self.layers = Decimator(2 * len(self.param_names))
            elif kind == "steps":
                b = msg["block"]
                if self.first_step_at is None:
                    self.first_step_at = time.time()
                    self.first_step = int(b["step"][0])  # a continued run's rate counts only the steps it makes
                if self.first_loss is None and len(b["step"]) and int(b["step"][0]) == 0:
                    self.first_loss = float(b["loss"][0])
                self.series.add(np.column_stack([b["step"], b["epoch"], b["loss"], b["metric"], b["lr"]]))
                with np.errstate(divide="ignore", invalid="ignore"):
                    self.layers.add(np.column_stack([np.log10(b["grad_norm"]), np.log10(b["update_ratio"])]))
                self.steps_done = int(b["step"][-1]) + 1
            elif kind == "epochs":
                self.epochs.extend(msg["records"])
            elif kind == "telemetry":
                for snap in msg["snapshots"] if "snapshots" in msg else [msg["snapshot"]]:
                    self.telemetry.append(snap)
                    if len(self.telemetry) > KEEP_TELEMETRY:
                        # every other one goes, the first and the newest stay: the charts cover the whole run
                        self.telemetry = self.telemetry[::2] if len(self.telemetry) % 2 else self.telemetry[:-1:2] + self.telemetry[-1:]
            elif kind == "boundary":
                self.boundary = msg["boundary"]
            elif kind == "frame":
                self.frame = msg["frame"]
            elif kind == "evaluation":
                self.evaluation = msg["evaluation"]
            elif kind == "status":
                self.status = msg["status"]
            elif kind == "end":
                self.result = msg["result"]
                self.status = msg["result"]["status"]
                self.reason = msg["result"].get("reason", "")
            elif kind == "error":
                self.status = "failed"
                self.reason = msg["message"]

    def snapshot(self) -> dict:
        """A copy of everything drawable, taken under the lock."""
        with self._lock:
            series = self.series.values() if self.series is not None else np.zeros((0, 5))
            layers = self.layers.values() if self.layers is not None else np.zeros((0, 0))
            elapsed = time.time() - self.started
            done, total = self.steps_done, self.total_steps
            eta = None
            if self.first_step_at is not None and self.first_step < done < total:
                rate = (done - self.first_step) / max(time.time() - self.first_step_at, 1e-6)
                eta = (total - done) / rate
            k = len(self.param_names)
            return {
                "status": self.status,
                "reason": self.reason,
                "task": self.task,
                "param_names": list(self.param_names),
                "step": series[:, 0],
                "epoch": series[:, 1],
                "loss": series[:, 2],
                "metric": series[:, 3],
                "lr": series[:, 4],
                "log_grad_norm": layers[:, :k] if len(layers) else np.zeros((0, k)),
                "log_update_ratio": layers[:, k:] if len(layers) else np.zeros((0, k)),
                "epochs": [dict(e) for e in self.epochs],
                "telemetry": list(self.telemetry),
                "boundary": self.boundary,
                "evaluation": self.evaluation,
                "result": self.result,
                "points": self.points,
                "steps_done": done,
                "total_steps": total,
                "elapsed": elapsed,
                "eta": eta,
                "version": self.version,
                "first_loss": self.first_loss,
                "context": dict(self.context),
                "continued": self.continued,
            }


def joined(blocks: list[StepBlock]) -> StepBlock:
    """Consecutive step blocks as one."""
    if len(blocks) == 1:
        return blocks[0]
    return StepBlock(*(np.concatenate([getattr(b, f.name) for b in blocks]) for f in dataclasses.fields(StepBlock)))


def block_message(block: StepBlock) -> dict:
    return {
        "kind": "steps",
        "block": {
            "step": block.step,
            "epoch": block.epoch,
            "loss": block.loss,
            "metric": block.metric,
            "lr": block.lr,
            "grad_norm": block.grad_norm,
            "update_ratio": block.update_ratio,
        },
    }


class FeedCallback(Callback):
    """Sends a run's progress as plain messages to `send` (a LiveFeed.handle, or a queue to another process)."""

    def __init__(self, send: Callable[[dict], None], clock: Callable[[], float] = time.perf_counter):
        self.send = send
        self.clock = clock  # seconds; tests pass their own, so what is gathered does not depend on the machine's speed
        self.last_boundary = self.last_evaluation = self.last_telemetry = self.last_sent = -math.inf
        self.pending_telemetry: list[dict] = []  # every probe reaches the live view: a short run probes each step
        self.blocks: list[StepBlock] = []  # steps and epoch records not sent yet: they go out every FEED_SECONDS
        self.records: list[dict] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        total = trainer.exp.training.epochs * trainer.steps_per_epoch
        self.send(
            {
                "kind": "begin",
                "param_names": trainer.param_names,
                "task": trainer.objective.task,
                "total_steps": total,
                "step": trainer.step,
                "points": plane_points(trainer.dataset),
                "context": run_context(trainer),
            }
        )
        self._boundary(trainer, force=True)

    def on_steps(self, trainer: Trainer, block: StepBlock) -> None:
        self.blocks.append(block)
        self._send_pending()
        self._boundary(trainer)

    def _send_pending(self, force: bool = False) -> None:
        """The gathered steps and epochs, in one message each, at most every FEED_SECONDS (the first at once): a small
        model sends a step block and an epoch record a hundred times a second, and each message to the server costs the
        run a pickling and a write."""
        now = self.clock()
        if not force and now - self.last_sent < FEED_SECONDS:
            return
        if self.blocks:
            self.send(block_message(joined(self.blocks)))
            self.blocks = []
        if self.records:
            self.send({"kind": "epochs", "records": self.records})
            self.records = []
        self.last_sent = now

    def on_telemetry(self, trainer: Trainer, snapshot: dict) -> None:
        now = self.clock()
        self.pending_telemetry.append(snapshot)
        if len(self.pending_telemetry) > KEEP_TELEMETRY:
            self.pending_telemetry = (
                self.pending_telemetry[::2] if len(self.pending_telemetry) % 2 else self.pending_telemetry[:-1:2] + self.pending_telemetry[-1:]
            )
        if now - self.last_telemetry >= TELEMETRY_SECONDS:  # the store keeps every snapshot; the live view needs a few a second
            self._send_telemetry(now)

    def _send_telemetry(self, now: float) -> None:
        if self.pending_telemetry:
            self.last_telemetry = now
            self.send({"kind": "telemetry", "snapshots": self.pending_telemetry})
            self.pending_telemetry = []

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        self.records.append(record)
        self._send_pending()
        self._evaluation(trainer)
        self._boundary(trainer)

    def on_edit(self, trainer: Trainer) -> None:
        """Paused, or edited: the steps so far; and a run started paused says so (later pauses come from the page,
        which shows them at once: a late word from here could undo a Resume pressed meanwhile)."""
        self._send_pending(force=True)
        if trainer.status == "paused" and self.last_sent == -math.inf:
            self.send({"kind": "status", "status": "paused"})

    def on_train_end(self, trainer: Trainer, result: dict) -> None:
        self._send_pending(force=True)
        self._send_telemetry(self.clock())  # the run's last snapshot, which the diagnoses read
        self._evaluation(trainer, force=True)
        self._boundary(trainer, force=True)
        self.send({"kind": "end", "result": result})

    def _evaluation(self, trainer: Trainer, force: bool = False) -> None:
        val = getattr(trainer, "last_val", None)
        now = self.clock()
        if not val or (not force and now - self.last_evaluation < EVALUATION_SECONDS):
            return
        self.last_evaluation = now
        y = trainer.dataset.y_val
        if trainer.objective.task == "classification":
            c = trainer.objective.num_classes
            idx = y.reshape(-1) * c + val["pred"].reshape(-1)
            cm = torch.bincount(idx, minlength=c * c).reshape(c, c).tolist()
            self.send({"kind": "evaluation", "evaluation": {"confusion": cm, "classes": trainer.dataset.class_names or list(map(str, range(c)))}})
        elif trainer.objective.task == "embedding" or y[0].numel() != 1:
            # a label against an embedding, or a grid of targets: one number against one number would mislead
            what = (
                "an embedding's metric is the verification AUC of its pairs"
                if trainer.objective.task == "embedding"
                else (f"each target is {y[0].numel()} numbers, so no one fit plot shows them")
            )
            self.send(
                {
                    "kind": "evaluation",
                    "evaluation": {
                        "note": f"No confusion matrix or fit for this run: {what}; the Vision page draws a detector's boxes and an embedding's pairs."
                    },
                }
            )
        else:
            n = min(len(y), 500)
            self.send({"kind": "evaluation", "evaluation": {"target": y[:n].reshape(n).tolist(), "pred": val["pred"][:n].reshape(n).tolist()}})

    def _boundary(self, trainer: Trainer, force: bool = False) -> None:
        if getattr(trainer.dataset, "points_train", None) is None:
            return
        now = self.clock()
        if not force and now - self.last_boundary < BOUNDARY_SECONDS:
            return
        self.last_boundary = now
        b = boundary_grid(trainer.model, trainer.dataset, trainer.objective.task)
        b["step"] = trainer.step
        self.send({"kind": "boundary", "boundary": b})


MAX_PLANE_POINTS = 400  # per split: enough to see the data, light enough to redraw every second


def plane_points(ds) -> Optional[dict]:
    """The raw 2-D points and labels of a plane dataset (at most MAX_PLANE_POINTS per split), for the decision-boundary chart."""
    if getattr(ds, "points_train", None) is None:
        return None
    out = {}
    for split in ("train", "val"):
        pts, y = getattr(ds, f"points_{split}"), getattr(ds, f"y_{split}")
        if pts is None:
            continue
        n = min(len(pts), MAX_PLANE_POINTS)
        out[split] = np.asarray(pts[:n]).tolist()
        out[f"{split}_labels"] = np.asarray(y[:n]).reshape(n, -1)[:, 0].tolist()
    return out


@torch.no_grad()
def boundary_grid(model, ds, task: str, n: int = BOUNDARY_GRID) -> dict:
    """The model's output over a grid covering a plane dataset: P(class 1) for two classes, the class for more, or the value."""
    from dlviz.data.datasets import featurize

    pts = np.asarray(ds.points_train)
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.1 * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], n)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], n)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float32)
    device = device_of(model)
    x = torch.as_tensor(featurize(grid, ds.features or ("x1", "x2")), dtype=torch.float32, device=device)
    was = model.training
    model.eval()
    out = model(x)
    # the class the model itself gives each drawn point, so the crossed-out points are the model's mistakes (an
    # interpolated grid cell can disagree with the model next to the boundary)
    predicted = {}
    if task == "classification":
        for split in ("train", "val"):
            xs_split = getattr(ds, f"x_{split}", None)
            if getattr(ds, f"points_{split}", None) is not None and xs_split is not None:
                o = model(xs_split[:MAX_PLANE_POINTS].to(device))
                predicted[split] = ((o[:, 0] > 0) if o.shape[-1] == 1 else o.argmax(-1)).reshape(-1).tolist()
    model.train(was)
    if task == "classification":
        if out.shape[-1] == 1:
            z = torch.sigmoid(out[:, 0])
        elif out.shape[-1] == 2:
            z = torch.softmax(out, -1)[:, 1]
        else:
            z = out.argmax(-1).float()
    else:
        z = out[:, 0]
    return {"x": xs.tolist(), "y": ys.tolist(), "z": z.reshape(n, n).tolist(), "classes": ds.num_classes, "predicted": predicted}


def stored_feed(store, run_id: str) -> LiveFeed:
    """A LiveFeed holding what the store has of a run: its steps, epochs and telemetry. A continued run's feed starts
    from this, so its live view draws the whole run, the part before the checkpoint included."""
    run = store.run(run_id)
    feed = LiveFeed()
    names = run["param_names"]
    feed.handle({"kind": "begin", "param_names": names, "task": run["task"] or "", "total_steps": run["steps_done"], "step": 0})
    steps = store.steps(run_id, with_layers=True)
    if len(steps):
        g = steps[[f"grad_norm:{n}" for n in names]].to_numpy()
        u = steps[[f"update_ratio:{n}" for n in names]].to_numpy()
        feed.handle(
            {
                "kind": "steps",
                "block": {
                    "step": steps["step"].to_numpy(),
                    "epoch": steps["epoch"].to_numpy(),
                    "loss": steps["loss"].to_numpy(),
                    "metric": steps["metric"].to_numpy(),
                    "lr": steps["lr"].to_numpy(),
                    "grad_norm": g,
                    "update_ratio": u,
                },
            }
        )
    for rec in store.epochs(run_id).to_dict("records"):
        feed.handle({"kind": "epochs", "records": [{k: (int(v) if k in ("epoch", "step") else v) for k, v in rec.items()}]})
    feed.handle({"kind": "telemetry", "snapshots": store.telemetry(run_id)})  # thinned over the whole run as it goes in
    feed.steps_done = run["steps_done"]
    feed.first_step_at = None  # the rate of a continued run is that of the steps it makes
    if run.get("parent"):
        ckpts = store.checkpoints(run_id)
        at = ckpts[ckpts["step"] == run["parent_step"]]
        feed.continued = {"run": run["parent"], "step": run["parent_step"], "epoch": int(at["epoch"].iloc[0]) if len(at) else None}
    return feed


def snapshot_from_store(store, run_id: str) -> dict:
    """The same snapshot a LiveFeed gives, rebuilt from the store for a run that is not training in this server."""
    run = store.run(run_id)
    feed = stored_feed(store, run_id)
    try:
        trainer = Trainer(store.experiment(run_id), resume=store.load_checkpoint(run_id))
        trainer.last_val = trainer.evaluate(trainer.dataset.x_val, trainer.dataset.y_val)
        if run["status"] in LIVE:  # training in another server: its progress is of the whole run
            feed.total_steps = trainer.exp.training.epochs * trainer.steps_per_epoch
        feed.context = run_context(trainer)
        FeedCallback(feed.handle)._evaluation(trainer)
        feed.points = plane_points(trainer.dataset)
        if feed.points is not None:
            feed.boundary = boundary_grid(trainer.model, trainer.dataset, trainer.objective.task)
    except Exception:  # a run with no checkpoint, or whose data no longer loads, still shows its curves
        pass
    feed.status, feed.reason = run["status"], run["reason"]
    feed.result = run["result"]
    feed.first_step_at = None
    return feed.snapshot()
