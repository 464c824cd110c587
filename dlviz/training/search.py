"""Hyperparameter search with Optuna: a space of preset values, trials that are ordinary runs in the run store, and a
study that any number of processes share through one database.

The space is a JSON document:

    {
      "preset": "cnn-digits",
      "params": {
        "optimizer.lr":      {"type": "log_uniform", "low": 1e-4, "high": 1.0},
        "training.l2":       {"type": "log_uniform", "low": 1e-6, "high": 1e-2},
        "model.layers[2].p": {"type": "uniform", "low": 0, "high": 0.5},
        "model.init":        {"type": "categorical", "choices": ["xavier_uniform", "kaiming_normal"]},
        "training.epochs":   {"type": "int", "low": 1, "high": 5}
      }
    }

- "preset" (optional): the preset the space is for, a built-in preset's name or a path (relative to the space file);
  a preset named on the command line takes its place.
- "params" (at least one): each key is a path into the preset's JSON, dotted keys and [i] indexes, and each value one of
  {"type": "uniform", "low": a, "high": b}        a float, evenly drawn in [a, b] (a < b)
  {"type": "log_uniform", "low": a, "high": b}    a float, evenly drawn in [log a, log b] (0 < a < b)
  {"type": "int", "low": a, "high": b}            an integer in [a, b] (a < b)
  {"type": "categorical", "choices": [v, ...]}    one of the choices: strings, numbers, booleans or null
  A path may name a value the preset leaves at its default (training.l2, a Dropout's p).

load_space checks a space as a preset is checked: each path is set, in a copy of the preset, to its range's ends, to a
value inside it and to each choice, and the copy validated; a problem raises UserError at its JSON path, such as
"space.params['optimizer.lr'].low: …".

The sampler "random" seeds each draw by (seed, trial number, parameter): processes sharing a study draw apart, and a
study run again draws what it drew before; "tpe" is Optuna's TPESampler, its first random trials drawn the same way.
Studies live in an SQLite file in the data directory (optuna.sqlite) unless --storage names a database: with a
postgresql:// URL any number of `dlviz sweep` processes, on any number of machines, work on one study.

A trial is the preset with the sampled values, trained by the Trainer into the run store (session "sweep:<study>"; its
run id is the trial's user attribute "run_id"), each epoch's validation loss reported to Optuna's MedianPruner. The
objective is the final validation loss (the `val_loss` of `train --json`'s last line), lower is better. A pruned trial's
run is "stopped" and the trial PRUNED; a diverging trial's run is "diverged" and the trial FAIL, with the reason as its
user attribute "reason"; the study goes on. Failing is the honest state: a diverged run has no loss to rank, and a
pruned one was stopped for being slow, not for blowing up.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import sqlite3
import time
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import optuna
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from dlviz import limits as _limits
from dlviz.errors import UserError, did_you_mean, json_path
from dlviz.paths import data_dir
from dlviz.preset.edit import get, parse_path
from dlviz.preset.schema import Experiment, validate
from dlviz.training.database import DATABASE_ERRORS, _reason
from dlviz.training.trainer import Callback, Trainer

TYPES = ("uniform", "log_uniform", "int", "categorical")
KEYS = {"uniform": ("low", "high"), "log_uniform": ("low", "high"), "int": ("low", "high"), "categorical": ("choices",)}
SAMPLERS = ("random", "tpe")
STUDY_LOCK = 0x646C76697B  # the PostgreSQL advisory lock held while a study's tables and row are made
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
HEARTBEAT_SECONDS = 2.0  # as the app's servers beat for their runs, so that none takes a trial for an interrupted run


@dataclass(frozen=True)
class Param:
    """One searched value: its path in the preset and its distribution."""

    path: str
    type: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None

    def to_json(self) -> dict:
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        return {"type": self.type, "low": self.low, "high": self.high}

    def distribution(self):
        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(self.low, self.high, log=self.type == "log_uniform")


@dataclass(frozen=True)
class Space:
    """A checked space: the preset it names (if any) and its parameters, in the document's order."""

    params: tuple[Param, ...]
    preset: Optional[str] = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"preset": self.preset} if self.preset else {}
        out["params"] = {p.path: p.to_json() for p in self.params}
        return out

    def key(self) -> str:
        """A short hash of the parameters: the default study name follows it, so a changed (or zoomed) space, whose
        distributions Optuna would refuse in the old study, gets a study of its own."""
        text = json.dumps(self.to_json()["params"], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def _where(path: str, *rest) -> str:
    return f"space.params['{path}']" + "".join(f"[{r}]" if isinstance(r, int) else f".{r}" for r in rest)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_space(path: str) -> dict:
    """A space file's JSON (its "preset", when a path, made relative to the file's folder)."""
    lim = _limits.current().max_document_bytes
    try:
        size = os.path.getsize(path)
        if size > lim:
            raise UserError("space", f"{path} is {size:,} bytes, over the limit of {lim:,} (DLVIZ_MAX_DOCUMENT_BYTES)")
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise UserError("space", f"no space file {path}" if isinstance(e, FileNotFoundError) else f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError("space", f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise UserError("space", f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if isinstance(doc, dict) and isinstance(doc.get("preset"), str):
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), doc["preset"])
        if os.path.isfile(beside):
            doc = {**doc, "preset": beside}
    return doc


def set_value(doc: dict, full: dict, path: tuple, value) -> dict:
    """A copy of `doc` with the value at `path` set; a parent `doc` leaves at its defaults is taken from `full` (the
    preset with every default written). KeyError or IndexError when the preset has no such place."""
    out = copy.deepcopy(doc)
    node, whole = out, full
    for part in path[:-1]:
        whole = whole[part] if whole is not None else None
        try:
            node = node[part]
        except (KeyError, IndexError):
            if whole is None:
                raise
            node[part] = copy.deepcopy(whole)
            node = node[part]
    last = path[-1]
    if isinstance(node, list):
        node[last] = value  # an index past the end raises IndexError
    elif isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    else:
        raise KeyError(last)
    return out


def _try(exp: Experiment, path: str, parts: tuple, value, where: str, what: str) -> None:
    """Set `path` to `value` in a copy of the preset and validate it; a problem raises UserError at `where`, or at the
    parameter itself when the preset has no such value (a key it does not know, an index past its end)."""
    doc, full = exp.to_dict(), exp.to_dict(full=True)
    missing = f"the preset has no {path}; name a value it holds, such as optimizer.lr or model.layers[0].out_features"
    try:
        get(full, parts)
        known = True
    except (KeyError, IndexError, TypeError):
        known = False  # an optional value the preset leaves out (training.grad_clip): validation decides
    try:
        doc = set_value(doc, full, parts, value)
    except (KeyError, IndexError, TypeError):
        raise UserError(_where(path), missing) from None
    try:
        validate(doc)
    except UserError as e:
        if not known:
            raise UserError(_where(path), f"{missing} ({e})") from None
        raise UserError(where, f"{what} {value!r} makes the preset invalid: {e}") from None


def load_space(doc: Any, exp: Experiment) -> Space:
    """A space document checked against the preset it searches; UserError at the JSON path of its first problem."""
    if not isinstance(doc, dict):
        raise UserError("space", 'a space is a JSON object with a "params" object (see dlviz.training.search)')
    for key in [k for k in doc if k not in ("preset", "params")][:1]:
        raise UserError(f"space.{key}", f'unknown key{did_you_mean(key, ["preset", "params"])}; a space has "preset" and "params"')
    preset = doc.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise UserError("space.preset", "the preset is a built-in preset's name or a path, as text")
    params = doc.get("params")
    if not isinstance(params, dict) or not params:
        raise UserError("space.params", 'give at least one value to search, as {"optimizer.lr": {"type": "log_uniform", "low": 1e-4, "high": 1}}')
    out = []
    for path, spec in params.items():
        parts = parse_path(path)
        if not parts or json_path(parts) != path:
            raise UserError(_where(path), "not a path into the preset; write dotted keys and [i] indexes, as model.layers[2].p")
        out.append(_param(path, parts, spec, exp))
    return Space(tuple(out), preset)


def _param(path: str, parts: tuple, spec: Any, exp: Experiment) -> Param:
    if not isinstance(spec, dict):
        raise UserError(_where(path), 'a searched value is an object such as {"type": "uniform", "low": 0, "high": 0.5}')
    kind = spec.get("type")
    if kind not in TYPES:
        raise UserError(_where(path, "type"), f"unknown type {kind!r}{did_you_mean(kind, TYPES)}; choose from {', '.join(TYPES)}")
    for key in [k for k in spec if k != "type" and k not in KEYS[kind]] + [k for k in KEYS[kind] if k not in spec]:
        raise UserError(_where(path, key), "is required" if key in KEYS[kind] else f"a {kind} value takes {' and '.join(KEYS[kind])}, not {key}")
    if kind == "categorical":
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise UserError(_where(path, "choices"), "give a list of one or more values")
        for i, c in enumerate(choices):
            if not (c is None or isinstance(c, (str, bool)) or _number(c)):
                raise UserError(_where(path, "choices", i), "a choice is a string, a number, a boolean or null")
            if c in choices[:i]:
                raise UserError(_where(path, "choices", i), f"{c!r} is already a choice")
            _try(exp, path, parts, c, _where(path, "choices", i), "the choice")
        return Param(path, kind, choices=tuple(choices))
    low, high = spec["low"], spec["high"]
    for key, v in (("low", low), ("high", high)):
        if not _number(v) or (kind == "int" and not float(v).is_integer()):
            raise UserError(_where(path, key), f"{'an integer' if kind == 'int' else 'a finite number'} is required, got {v!r}")
    if kind == "log_uniform" and low <= 0:
        raise UserError(_where(path, "low"), f"a log range lies above 0 (its logarithm must exist), got low {low!r}; use uniform for a range through 0")
    if not low < high:
        raise UserError(_where(path, "high"), f"high must be above low, got low {low!r} and high {high!r}")
    if kind == "int":
        low, high = int(low), int(high)
        inside = (low + high) // 2
    else:
        low, high = float(low), float(high)
        # a point inside at an irrational fraction of the range: a field that takes only integers refuses it
        frac = 0.5**0.5
        inside = math.exp(math.log(low) + frac * (math.log(high) - math.log(low))) if kind == "log_uniform" else low + frac * (high - low)
    _try(exp, path, parts, low, _where(path, "low"), "the low end")
    _try(exp, path, parts, high, _where(path, "high"), "the high end")
    _try(exp, path, parts, inside, _where(path), f"a {kind} value such as")
    return Param(path, kind, low, high)


def check_trials(trials: int) -> None:
    limit = _limits.current().max_trials
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise UserError("trials", f"a search runs at least 1 trial, got {trials!r}")
    if trials > limit:
        raise UserError(
            "trials", f"{trials} trials are over the limit of {limit} for one search (DLVIZ_MAX_TRIALS); run fewer, or several processes on one study"
        )


def apply(exp: Experiment, params: dict) -> dict:
    """The preset document with each path of `params` set to its value (not yet validated)."""
    doc, full = exp.to_dict(), exp.to_dict(full=True)
    for path, value in params.items():
        doc = set_value(doc, full, parse_path(path), value)
    return doc


def best_preset(exp: Experiment, space: Space, params: dict) -> dict:
    """A trial's preset document ("load the best trial as the preset"): the preset with the trial's values, validated."""
    known = {p.path for p in space.params}
    unknown = [k for k in params if k not in known]
    if unknown:
        raise UserError("params", f"{unknown[0]} is not a value of this space; the trial belongs to another study")
    return validate(apply(exp, params)).to_dict()


def storage_url(storage: Optional[str] = None) -> str:
    """Where studies live: `storage` (a database URL, or the path of an SQLite file), by default the SQLite file
    optuna.sqlite in the data directory. postgresql:// (and postgres://) URLs use psycopg, as the run store does."""
    if storage is None:
        return f"sqlite:///{data_dir() / 'optuna.sqlite'}"
    if "://" not in storage:
        return f"sqlite:///{Path(storage).absolute()}"
    try:
        url = make_url(storage)
    except ArgumentError:
        raise UserError("storage", "not a database URL; write it as postgresql://user:password@host:port/database or sqlite:///path") from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    elif not (backend == "sqlite" and driver in ("", "pysqlite")):
        raise UserError("storage", f"studies live in PostgreSQL (postgresql://…) or SQLite (sqlite:///…), not {url.drivername}")
    return url.render_as_string(hide_password=False)


def shown(url: str) -> str:
    """The storage URL as a person may read it: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def _study_lock(url: str, engine_kwargs: dict):
    """On PostgreSQL, one process at a time makes Optuna's tables and the study's row: two processes starting at once
    on an empty database would both create the tables, and one would fail on the catalog."""
    if not url.startswith("postgresql"):
        yield
        return
    engine = sa.create_engine(url, poolclass=NullPool, connect_args=engine_kwargs["connect_args"])
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": STUDY_LOCK})
            yield
    finally:
        engine.dispose()


class TrialSampler(optuna.samplers.BaseSampler):
    """Random values seeded by (seed, trial number, parameter name): a trial's values follow from its number alone, so
    processes sharing a study never draw the same ones (a seeded RandomSampler in each would), and a study run
    again with the same seed draws what it drew before."""

    def __init__(self, seed: int):
        self.seed = seed

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, dist):
        return draw(self.seed, trial.number, name, dist)


def draw(seed: int, number: int, name: str, dist):
    """One value of `dist` for trial `number`, from a generator seeded by (seed, number, name)."""
    rng = np.random.default_rng([seed, number, zlib.crc32(name.encode("utf-8"))])
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if isinstance(dist, IntDistribution):
        return int(rng.integers(dist.low, dist.high + 1))
    if dist.log:
        value = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    else:
        value = rng.uniform(dist.low, dist.high)
    return min(max(float(value), dist.low), dist.high)


def make_sampler(sampler: str, seed: int):
    if sampler not in SAMPLERS:
        raise UserError("sampler", f"unknown sampler {sampler!r}{did_you_mean(sampler, SAMPLERS)}; choose random or tpe")
    if not isinstance(seed, int) or seed < 0:
        raise UserError("seed", f"the sampler's seed is an integer of 0 or more, got {seed!r}")
    if sampler == "random":
        return TrialSampler(seed)
    tpe = optuna.samplers.TPESampler(seed=seed)
    # its first, random trials drawn per trial number too, so that processes sharing the study start apart
    tpe._random_sampler = TrialSampler(seed)
    return tpe


def open_study(space: Space, exp: Experiment, storage: Optional[str] = None, study_name: Optional[str] = None, sampler: str = "random", seed: int = 0):
    """The study, made if new (load_if_exists): any number of processes may open one study at once. Its default name
    follows the preset and the space. An unreachable storage raises UserError with one sentence."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(storage)
    name = study_name or default_study_name(exp, space)
    postgres = url.startswith("postgresql")
    if postgres:
        kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        path = url.removeprefix("sqlite:///")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"creator": partial(_sqlite_connection, path)}
    try:
        with _study_lock(url, kwargs):
            rdb = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            return optuna.create_study(
                storage=rdb,
                study_name=name,
                sampler=make_sampler(sampler, seed),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
                direction="minimize",
                load_if_exists=True,
            )
    except (*DATABASE_ERRORS, SQLAlchemyError, sqlite3.Error, OSError) as err:
        fix = "check the URL, its user and password, and that the database server runs" if postgres else "check that the folder can be written"
        raise UserError("storage", f"The study storage at {shown(url)} can't be opened: {_reason(err)}; {fix}.") from None


def _sqlite_connection(path: str):
    """A connection to the study's SQLite file in WAL mode with synchronous=NORMAL, as the run store's: Optuna commits
    several times a trial (ask, each report, tell), and a full sync on each cost a short trial a tenth of its time.
    Processes sharing the file read while one writes."""
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass  # another process is switching the new file to WAL at this moment: it stays so
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def default_study_name(exp: Experiment, space: Space) -> str:
    from dlviz.preset.diff import preset_hash

    return f"sweep-{preset_hash(exp)[:8]}-{space.key()}"


@dataclass(frozen=True)
class TrialResult:
    """One finished trial: its Optuna number and state (complete, pruned or failed), the objective, its values, the
    run that trained it and why it ended early, if it did."""

    number: int
    state: str
    value: Optional[float]
    params: dict
    run_id: str = ""
    reason: str = ""
    epochs: int = 0

    def to_json(self) -> dict:
        out = {"trial": self.number, "state": self.state, "val_loss": self.value, "params": self.params, "run_id": self.run_id, "epochs": self.epochs}
        return {**out, "reason": self.reason} if self.reason else out


@dataclass
class SweepResult:
    """A sweep's trials (those this process ran) and the study's best trial (of every process's), with its preset."""

    study_name: str
    storage: str  # the password hidden
    trials: list[TrialResult] = field(default_factory=list)
    best: Optional[TrialResult] = None
    best_preset: Optional[dict] = None
    study_trials: int = 0  # the trials of the whole study, of every process


def trial_result(t) -> TrialResult:
    state, attrs = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(t.state.name, t.state.name.lower()), t.user_attrs
    value = t.value if state == "complete" else None
    return TrialResult(t.number, state, value, dict(t.params), attrs.get("run_id", ""), attrs.get("reason", ""), int(attrs.get("epochs", 0)))


class _Report(Callback):
    """Reports each epoch's validation loss to Optuna and stops the run when the pruner says so; keeps the run's
    heartbeat so that a server sharing the store does not take it for interrupted."""

    def __init__(self, trial, store, run_id: str):
        self.trial, self.store, self.run_id = trial, store, run_id
        self.pruned = ""
        self.last_beat = time.monotonic()

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        value = record.get("val_loss")
        if value is not None and math.isfinite(value):
            self.trial.report(float(value), int(record["epoch"]))
            if trainer.epoch < trainer.exp.training.epochs and self.trial.should_prune():
                self.pruned = f"pruned at epoch {record['epoch']}: its validation loss was above the median of the trials before it"
                trainer.control.stop(self.pruned)
        if time.monotonic() - self.last_beat >= HEARTBEAT_SECONDS:
            self.store.beat([self.run_id])
            self.last_beat = time.monotonic()


def _searches_data(space: Space) -> bool:
    return any(p.path == "seed" or p.path.startswith("data.") for p in space.params)


def sweep(
    exp: Experiment,
    space: Space,
    trials: int,
    storage: Optional[str] = None,
    study_name: Optional[str] = None,
    sampler: str = "random",
    seed: int = 0,
    store=None,
    on_trial: Optional[Callable[[TrialResult], None]] = None,
    csv_bytes: Optional[bytes] = None,
) -> SweepResult:
    """Run `trials` trials of the study (made or joined), each a run in the run store (`store`, by default the one
    DLVIZ_DATABASE_URL or the data directory names); `on_trial` hears of each as it ends."""
    from dlviz.training.fit import require_sections
    from dlviz.training.store import RunStore

    check_trials(trials)
    require_sections(exp)
    if exp.data.val_fraction <= 0:
        raise UserError("data.val_fraction", "a search ranks trials by their validation loss: give the preset a validation split above 0")
    study = open_study(space, exp, storage, study_name, sampler, seed)
    store = store if store is not None else RunStore()
    session = f"sweep:{study.study_name}"
    dataset = None
    if not _searches_data(space):  # every trial trains on the same data: load it once
        from dlviz.data.datasets import load_dataset

        dataset = load_dataset(exp.data, exp.seed, csv_bytes)
    dists = {p.path: p.distribution() for p in space.params}
    result = SweepResult(study.study_name, shown(storage_url(storage)))
    for _ in range(trials):
        trial = study.ask(dists)
        frozen = _run_trial(study, trial, exp, store, session, dataset, csv_bytes)
        tr = trial_result(frozen)
        result.trials.append(tr)
        if on_trial is not None:
            on_trial(tr)
    done = study.get_trials(deepcopy=False, states=FINISHED)
    result.study_trials = len(done)
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in done):
        best = study.best_trial
        result.best, result.best_preset = trial_result(best), best_preset(exp, space, best.params)
    return result


