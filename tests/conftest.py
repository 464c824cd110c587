"""Shared test helpers and fixtures."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid

# Runs, uploads and exports of the test session go to a fresh folder, never to the user's data directory; each
# pytest-xdist worker gets a folder of its own in it, so that two workers never share a run store.
os.environ.setdefault("DLVIZ_DATA_DIR", tempfile.mkdtemp(prefix="dlviz-test-"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["DLVIZ_DATA_DIR"] = os.path.join(os.environ["DLVIZ_DATA_DIR"], os.environ["PYTEST_XDIST_WORKER"])
    os.makedirs(os.environ["DLVIZ_DATA_DIR"], exist_ok=True)
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


def _unit(nodeid: str) -> str:
    """A test's unit of work under pytest-xdist: "browser" for the modules that drive Chromium (test_browser_*), else
    its module. One worker runs all the browser tests, with one warmed server and one Chromium at a time; every other
    module stays on one worker, so its module fixtures run once."""
    module = nodeid.split("::", 1)[0]
    return "browser" if os.path.basename(module).startswith("test_browser") else module


class _Units:
    """pytest-xdist's scheduler with the units above (xdist's own --dist loadgroup sets them by renaming test ids, which
    pytest 9 no longer allows)."""

    @staticmethod
    def pytest_xdist_make_scheduler(config, log):
        from xdist.scheduler import LoadScopeScheduling

        class Units(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return _unit(nodeid)

        return Units(config, log)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):  # addopts: -n 2 (the tests train on one thread, so a second worker uses the second core)
        config.pluginmanager.register(_Units(), "dlviz-units")


def pytest_collection_modifyitems(config, items):
    """The browser unit first, as the longest, then the modules with the most tests (the order the workers take them in)."""
    count: dict[str, int] = {}
    for item in items:
        count[_unit(item.nodeid)] = count.get(_unit(item.nodeid), 0) + 1
    items.sort(key=lambda item: (_unit(item.nodeid) != "browser", -count[_unit(item.nodeid)], _unit(item.nodeid)))


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
