"""A database that goes away mid-run: the run trains on, holding what it has to write, and writes all of it when the
database returns; after DLVIZ_STORE_RETRY_SECONDS of refusals it fails, and what was written before stays.

The outage is a store whose writes raise while it is down, as SQLAlchemy raises for a database that refuses
connections, and the clock is the test's: nothing here waits for real (a real PostgreSQL stopped mid-run is the slow
test at the end)."""

import glob
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError
from test_store import PRESET as STORE_PRESET

from dlviz.preset.schema import validate
from dlviz.training.store import STORE_ERRORS, RunStore, StoreCallback
from dlviz.training.trainer import Callback, Trainer

PRESET = {
    **STORE_PRESET,
    "name": "outage",
    "seed": 4,
    "data": {**STORE_PRESET["data"], "batch_size": 10},
    "training": {**STORE_PRESET["training"], "epochs": 8},
}


class Outage:
    """A run store whose writes are refused while `down`; everything else is the real store's."""

    def __init__(self, store: RunStore):
        self.store, self.down, self.refused = store, False, 0

    def write(self, ops):
        if self.down:
            self.refused += 1
            raise OperationalError("INSERT INTO steps …", {}, ConnectionRefusedError("connection refused"))
        self.store.write(ops)

    def __getattr__(self, name):
        return getattr(self.store, name)


class Clock:
    """The test's clock: each epoch moves it on by `tick` seconds (Schedule), each wait by the time waited."""

    def __init__(self, tick: float):
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class Schedule(Callback):
    """Moves the clock on at every epoch's end, and takes the store down after the epochs in `down`."""

    def __init__(self, clock: Clock, outage: Outage, down: range):
        self.clock, self.outage, self.down = clock, outage, down

    def on_epoch_end(self, trainer, record):
        self.clock.t += self.clock.tick
        self.outage.down = record["epoch"] in self.down


def same_as_uninterrupted(store: RunStore, run_id: str, reference: str) -> None:
    for a, b in ((store.steps(reference, with_layers=True), store.steps(run_id, with_layers=True)), (store.epochs(reference), store.epochs(run_id))):
        assert a.shape == b.shape and np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)
    assert [t["step"] for t in store.telemetry(run_id)] == [t["step"] for t in store.telemetry(reference)]
    # the trajectory: which points a long run keeps depends on when it thinned its list, the points themselves do not
    (steps_a, points_a), (steps_b, points_b) = store.trajectory(reference), store.trajectory(run_id)
    common, ia, ib = np.intersect1d(steps_a, steps_b, return_indices=True)
    assert len(common) >= min(len(steps_a), len(steps_b)) // 2 and common[-1] == steps_a[-1] == steps_b[-1]
    assert np.array_equal(points_a[ia], points_b[ib])


@pytest.fixture
def stores(store_url):
    store = RunStore(store_url)
    exp = validate(PRESET)
    reference = store.create_run(exp)
    Trainer(exp, [StoreCallback(store, reference)]).run()
    yield store, exp, reference
    store.close()


def test_a_run_trains_through_an_outage_and_writes_everything_when_the_store_returns(stores):
    store, exp, reference = stores
    run_id = store.create_run(exp)
    clock, outage = Clock(0.5), Outage(store)
    cb = StoreCallback(outage, run_id, retry_seconds=60, clock=clock, sleep=clock.sleep)
    trainer = Trainer(exp, [cb, Schedule(clock, outage, down=range(2, 6))])  # down from epoch 2's end to epoch 6's
    result = trainer.run()
    assert outage.refused > 0 and trainer.status == "finished"
    run = store.run(run_id)
    assert run["status"] == "finished" and run["result"] == result == store.run(reference)["result"]
    assert run["epochs_done"] == 8 and run["steps_done"] == trainer.step
    same_as_uninterrupted(store, run_id, reference)
    labels = list(store.checkpoints(run_id)["label"])
    assert labels[0] == "initial" and labels[-1] == "final"
    assert store.load_checkpoint(run_id)["epoch"] == 8