def _run_trial(study, trial, exp: Experiment, store, session: str, dataset, csv_bytes):
    """Train one trial's preset into the store and tell Optuna how it ended; returns the frozen trial."""
    from dlviz.training.store import StoreCallback

    fail = lambda reason: (trial.set_user_attr("reason", reason), study.tell(trial, state=optuna.trial.TrialState.FAIL))[1]
    try:
        texp = validate(apply(exp, trial.params))
    except UserError as e:
        return fail(str(e))
    run_id = store.create_run(texp, session=session, status="running")
    trial.set_user_attr("run_id", run_id)
    report = _Report(trial, store, run_id)
    try:
        trainer = Trainer(texp, [StoreCallback(store, run_id), report], dataset=dataset, csv_bytes=csv_bytes)
        out = trainer.run()
    except UserError as e:
        store.set_status(run_id, "failed", str(e))
        return fail(str(e))
    except BaseException as e:  # a bug or Ctrl-C: the run and the trial are closed, then it goes on up
        with contextlib.suppress(Exception):
            store.set_status(run_id, "failed", f"the search stopped: {type(e).__name__}")
            fail(f"the search stopped: {type(e).__name__}")
        raise
    trial.set_user_attr("epochs", int(out.get("epochs", 0)))
    if out["status"] == "diverged":
        return fail(out.get("reason", "the run diverged"))
    if report.pruned:
        trial.set_user_attr("reason", report.pruned)
        return study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    value = out.get("val_loss")
    if out["status"] != "finished" or value is None or not math.isfinite(value):
        return fail(out.get("reason") or f"the run ended {out['status']} without a finite validation loss")
    return study.tell(trial, float(value))


