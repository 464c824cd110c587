"""The server's runner and run store, and who this browser is, shared by the pages that train or read runs."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import uuid

import streamlit as st

from dlviz.errors import UserError, clip
from dlviz.preset.diff import SHORT, preset_hash
from dlviz.preset.schema import validate
from dlviz.text import clean
from dlviz.training.fit import check_trainable
from dlviz.training.runner import Runner
from dlviz.training.store import STORE_ERRORS, RunStore, unwritable

from . import session, shared
from .text import md

RUN_ID = "run_id"  # the run this session looks at on Train, Inspect and Landscape
PICKED = "picked_run"  # (run id, hash of the preset it was picked under): a run of another preset, shown on request


@st.cache_resource
def runner() -> Runner:
    """One Runner per server process: it owns the worker processes of every session. Its store is the database
    DLVIZ_DATABASE_URL names, else runs.sqlite in the data directory."""
    return Runner()


@st.cache_resource
def store() -> RunStore:
    return RunStore()


def store_problem() -> str | None:
    """One sentence when the run store can't be opened or written (a full disk, a read-only data directory), else None.
    The pages that do not train never ask, so they work on."""
    try:
        store().runs("")  # a read: a store that can't even be opened says so here
    except STORE_ERRORS as err:
        return unwritable(err)
    return runner().problem


def client_address() -> str | None:
    """The client's network address as Streamlit sees it; None for local connections and in tests."""
    try:
        return st.context.ip_address
    except Exception:  # no request context
        return None


def redraw_factor(r: Runner, cores: int | None = None) -> int:
    """How much the live views stretch their redraw intervals: 1 while each core has at most one run training, then
    2, 4, 8... as more train at once. Every session's redraws share the server's one Python thread at a time; past
    that point, redrawing less often keeps every session's view moving instead of letting all of them fall behind."""
    per_core = len(r.active()) / (cores or os.cpu_count() or 1)
    return 1 if per_core <= 1 else 2 ** math.ceil(math.log2(per_core))


def _xsrf_token(cookie: str) -> str:
    """The token inside an XSRF cookie. The server re-sends the cookie on every page load with the same token under a
    fresh random mask ("2|mask|masked token|time", the token XOR the repeated mask), so only the unmasked token is stable."""
    parts = cookie.split("|")
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            return cookie
        if mask:
            return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)).hex() + "|" + parts[3]
    return cookie


def browser_id() -> str:
    """A stable id for this browser: it survives a page reload, so a reloaded page finds its runs again.

    Streamlit's XSRF cookie is set once per browser session and sent with every page load; its hash names the
    browser without exposing the token. Without the cookie (tests, disabled XSRF) the Streamlit session is the id."""
    if "browser_id" not in st.session_state:
        cookie = None
        try:
            cookie = st.context.cookies.get("_streamlit_xsrf")
        except Exception:  # no request context (AppTest)
            cookie = None
        known = isinstance(cookie, str) and cookie
        st.session_state["browser_id"] = hashlib.sha256(_xsrf_token(cookie).encode()).hexdigest()[:16] if known else uuid.uuid4().hex[:16]
    return st.session_state["browser_id"]


@functools.lru_cache(maxsize=64)
def _hash_of(text: str) -> str | None:
    try:
        return preset_hash(validate(json.loads(text)))
    except UserError:
        return None


def current_hash() -> str | None:
    """The hash of the session's preset as a run would store it; None while the preset does not validate."""
    from . import session

    return _hash_of(json.dumps(session.preset(), sort_keys=True))


def pick(run_id: str | None) -> None:
    """Look at a run chosen by hand, whatever its preset, until the preset changes (None: back to the preset's own run)."""
    st.session_state[PICKED] = (run_id, current_hash()) if run_id else None
    st.session_state[RUN_ID] = run_id


def picked() -> str | None:
    """The run picked by hand for the preset on screen, if any."""
    pair = st.session_state.get(PICKED)
    return pair[0] if pair and pair[1] == current_hash() else None


