"""The run store keeps everything a run produced, survives a reopen, and never unpickles."""

import io
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sqlalchemy import insert

from dlviz.errors import UserError
from dlviz.preset.schema import validate
from dlviz.training.database import checkpoints
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Callback, Trainer

PRESET = {
    "format": "dlviz-preset/1",
    "name": "store test",
    "seed": 5,
    "data": {"name": "xor", "num_samples": 200, "val_fraction": 0.25, "batch_size": 20},
    "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 8}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}]},
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.02},
    "training": {"epochs": 3, "telemetry_every": 5, "trajectory_every": 4},
}


@pytest.fixture
def trained(store_url):
    exp = validate(PRESET)
    store = RunStore(store_url)
    run_id = store.create_run(exp, session="s1")
    tr = Trainer(exp, [StoreCallback(store, run_id)])
    result = tr.run()
    store.close()
    return store_url, run_id, tr, result


def test_a_finished_run_survives_a_reopen(trained):
    path, run_id, tr, result = trained
    store = RunStore(path)
    run = store.run(run_id)
    assert run["status"] == "finished" and run["result"] == result
    assert run["epochs_done"] == 3 and run["steps_done"] == tr.step
    assert run["param_names"] == tr.param_names
    assert validate(run["preset"]) == validate(PRESET)
    epochs = store.epochs(run_id)
    assert list(epochs["epoch"]) == [1, 2, 3]
    assert np.allclose(epochs["val_loss"], [h["val_loss"] for h in tr.history])
    steps = store.steps(run_id, with_layers=True)
    assert list(steps["step"]) == list(range(tr.step))
    assert steps.filter(like="grad_norm:").shape[1] == len(tr.param_names)
    assert len(store.telemetry(run_id)) == len(range(0, tr.step, 5))


def test_checkpoints_restore_the_exact_weights(trained):
    path, run_id, tr, _ = trained
    store = RunStore(path)
    ck = store.checkpoints(run_id)
    assert ck["label"].iloc[0] == "initial" and ck["label"].iloc[-1] == "final"
    final = store.load_checkpoint(run_id)
    for k, v in tr.model.state_dict().items():
        assert torch.equal(final["model"][k], v)
    initial = store.load_checkpoint(run_id, 0)
    fresh = Trainer(validate(PRESET))
    for k, v in fresh.model.state_dict().items():
        assert torch.equal(initial["model"][k], v)


def test_resume_from_a_stored_checkpoint_gives_the_uninterrupted_numbers(store_url):
    exp = validate(PRESET)
    full = Trainer(exp).run()
    store = RunStore(store_url)
    rid = store.create_run(exp)

    class StopAfterOne(Callback):
        def on_epoch_end(self, trainer, record):
            trainer.control.stop()

    Trainer(exp, [StoreCallback(store, rid), StopAfterOne()]).run()
    assert store.run(rid)["status"] == "stopped"
    state = store.load_checkpoint(rid)
    assert state["epoch"] == 1
    assert Trainer(exp, resume=state).run() == full


def test_trajectory_is_saved_every_n_steps(trained):
    path, run_id, tr, _ = trained
    steps, params = RunStore(path).trajectory(run_id)
    assert steps[0] == 0 and all(s % 4 == 0 for s in steps)
    assert list(steps) == [s for s, _ in tr.trajectory]
    flat_final = torch.cat([p.detach().reshape(-1) for p in tr.model.parameters()]).numpy()
    if steps[-1] == tr.step:
        assert np.array_equal(params[-1], flat_final)
    assert params.shape[1] == flat_final.size


def test_export_csv(trained):
    path, run_id, tr, _ = trained
    df = pd.read_csv(io.StringIO(RunStore(path).export_csv(run_id)))
    assert len(df) == tr.step
    assert {"step", "loss", "metric", "lr", "epoch_val_loss"} <= set(df.columns)
    assert df["epoch_val_loss"].notna().all()


def test_runs_whose_heartbeat_stopped_are_marked_interrupted_and_keep_their_data(store_url):
    """Whichever server started a run, it becomes "interrupted" once its heartbeat is older than the timeout; a run
    whose server still beats, the caller's own live runs and ended runs are left alone."""
    store = RunStore(store_url)
    exp = validate(PRESET)
    t0 = 1_000_000.0
    dead = store.create_run(exp, status="running", owner="replica-a")
    beating = store.create_run(exp, status="paused", owner="replica-b")
    own = store.create_run(exp, status="running", owner="me")
    ended = store.create_run(exp, status="finished", owner="replica-a")
    store.beat([dead, beating, own, ended], now=t0)
    Trainer(exp, [StoreCallback(store, dead)]).run()
    store.set_status(dead, "running")  # its server died with it live, after it stored three epochs
    store.beat([dead], now=t0)
    store.close()
    store = RunStore(store_url)  # another server's store
    assert store.mark_interrupted(live_ids=[own], now=t0 + 10, timeout=15) == 0
    store.beat([beating], now=t0 + 14)
    assert store.mark_interrupted(live_ids=[own], now=t0 + 16, timeout=15) == 1
    assert [store.run(r)["status"] for r in (dead, beating, own, ended)] == ["interrupted", "paused", "running", "finished"]
    assert "server stopped" in store.run(dead)["reason"] and store.continuable(dead)
    assert len(store.epochs(dead)) == 3 and store.load_checkpoint(dead)["epoch"] == 3