def zoom(space: Space, study, top: float = 0.25) -> Space:
    """Coarse to fine: a narrower space around the best `top` fraction of the study's complete trials (at least two
    when there are). A numeric range becomes the span of their values, widened by a tenth of the old range on each
    side (in log space for log ranges) and kept inside the old one; a span that is one value becomes a window of a
    quarter of the old range around it. A categorical keeps the choices seen among them, in their order. Run the
    zoomed space in a study of its own (its default name differs): Optuna refuses changed choices in one study."""
    if not 0 < top <= 1:
        raise UserError("top", f"the fraction of best trials lies in (0, 1], got {top!r}")
    done = sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.value)
    if not done:
        raise UserError("study", "no trial of the study has completed yet; nothing to zoom in on")
    best = done[: max(min(2, len(done)), math.ceil(top * len(done)))]
    out = []
    for p in space.params:
        values = [t.params[p.path] for t in best if p.path in t.params]
        if not values:
            out.append(p)
        elif p.type == "categorical":
            out.append(Param(p.path, p.type, choices=tuple(c for c in p.choices if c in values)))
        else:
            out.append(_narrow(p, values))
    return Space(tuple(out), space.preset)


def _narrow(p: Param, values: list) -> Param:
    f, inv = (math.log, math.exp) if p.type == "log_uniform" else (float, float)
    lo, hi, vlo, vhi = f(p.low), f(p.high), f(min(values)), f(max(values))
    pad = (hi - lo) / (8 if vhi - vlo < 1e-12 * (hi - lo) else 10)
    a, b = max(vlo - pad, lo), min(vhi + pad, hi)
    if p.type == "int":
        a, b = math.floor(a), math.ceil(b)
        if a == b:  # an integer range keeps two values at least
            a, b = (a - 1, b) if a > p.low else (a, b + 1)
        return Param(p.path, p.type, int(a), int(b))
    return Param(p.path, p.type, max(inv(a), p.low), min(inv(b), p.high))  # exp(log(x)) may land a hair outside
