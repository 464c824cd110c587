"""The run store: every run's preset, status, metrics, telemetry, checkpoints and trajectory in SQLite (WAL mode)."""

from __future__ import annotations

import io
import itertools
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from dlviz.errors import UserError
from dlviz.paths import data_dir
from dlviz.preset.diff import preset_hash
from dlviz.preset.schema import Experiment, validate
from dlviz.training.trainer import Callback, StepBlock, Trainer, json_safe

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, session TEXT, name TEXT, preset TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,
    created REAL, updated REAL, epochs_done INTEGER DEFAULT 0, steps_done INTEGER DEFAULT 0,
    result TEXT, param_names TEXT, task TEXT, preset_hash TEXT, parent TEXT,
    parent_step INTEGER);
CREATE TABLE IF NOT EXISTS epochs (run_id TEXT, epoch INTEGER, record TEXT, PRIMARY KEY (run_id, epoch));
CREATE TABLE IF NOT EXISTS steps (run_id TEXT, step INTEGER, epoch INTEGER, loss REAL, metric REAL, lr REAL,
    grad_norm BLOB, update_ratio BLOB, PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS telemetry (run_id TEXT, step INTEGER, snapshot TEXT, PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS checkpoints (run_id TEXT, step INTEGER, epoch INTEGER, label TEXT, state BLOB, created REAL,
    PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS trajectory (run_id TEXT, step INTEGER, params BLOB, PRIMARY KEY (run_id, step));
"""
LIVE = ("running", "paused", "queued")
INTERRUPTED = "the server stopped during this run; continue it from its last checkpoint"
# what a store that cannot be opened, read or written raises: SQLite's errors, and the file system's around the file
STORE_ERRORS = (sqlite3.Error, OSError)
MAX_EPOCH_CHECKPOINTS = 20  # besides the initial and the final one
CHECKPOINT_SECONDS = 1.0  # the least time between two epoch checkpoints of a run
WRITE_SECONDS = 0.25  # the longest a run's metrics wait in its worker before they are written (the live view does not wait)


def _json(obj) -> str:
    return json.dumps(json_safe(obj))


def unwritable(err: BaseException, lead: str = "The run store can't be written") -> str:
    """One sentence for the page about a store that failed, naming SQLite's reason but never the server's paths
    (an OSError's text holds its file name; its strerror does not)."""
    if isinstance(err, OSError):
        detail = err.strerror or type(err).__name__
    elif isinstance(err, sqlite3.Error):
        detail = str(err)
    else:
        detail = type(err).__name__
    return f"{lead}: {detail}; ask whoever runs this server to free disk space and let the server write its data directory (DLVIZ_DATA_DIR)."


def _floats(v) -> float:
    return float("nan") if v is None else float(v)


class RunStore:
    """One SQLite file; safe to share between threads of one process and between processes (WAL)."""

    def __init__(self, path: Optional[Path | str] = None):
        self.path = Path(path) if path is not None else data_dir() / "runs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            # a store written before runs carried their preset's hash and the run they continue
            have = {r[1] for r in self._db.execute("PRAGMA table_info(runs)").fetchall()}
            for column, kind in (("preset_hash", "TEXT"), ("parent", "TEXT"), ("parent_step", "INTEGER")):
                if column not in have:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args=()):
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def write(self, ops: list[tuple[str, list[tuple]]]) -> None:
        """Statements, each over its rows, in one transaction: one commit for all of them. Rows of the same statement are
        run together, in the order the statement first appears."""
        merged: dict[str, list[tuple]] = {}
        for sql, rows in ops:
            merged.setdefault(sql, []).extend(rows)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for sql, rows in merged.items():
                    self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a disk I/O error does): a second ROLLBACK would raise and hide
                # the reason the write failed
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    # ------------------------------------------------------------ runs

    def create_run(self, exp: Experiment, session: str = "", status: str = "queued") -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        self._exec(
            "INSERT INTO runs (id, session, name, preset, status, created, updated, preset_hash) VALUES (?,?,?,?,?,?,?,?)",
            (run_id, session, exp.name, json.dumps(exp.to_dict()), status, now, now, preset_hash(exp)),
        )
        return run_id

    def continue_from(self, run_id: str, parent: str, step: int) -> None:
        """Give a new run the part of `parent` before its checkpoint at `step`: the steps, epochs, telemetry, checkpoints
        and trajectory it resumes from. A continued run is then one whole run in the store, its curves, its counts and
        its first loss those of an uninterrupted run."""
        self.write(
            [
                (
                    "INSERT OR REPLACE INTO steps SELECT ?, step, epoch, loss, metric, lr, grad_norm, update_ratio FROM steps WHERE run_id=? AND step<?",
                    [(run_id, parent, step)],
                ),
                (
                    "INSERT OR REPLACE INTO epochs SELECT ?, epoch, record FROM epochs WHERE run_id=? AND "
                    "epoch<=(SELECT epoch FROM checkpoints WHERE run_id=? AND step=?)",
                    [(run_id, parent, parent, step)],
                ),
                ("INSERT OR REPLACE INTO telemetry SELECT ?, step, snapshot FROM telemetry WHERE run_id=? AND step<?", [(run_id, parent, step)]),
                (
                    "INSERT OR REPLACE INTO checkpoints SELECT ?, step, epoch, label, state, created FROM checkpoints WHERE run_id=? AND step<=?",
                    [(run_id, parent, step)],
                ),
                ("INSERT OR REPLACE INTO trajectory SELECT ?, step, params FROM trajectory WHERE run_id=? AND step<=?", [(run_id, parent, step)]),
                (
                    "UPDATE runs SET steps_done=?, epochs_done=(SELECT epoch FROM checkpoints WHERE run_id=? AND step=?), "
                    "param_names=(SELECT param_names FROM runs WHERE id=?), task=(SELECT task FROM runs WHERE id=?), parent=?, "
                    "parent_step=? WHERE id=?",
                    [(step, parent, step, parent, parent, parent, step, run_id)],
                ),
            ]
        )

    def set_status(self, run_id: str, status: str, reason: str = "", result: Optional[dict] = None) -> None:
        self._exec(
            "UPDATE runs SET status=?, reason=?, updated=?, result=COALESCE(?, result) WHERE id=?",
            (status, reason, time.time(), _json(result) if result is not None else None, run_id),
        )

    def mark_interrupted(self, live_ids=()) -> int:
        """Runs left 'running' by a process that ended (a restart) become 'interrupted'; their data stays."""
        marks = ",".join("?" * len(LIVE))
        keep = tuple(live_ids)
        extra = f" AND id NOT IN ({','.join('?' * len(keep))})" if keep else ""
        rows = self._exec(f"SELECT id FROM runs WHERE status IN ({marks}){extra}", (*LIVE, *keep))
        for (rid,) in rows:
            self.set_status(rid, "interrupted", INTERRUPTED)
        return len(rows)

    def run(self, run_id: str) -> dict:
        rows = self._exec(
            "SELECT id, session, name, preset, status, reason, created, updated, epochs_done, steps_done, result, "
            "param_names, task, preset_hash, parent, parent_step FROM runs WHERE id=?",
            (run_id,),
        )
        if not rows:
            raise UserError("run", f"no run with id {run_id}")
        r = rows[0]
        return {
            "id": r[0],
            "session": r[1],
            "name": r[2],
            "preset": json.loads(r[3]),
            "status": r[4],
            "reason": r[5] or "",
            "created": r[6],
            "updated": r[7],
            "epochs_done": r[8],
            "steps_done": r[9],
            "result": json.loads(r[10]) if r[10] else None,
            "param_names": json.loads(r[11]) if r[11] else [],
            "task": r[12],
            "preset_hash": r[13] or preset_hash(json.loads(r[3])),
            "parent": r[14],
            "parent_step": r[15],
        }

    def continuable(self, run_id: str) -> bool:
        """Whether a run can be continued from its last checkpoint: a stopped or interrupted one, or a failed one that
        saved a checkpoint before it failed (a worker killed for memory, a store that could not be written)."""
        status = self.run(run_id)["status"]
        if status in ("stopped", "interrupted"):
            return True
        return status == "failed" and bool(self._exec("SELECT 1 FROM checkpoints WHERE run_id=? LIMIT 1", (run_id,)))

    def experiment(self, run_id: str) -> Experiment:
        return validate(self.run(run_id)["preset"])

    def runs(self, session: Optional[str] = None) -> pd.DataFrame:
        sql = "SELECT id, session, name, status, epochs_done, steps_done, created, result, preset_hash, parent, preset FROM runs"
        rows = self._exec(sql + (" WHERE session=?" if session is not None else "") + " ORDER BY created DESC", (session,) if session is not None else ())
        rows = [(*r[:8], r[8] or preset_hash(json.loads(r[10])), r[9], json.loads(r[10])) for r in rows]
        df = pd.DataFrame(rows, columns=["id", "session", "name", "status", "epochs", "steps", "created", "result", "preset_hash", "parent", "preset"])
        df["created"] = pd.to_datetime(df["created"], unit="s")
        return df

    def delete_run(self, run_id: str) -> None:
        for table in ("epochs", "steps", "telemetry", "checkpoints", "trajectory"):
            self._exec(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
        self._exec("DELETE FROM runs WHERE id=?", (run_id,))

    # ------------------------------------------------------------ metrics

    # what a run writes as it trains, as (statement, rows) for write(): the run's callback gathers them and writes a
    # few times a second in one transaction

    @staticmethod
    def step_ops(run_id: str, block: StepBlock) -> list[tuple[str, list[tuple]]]:
        if not len(block):
            return []
        rows = list(
            zip(
                itertools.repeat(run_id),
                block.step.tolist(),
                block.epoch.tolist(),
                block.loss.tolist(),
                block.metric.tolist(),
                block.lr.tolist(),
                map(bytes, np.ascontiguousarray(block.grad_norm, dtype=np.float32)),
                map(bytes, np.ascontiguousarray(block.update_ratio, dtype=np.float32)),
            )
        )
        return [
            ("INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?)", rows),
            ("UPDATE runs SET steps_done=?, updated=? WHERE id=?", [(int(block.step[-1]) + 1, time.time(), run_id)]),
        ]

    @staticmethod
    def epoch_ops(run_id: str, record: dict) -> list[tuple[str, list[tuple]]]:
        return [
            ("INSERT OR REPLACE INTO epochs VALUES (?,?,?)", [(run_id, int(record["epoch"]), _json(record))]),
            ("UPDATE runs SET epochs_done=?, updated=? WHERE id=?", [(int(record["epoch"]), time.time(), run_id)]),
        ]

    @staticmethod
    def telemetry_ops(run_id: str, snapshot: dict) -> list[tuple[str, list[tuple]]]:
        return [("INSERT OR REPLACE INTO telemetry VALUES (?,?,?)", [(run_id, int(snapshot["step"]), _json(snapshot))])]

    def epochs(self, run_id: str) -> pd.DataFrame:
        rows = self._exec("SELECT record FROM epochs WHERE run_id=? ORDER BY epoch", (run_id,))
        return pd.DataFrame([{k: _floats(v) if k != "epoch" else v for k, v in json.loads(r[0]).items()} for r in rows])

    def steps(self, run_id: str, with_layers: bool = False) -> pd.DataFrame:
        rows = self._exec("SELECT step, epoch, loss, metric, lr, grad_norm, update_ratio FROM steps WHERE run_id=? ORDER BY step", (run_id,))
        df = pd.DataFrame([r[:5] for r in rows], columns=["step", "epoch", "loss", "metric", "lr"])
        if with_layers and rows:
            names = self.run(run_id)["param_names"]
            g = np.stack([np.frombuffer(r[5], dtype=np.float32) for r in rows])
            u = np.stack([np.frombuffer(r[6], dtype=np.float32) for r in rows])
            df = pd.concat(
                [df, pd.DataFrame(g, columns=[f"grad_norm:{n}" for n in names]), pd.DataFrame(u, columns=[f"update_ratio:{n}" for n in names])], axis=1
            )
        return df

    def telemetry(self, run_id: str) -> list[dict]:
        return [json.loads(r[0]) for r in self._exec("SELECT snapshot FROM telemetry WHERE run_id=? ORDER BY step", (run_id,))]

    def export_csv(self, run_id: str) -> str:
        """Every step of a run with per-tensor gradient norms and update ratios, and the epoch metrics joined on."""
        steps = self.steps(run_id, with_layers=True)
        epochs = self.epochs(run_id)
        if len(epochs) and len(steps):
            ep = epochs.drop(columns=[c for c in ("step", "lr") if c in epochs]).rename(columns=lambda c: c if c == "epoch" else f"epoch_{c}")
            ep["epoch"] = ep["epoch"] - 1  # an epoch record closes the epoch its steps counted from 0
            steps = steps.merge(ep, on="epoch", how="left")
        return steps.to_csv(index=False)

    # ------------------------------------------------------------ checkpoints and trajectory

    def save_checkpoint(self, run_id: str, state: dict, label: str) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        self._exec(
            "INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?,?)", (run_id, int(state["step"]), int(state["epoch"]), label, buf.getvalue(), time.time())
        )
        epoch_ckpts = self._exec("SELECT step FROM checkpoints WHERE run_id=? AND label LIKE 'epoch %' ORDER BY step", (run_id,))
        if len(epoch_ckpts) > MAX_EPOCH_CHECKPOINTS:  # thin the middle, keep the newest
            for (step,) in epoch_ckpts[1:-1:2]:
                self._exec("DELETE FROM checkpoints WHERE run_id=? AND step=?", (run_id, step))

    def checkpoints(self, run_id: str) -> pd.DataFrame:
        rows = self._exec("SELECT step, epoch, label, created FROM checkpoints WHERE run_id=? ORDER BY step", (run_id,))
        return pd.DataFrame(rows, columns=["step", "epoch", "label", "created"])

    def load_checkpoint(self, run_id: str, step: Optional[int] = None) -> dict:
        """A checkpoint's state (the latest if `step` is None), loaded with weights_only=True: never unpickled."""
        if step is None:
            rows = self._exec("SELECT state FROM checkpoints WHERE run_id=? ORDER BY step DESC LIMIT 1", (run_id,))
        else:
            rows = self._exec("SELECT state FROM checkpoints WHERE run_id=? AND step=?", (run_id, step))
        if not rows:
            raise UserError("run.checkpoint", f"run {run_id} has no checkpoint{'' if step is None else f' at step {step}'}; train it first")
        try:
            return torch.load(io.BytesIO(rows[0][0]), weights_only=True)
        except Exception:  # weights_only refuses anything but tensors and plain containers
            raise UserError("run.checkpoint", f"the checkpoint of run {run_id} cannot be read safely (it holds more than weights); it was not loaded") from None

    def add_trajectory(self, run_id: str, points: list[tuple[int, np.ndarray]]) -> None:
        self.write([("INSERT OR REPLACE INTO trajectory VALUES (?,?,?)", [(run_id, int(s), v.astype(np.float32).tobytes()) for s, v in points])])

    def trajectory(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, snapshots × parameters) of the parameter vectors saved during training."""
        rows = self._exec("SELECT step, params FROM trajectory WHERE run_id=? ORDER BY step", (run_id,))
        if not rows:
            return np.zeros(0, dtype=int), np.zeros((0, 0), dtype=np.float32)
        return np.array([r[0] for r in rows]), np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])


class StoreCallback(Callback):
    """Writes a run to the store as it trains: steps in blocks, epochs, telemetry, checkpoints and the trajectory."""

    def __init__(self, store: RunStore, run_id: str):
        self.store = store
        self.run_id = run_id
        self.last_saved_step = -1
        self.last_checkpoint = self.last_write = time.perf_counter()
        self.unsaved: Optional[tuple[dict, str]] = None  # the newest epoch's state, when its checkpoint was skipped
        # metrics not yet written: one transaction per step block, snapshot and epoch cost a small model a tenth of its
        # speed, one every WRITE_SECONDS costs nothing measurable
        self.pending: list[tuple[str, list[tuple]]] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.store._exec("UPDATE runs SET param_names=?, task=? WHERE id=?", (json.dumps(trainer.param_names), trainer.objective.task, self.run_id))
        self.store.set_status(self.run_id, "running")
        if trainer.step == 0:
            self.store.save_checkpoint(self.run_id, trainer.state(), "initial")

    def _write(self, ops: list, force: bool = False) -> None:
        self.pending.extend(ops)
        now = time.perf_counter()
        if self.pending and (force or now - self.last_write >= WRITE_SECONDS):
            self.store.write(self.pending)
            self.pending, self.last_write = [], now

    def on_steps(self, trainer: Trainer, block: StepBlock) -> None:
        self._write(RunStore.step_ops(self.run_id, block))

    def on_telemetry(self, trainer: Trainer, snapshot: dict) -> None:
        self._write(RunStore.telemetry_ops(self.run_id, snapshot))

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        self._write(RunStore.epoch_ops(self.run_id, record))
        # one checkpoint per CHECKPOINT_SECONDS at most: a small model ends a hundred epochs a second, and saving each
        # cost it a fifth of its speed. The newest epoch's state is kept, and saved if the run ends before the next one.
        self.unsaved = (trainer.state(), f"epoch {record['epoch']}")
        if time.perf_counter() - self.last_checkpoint >= CHECKPOINT_SECONDS:
            self._save_unsaved()
        self._save_trajectory(trainer)

    def _save_unsaved(self) -> None:
        if self.unsaved is not None:
            self._write([], force=True)  # a checkpoint never gets ahead of the metrics before it
            self.store.save_checkpoint(self.run_id, *self.unsaved)
            self.unsaved = None
            self.last_checkpoint = time.perf_counter()

    def _save_trajectory(self, trainer: Trainer) -> None:
        # the trainer thins its list when it grows too long, so what is new is told by the step
        new = [(s, v) for s, v in trainer.trajectory if s > self.last_saved_step]
        if new:
            self.store.add_trajectory(self.run_id, new)
            self.last_saved_step = new[-1][0]

    def on_train_end(self, trainer: Trainer, result: dict) -> None:
        self._write([], force=True)
        self._save_trajectory(trainer)
        # a stopped run keeps its last epoch's checkpoint as its newest: continuing from there is exact, from the middle
        # of an epoch it would not be
        if trainer.status == "finished":
            self.unsaved = None
            self.store.save_checkpoint(self.run_id, trainer.state(), "final")
        else:
            self._save_unsaved()
        self.store.set_status(self.run_id, trainer.status, trainer.reason, result)
