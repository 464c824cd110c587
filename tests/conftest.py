"""Shared test helpers and fixtures."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid

# Runs, uploads and exports of the test session go to a fresh folder, never to the user's data directory.
os.environ.setdefault("DLVIZ_DATA_DIR", tempfile.mkdtemp(prefix="dlviz-test-"))
# nor to a database the environment names for the app: a test that wants PostgreSQL asks for store_url
os.environ.pop("DLVIZ_DATABASE_URL", None)
# The suite's numbers are the CPU's (bit-identical to the CLI and the exported script) even where torch finds a GPU; the
# GPU's are compared with them in test_device.py, which names the device it runs on.
os.environ.setdefault("DLVIZ_DEVICE", "cpu")

import pytest  # noqa: E402
import torch  # noqa: E402

from dlviz.model import budget  # noqa: E402

# The app's server gives large freed blocks back to the system (streamlit_app.py); tests that measure memory see the same.
budget.return_freed_memory()

# Training in tests uses one thread, as the CLI and the app's workers do (limits.train_threads), so their numbers agree.
torch.set_num_threads(1)


def preset(layers, input_shape, **model) -> dict:
    """A minimal preset document around a list of layers (no data, loss or optimizer)."""
    return {"format": "dlviz-preset/1", "name": "test", "seed": 0, "model": {"input_shape": list(input_shape), **model, "layers": layers}}


@pytest.fixture(scope="session")
def _shared_server(tmp_path_factory):
    """(URL, data directory) of one `streamlit run app.py` server for all the browser modules (browser_util's app_url):
    a server takes 5 to 15 s to warm up on two cores, so once a test session rather than once a module."""
    from browser_util import serve

    data = tmp_path_factory.mktemp("data")
    with serve(tmp_path_factory.mktemp("streamlit"), {**os.environ, "DLVIZ_DATA_DIR": str(data)}) as (url, _):
        yield url, data


def rss_bytes() -> int:
    """The resident set size of this process now (Linux /proc), for allocation checks."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def postgres_schema():
    """A fresh, empty schema of the PostgreSQL database DLVIZ_TEST_DATABASE_URL names, as a URL whose connections
    work in it; dropped afterwards. Skips the test when the variable is unset (CI sets it: .ci/postgres)."""
    base = os.environ.get("DLVIZ_TEST_DATABASE_URL")
    if not base:
        pytest.skip("no PostgreSQL to test against: DLVIZ_TEST_DATABASE_URL is unset (`. .ci/postgres` starts one)")
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Where a test's run store lives: an SQLite file of its own (given as a path, as the app's callers give it), or a
    fresh schema of the test PostgreSQL database (given as a URL)."""
    if request.param == "sqlite":
        yield str(tmp_path / "runs.sqlite")
    else:
        with postgres_schema() as url:
            yield url
