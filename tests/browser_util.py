"""Fixtures for browser tests: a `streamlit run app.py` server on a free port and a headless Chromium page on it.

Import the fixtures into a test module (`from browser_util import app_data_dir, app_url, page`) to use them."""

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 120  # `streamlit run app.py` answers its health check once warm: torch, the pages and the forkserver loaded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def app_data_dir(_shared_server):
    """The data directory (DLVIZ_DATA_DIR) of the browser modules' shared server (conftest.py): its run store is
    runs.sqlite there."""
    return _shared_server[1]


@contextlib.contextmanager
def serve(log_dir: Path, env: dict, preexec_fn=None, timeout: float = START_TIMEOUT_S, script: str = "app.py"):
    """(URL, process) of a fresh `streamlit run app.py` server (or of `script`) with the environment `env`, stopped on
    leaving."""
    with serve_many([(log_dir, env, preexec_fn)], timeout, script) as [(url, proc)]:
        yield url, proc


@contextlib.contextmanager
def serve_many(specs: list, timeout: float = START_TIMEOUT_S, script: str = "app.py"):
    """[(URL, process)] of one fresh server of `script` per (log directory, environment, preexec_fn) in `specs`, all
    started before any is waited for, so that they warm up side by side; stopped on leaving. The log is server.log in
    its directory."""
    started = []
    try:
        for log_dir, env, preexec_fn in specs:
            port = _free_port()
            log = (log_dir / "server.log").open("w")
            cmd = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true", "--server.port", str(port)]
            cmd += ["--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
            started.append((f"http://127.0.0.1:{port}", proc, log))
        deadline = time.time() + timeout
        for url, proc, log in started:
            while not _healthy(url):
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    raise RuntimeError(f"streamlit did not start:\n{Path(log.name).read_text()[-3000:]}")
                time.sleep(0.25)
        yield [(url, proc) for url, proc, _ in started]
    finally:
        for _, proc, log in started:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


@pytest.fixture(scope="module")
def app_url(_shared_server):
    """The URL of the browser modules' shared `streamlit run app.py` server (conftest.py). Each test opens its own browser,
    so its own session and browser id."""
    return _shared_server[0]


def session_id(pg) -> str:
    """The browser id under which the server keeps this page's runs (its XSRF cookie, hashed as the app does)."""
    from dlviz_app import runs

    cookie = next(c["value"] for c in pg.context.cookies() if c["name"] == "_streamlit_xsrf")
    return hashlib.sha256(runs._xsrf_token(cookie).encode()).hexdigest()[:16]


def open_with_run(pg, app_url: str, data_dir, doc: dict, path: str, tab: str) -> None:
    """Train `doc` into the server's store as this page's run, then open page `path` on it at its tab `tab`."""
    from app_util import stored_run

    from dlviz.preset import share
    from dlviz.preset.schema import validate

    pg.goto(f"{app_url}/{path}")
    wait_for_app(pg)
    stored_run(doc, session_id(pg), data_dir)
    pg.goto(f"{app_url}/{path}?{share.PARAM}={share.encode(validate(doc))}")
    pg.get_by_role("tab", name=tab).wait_for(timeout=60_000)
    settle(pg)
    pg.get_by_role("tab", name=tab).click()


def server_pid(url: str) -> int:
    """The process id of the streamlit server listening at `url` (found by its command line in /proc)."""
    port = url.rsplit(":", 1)[1].encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and port in cmd:
                return int(entry)


@pytest.fixture
def page():
    """A Playwright page in headless Debian Chromium; skipped when Chromium is missing, unless CI is set."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(20_000)
            yield pg
        finally:
            browser.close()


def settle(pg, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit has finished its script run and removed the elements of the previous run."""
    pg.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=stApp]');"
        " return app && app.dataset.testScriptState === 'notRunning' && !document.querySelector('[data-stale=true]'); }",
        timeout=timeout_ms,
    )


def wait_for_app(pg, timeout_ms: int = 60_000) -> None:
    """Wait until the app has loaded and finished its first script run."""
    pg.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    settle(pg, timeout_ms)
