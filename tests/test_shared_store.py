"""One run store for several servers: migrations that two servers run at once, heartbeats that tell a dead server's
runs from live ones, a run trained through PostgreSQL, and a database URL that does not work, said in one sentence."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy.engine import make_url
from test_store import PRESET as STORE_PRESET

from dlviz.errors import UserError
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, check_database
from dlviz.training.trainer import Trainer

PRESET = {**STORE_PRESET, "name": "shared store", "seed": 6, "data": {**STORE_PRESET["data"], "batch_size": 10}, "training": {"epochs": 5}}

SERVER = textwrap.dedent("""
    import json, pathlib, sys, time
    from dlviz.preset.schema import validate
    from dlviz.training.store import RunStore
    url, me, folder = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    (folder / f"ready-{me}").touch()
    t0 = time.time()
    while not (folder / "go").exists() and time.time() - t0 < 120:
        time.sleep(0.001)
    store = RunStore(url)  # both at once, against an empty database: each migrates it
    store.create_run(validate(json.loads(sys.argv[4])), session=me)
    (folder / f"created-{me}").touch()
    t0 = time.time()
    while not all((folder / f"created-{n}").exists() for n in ("a", "b")) and time.time() - t0 < 30:
        time.sleep(0.01)
    print(sorted(store.runs()["session"]))
