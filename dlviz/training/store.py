"""The run store: every run's preset, status, metrics, telemetry, checkpoints and trajectory, in SQLite by default or in
the PostgreSQL database DLVIZ_DATABASE_URL names (training.database holds the tables), so that several servers share it."""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch
from sqlalchemy import Table, Text, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from dlviz.errors import UserError
from dlviz.preset.diff import preset_hash
from dlviz.preset.schema import Experiment, validate
from dlviz.training import database
from dlviz.training.database import (  # noqa: F401  (the errors and the sentence are the store's to its callers)
    DATABASE_ERRORS,
    STORE_ERRORS,
    checkpoints,
    database_url,
    epochs,
    kept_presets,
    open_engine,
    runs,
    steps,
    telemetry,
    trajectory,
    unwritable,
)
from dlviz.training.trainer import Callback, StepBlock, Trainer, json_safe

LIVE = ("running", "paused", "queued")
INTERRUPTED = "the server stopped during this run; continue it from its last checkpoint"
MAX_EPOCH_CHECKPOINTS = 20  # besides the initial and the final one
CHECKPOINT_SECONDS = 1.0  # the least time between two epoch checkpoints of a run
WRITE_SECONDS = 0.25  # the longest a run's metrics wait in its worker before they are written (the live view does not wait)
HEARTBEAT_SECONDS = 2.0  # how often a server tells the store that its runs are alive
RETRY_SECONDS = 1.0  # while the store refuses writes, how often a run tries again

