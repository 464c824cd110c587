"""Runs in worker processes: caps, stop, isolation between sessions, failure reporting, and the numbers of headless runs."""

import time

import pytest

from dlviz.errors import UserError
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore
from dlviz.training.trainer import Trainer

PRESET = {
    "format": "dlviz-preset/1",
    "name": "runner test",
    "seed": 2,
    "data": {"name": "moons", "num_samples": 300, "batch_size": 16},
    "model": {
        "input_shape": [2],
        "layers": [{"type": "Linear", "out_features": 16}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.2}, {"type": "Linear", "out_features": 2}],
    },
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.02},
    "training": {"epochs": 4},
}


def wait(handle, timeout=60):
    t0 = time.time()
    while handle.alive and time.time() - t0 < timeout:
        time.sleep(0.05)
    assert not handle.alive, f"the run did not finish in time: {handle.feed.status} {handle.feed.steps_done} {handle.feed.reason} {handle.process.is_alive()}"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    from dlviz.training.runner import Runner

    r = Runner(tmp_path_factory.mktemp("store") / "runs.sqlite")
    assert r.ready.wait(180), "the workers' forkserver did not start"
    yield r
    r.shutdown()


def test_two_sessions_at_once_get_their_own_runs_and_the_headless_numbers(runner, monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_RUNS_PER_SESSION", "1")
    exp = validate(PRESET)
    other = validate({**PRESET, "seed": 9})
    a = runner.start(exp, "alice")
    b = runner.start(other, "bob")
    assert [h.run_id for h in runner.active("alice")] == [a.run_id]
    wait(a), wait(b)
    headless = Trainer(exp).run()
    assert a.feed.result == headless, "dropout draws of concurrent runs must not interleave"
    assert b.feed.result == Trainer(other).run()
    store = RunStore(runner.store_path)
    assert store.run(a.run_id)["session"] == "alice" and store.run(a.run_id)["status"] == "finished"
    assert list(store.runs("bob")["id"]) == [b.run_id]
    snap = a.feed.snapshot()
    assert snap["steps_done"] == headless["steps"] and len(snap["epochs"]) == 4 and snap["boundary"] is not None


def test_caps_refuse_with_a_sentence(runner, monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_RUNS_PER_SESSION", "1")
    long = validate({**PRESET, "training": {"epochs": 500}})
    h = runner.start(long, "carol")
    with pytest.raises(UserError, match="DLVIZ_MAX_RUNS_PER_SESSION"):
        runner.start(long, "carol")
    monkeypatch.setenv("DLVIZ_MAX_CONCURRENT_RUNS", "1")
    with pytest.raises(UserError, match="DLVIZ_MAX_CONCURRENT_RUNS"):
        runner.start(long, "dave")
    t0 = time.time()
    runner.stop(h.run_id)
    assert time.time() - t0 < 1.5 and not h.alive
    assert RunStore(runner.store_path).run(h.run_id)["status"] == "stopped"


def test_pause_and_resume(runner):
    h = runner.start(validate({**PRESET, "training": {"epochs": 500}}), "erin")
    while h.feed.steps_done == 0:
        time.sleep(0.02)
    h.pause()
    time.sleep(0.3)
    done = h.feed.steps_done
    time.sleep(0.5)
    assert h.feed.steps_done == done and h.feed.status == "paused"
    h.resume()
    time.sleep(0.5)
    assert h.feed.steps_done > done
    runner.stop(h.run_id)


def test_runs_of_closed_sessions_are_stopped(runner):
    h = runner.start(validate({**PRESET, "training": {"epochs": 500}}), "frank")
    runner._seen["frank"] = time.time() - 3600  # no page of this session has refreshed for an hour
    assert h.run_id in runner.reap(timeout=60)
    assert not h.alive


def test_a_failing_run_reports_one_sentence_and_the_server_stays_up(runner):
    bad = validate({**PRESET, "data": {"name": "csv", "source": "/nonexistent/table.csv", "target": "y"}})
    h = runner.start(bad, "gina")
    wait(h)
    assert h.feed.status == "failed" and "table.csv" in h.feed.reason and "Traceback" not in h.feed.reason
    assert RunStore(runner.store_path).run(h.run_id)["status"] == "failed"
    ok = runner.start(validate(PRESET), "gina")
    wait(ok)
    assert ok.feed.status == "finished"


def test_a_worker_ended_after_the_grace_period_is_stopped_and_its_handle_closes_last(runner):
    """A worker that does not stop in time is ended; the handle only reads closed once feed and store say "stopped"."""
    import os
    import signal

    h = runner.start(validate({**PRESET, "training": {"epochs": 500}}), "hank")
    while h.feed.steps_done == 0:
        time.sleep(0.02)
    os.kill(h.process.pid, signal.SIGSTOP)  # a worker that cannot react to Stop
    h.process.terminate = h.process.kill  # a stopped process only dies of SIGKILL
    seen = []
    runner.stop(h.run_id, wait=0.3, block=False)
    assert h.feed.status == "stopping"
    t0 = time.time()
    while h.alive and time.time() - t0 < 30:
        time.sleep(0.001)
    seen.append(h.feed.status)
    assert not h.alive and seen == ["stopped"], seen
    assert h.feed.result["status"] == "stopped"
    assert RunStore(runner.store_path).run(h.run_id)["status"] == "stopped"


def test_a_worker_does_not_run_the_app_that_streamlit_installed_as_main(runner, monkeypatch, tmp_path):
    """Streamlit makes the page script (streamlit_app.py) the __main__ of each script run, and multiprocessing re-runs a
    __main__ given by path in each worker.
    The app must stay out of the workers: run there, it would build a second Runner, which marks live runs interrupted."""
    import sys
    import types
    from pathlib import Path

    from dlviz import paths

    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path))
    live = RunStore(paths.data_dir() / "runs.sqlite")
    other = live.create_run(validate(PRESET), "another person", status="running")
    app = types.ModuleType("__main__")
    app.__file__ = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")  # what Streamlit's script runner installs
    monkeypatch.setitem(sys.modules, "__main__", app)
    h = runner.start(validate({**PRESET, "training": {"epochs": 1}}), "main-test")
    wait(h)
    assert h.feed.status == "finished", h.feed.reason
    assert live.run(other)["status"] == "running"