def test_a_tampered_checkpoint_is_not_unpickled(trained):
    path, run_id, _, _ = trained
    store = RunStore(path)

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    buf = io.BytesIO()
    pickle.dump({"model": Evil(), "epoch": 0, "step": 999}, buf)
    store._exec(insert(checkpoints).values(run_id=run_id, step=999, epoch=0, label="tampered", state=buf.getvalue(), created=0.0))
    with pytest.raises(UserError, match="cannot be read safely"):
        store.load_checkpoint(run_id, 999)


def test_sessions_see_only_their_runs(store_url):
    store = RunStore(store_url)
    a = store.create_run(validate(PRESET), session="a")
    b = store.create_run(validate(PRESET), session="b")
    assert list(store.runs("a")["id"]) == [a] and list(store.runs("b")["id"]) == [b]
    assert set(store.runs()["id"]) == {a, b}


def test_fast_epochs_share_a_checkpoint_a_second_and_a_stop_still_keeps_its_last_epoch(store_url, monkeypatch):
    """Checkpoints are saved at most once per CHECKPOINT_SECONDS; the newest epoch's state is saved when the run ends
    before the next one, so continuing a stopped run stays exact."""
    import dlviz.training.store as store_mod

    monkeypatch.setattr(store_mod, "CHECKPOINT_SECONDS", 1e9)  # none saved on time: only the ones the run's end needs
    exp = validate({**PRESET, "training": {**PRESET["training"], "epochs": 6}})
    full = Trainer(exp).run()
    store = RunStore(store_url)
    finished = store.create_run(exp)
    Trainer(exp, [StoreCallback(store, finished)]).run()
    assert list(store.checkpoints(finished)["label"]) == ["initial", "final"]

    class StopAfterThree(Callback):
        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 3:
                trainer.control.stop()

    stopped = store.create_run(exp)
    Trainer(exp, [StoreCallback(store, stopped), StopAfterThree()]).run()
    assert list(store.checkpoints(stopped)["label"]) == ["initial", "epoch 3"]
    state = store.load_checkpoint(stopped)
    assert state["epoch"] == 3 and len(state["history"]) == 1, "a checkpoint carries the last epoch's record, not the whole history"
    assert Trainer(exp, resume=state).run() == full


def test_a_store_written_before_runs_carried_their_preset_hash_or_heartbeat_opens_and_hashes_its_runs(store_url):
    import json

    import sqlalchemy as sa

    from dlviz.preset.diff import preset_hash
    from dlviz.training.database import database_url

    old = sa.create_engine(database_url(store_url))
    exp = validate(PRESET)
    with old.begin() as db:
        db.execute(
            sa.text(
                "CREATE TABLE runs (id TEXT PRIMARY KEY, session TEXT, name TEXT, preset TEXT NOT NULL, status TEXT NOT NULL, "
                "reason TEXT, created REAL, updated REAL, epochs_done INTEGER DEFAULT 0, steps_done INTEGER DEFAULT 0, "
                "result TEXT, param_names TEXT, task TEXT)"
            )
        )
        row = {"preset": json.dumps(exp.to_dict()), "name": exp.name}
        db.execute(
            sa.text("INSERT INTO runs (id, session, name, preset, status, created, updated) VALUES (:id, 'b', :name, :preset, :status, 1.0, 1.0)"),
            [{**row, "id": "old-run", "status": "finished"}, {**row, "id": "left-running", "status": "running"}],
        )
    old.dispose()
    store = RunStore(store_url)
    assert store.runs("b")["preset_hash"].tolist() == [preset_hash(exp)] * 2
    assert store.run("old-run")["preset_hash"] == preset_hash(exp) and store.run("old-run")["parent"] is None
    assert store.run("old-run")["heartbeat"] is None
    assert store.mark_interrupted() == 1, "a run an older server left live has no heartbeat: its last update counts"
    assert store.run("left-running")["status"] == "interrupted"
    new = store.create_run(exp, "b")
    assert store.run(new)["preset_hash"] == preset_hash(exp)