def current_run_id() -> str | None:
    """The run this session looks at: one training now that it started, one picked by hand for this preset, else the
    newest run of this browser whose preset is the one on screen (matched by the hash of its canonical JSON). A run
    of another preset is never shown by default: after Load, an edit or a reload, the charts are this preset's or none."""
    rid = st.session_state.get(RUN_ID)
    want = current_hash()
    if rid is not None:
        h = runner().handle(rid)
        if (h is not None and h.alive) or rid == picked():
            return rid
        try:
            if store().run(rid)["preset_hash"] == want:
                return rid
        except (UserError, *STORE_ERRORS):
            pass
    try:
        mine = store().runs(browser_id())
    except STORE_ERRORS:  # the store can't be read: no run to look at, and the page still works
        return None
    same = mine[mine["preset_hash"] == want] if want is not None and len(mine) else mine.iloc[:0]
    rid = str(same["id"].iloc[0]) if len(same) else None
    st.session_state[RUN_ID] = rid
    return rid


def run_titles(table) -> dict[str, str]:
    """Each run of a `store.runs()` table as the run pickers show it: its preset's name, status, epochs, start time and
    the short hash of its preset, and "another preset" when that is not the preset on screen."""
    want = current_hash()
    return {
        str(r.id): clean(
            f"{clip(r.name or 'Untitled')} · {r.status} · {r.epochs} epochs · {r.created:%H:%M:%S} · "
            f"#{r.preset_hash[:SHORT]}" + ("" if r.preset_hash == want else " · another preset")
        )
        for r in table.itertuples()
    }


def pick_checkpoint(run_id: str, where, page: str):
    """A run's checkpoint chosen in `where` (the latest by default), and the run's checkpoints table; (None, table)
    while the run has none."""
    ckpts = store().checkpoints(run_id)
    if not len(ckpts):
        return None, ckpts
    labels = {int(r.step): f"{r.label} (step {int(r.step):,})" for r in ckpts.itertuples()}
    steps = list(labels)
    step = where.selectbox("Checkpoint", steps, index=len(steps) - 1, format_func=labels.get, key=f"{page}_ckpt|{run_id}")
    return step, ckpts


UNTRAINED = "This preset, untrained"


def choose_weights(what: str, fits, other: str, no_validation: str):
    """(experiment, run id, checkpoint step, data set) for a Vision tab: the preset on Build untrained, or a run's
    checkpoint, as Inspect offers them. `what` ends the sentence that asks for a broken preset to be fixed ("its
    detections"); a preset that is not `fits(experiment)` gets the sentence `other`, and one without validation samples
    `no_validation`. None when there is nothing to show."""
    table = store().runs(browser_id())
    ids = [str(i) for i in table["id"]] if len(table) else []
    current = current_run_id()
    titles = {UNTRAINED: UNTRAINED, **run_titles(table)} if ids else {UNTRAINED: UNTRAINED}
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    choice = left.selectbox("Weights", list(titles), index=list(titles).index(current) if current in titles else 0, format_func=titles.get, key="vision_run")
    run_id = step = None
    if choice == UNTRAINED:
        try:
            exp = validate(session.preset())
        except UserError as err:
            st.error(f"{md(err)} Fix the preset on Build to look at {what}.")
            return None
    else:
        step, _ = pick_checkpoint(choice, right, "vision")
        if step is None:
            st.info("This run has no checkpoint yet; its first one is written when training starts.")
            return None
        exp, run_id = store().experiment(choice), choice
    if not fits(exp):
        st.info(other)
        return None
    try:
        check_trainable(exp)  # the model's output is what its data's targets and its loss ask for
    except UserError as err:
        st.error(f"{md(err)} Fix the preset on Build to look at {what}.")
        return None
    ds = shared.dataset(exp)
    if not len(ds.x_val):
        st.info(no_validation)
        return None
    return exp, run_id, step, ds
