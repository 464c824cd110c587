"""A run store that can't be written (a full disk, a read-only data directory) ends the runs it fails, frees their
slots, and leaves the server up: the Train page says why in one sentence, the other pages work on.

Tests may run as root, whom file permissions do not stop, so the failures are made in ways that stop root too: a
file-size limit of zero on the worker (each write to a file fails, as on a full disk) and SQLite's query_only mode
on the server's connections (what it does with a file it may only read).

A run whose writes fail trains on for DLVIZ_STORE_RETRY_SECONDS, holding them, before it fails (test_store_outage.py
has a store that comes back); here that wait is a second."""

import resource
import sqlite3
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_runner import runner  # noqa: F401  (a Runner on a store of the module's own)

from dlviz.preset.schema import validate
from dlviz.training.store import RunStore

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
PRESET = {
    "format": "dlviz-preset/1",
    "name": "store failure",
    "seed": 3,
    "data": {"name": "moons", "num_samples": 300, "batch_size": 16},
    "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 16}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}]},
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.02},
    "training": {"epochs": 500},
}
SENTENCE = "The run store can't be written: "


def read_only_connections(monkeypatch) -> None:
    """Every SQLite connection this process opens from now on may read but not write."""
    real = sqlite3.dbapi2.connect  # what SQLAlchemy's SQLite driver calls

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        db.execute("PRAGMA query_only=ON")
        return db

    monkeypatch.setattr(sqlite3.dbapi2, "connect", connect)


def until(condition, timeout=60.0) -> bool:
    t0 = time.time()
    while not condition() and time.time() - t0 < timeout:
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("press_stop", [False, True])
def test_a_run_whose_store_writes_fail_ends_frees_its_slot_and_is_marked_once_the_store_heals(
    runner,  # noqa: F811
    monkeypatch,
    press_stop,
):
    monkeypatch.setenv("DLVIZ_STORE_RETRY_SECONDS", "1")
    h = runner.start(validate(PRESET), "kim")
    assert until(lambda: h.feed.steps_done > 0), "the run did not start"
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.prlimit(h.process.pid, resource.RLIMIT_FSIZE, (0, hard))  # the disk is full, for the worker
    read_only_connections(monkeypatch)  # and the server may only read the store
    if press_stop:
        runner.stop(h.run_id, wait=0.5, block=False)
    assert until(lambda: not h.alive), f"the handle stayed open: {h.feed.status} {h.feed.reason}"
    assert runner.active() == [], "the run still holds a slot"
    runner.stop(h.run_id)  # Stop on an ended run returns at once
    assert h.feed.status in ("failed", "stopped") and h.feed.reason
    if h.feed.status == "failed":
        assert "run store can't be written" in h.feed.reason and "Traceback" not in h.feed.reason
    assert runner.problem.startswith(SENTENCE) and runner.store_path not in runner.problem
    assert RunStore(runner.store_path).run(h.run_id)["status"] == "running", "the store took no write"
    monkeypatch.undo()  # the disk has room again
    runner.reap()
    assert RunStore(runner.store_path).run(h.run_id)["status"] == h.feed.status
    assert runner.problem is None
    again = runner.start(validate({**PRESET, "training": {"epochs": 1}}), "kim")  # the slot is free
    assert until(lambda: not again.alive) and again.feed.status == "finished"


def test_a_run_refused_by_the_store_is_one_sentence_and_takes_no_slot(runner, monkeypatch):  # noqa: F811
    from dlviz.errors import UserError

    read_only_connections(monkeypatch)
    with pytest.raises(UserError, match="run store can't be written: attempt to write a readonly database; ask whoever"):
        runner.start(validate(PRESET), "lee")
    assert runner.active() == []


def test_the_app_starts_when_the_store_cannot_mark_the_runs_the_last_server_left(tmp_path, monkeypatch):
    """A restart with a read-only store and a run still marked "running": the runner starts and says why, Build,
    Inspect's untrained model and Landscape's 2-D lab work, Train is one sentence."""
    from dlviz.training.runner import Runner
    from dlviz_app import runs

    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path))
    store = RunStore(tmp_path / "runs.sqlite")
    old = store.create_run(validate(PRESET), "last server's browser", status="running")
    store.beat([old], now=time.time() - 3600)  # the last server stopped an hour ago
    store.close()
    read_only = pytest.MonkeyPatch()
    read_only_connections(read_only)
    try:
        r = Runner(tmp_path / "runs.sqlite")
        assert r.problem.startswith(SENTENCE) and "ask whoever runs this server" in r.problem and str(tmp_path) not in r.problem
        runs.runner.clear(), runs.store.clear()
        at = AppTest.from_file(str(APP), default_timeout=120).run()
        assert not at.exception, at.exception
        assert [t.value for t in at.title][:1] == ["Build"] and not at.error
        at.switch_page("app_pages/train.py").run()
        assert not at.exception, at.exception
        assert [e.value.replace("\\", "") for e in at.error] == [runs.runner().problem]  # as written, Markdown escapes aside
        assert not any(b.label == "Train" for b in at.button), "nothing to train on a page that can't save a run"
        for page in ("app_pages/inspect.py", "app_pages/landscape.py"):
            at.switch_page(page).run()
            assert not at.exception, (page, at.exception)
            assert not any(SENTENCE in e.value for e in at.error), page
        read_only.undo()  # the store is writable again: the old run is marked and the page trains
        runs.runner().reap()
        assert RunStore(tmp_path / "runs.sqlite").run(old)["status"] == "interrupted"
        at.switch_page("app_pages/train.py").run()
        assert not at.exception and not at.error and any(b.label == "Train" for b in at.button)
    finally:
        read_only.undo()
        runs.runner().shutdown()
        runs.runner.clear(), runs.store.clear()