def test_a_worker_runs_no_main_script_at_all(runner, monkeypatch, tmp_path):
    """Not even one that cannot run alone, as an AppTest's script: the runner starts workers without running the file of
    a __main__ that has no spec (runner.start_worker), and leaves __main__ as it was."""
    import sys
    import types

    script = tmp_path / "page.py"
    script.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\nraise SystemExit('a script that cannot run alone')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    h = runner.start(validate({**PRESET, "training": {"epochs": 1}}), "main-test-script")
    wait(h)
    assert h.feed.status == "finished", h.feed.reason
    assert not (tmp_path / "ran").exists()
    assert page.__spec__ is None


class _Exited:
    """A worker process that has already exited."""

    def is_alive(self):
        return False

    def join(self, timeout=None):
        pass


class _LateQueue:
    """A queue whose first wait times out while the worker's last messages are still on their way."""

    def __init__(self, messages):
        self.messages, self.waits = list(messages), 0

    def get(self, timeout=None):
        import queue

        self.waits += 1
        if self.waits == 1 or not self.messages:
            raise queue.Empty
        return self.messages.pop(0)


def _late_handle(runner, run_id, messages):
    from dlviz.training.live import LiveFeed
    from dlviz.training.runner import RunHandle

    return RunHandle(run_id, "dave", "late", _Exited(), _LateQueue(messages), None, None, LiveFeed())


def test_messages_a_worker_sent_just_before_exiting_are_not_lost(runner):
    """The worker writes its result and exits between the pump's timed-out wait and its liveness check (seen under
    eight concurrent runs): the run still ends finished, not "ended unexpectedly"."""
    store = RunStore(runner.store_path)
    rid = store.create_run(validate(PRESET), "dave", status="running")
    result = {"status": "finished", "epochs": 4, "steps": 76}
    h = _late_handle(runner, rid, [{"kind": "end", "result": result}, {"kind": "closed"}])
    runner._pump(h)
    assert h.closed and h.feed.status == "finished" and h.feed.result == result
    assert store.run(rid)["status"] == "running", "the pump leaves the store to the worker when the worker said how it ended"


def test_a_finished_run_whose_last_messages_were_lost_keeps_its_status(runner):
    """The store, written by the worker, says the run finished: a lost "closed" message does not turn it into a failure."""
    store = RunStore(runner.store_path)
    rid = store.create_run(validate(PRESET), "erin", status="running")
    result = {"status": "finished", "epochs": 4, "steps": 76}
    store.set_status(rid, "finished", "", result)
    h = _late_handle(runner, rid, [])
    runner._pump(h)
    assert h.closed and h.feed.status == "finished" and h.feed.result == result
    assert store.run(rid)["status"] == "finished"


def test_a_worker_that_dies_without_a_word_fails_its_run(runner):
    store = RunStore(runner.store_path)
    rid = store.create_run(validate(PRESET), "fay", status="running")
    h = _late_handle(runner, rid, [])
    runner._pump(h)
    assert h.closed and h.feed.status == "failed" and "ended unexpectedly" in h.feed.reason
    assert store.run(rid)["status"] == "failed"


