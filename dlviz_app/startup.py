"""The server's start-up (the lifespan of app.py's st.App): everything the first page view would otherwise pay for.

uvicorn runs it before it accepts a connection, so the first person to open the page finds torch and the engine
imported, the default preset's summary and architecture graph in the shared caches, and the training forkserver
started. The pages call the same cached functions (runs.runner, session.preview, session.architecture), so they
find what this made."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import logging
import multiprocessing.forkserver
import sys
import time
from pathlib import Path

PAGES = Path(__file__).resolve().parent.parent / "app_pages"
FORKSERVER_WAIT_S = 60.0  # a forkserver slower than this to import torch finishes in the background


def page_modules() -> list[str]:
    """The modules the pages import (read from their source, so the list never drifts from what the pages use)."""
    names = []
    for page in sorted(PAGES.glob("*.py")):
        for node in ast.parse(page.read_text()).body:
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
                names += [f"{node.module}.{a.name}" for a in node.names]  # a submodule imported by name
    return list(dict.fromkeys(names))


def _import(name: str) -> None:
    with contextlib.suppress(ImportError):  # "from x import name" where name is not a module
        importlib.import_module(name)


def check_settings() -> None:
    """Stop the server as it starts, with one line, on a DLVIZ_* setting it cannot run with (a limit that is not an
    integer, a DLVIZ_DEVICE that is wrong or names a GPU this machine lacks), rather than at the first page or run
    that reads it."""
    from dlviz import limits
    from dlviz.errors import UserError
    from dlviz.training.store import check_database

    try:
        limits.current()
        if limits.device_setting() == "cuda":  # only then can torch's answer be an error (auto falls back to the CPU)
            limits.device()
        check_database()  # DLVIZ_DATABASE_URL reached and its tables made, or one sentence: never another store instead
    except (UserError, ValueError) as err:
        print(f"dlviz: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def warm() -> dict[str, float]:
    """Make the server warm; returns how long each step took (seconds)."""
    import streamlit as st

    times: dict[str, float] = {}

    def step(name: str, t0: float) -> float:
        now = time.perf_counter()
        times[name] = round(now - t0, 3)
        return now

    t = time.perf_counter()
    from dlviz.training import runner as training

    training.context()
    # the workers' forkserver imports torch and the engine in a process of its own, alongside this one's imports
    multiprocessing.forkserver.ensure_running()
    t = step("forkserver start", t)
    from dlviz.data import uploads
    from dlviz.model import budget
    from dlviz_app import runs, session

    budget.return_freed_memory()
    runner = runs.runner()  # the one Runner of the server, which the pages use too; it waits for that forkserver
    t = step("runner", t)
    try:
        st.cache_resource(uploads.sweep)()  # the same cached call as the page script's: once a server
    except OSError as err:  # an unwritable data directory: the pages say so (and the first one tries again)
        print(f"dlviz: uploads not swept: {err}", file=sys.stderr, flush=True)
    t = step("sweep", t)
    # streamlit.emojis: its pattern compiles on the first emoji page icon, 0.26 s; sklearn.datasets: the first page
    # that loads the digits (Inspect on a CNN lesson) would import scikit-learn, 0.7 s
    for name in ("torch", "pandas", "plotly.graph_objects", "plotly.io", "networkx", "pyarrow", "streamlit.emojis", "sklearn.datasets", *page_modules()):
        _import(name)
    t = step("imports", t)
    from dlviz import limits

    if limits.device() == "cuda":  # the GPU's context, made once here rather than in the first Inspect or Landscape
        import torch

        torch.zeros(1, device="cuda")
        t = step("cuda", t)

    # what the Build page draws first, for the default preset: the first visitor's cached calls find it made
    from dlviz.figures import build as figures
    from dlviz.figures import style
    from dlviz.preset import gallery, share
    from dlviz.preset import schema as spec
    from dlviz.training import addresses

    doc = gallery.raw(gallery.DEFAULT)
    view = session.preview(doc)
    svg = session.architecture(doc)
    exp = spec.validate(doc)
    share.share_link(exp)  # the sidebar's share link and the address the page keeps
    addresses.address_state(exp)
    gallery.listing()  # the sidebar's lessons
    t = step("figures", t)
    from dlviz_app import lab

    lab.warm()  # the Landscape lab's races of every function as the page first shows them
    t = step("lab", t)
    try:
        # The first call of each Streamlit element the first page shows runs its own lazy imports and serializers
        # (plotly's JSON, pandas to Arrow, the caller's frame for the "use streamlit run" check). Outside a script run,
        # an element is built and dropped.
        st.title("dlviz")
        st.metric("Parameters", "0")
        st.markdown(svg, unsafe_allow_html=True)
        import plotly.graph_objects as go

        st.plotly_chart(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), width="stretch", config=style.CONFIG)  # the other pages' charts
        if view.summary is not None:
            st.dataframe(figures.summary_frame(view.summary), hide_index=True, column_config={"params": st.column_config.NumberColumn(format="localized")})
    except Exception as err:  # a warm-up, not a condition of the start: the first page pays for it instead
        print(f"dlviz: Streamlit's elements not warmed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
    t = step("elements", t)
    runner.ready.wait(FORKSERVER_WAIT_S)
    step("forkserver", t)
    return times


@contextlib.contextmanager
def _no_context_warnings():
    """Streamlit warns that a cached function called outside a script run has no ScriptRunContext, "which can be
    ignored": the start-up calls them there on purpose."""
    quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quiet.setLevel(level)


def _warm_quietly() -> dict[str, float]:
    with _no_context_warnings():
        return warm()


@contextlib.asynccontextmanager
async def lifespan(_app):
    """st.App's lifespan: warm the server up before uvicorn accepts connections."""
    t0 = time.perf_counter()
    times = await asyncio.to_thread(_warm_quietly)  # in a thread: the event loop stays free for the runtime's own start
    steps = ", ".join(f"{k} {v:.2f}" for k, v in times.items())
    print(f"dlviz: warm in {time.perf_counter() - t0:.1f} s ({steps})", file=sys.stderr, flush=True)
    yield