def test_the_last_write_waits_for_the_store_and_a_stopped_run_keeps_its_last_epoch(stores):
    """The store goes away just before a stopped run's end: its last write waits, sleeping between tries, and lands
    once the store is back; the newest epoch's checkpoint waits with it, so the run continues exactly."""
    store, exp, reference = stores
    run_id = store.create_run(exp)
    clock, outage = Clock(0.0), Outage(store)
    tries = []

    def sleep(seconds):
        tries.append(seconds)
        clock.sleep(seconds)
        outage.down = len(tries) < 3  # back after three waits

    class StopAfterThree(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 3:
                outage.down = True
                trainer.control.stop()

    Trainer(exp, [StoreCallback(outage, run_id, retry_seconds=60, clock=clock, sleep=sleep), StopAfterThree()]).run()
    assert len(tries) == 3 and store.run(run_id)["status"] == "stopped"
    state = store.load_checkpoint(run_id)
    assert state["epoch"] == 3
    assert Trainer(exp, resume=state).run() == store.run(reference)["result"]


def test_a_store_gone_for_longer_than_the_retry_time_fails_the_run_and_keeps_what_was_written(stores):
    store, exp, _ = stores
    run_id = store.create_run(exp)
    clock, outage = Clock(3.0), Outage(store)
    cb = StoreCallback(outage, run_id, retry_seconds=10, clock=clock, sleep=clock.sleep)
    trainer = Trainer(exp, [cb, Schedule(clock, outage, down=range(2, 99))])
    with pytest.raises(STORE_ERRORS):
        trainer.run()
    assert clock.t >= 10 and trainer.epoch < 8, "it failed only after the retry time, before the run's end"
    run = store.run(run_id)
    assert run["epochs_done"] == 2 and list(store.epochs(run_id)["epoch"]) == [1, 2]
    assert store.load_checkpoint(run_id)["epoch"] <= 2


def test_held_writes_keep_one_epoch_checkpoint_not_one_per_epoch(stores, monkeypatch):
    import dlviz.training.store as store_mod

    store, exp, _ = stores
    monkeypatch.setattr(store_mod, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint at every epoch's end
    run_id = store.create_run(exp)
    clock, outage = Clock(0.1), Outage(store)
    cb = StoreCallback(outage, run_id, retry_seconds=1e9, clock=clock, sleep=clock.sleep)
    held = []

    class Watch(Callback):
        def on_epoch_end(self, trainer, record):
            held.append(sum(len(rows) for what, rows in cb.pending if what is store_mod.checkpoints))

    Trainer(exp, [cb, Schedule(clock, outage, down=range(1, 7)), Watch()]).run()
    assert max(held) == 1, held  # the newest epoch's, while epochs 2 to 7 end with the store down or not yet retried
    assert list(store.checkpoints(run_id)["label"]) == ["initial", "epoch 1", "final"]


def _cluster(tmp: str, port: int, *args: str) -> list[str]:
    """The command that runs pg_ctl on a throwaway cluster as a user it accepts (root may not run a cluster)."""
    pg_ctl = shutil.which("pg_ctl") or sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return [*prefix, pg_ctl, "-D", f"{tmp}/data", "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1", "-l", f"{tmp}/log", "-w", *args]


@pytest.mark.slow
def test_a_run_survives_its_postgresql_server_stopping_and_starting_again(tmp_path):
    """A throwaway PostgreSQL cluster stopped for a few seconds mid-run, through the Runner: the run trains on and
    ends finished with every step and epoch of an uninterrupted run."""
    import socket

    from dlviz.training.runner import Runner

    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("no PostgreSQL server here (Debian's postgresql)")
    tmp = tempfile.mkdtemp(prefix="dlviz-pg-")
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_user, initdb, "-D", f"{tmp}/data", "-U", "postgres", "-A", "trust"], check=True, capture_output=True)
    subprocess.run(_cluster(tmp, port, "start"), check=True, capture_output=True)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    runner = Runner(url)
    try:
        exp = validate({**PRESET, "data": {**PRESET["data"], "num_samples": 2000}, "training": {"epochs": 40}})
        h = runner.start(exp, "outage")
        while len(h.feed.epochs) < 3:
            time.sleep(0.05)
        subprocess.run(_cluster(tmp, port, "-m", "immediate", "stop"), check=True, capture_output=True)
        stopped_at = len(h.feed.epochs)
        time.sleep(4)
        assert len(h.feed.epochs) > stopped_at, "the run stopped training while its database was down"
        subprocess.run(_cluster(tmp, port, "start"), check=True, capture_output=True)
        t0 = time.time()
        while h.alive and time.time() - t0 < 120:
            time.sleep(0.1)
        assert h.feed.status == "finished", h.feed.reason
        store = RunStore(url)
        reference = store.create_run(exp)
        Trainer(exp, [StoreCallback(store, reference)]).run()
        assert store.run(h.run_id)["status"] == "finished" and store.run(h.run_id)["result"] == store.run(reference)["result"]
        same_as_uninterrupted(store, h.run_id, reference)
        store.close()
    finally:
        runner.shutdown()
        subprocess.run(_cluster(tmp, port, "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