def test_one_address_cannot_take_every_run_slot_with_fresh_cookies(runner, monkeypatch):
    """A browser that drops its cookies is a new session each time; its network address stays the same."""
    monkeypatch.setenv("DLVIZ_MAX_RUNS_PER_SESSION", "1")
    monkeypatch.setenv("DLVIZ_MAX_CONCURRENT_RUNS", "4")
    monkeypatch.setenv("DLVIZ_MAX_RUNS_PER_ADDRESS", "2")
    long = validate({**PRESET, "training": {"epochs": 500}})
    first = [runner.start(long, f"fresh-cookie-{i}", address="198.51.100.7") for i in range(2)]
    with pytest.raises(UserError, match=r"limit per address is 2, DLVIZ_MAX_RUNS_PER_ADDRESS"):
        runner.start(long, "fresh-cookie-2", address="198.51.100.7")
    other = runner.start(long, "another-school", address="203.0.113.9")  # a different address still trains
    local = runner.start(long, "on-the-server", address=None)  # an unknown address (a local connection) is not capped
    for h in (*first, other, local):
        runner.stop(h.run_id)
    assert not runner.active()


def test_a_worker_killed_for_memory_says_so_and_its_run_continues_from_its_checkpoint(runner):
    """The kernel's out-of-memory killer ends a worker with SIGKILL: the run fails with the reason and its batch size,
    and since it saved checkpoints it can be continued, to the numbers of a run that was never killed."""
    import os
    import signal

    h = runner.start(validate({**PRESET, "training": {"epochs": 500}}), "ivan")
    store = RunStore(runner.store_path)
    t0 = time.time()
    while len(store.checkpoints(h.run_id).query("label != 'initial'")) == 0 and time.time() - t0 < 60:
        time.sleep(0.05)
    os.kill(h.process.pid, signal.SIGKILL)
    wait(h)
    sentence = "the training process was killed, most likely for lack of memory, at batch size 16: try a smaller batch size or a smaller model"
    assert h.feed.status == "failed" and h.feed.reason == sentence
    run = store.run(h.run_id)
    assert run["status"] == "failed" and run["reason"] == sentence
    assert store.continuable(h.run_id)
    done = store.load_checkpoint(h.run_id)["epoch"]
    exp = validate({**PRESET, "training": {"epochs": done + 2}})
    cont = runner.start(exp, "ivan", resume=(h.run_id, None))
    wait(cont)
    assert cont.feed.status == "finished" and cont.feed.result == Trainer(exp).run()


def test_a_run_stopped_by_its_user_or_that_diverged_is_not_reported_as_killed(runner):
    """Stop's grace period may end a worker, and a run may fail for its own reasons: neither is a memory problem."""
    store = RunStore(runner.store_path)
    rid = store.create_run(validate(PRESET), "jo", status="running")
    store.save_checkpoint(rid, Trainer(validate(PRESET)).state(), "initial")
    h = _late_handle(runner, rid, [])
    h.process.exitcode = -9
    h.stopping = True
    runner._pump(h)
    assert h.feed.status == "stopped" and store.run(rid)["status"] == "stopped"
    failed = store.create_run(validate(PRESET), "jo", status="failed")
    assert not store.continuable(failed), "a failed run without a checkpoint has nothing to continue from"


def test_a_continued_run_counts_draws_and_stores_the_whole_run_as_an_uninterrupted_one(runner):
    """Stop a run part-way and continue it: the new run's epochs and steps go on from where the old one stopped, its
    live view and its stored series hold the earlier part, and every stored number equals an uninterrupted run's."""
    import numpy as np

    from dlviz.training.live import snapshot_from_store
    from dlviz.training.store import StoreCallback

    exp = validate({**PRESET, "training": {"epochs": 12}})
    store = RunStore(runner.store_path)
    whole = store.create_run(exp, "quinn")
    trainer = Trainer(exp, [StoreCallback(store, whole)])
    trainer.run()
    # the first run stops in the middle of epoch 7, as Stop does: its newest checkpoint is epoch 6's end
    first = store.create_run(exp, "quinn")
    stopped = Trainer(exp, [StoreCallback(store, first)])
    stopped.stop_after_steps = 6 * stopped.steps_per_epoch + 5
    stopped.run()
    assert store.run(first)["status"] == "stopped" and store.continuable(first)
    assert store.load_checkpoint(first)["epoch"] == 6

    cont = runner.start(exp, "quinn", resume=(first, None))
    snap0 = cont.feed.snapshot()  # before the worker's first step: the earlier part is drawn already
    assert len(snap0["epochs"]) == 6 and snap0["steps_done"] == 6 * stopped.steps_per_epoch and len(snap0["step"])
    wait(cont)
    snap = cont.feed.snapshot()
    assert snap["status"] == "finished" and len(snap["epochs"]) == 12 and snap["steps_done"] == snap["total_steps"]
    assert snap["step"][0] == 0 and snap["continued"] == {"run": first, "step": 6 * stopped.steps_per_epoch, "epoch": 6}
    # the diagnoses read the run's own first loss, not the loss of the step it resumed at
    assert snap["first_loss"] == float(store.steps(whole)["loss"].iloc[0])

    for a, b in ((store.steps(whole, with_layers=True), store.steps(cont.run_id, with_layers=True)), (store.epochs(whole), store.epochs(cont.run_id))):
        assert a.shape == b.shape and np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)
    assert store.run(cont.run_id)["epochs_done"] == 12 and store.run(cont.run_id)["steps_done"] == 12 * stopped.steps_per_epoch
    stored = snapshot_from_store(store, cont.run_id)
    ref = snapshot_from_store(store, whole)
    assert np.array_equal(stored["loss"], ref["loss"]) and len(stored["epochs"]) == 12
    assert stored["continued"]["run"] == first
    assert [t["step"] for t in store.telemetry(cont.run_id)] == [t["step"] for t in store.telemetry(whole)]