""")


def test_two_servers_starting_at_once_against_an_empty_database_both_come_up(store_url, tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), store_url, me, str(tmp_path), json.dumps(PRESET)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for me in ("a", "b")
    ]
    try:
        t0 = time.time()
        while not all((tmp_path / f"ready-{me}").exists() for me in ("a", "b")) and time.time() - t0 < 120:
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["['a', 'b']"] * 2


def test_a_server_beats_for_its_live_runs_and_marks_those_of_a_dead_one(store_url, monkeypatch):
    """A runner keeps its own live run's heartbeat fresh and never marks it, marks another server's run whose heartbeat
    stopped, and after an outage of the store waits a whole timeout before it marks anything."""
    from test_runner import wait

    from dlviz.training.runner import Runner
    from dlviz.training.store import HEARTBEAT_SECONDS

    monkeypatch.setenv("DLVIZ_HEARTBEAT_TIMEOUT", "15")
    runner = Runner(store_url)
    store = RunStore(store_url)
    try:
        h = runner.start(validate({**PRESET, "training": {"epochs": 1000}}), "mine")
        now = time.time()
        dead = store.create_run(validate(PRESET), status="running", owner="a replica that died")
        store.beat([dead, h.run_id], now=now - 60)  # neither has beaten for a minute, as far as the store knows
        t0 = time.time()
        while time.time() - t0 < 3 * HEARTBEAT_SECONDS and (store.run(h.run_id)["heartbeat"] < now - 30 or store.run(dead)["status"] != "interrupted"):
            time.sleep(0.05)  # the runner's next pass: a beat, then the marks
        assert store.run(h.run_id)["heartbeat"] >= now - 30, "the runner's heartbeat did not reach the store"
        assert store.run(h.run_id)["status"] in ("queued", "running") and store.run(dead)["status"] == "interrupted"
        # from here on the test's clock: the runner's own heartbeats stop
        runner._closing.set()
        runner._heartbeat.join(10)
        # its own live run is never marked, however old its heartbeat looks
        store.beat([h.run_id], now=now - 600)
        assert runner.heartbeat(store, now=now + 1) == 0 and store.run(h.run_id)["heartbeat"] == now + 1
        # another server, whose clock reads a minute later, sees it live: the heartbeat is the runner's
        assert store.mark_interrupted(now=now + 2) == 0
        # a store back from an outage: every server gets a whole timeout to beat before any run is marked
        runner._store_up_since = None
        other = store.create_run(validate(PRESET), status="running", owner="another replica")
        store.beat([other], now=now - 60)
        assert runner.heartbeat(store, now=now) == 0 and runner.heartbeat(store, now=now + 14) == 0
        assert runner.heartbeat(store, now=now + 16) == 1 and store.run(other)["status"] == "interrupted"
        assert store.run(h.run_id)["status"] in ("queued", "running")
        runner.stop(h.run_id)
        wait(h)
        assert store.run(h.run_id)["status"] == "stopped"
    finally:
        runner.shutdown()
        store.close()


def test_a_run_trained_through_postgresql_ends_with_the_numbers_of_one_through_sqlite(tmp_path):
    from conftest import postgres_schema
    from test_runner import wait

    from dlviz.training.runner import Runner

    exp = validate(PRESET)
    with postgres_schema() as url:
        results = {}
        for name, where in (("sqlite", str(tmp_path / "runs.sqlite")), ("postgresql", url)):
            runner = Runner(where)
            try:
                h = runner.start(exp, "both")
                wait(h)
            finally:
                runner.shutdown()
            store = RunStore(where)
            run = store.run(h.run_id)
            assert run["status"] == "finished" and h.feed.status == "finished", (name, h.feed.reason)
            results[name] = (run["result"], store.epochs(h.run_id), store.steps(h.run_id, with_layers=True), store.load_checkpoint(h.run_id))
            assert run["owner"] == runner.server_id
            store.close()
    (r1, e1, s1, c1), (r2, e2, s2, c2) = results["sqlite"], results["postgresql"]
    assert r1 == r2 == Trainer(exp).run()
    assert e1.equals(e2) and s1.equals(s2)
    assert all(c1["model"][k].equal(c2["model"][k]) for k in c1["model"])


CLOSED_PORT = 9  # the discard port: nothing listens on it here


def test_an_unreachable_database_is_one_sentence_without_its_password(monkeypatch):
    monkeypatch.setenv("DLVIZ_DATABASE_URL", f"postgresql://dlviz:pa55-w0rd@127.0.0.1:{CLOSED_PORT}/dlviz")
    with pytest.raises(UserError) as caught:
        check_database()
    said = str(caught.value)
    assert said.startswith(f"The run store at DLVIZ_DATABASE_URL (postgresql+psycopg://dlviz:***@127.0.0.1:{CLOSED_PORT}/dlviz) can't be opened: ")
    assert "Connection refused" in said and "pa55-w0rd" not in said and "\n" not in said and said.endswith("the database server runs.")


def test_a_server_whose_database_is_unreachable_says_so_in_one_line_and_exits(tmp_path):
    """`streamlit run app.py` with a DLVIZ_DATABASE_URL nothing answers: one line on stderr, no password, and the server
    exits instead of serving from another store."""
    env = {**os.environ, "DLVIZ_DATA_DIR": str(tmp_path), "DLVIZ_DATABASE_URL": f"postgresql://dlviz:pa55-w0rd@127.0.0.1:{CLOSED_PORT}/dlviz"}
    done = subprocess.run(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", "0", "--browser.gatherUsageStats", "false"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ours = [line for line in done.stderr.splitlines() if line.startswith("dlviz:")]
    assert done.returncode != 0 and len(ours) == 1, done.stderr[-2000:]
    assert "DLVIZ_DATABASE_URL" in ours[0] and "Connection refused" in ours[0] and "pa55-w0rd" not in done.stderr + done.stdout
    assert not list(tmp_path.glob("*.sqlite")), "it fell back to an SQLite store"


@pytest.mark.parametrize(
    "url, sentence",
    [
        ("not a url", "DLVIZ_DATABASE_URL is not a database URL; write it as postgresql://user:password@host:port/database"),
        ("mysql://root:pa55-w0rd@db/runs", "DLVIZ_DATABASE_URL names mysql; dlviz keeps its runs in PostgreSQL through psycopg (postgresql://…) or in SQLite"),
        ("postgresql+asyncpg://u:pa55-w0rd@db/x", "DLVIZ_DATABASE_URL names postgresql+asyncpg; dlviz keeps its runs"),
    ],
)
def test_a_url_that_names_no_database_dlviz_uses_is_one_sentence(monkeypatch, url, sentence):
    monkeypatch.setenv("DLVIZ_DATABASE_URL", url)
    with pytest.raises(UserError) as caught:
        check_database()
    assert str(caught.value).startswith(sentence) and "pa55-w0rd" not in str(caught.value)


def test_a_wrong_password_is_one_sentence_without_it(monkeypatch):
    base = os.environ.get("DLVIZ_TEST_DATABASE_URL") or pytest.skip("no PostgreSQL to test against: DLVIZ_TEST_DATABASE_URL is unset")
    url = make_url(base).set(password="not-the-pa55-w0rd").render_as_string(hide_password=False)
    monkeypatch.setenv("DLVIZ_DATABASE_URL", url)
    with pytest.raises(UserError, match="password authentication failed") as caught:
        check_database()
    assert "pa55-w0rd" not in str(caught.value) and "\n" not in str(caught.value)
    assert check_database(base).startswith("postgresql+psycopg://")  # the right one opens


def test_a_store_that_fails_on_a_database_server_says_so_in_one_sentence():
    from sqlalchemy.exc import OperationalError

    from dlviz.training.store import unwritable

    err = OperationalError(
        "INSERT …",
        {},
        Exception('connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection refused\n\tIs the server running on that host?'),
    )
    assert unwritable(err) == (
        "The run store can't be written: Connection refused; ask whoever runs this server to check the database that DLVIZ_DATABASE_URL names."
    )
    socket = OperationalError("SELECT …", {}, Exception('connection to server on socket "/run/secret/.s.PGSQL.5432" failed: No such file or directory'))
    assert "/run/secret" not in unwritable(socket)


@pytest.mark.parametrize("name", ["DLVIZ_HEARTBEAT_TIMEOUT", "DLVIZ_STORE_RETRY_SECONDS"])
def test_a_store_setting_that_is_no_number_of_seconds_stops_the_start(monkeypatch, name):
    monkeypatch.setenv(name, "soon")
    with pytest.raises(UserError, match=f"^{name} must be a number of seconds above 0, not 'soon'$"):
        check_database()