# what a run writes, as (table or statement, rows) for RunStore.write: a table's rows are upserted, a statement runs
# once per row. The statements' parameters are named apart from the columns they set.
Ops = list[tuple[object, list[dict]]]
SET_STEPS = update(runs).where(runs.c.id == bindparam("rid")).values(steps_done=bindparam("n"), updated=bindparam("t"))
SET_EPOCHS = update(runs).where(runs.c.id == bindparam("rid")).values(epochs_done=bindparam("n"), updated=bindparam("t"))
SET_BEGUN = update(runs).where(runs.c.id == bindparam("rid")).values(param_names=bindparam("names"), task=bindparam("kind"))
SET_STATUS = (
    update(runs)
    .where(runs.c.id == bindparam("rid"))
    .values(status=bindparam("s"), reason=bindparam("why"), updated=bindparam("t"), result=func.coalesce(bindparam("res", type_=Text), runs.c.result))
)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        value = -1.0
    if not value > 0 or math.isinf(value):
        raise UserError("", f"{name} must be a number of seconds above 0, not {raw!r}")
    return value


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a live run is taken for interrupted (its server died): DLVIZ_HEARTBEAT_TIMEOUT."""
    return _seconds("DLVIZ_HEARTBEAT_TIMEOUT", 15.0)


def store_retry_seconds() -> float:
    """Seconds a run trains on while the store refuses its writes, holding them, before it fails: DLVIZ_STORE_RETRY_SECONDS."""
    return _seconds("DLVIZ_STORE_RETRY_SECONDS", 60.0)


def check_database(where: Optional[Path | str] = None) -> str:
    """What a server checks as it starts, before it serves anyone: the store's settings, and that its database opens,
    its tables made or brought up to date; returns where the store is (a password hidden). Raises UserError with one
    sentence, which the server prints before it exits rather than fall back to another store."""
    heartbeat_timeout(), store_retry_seconds()
    return database.check(where)


def _json(obj) -> str:
    return json.dumps(json_safe(obj))


def _floats(v) -> float:
    return float("nan") if v is None else float(v)


def status_ops(run_id: str, status: str, reason: str = "", result: Optional[dict] = None) -> Ops:
    return [(SET_STATUS, [{"rid": run_id, "s": status, "why": reason, "t": time.time(), "res": _json(result) if result is not None else None}])]


class RunStore:
    """The runs of one database; safe to share between threads, and between processes and servers (each opens its own)."""

    def __init__(self, where: Optional[Path | str | URL] = None):
        self.url = database_url(where)
        self.engine = open_engine(self.url)
        self._upserts: dict[str, object] = {}

    def close(self) -> None:
        self.engine.dispose()

    def _exec(self, stmt, params=None) -> list:
        """Run one statement in a transaction of its own; its rows, if it returns any."""
        with self.engine.begin() as conn:
            result = conn.execute(stmt, params) if params is not None else conn.execute(stmt)
            return result.fetchall() if result.returns_rows else []

    def _upsert(self, table: Table):
        """INSERT … ON CONFLICT (its key) DO UPDATE: a row written again replaces the one before. The SQLite and
        PostgreSQL dialects spell it alike."""
        stmt = self._upserts.get(table.name)
        if stmt is None:
            ins = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)
            set_ = {c.name: ins.excluded[c.name] for c in table.columns if not c.primary_key}
            stmt = self._upserts[table.name] = ins.on_conflict_do_update(index_elements=list(table.primary_key.columns), set_=set_)
        return stmt

    def write(self, ops: Ops) -> None:
        """Upserts and statements, each over its rows, in one transaction. Rows of the same table or statement are run
        together, in the order it first appears; a table's row written twice keeps its last version."""
        merged: dict[object, list[dict]] = {}
        for what, rows in ops:
            merged.setdefault(what, []).extend(rows)
        with self.engine.begin() as conn:
            for what, rows in merged.items():
                if isinstance(what, Table):
                    key = [c.name for c in what.primary_key.columns]
                    rows = list({tuple(r[k] for k in key): r for r in rows}.values())
                    what = self._upsert(what)
                if rows:
                    conn.execute(what, rows)

    # ------------------------------------------------------------ runs

    def create_run(self, exp: Experiment, session: str = "", status: str = "queued", owner: str = "") -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        row = dict(id=run_id, session=session, name=exp.name, preset=json.dumps(exp.to_dict()), status=status, created=now, updated=now)
        self._exec(insert(runs).values(**row, preset_hash=preset_hash(exp), heartbeat=now, owner=owner))
        return run_id

    def continue_from(self, run_id: str, parent: str, step: int) -> None:
        """Give a new run the part of `parent` before its checkpoint at `step`: the steps, epochs, telemetry, checkpoints
        and trajectory it resumes from. A continued run is then one whole run in the store, its curves, its counts and
        its first loss those of an uninterrupted run."""
        at = select(checkpoints.c.epoch).where(checkpoints.c.run_id == parent, checkpoints.c.step == step).scalar_subquery()

        def copy(table: Table, *where) -> tuple:
            columns = [literal(run_id, Text).label("run_id") if c.name == "run_id" else c for c in table.columns]
            return insert(table).from_select([c.name for c in table.columns], select(*columns).where(table.c.run_id == parent, *where)), [{}]

        p = runs.alias("p")
        of_parent = lambda c: select(c).where(p.c.id == parent).scalar_subquery()
        self.write(
            [
                copy(steps, steps.c.step < step),
                copy(epochs, epochs.c.epoch <= at),
                copy(telemetry, telemetry.c.step < step),
                copy(checkpoints, checkpoints.c.step <= step),
                copy(trajectory, trajectory.c.step <= step),
                (
                    update(runs)
                    .where(runs.c.id == run_id)
                    .values(steps_done=step, epochs_done=at, param_names=of_parent(p.c.param_names), task=of_parent(p.c.task), parent=parent, parent_step=step),
                    [{}],
                ),
            ]
        )

    def set_status(self, run_id: str, status: str, reason: str = "", result: Optional[dict] = None) -> None:
        self.write(status_ops(run_id, status, reason, result))

    def beat(self, run_ids, now: Optional[float] = None) -> None:
        """The server training these runs is alive."""
        if run_ids:
            self._exec(update(runs).where(runs.c.id.in_(list(run_ids))).values(heartbeat=time.time() if now is None else now))

    def show(self, run_id: str, now: Optional[float] = None) -> None:
        """A page of another server shows this run: its browser is still there, though it moved to that server."""
        self._exec(update(runs).where(runs.c.id == run_id).values(seen=time.time() if now is None else now))

    def ask_stop(self, run_id: str) -> None:
        """A page of another server asks for the run to stop: the server training it does so at its next heartbeat."""
        self._exec(update(runs).where(runs.c.id == run_id, runs.c.status.in_(LIVE)).values(request="stop"))

    def stop_requests(self, run_ids) -> list[str]:
        """Which of these runs another server's page asked to stop; the requests are taken (cleared)."""
        if not run_ids:
            return []
        ids = [r[0] for r in self._exec(select(runs.c.id).where(runs.c.id.in_(list(run_ids)), runs.c.request == "stop"))]
        if ids:
            self._exec(update(runs).where(runs.c.id.in_(ids)).values(request=None))
        return ids

    def mark_interrupted(self, live_ids=(), now: Optional[float] = None, timeout: Optional[float] = None) -> int:
        """Live runs whose heartbeat stopped more than `timeout` seconds ago (DLVIZ_HEARTBEAT_TIMEOUT), whichever server
        started them, become 'interrupted': their server died. Everything they stored stays, every finished epoch and
        checkpoint; `live_ids` (the caller's own runs) are never marked. One statement, so a heartbeat that lands at the
        same moment wins."""
        now = time.time() if now is None else now
        cutoff = now - (heartbeat_timeout() if timeout is None else timeout)
        stmt = (
            update(runs)
            .where(runs.c.status.in_(LIVE), func.coalesce(runs.c.heartbeat, runs.c.updated, runs.c.created, 0.0) < cutoff)
            .values(status="interrupted", reason=INTERRUPTED, updated=now)
        )
        if live_ids:
            stmt = stmt.where(runs.c.id.not_in(list(live_ids)))
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount

    def run(self, run_id: str) -> dict:
        rows = self._exec(select(runs).where(runs.c.id == run_id))
        if not rows:
            raise UserError("run", f"no run with id {run_id}")
        r = rows[0]._asdict()
        return {
            **r,
            "preset": json.loads(r["preset"]),
            "reason": r["reason"] or "",
            "result": json.loads(r["result"]) if r["result"] else None,
            "param_names": json.loads(r["param_names"]) if r["param_names"] else [],
            "preset_hash": r["preset_hash"] or preset_hash(json.loads(r["preset"])),
        }

    def continuable(self, run_id: str) -> bool:
        """Whether a run can be continued from its last checkpoint: a stopped or interrupted one, or a failed one that
        saved a checkpoint before it failed (a worker killed for memory, a store that could not be written)."""
        status = self.run(run_id)["status"]
        if status in ("stopped", "interrupted"):
            return True
        return status == "failed" and bool(self._exec(select(checkpoints.c.step).where(checkpoints.c.run_id == run_id).limit(1)))

    def experiment(self, run_id: str) -> Experiment:
        return validate(self.run(run_id)["preset"])

    def runs(self, session: Optional[str] = None) -> pd.DataFrame:
        c = runs.c
        stmt = select(c.id, c.session, c.name, c.status, c.epochs_done, c.steps_done, c.created, c.result, c.preset_hash, c.parent, c.preset)
        if session is not None:
            stmt = stmt.where(c.session == session)
        rows = [(*r[:8], r[8] or preset_hash(json.loads(r[10])), r[9], json.loads(r[10])) for r in self._exec(stmt.order_by(c.created.desc()))]
        df = pd.DataFrame(rows, columns=["id", "session", "name", "status", "epochs", "steps", "created", "result", "preset_hash", "parent", "preset"])
        df["created"] = pd.to_datetime(df["created"], unit="s")
        return df

    def delete_run(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            for table in (epochs, steps, telemetry, checkpoints, trajectory):
                conn.execute(delete(table).where(table.c.run_id == run_id))
            conn.execute(delete(runs).where(runs.c.id == run_id))

    # ------------------------------------------------------------ presets kept for short addresses

    def keep_preset(self, pid: str, preset: str, budget: int, now: float) -> None:
        """Keep `preset` (its canonical JSON) under `pid`, or mark it used if it is kept already; then, over `budget`
        bytes in all, remove the least recently used others until within it."""
        c = kept_presets.c
        with self.engine.begin() as conn:
            if conn.execute(update(kept_presets).where(c.id == pid).values(used=now)).rowcount:
                return
            conn.execute(self._upsert(kept_presets), {"id": pid, "preset": preset, "bytes": len(preset.encode("utf-8")), "used": now})
            total = conn.scalar(select(func.sum(c.bytes)))
            if total <= budget:
                return
            gone = []
            for other, size in conn.execute(select(c.id, c.bytes).where(c.id != pid).order_by(c.used, c.id)):
                if total <= budget:
                    break
                gone.append(other)
                total -= size
            conn.execute(delete(kept_presets).where(c.id.in_(gone)))

    def kept_preset(self, pid: str, now: float) -> Optional[str]:
        """The preset kept under `pid`, now marked used; None if none is."""
        c = kept_presets.c
        with self.engine.begin() as conn:
            found = conn.scalar(select(c.preset).where(c.id == pid))
            if found is not None:
                conn.execute(update(kept_presets).where(c.id == pid).values(used=now))
        return found

    # ------------------------------------------------------------ metrics

    # what a run writes as it trains, as ops for write(): the run's callback gathers them and writes a few times a
    # second in one transaction

    @staticmethod
    def step_ops(run_id: str, block: StepBlock) -> Ops:
        if not len(block):
            return []
        keys = ("run_id", "step", "epoch", "loss", "metric", "lr", "grad_norm", "update_ratio")
        rows = zip(
            itertools.repeat(run_id),
            block.step.tolist(),
            block.epoch.tolist(),
            block.loss.tolist(),
            block.metric.tolist(),
            block.lr.tolist(),
            map(bytes, np.ascontiguousarray(block.grad_norm, dtype=np.float32)),
            map(bytes, np.ascontiguousarray(block.update_ratio, dtype=np.float32)),
        )
        return [(steps, [dict(zip(keys, r)) for r in rows]), (SET_STEPS, [{"rid": run_id, "n": int(block.step[-1]) + 1, "t": time.time()}])]

    @staticmethod
    def epoch_ops(run_id: str, record: dict) -> Ops:
        epoch = int(record["epoch"])
        return [(epochs, [{"run_id": run_id, "epoch": epoch, "record": _json(record)}]), (SET_EPOCHS, [{"rid": run_id, "n": epoch, "t": time.time()}])]

    @staticmethod
    def telemetry_ops(run_id: str, snapshot: dict) -> Ops:
        return [(telemetry, [{"run_id": run_id, "step": int(snapshot["step"]), "snapshot": _json(snapshot)}])]

    @staticmethod
    def checkpoint_ops(run_id: str, state: dict, label: str) -> Ops:
        buf = io.BytesIO()
        torch.save(state, buf)
        row = {"run_id": run_id, "step": int(state["step"]), "epoch": int(state["epoch"]), "label": label, "state": buf.getvalue(), "created": time.time()}
        return [(checkpoints, [row])]

    @staticmethod
    def trajectory_ops(run_id: str, points: list[tuple[int, np.ndarray]]) -> Ops:
        return [(trajectory, [{"run_id": run_id, "step": int(s), "params": v.astype(np.float32).tobytes()} for s, v in points])]

    def epochs(self, run_id: str) -> pd.DataFrame:
        rows = self._exec(select(epochs.c.record).where(epochs.c.run_id == run_id).order_by(epochs.c.epoch))
        return pd.DataFrame([{k: _floats(v) if k != "epoch" else v for k, v in json.loads(r[0]).items()} for r in rows])

    def steps(self, run_id: str, with_layers: bool = False) -> pd.DataFrame:
        c = steps.c
        rows = self._exec(select(c.step, c.epoch, c.loss, c.metric, c.lr, c.grad_norm, c.update_ratio).where(c.run_id == run_id).order_by(c.step))
        df = pd.DataFrame([tuple(r[:5]) for r in rows], columns=["step", "epoch", "loss", "metric", "lr"])
        if with_layers and rows:
            names = self.run(run_id)["param_names"]
            g = np.stack([np.frombuffer(r[5], dtype=np.float32) for r in rows])
            u = np.stack([np.frombuffer(r[6], dtype=np.float32) for r in rows])
            df = pd.concat(
                [df, pd.DataFrame(g, columns=[f"grad_norm:{n}" for n in names]), pd.DataFrame(u, columns=[f"update_ratio:{n}" for n in names])], axis=1
            )
        return df

    def telemetry(self, run_id: str) -> list[dict]:
        c = telemetry.c
        return [json.loads(r[0]) for r in self._exec(select(c.snapshot).where(c.run_id == run_id).order_by(c.step))]

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

    # Checkpoints are rows of the database, as every replica reads it: bench/checkpoints.py measured them against files
    # in a shared data directory (see its docstring for the figures and the decision).

    def save_checkpoint(self, run_id: str, state: dict, label: str) -> None:
        self.write(self.checkpoint_ops(run_id, state, label))
        self.thin_checkpoints(run_id)

    def thin_checkpoints(self, run_id: str) -> None:
        """Past MAX_EPOCH_CHECKPOINTS epoch checkpoints, drop every other one in the middle: the newest stay."""
        c = checkpoints.c
        kept = [r[0] for r in self._exec(select(c.step).where(c.run_id == run_id, c.label.like("epoch %")).order_by(c.step))]
        if len(kept) > MAX_EPOCH_CHECKPOINTS:
            # a statement of its own: in SQLite a transaction that read before it writes may find the file changed
            self._exec(delete(checkpoints).where(c.run_id == run_id, c.step.in_(kept[1:-1:2])))

    def checkpoints(self, run_id: str) -> pd.DataFrame:
        c = checkpoints.c
        rows = self._exec(select(c.step, c.epoch, c.label, c.created).where(c.run_id == run_id).order_by(c.step))
        return pd.DataFrame([tuple(r) for r in rows], columns=["step", "epoch", "label", "created"])

    def load_checkpoint(self, run_id: str, step: Optional[int] = None) -> dict:
        """A checkpoint's state (the latest if `step` is None), loaded with weights_only=True: never unpickled."""
        c = checkpoints.c
        stmt = select(c.state).where(c.run_id == run_id)
        rows = self._exec(stmt.order_by(c.step.desc()).limit(1) if step is None else stmt.where(c.step == step))
        if not rows:
            raise UserError("run.checkpoint", f"run {run_id} has no checkpoint{'' if step is None else f' at step {step}'}; train it first")
        try:
            return torch.load(io.BytesIO(rows[0][0]), weights_only=True)
        except Exception:  # weights_only refuses anything but tensors and plain containers
            raise UserError("run.checkpoint", f"the checkpoint of run {run_id} cannot be read safely (it holds more than weights); it was not loaded") from None

    def add_trajectory(self, run_id: str, points: list[tuple[int, np.ndarray]]) -> None:
        self.write(self.trajectory_ops(run_id, points))

    def trajectory(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, snapshots × parameters) of the parameter vectors saved during training."""
        c = trajectory.c
        rows = self._exec(select(c.step, c.params).where(c.run_id == run_id).order_by(c.step))
        if not rows:
            return np.zeros(0, dtype=int), np.zeros((0, 0), dtype=np.float32)
        return np.array([r[0] for r in rows]), np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])


class StoreCallback(Callback):
    """Writes a run to the store as it trains: steps in blocks, epochs, telemetry, checkpoints and the trajectory.

    While the store refuses writes (a database that went away) the run trains on and holds what it has to write,
    trying again every RETRY_SECONDS; once the store takes them, nothing is missing. After `retry_seconds` of refusals
    the store's error is raised and the run fails; what was written before stays, its checkpoints included."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        retry_seconds: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.store = store
        self.run_id = run_id
        self.retry_seconds = store_retry_seconds() if retry_seconds is None else retry_seconds
        self.clock, self.sleep = clock, sleep
        self.last_saved_step = -1
        self.last_checkpoint = self.last_write = clock()
        self.unsaved: Optional[tuple[dict, str]] = None  # the newest epoch's state, when its checkpoint was skipped
        # what is not yet written: one transaction per step block, snapshot and epoch cost a small model a tenth of its
        # speed, one every WRITE_SECONDS costs nothing measurable
        self.pending: Ops = []
        self.failing_since: Optional[float] = None  # when the store began refusing the writes still pending
        self.last_try = -math.inf

    def on_train_begin(self, trainer: Trainer) -> None:
        ops = [(SET_BEGUN, [{"rid": self.run_id, "names": json.dumps(trainer.param_names), "kind": trainer.objective.task}])]
        ops += status_ops(self.run_id, "running")
        if trainer.step == 0:
            ops += RunStore.checkpoint_ops(self.run_id, trainer.state(), "initial")
        self._write(ops, force=True)

    def _write(self, ops: Ops, force: bool = False) -> None:
        self.pending.extend(ops)
        if not self.pending:
            return
        now = self.clock()
        if self.failing_since is not None:
            if any(what is checkpoints for what, _ in ops):
                self._keep_newest_checkpoint()
            if now - self.last_try < RETRY_SECONDS:
                return
        elif not force and now - self.last_write < WRITE_SECONDS:
            return
        self._flush(now)

    def _flush(self, now: float) -> bool:
        """Write everything pending in one transaction; False (and kept) when the store refuses it. Raises the store's
        error once it has refused for retry_seconds."""
        try:
            self.store.write(self.pending)
        except STORE_ERRORS:
            self.failing_since = now if self.failing_since is None else self.failing_since
            self.last_try = now
            if now - self.failing_since >= self.retry_seconds:
                raise
            return False
        wrote_checkpoint = any(what is checkpoints for what, _ in self.pending)
        self.pending, self.last_write, self.failing_since = [], now, None
        if wrote_checkpoint:
            try:
                self.store.thin_checkpoints(self.run_id)
            except STORE_ERRORS:
                pass  # the next checkpoint thins them
        return True

    def _keep_newest_checkpoint(self) -> None:
        """While writes wait, only the newest epoch checkpoint waits with them: a big model's states would fill the
        worker's memory, and the store keeps the newest checkpoints anyway."""
        held = [row for what, rows in self.pending if what is checkpoints for row in rows if row["label"].startswith("epoch ")]
        if len(held) > 1:
            drop = {id(row) for row in held[:-1]}
            self.pending = [(what, [r for r in rows if id(r) not in drop]) if what is checkpoints else (what, rows) for what, rows in self.pending]

    def on_steps(self, trainer: Trainer, block: StepBlock) -> None:
        self._write(RunStore.step_ops(self.run_id, block))

    def on_telemetry(self, trainer: Trainer, snapshot: dict) -> None:
        self._write(RunStore.telemetry_ops(self.run_id, snapshot))

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        self.pending.extend(RunStore.epoch_ops(self.run_id, record))
        # one checkpoint per CHECKPOINT_SECONDS at most: a small model ends a hundred epochs a second, and saving each
        # cost it a fifth of its speed. The newest epoch's state is kept, and saved if the run ends before the next one.
        self.unsaved = (trainer.state(), f"epoch {record['epoch']}")
        if self.clock() - self.last_checkpoint >= CHECKPOINT_SECONDS:
            self._save_unsaved()
        self._save_trajectory(trainer)
        self._write([])

    def _save_unsaved(self) -> None:
        if self.unsaved is not None:
            # in the transaction of the metrics before it: a checkpoint never gets ahead of them
            self._write(RunStore.checkpoint_ops(self.run_id, *self.unsaved), force=True)
            self.unsaved = None
            self.last_checkpoint = self.clock()

    def _save_trajectory(self, trainer: Trainer) -> None:
        # the trainer thins its list when it grows too long, so what is new is told by the step
        new = [(s, v) for s, v in trainer.trajectory if s > self.last_saved_step]
        if new:
            self.pending.extend(RunStore.trajectory_ops(self.run_id, new))
            self.last_saved_step = new[-1][0]

    def on_train_end(self, trainer: Trainer, result: dict) -> None:
        self._save_trajectory(trainer)
        # a stopped run keeps its last epoch's checkpoint as its newest: continuing from there is exact, from the middle
        # of an epoch it would not be
        if trainer.status == "finished":
            self.unsaved = None
            self.pending.extend(RunStore.checkpoint_ops(self.run_id, trainer.state(), "final"))
        elif self.unsaved is not None:
            self.pending.extend(RunStore.checkpoint_ops(self.run_id, *self.unsaved))
            self.unsaved = None
        self.pending.extend(status_ops(self.run_id, trainer.status, trainer.reason, result))
        # the last write waits for a store that refuses it, up to retry_seconds since it began refusing
        while not self._flush(self.clock()):
            self._keep_newest_checkpoint()
            self.sleep(RETRY_SECONDS)