def test_a_run_whose_browser_moved_to_another_server_is_not_stopped_as_closed(runner):
    """A browser that moved to another replica sharing the store no longer refreshes this server's page, but that
    replica's page marks the run shown: the run trains on until that stops too."""
    h = runner.start(validate({**PRESET, "training": {"epochs": 500}}), "grace")
    runner._seen["grace"] = time.time() - 3600  # no page of this server has shown the run for an hour
    store = RunStore(runner.store_path)
    store.show(h.run_id)  # but a page of another server did, just now
    assert runner.reap(timeout=60) == [] and h.alive
    store.show(h.run_id, now=time.time() - 3600)  # and then that page closed too
    store.close()
    assert h.run_id in runner.reap(timeout=60)
    assert not h.alive


def test_stop_pressed_on_another_server_stops_the_run_at_the_next_heartbeat(runner):
    h = runner.start(validate({**PRESET, "training": {"epochs": 500}}), "henry")
    store = RunStore(runner.store_path)
    try:
        assert store.stop_requests([h.run_id]) == []
        store.ask_stop(h.run_id)  # the Stop button of a page on another server
        runner.heartbeat(store)
        wait(h)
        assert store.run(h.run_id)["status"] == "stopped" and store.stop_requests([h.run_id]) == []  # carried out once
    finally:
        store.close()


def _wait_for(predicate, what: str, timeout: float = 60):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_playground_run_starts_paused_sends_frames_and_takes_edits(runner):
    from dlviz.preset import playground

    doc = playground.default_doc()
    doc["training"]["epochs"] = 50
    h = runner.start(validate(doc), "gina", board={"extent": 6.0}, paused=True)
    try:
        _wait_for(lambda: h.feed.frame is not None, "the first frame")
        assert h.feed.frame["step"] == 0 and h.feed.steps_done == 0  # paused before its first step
        h.command({"kind": "weight", "layer": 0, "out": 1, "in": 0, "value": 3.25})
        _wait_for(lambda: h.feed.frame["weights"][0][1][0] == 3.25, "the edited weight in a frame")
        h.command({"kind": "step", "count": 5})
        _wait_for(lambda: h.feed.frame["step"] == 5, "five steps")
        time.sleep(0.3)
        assert h.feed.frame["step"] == 5, "the run pauses itself after the steps it was asked for"
    finally:
        runner.stop(h.run_id)


def test_a_stopping_run_leaves_its_person_free_to_start_the_next_but_counts_for_the_server(runner, monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_RUNS_PER_SESSION", "1")
    long = validate({**PRESET, "training": {"epochs": 500}})
    first = runner.start(long, "hank")
    first.stopping = True  # Stop pressed, its process not ended yet (held there: the check must not race its exit)
    second = runner.start(long, "hank")  # the Playground's restart after a structural edit
    try:
        monkeypatch.setenv("DLVIZ_MAX_CONCURRENT_RUNS", str(len(runner.active())))
        with pytest.raises(UserError, match="DLVIZ_MAX_CONCURRENT_RUNS"):
            runner.start(long, "ivy")
        monkeypatch.setenv("DLVIZ_MAX_CONCURRENT_RUNS", "100")
        with pytest.raises(UserError, match="DLVIZ_MAX_RUNS_PER_SESSION"):
            runner.start(long, "hank")
    finally:
        runner.stop(second.run_id)
        runner.stop(first.run_id)


def test_a_run_that_was_not_started_from_the_playground_takes_no_edits(runner):
    h = runner.start(validate({**PRESET, "training": {"epochs": 500}}), "jo")
    try:
        with pytest.raises(UserError, match="start it from the Playground"):
            h.command({"kind": "lr", "value": 0.1})
    finally:
        runner.stop(h.run_id)
