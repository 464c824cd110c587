"""A server that dies during a run loses nothing finished: its worker stops, the run reads "interrupted", and the next
server continues it; on PostgreSQL the next server is another replica of a shared store."""

import os
import subprocess
import sys
import textwrap
import time

from dlviz.preset.schema import validate
from dlviz.training.store import RunStore
from dlviz.training.trainer import Trainer

PRESET = {
    "format": "dlviz-preset/1",
    "name": "restart",
    "seed": 7,
    "data": {"name": "circle", "num_samples": 2000, "batch_size": 8},
    "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 32}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]},
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.01},
    "training": {"epochs": 400},
}

SERVER = textwrap.dedent("""
    import json, os, sys, time
    from dlviz.training.runner import Runner
    from dlviz.preset.schema import validate
    if __name__ == "__main__":
        runner = Runner(sys.argv[1])
        h = runner.start(validate(json.loads(sys.argv[2])), "browser-1")
        while len(h.feed.epochs) < 2:
            time.sleep(0.05)
        with open(sys.argv[3], "w") as f:
            f.write(h.run_id)
        os._exit(1)  # the server dies at once: no clean shutdown, no stop request
""")


def test_a_server_crash_keeps_the_finished_epochs_and_the_run_continues(tmp_path, store_url):
    import json

    from dlviz.training.runner import Runner

    db = store_url
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    id_file = tmp_path / "run_id"
    subprocess.run(
        [sys.executable, str(script), str(db), json.dumps(PRESET), str(id_file)], env=env, timeout=180, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    run_id = id_file.read_text()
    store = RunStore(db)
    deadline = time.time() + 30
    while store.run(run_id)["status"] in ("running", "stopped") and time.time() < deadline:
        time.sleep(0.2)  # the orphaned worker notices within a second that its server is gone
    run = store.run(run_id)
    assert run["status"] == "interrupted" and "server stopped" in run["reason"] and "continue it" in run["reason"]
    assert store.continuable(run_id)
    done = run["epochs_done"]
    assert done >= 2 and len(store.epochs(run_id)) == done
    state = store.load_checkpoint(run_id)
    assert state["epoch"] == done
    # the next server continues it from the checkpoint: the numbers of an uninterrupted run
    exp = validate({**PRESET, "training": {"epochs": done + 2}})
    resumed = Trainer(exp, resume=state).run()
    assert resumed == Trainer(exp).run()
    runner = Runner(db)  # and so does the app's Continue: a new run from the interrupted run's last checkpoint
    try:
        h = runner.start(exp, "browser-1", resume=(run_id, None))
        t0 = time.time()
        while h.alive and time.time() - t0 < 120:
            time.sleep(0.05)
        assert h.feed.status == "finished" and h.feed.result == resumed
        assert store.run(run_id)["status"] == "interrupted"
    finally:
        runner.shutdown()
