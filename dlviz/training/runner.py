"""Training off the UI thread: each run is a worker process; the server caps runs and stops those of closed sessions.

Why processes and not threads (bench/train_overhead.py measures both): a process has its own torch random
generator, so dropout draws of two runs training at once cannot interleave and every run stays bit-identical to
`python -m dlviz train`; it does not share the GIL with the Streamlit server; a crash or a runaway allocation kills
the run, not the app; and Stop can end it even inside a long operation. The start-up cost of a fresh process (importing
torch) is avoided by forking workers from a forkserver that has already imported the engine.
"""

from __future__ import annotations

import importlib.machinery
import math
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

from dlviz import limits as _limits
from dlviz.errors import UserError
from dlviz.preset.schema import Experiment
from dlviz.training.live import LiveFeed, stored_feed

SESSION_TIMEOUT = float(os.environ.get("DLVIZ_SESSION_TIMEOUT", "60"))  # seconds without a page refresh before a run is stopped
# seconds a worker gets to finish cleanly after Stop (it leaves its step loop at once; this bounds the saving of its
# trajectory and status) before it is terminated
STOP_GRACE = 5.0
ENDED = ("finished", "stopped", "diverged", "failed", "interrupted")


def _alive(pid: int) -> bool:
    """Whether a process runs; a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel directly
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def _watch_server(server_pid: int, control, orphaned: threading.Event, reason: str) -> None:
    """Stop the run when the server that started it has gone (a restart or a crash): its checkpoints stay in the store."""
    while not control.stop_event.is_set():
        if not _alive(server_pid):
            orphaned.set()
            control.stop(reason)
            return
        time.sleep(1.0)


def _worker(
    preset: dict,
    run_id: str,
    store_path: str,
    csv_bytes: Optional[bytes],
    resume: Optional[tuple],
    out_q,
    stop_ev,
    run_ev,
    threads: int,
    server_pid: int,
    retry_seconds: float,
    board: Optional[dict] = None,
    commands=None,
) -> None:
    """Runs in the worker process: train, write the store, and report progress as messages."""
    import torch

    from dlviz.preset.schema import validate
    from dlviz.training.live import FeedCallback
    from dlviz.training.store import DATABASE_ERRORS, INTERRUPTED, STORE_ERRORS, RunStore, StoreCallback, unwritable
    from dlviz.training.trainer import Control, Trainer

    torch.set_num_threads(threads)
    try:
        os.nice(int(os.environ.get("DLVIZ_TRAIN_NICE", "10")))
    except OSError:
        pass
    store = None
    try:
        store = RunStore(store_path)
        exp = validate(preset)
        state = store.load_checkpoint(*resume) if resume else None
        control = Control(stop_event=stop_ev, run_event=run_ev, commands=commands)
        orphaned = threading.Event()
        threading.Thread(target=_watch_server, args=(server_pid, control, orphaned, INTERRUPTED), daemon=True).start()
        callbacks = [StoreCallback(store, run_id, retry_seconds=retry_seconds), FeedCallback(out_q.put)]
        if board is not None:  # a Playground run: its worker draws the board's frames, the first before anything else
            from dlviz.training.board import BoardCallback

            callbacks.insert(0, BoardCallback(out_q.put, **board))
        trainer = Trainer(exp, callbacks, csv_bytes=csv_bytes, resume=state, control=control)
        result = trainer.run()
        if orphaned.is_set() and trainer.status == "stopped":
            # nobody stopped it: its server died. The next server offers Continue, as for the runs it finds live.
            store.set_status(run_id, "interrupted", INTERRUPTED, {**result, "status": "interrupted", "reason": INTERRUPTED})
    except Exception as e:
        if isinstance(e, UserError):
            msg = str(e)
        elif isinstance(e, DATABASE_ERRORS):  # a full disk, a read-only file, a database gone for too long: not a bug, not the user's
            msg = unwritable(e, "This run was stopped because the run store can't be written")
        else:  # a bug, not the user's fault: the run fails, the server stays up
            msg = f"internal error ({type(e).__name__}: {e}); the run was stopped"
        try:
            if store is not None:
                store.set_status(run_id, "failed", msg)
        except STORE_ERRORS:
            pass  # the server marks the run once the store takes writes again
        out_q.put({"kind": "error", "message": msg})
    finally:
        out_q.put({"kind": "closed"})
        if store is not None:
            try:
                store.close()
            except STORE_ERRORS:
                pass
        out_q.close()
        if _alive(server_pid):
            out_q.join_thread()  # hand the last messages (the result, "closed") to the pipe before the process exits
        else:
            out_q.cancel_join_thread()  # nobody reads them any more


_CTX = None


def _noop() -> None:
    """A worker that does nothing: starting one proves the forkserver is warm."""


def start_worker(proc) -> None:
    """proc.start(), without running the __main__ module's file again in the new process.

    multiprocessing runs the file of a __main__ that has no module spec in every new process, so that functions defined
    there can be found. A worker's target lives in this module, so that is never needed, and under Streamlit it is
    harmful: each script run installs its page script as __main__ (a file, no spec), so every worker would first run the
    whole page script again (in tests, an AppTest script that cannot run alone). A spec named "__main__" tells
    multiprocessing there is nothing to run; it is given back as it was once the process has started."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        proc.start()
        return
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        proc.start()
    finally:
        main.__spec__ = None


def context():
    """The multiprocessing context: a forkserver that preloads torch and the engine, so a worker starts in ~0.1 s."""
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["dlviz.training.runner", "dlviz.training.warm"])
    return _CTX


@dataclass
class RunHandle:
    """One training run seen from the server: its process, its controls and its live feed."""

    run_id: str
    session: str
    name: str
    process: object
    queue: object
    stop_event: object
    run_event: object
    feed: LiveFeed
    started: float = field(default_factory=time.time)
    closed: bool = False
    stopping: bool = False  # Stop was pressed: if the process has to be ended, that is not a failure
    address: Optional[str] = None  # the client's network address, for the per-address cap
    batch_size: Optional[int] = None  # named when the worker is killed, most likely for memory
    commands: object = None  # a Playground run's queue of edits (Trainer.edit)

    @property
    def alive(self) -> bool:
        return not self.closed

    def stop(self) -> None:
        self.stopping = True
        self.feed.handle({"kind": "status", "status": "stopping"})  # the page says so at once
        self.stop_event.set()
        self.run_event.set()

    def pause(self) -> None:
        self.run_event.clear()
        self.feed.handle({"kind": "status", "status": "paused"})

    def resume(self) -> None:
        self.run_event.set()
        self.feed.handle({"kind": "status", "status": "running"})

    def command(self, command: dict) -> None:
        """Hand an edit to the run (a Playground run only); it applies before the next step, or at once while paused."""
        if self.commands is None:
            raise UserError("train", "this run takes no edits while it trains; start it from the Playground")
        if self.alive:
            self.commands.put(command)


class Runner:
    """All runs of one server process. Thread-safe; pages call it from their script threads.

    Several servers may share one run store (DLVIZ_DATABASE_URL): each tells the store every HEARTBEAT_SECONDS that its
    runs are alive, and marks "interrupted" the live runs whose heartbeat stopped (their server died), whichever
    server started them."""

    def __init__(self, store_path=None, threads: Optional[int] = None):
        from dlviz.training.database import database_url

        # the store's URL or SQLite path, as the workers open it (a URL's password included: it stays in this process
        # and its workers, never on a page)
        self.store_path = str(store_path) if store_path is not None else database_url().render_as_string(hide_password=False)
        self.server_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.threads = threads or _limits.current().train_threads
        self._lock = threading.Lock()
        self._runs: dict[str, RunHandle] = {}
        self._seen: dict[str, float] = {}
        # while the run store refuses writes: one sentence for the page, and what is still to be written once it takes
        # them again (the reaper retries)
        self.problem: Optional[str] = None
        self._unmarked: dict[str, tuple[str, str]] = {}  # run id -> (status, reason)
        self._old_runs_marked = False
        # since when the store has taken this server's writes; None while it refuses them. After an outage every
        # server's heartbeats get a whole timeout to land before any run is taken for interrupted.
        self._store_up_since: Optional[float] = -math.inf
        self._closing = threading.Event()
        self._retry_marks()  # whatever was running when the last server stopped becomes "interrupted"
        self.ready = threading.Event()  # set once a worker can start without waiting for the forkserver's imports
        # start the forkserver now, in the background, so that the first Train click does not pay for its imports
        threading.Thread(target=self._warm_up, daemon=True, name="dlviz-forkserver").start()
        self._reaper = threading.Thread(target=self._reap_loop, daemon=True, name="dlviz-reaper")
        self._reaper.start()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True, name="dlviz-heartbeat")
        self._heartbeat.start()

    def _warm_up(self) -> None:
        from dlviz.model import build
        from dlviz.preset import gallery

        build.summarize(gallery.load("xor"))  # the server's own first meta-device build imports torch lazily (~1 s)
        ctx = context()
        proc = ctx.Process(target=_noop, daemon=True)
        start_worker(proc)  # returns once the forkserver has imported and warmed the engine
        proc.join()
        self.ready.set()

    # ------------------------------------------------------------ starting and stopping

    def start(
        self,
        exp: Experiment,
        session: str,
        csv_bytes: Optional[bytes] = None,
        resume: Optional[tuple[str, Optional[int]]] = None,
        address: Optional[str] = None,
        board: Optional[dict] = None,
        paused: bool = False,
    ) -> RunHandle:
        """Start a run in a worker process, or raise UserError when a cap is reached or the store refuses the run.

        `address` is the client's network address (None when unknown, as for local connections): a browser that drops
        its cookies is a new session each time, but not a new address. `board` ({"extent": half-width of the plane}) makes
        a Playground run, which sends the board's frames and takes edits while it trains; `paused` starts it paused
        before its first step."""
        from dlviz.training.store import STORE_ERRORS, RunStore, store_retry_seconds, unwritable

        lim = _limits.current()
        with self._lock:
            live = [h for h in self._runs.values() if h.alive]
            # a run already stopping (the Playground restarts its run on every structural edit) still counts against
            # the server's cap until its process ends, but no longer against its person's
            mine = [h for h in live if h.session == session and not h.stopping]
            if len(mine) >= lim.max_runs_per_session:
                raise UserError(
                    "train",
                    f"you already have {len(mine)} run{'s' if len(mine) > 1 else ''} training "
                    f"(the limit per person is {lim.max_runs_per_session}, DLVIZ_MAX_RUNS_PER_SESSION); stop it first",
                )
            here = [h for h in live if address is not None and h.address == address and not h.stopping]
            if len(here) >= lim.max_runs_per_address:
                raise UserError(
                    "train",
                    f"{len(here)} run{'s are' if len(here) > 1 else ' is'} already training from your network "
                    f"address (the limit per address is {lim.max_runs_per_address}, DLVIZ_MAX_RUNS_PER_ADDRESS); "
                    "try again when one finishes",
                )
            if len(live) >= lim.max_concurrent_runs:
                raise UserError("train", f"the server is already training {len(live)} runs, its limit (DLVIZ_MAX_CONCURRENT_RUNS); try again when one finishes")
            if exp.data is None:
                raise UserError("data", "this preset has no data section; add one to train it")
            feed = LiveFeed()
            try:
                store = RunStore(self.store_path)
                try:
                    run_id = store.create_run(exp, session, status="queued", owner=self.server_id)
                    if resume:
                        # the new run holds the part of the old one before the checkpoint, so it counts, draws and
                        # diagnoses the whole run, as an uninterrupted run would
                        parent, step = resume
                        if step is None:
                            ckpts = store.checkpoints(parent)
                            step = int(ckpts["step"].iloc[-1]) if len(ckpts) else 0
                        store.continue_from(run_id, parent, step)
                        feed = stored_feed(store, run_id)
                        feed.status = "starting"
                        resume = (parent, step)
                finally:
                    store.close()
            except STORE_ERRORS as e:
                self.problem = unwritable(e)
                raise UserError("train", self.problem) from None
            if self._old_runs_marked and not self._unmarked:
                self.problem = None  # the store takes writes again
            ctx = context()
            q = ctx.Queue()
            stop_ev, run_ev = ctx.Event(), ctx.Event()
            commands = ctx.Queue() if board is not None else None
            if not paused:
                run_ev.set()
            proc = ctx.Process(
                target=_worker,
                name=f"dlviz-run-{run_id}",
                daemon=True,
                args=(
                    exp.to_dict(full=True),
                    run_id,
                    self.store_path,
                    csv_bytes,
                    resume,
                    q,
                    stop_ev,
                    run_ev,
                    self.threads,
                    os.getpid(),
                    store_retry_seconds(),
                    board,
                    commands,
                ),
            )
            start_worker(proc)
            handle = RunHandle(run_id, session, exp.name, proc, q, stop_ev, run_ev, feed, address=address, batch_size=exp.data.batch_size, commands=commands)
            if paused:
                feed.status = "paused"
            self._runs[run_id] = handle
            self._seen[session] = time.time()
        threading.Thread(target=self._pump, args=(handle,), daemon=True, name=f"dlviz-feed-{run_id}").start()
        return handle

    def _pump(self, h: RunHandle) -> None:
        """Move the worker's messages into the live feed until it closes or dies; the handle is closed whatever happens
        here, since an open one holds a run slot and leaves Stop waiting."""
        problem = ""
        try:
            while True:
                try:
                    msg = h.queue.get(timeout=0.5)
                except queue_mod.Empty:
                    if h.process.is_alive():
                        continue
                    # the worker may have sent its last messages and exited between the wait above and this check:
                    # what it wrote before exiting is still in the pipe
                    try:
                        msg = h.queue.get(timeout=0.5)
                    except (queue_mod.Empty, OSError, EOFError):
                        problem = "the training process ended unexpectedly"
                        return
                if msg["kind"] == "closed":
                    return
                h.feed.handle(msg)
        except Exception as e:  # a broken pipe, a bug: the run ends here, the server stays up
            problem = f"internal error ({type(e).__name__}: {e}); the run was stopped"
        finally:
            self._finish(h, problem)

    def _finish(self, h: RunHandle, problem: str = "") -> None:
        """The worker has gone: make sure the feed and the store say how the run ended, then mark the handle closed.

        `closed` is set last, so a page that sees a closed handle always finds the final status in its feed."""
        try:
            h.process.join(timeout=5)
            if h.feed.result is None:
                self._settle(h, problem)
        finally:
            h.closed = True

    def _settle(self, h: RunHandle, problem: str) -> None:
        """Say in the feed and the store how a run ended whose worker sent no result. When the store refuses, the feed
        still says it, and the store is written once it takes writes again."""
        from dlviz.training.store import STORE_ERRORS, RunStore, unwritable

        told = h.feed.status == "failed"  # the worker sent its error, which its own store write may have missed
        if told:
            status, reason = "failed", h.feed.reason
        elif h.stopping:  # ended by the grace period's terminate, or died while stopping
            status, reason = "stopped", "stopped by the user"
        else:
            status, reason = "failed", self._death(h) or problem or "the training process ended without a result"
        try:
            store = RunStore(self.store_path)
            try:
                run = store.run(h.run_id)
                if run["status"] in ENDED:
                    if not told:  # the worker recorded how the run ended before its last messages were lost
                        h.feed.handle({"kind": "end", "result": run["result"] or {"status": run["status"], "reason": run["reason"]}})
                    return
                store.set_status(h.run_id, status, reason)
            finally:
                store.close()
        except STORE_ERRORS as e:
            self.problem = unwritable(e)
            self._unmarked[h.run_id] = (status, reason)
        if told:
            return
        if status == "stopped":
            h.feed.handle({"kind": "end", "result": {"status": "stopped", "reason": reason}})
        else:
            h.feed.handle({"kind": "error", "message": reason})

    @staticmethod
    def _death(h: RunHandle) -> str:
        """Why a worker died without a word, when its exit says: the kernel's out-of-memory killer sends SIGKILL, and
        nothing else here does (Stop's grace period ends a worker with SIGTERM)."""
        if getattr(h.process, "exitcode", None) == -signal.SIGKILL:
            at = f" at batch size {h.batch_size}" if h.batch_size else ""
            return f"the training process was killed, most likely for lack of memory,{at}: try a smaller batch size or a smaller model"
        return ""

    def _retry_marks(self) -> None:
        """Write what the store refused: the final status of runs that ended while it failed, and "interrupted" on the
        runs the last server left live. Until it takes them, `problem` says why on the page."""
        if self._old_runs_marked and not self._unmarked:
            return
        from dlviz.training.store import STORE_ERRORS, RunStore, unwritable

        try:
            store = RunStore(self.store_path)
            try:
                for rid, (status, reason) in list(self._unmarked.items()):
                    store.set_status(rid, status, reason)
                    del self._unmarked[rid]
                if not self._old_runs_marked:
                    store.mark_interrupted(live_ids=list(self._runs))
                    self._old_runs_marked = True
            finally:
                store.close()
        except STORE_ERRORS as e:
            self.problem = unwritable(e)
            self._store_up_since = None
            return
        self.problem = None

    def heartbeat(self, store, now: Optional[float] = None) -> int:
        """Tell the store this server's runs are alive, stop those that a page of another server asked to stop, then mark
        the live runs whose heartbeat stopped; returns how many
        were marked. This server's own runs are never marked, nor any run while the store has been back from an
        outage for less than the heartbeat timeout."""
        from dlviz.training.store import heartbeat_timeout

        now = time.time() if now is None else now
        with self._lock:
            ours = [rid for rid, h in self._runs.items() if h.alive or rid in self._unmarked]
            known = list(self._runs)
        store.beat(ours, now)
        for rid in store.stop_requests(ours):  # Stop pressed on a page of another server sharing the store
            self.stop(rid, block=False)
        if self._store_up_since is None:
            self._store_up_since = now
        if now - self._store_up_since < heartbeat_timeout():
            return 0
        return store.mark_interrupted(live_ids=known, now=now)

    def _heartbeat_loop(self) -> None:
        from dlviz.training.store import HEARTBEAT_SECONDS, STORE_ERRORS, RunStore

        store = None
        while not self._closing.wait(HEARTBEAT_SECONDS):
            try:
                store = store or RunStore(self.store_path)
                self.heartbeat(store)
            except STORE_ERRORS:
                self._store_up_since = None
            except Exception:  # the heartbeat must never die; a failed beat is retried in HEARTBEAT_SECONDS
                pass
        if store is not None:
            store.close()

    def stop(self, run_id: str, wait: float = STOP_GRACE, block: bool = True) -> None:
        """Ask a run to stop; if it has not stopped within `wait` seconds, end its process.

        With block=False (the Stop button) the grace period runs in a background thread, so the page is not held."""
        h = self._runs.get(run_id)
        if h is None or h.closed:
            return
        h.stop()
        if not block:
            threading.Thread(target=self._end_after, args=(h, wait), daemon=True).start()
            return
        self._end_after(h, wait)

    def _end_after(self, h: RunHandle, wait: float) -> None:
        deadline = time.time() + wait
        while time.time() < deadline and not h.closed:
            time.sleep(0.02)
        if not h.closed and h.process.is_alive():
            h.process.terminate()  # it did not stop within the grace period: end it; the feed's pump then finishes the handle

    def handle(self, run_id: str) -> Optional[RunHandle]:
        return self._runs.get(run_id)

    def active(self, session: Optional[str] = None) -> list[RunHandle]:
        with self._lock:
            return [h for h in self._runs.values() if h.alive and (session is None or h.session == session)]

    # ------------------------------------------------------------ sessions

    def touch(self, session: str) -> None:
        """A page of `session` is open (called on every refresh)."""
        self._seen[session] = time.time()

    def reap(self, timeout: float = SESSION_TIMEOUT) -> list[str]:
        """Stop the runs of sessions not seen for `timeout` seconds and forget closed handles; returns the stopped ids."""
        self._retry_marks()
        now = time.time()
        stopped = []
        for h in list(self._runs.values()):
            if h.alive and now - self._seen.get(h.session, 0) > timeout and now - self._shown_elsewhere(h.run_id) > timeout:
                self.stop(h.run_id)
                stopped.append(h.run_id)
        with self._lock:
            for rid, h in list(self._runs.items()):
                if h.closed and now - h.started > 3600:
                    del self._runs[rid]
        return stopped

    def _shown_elsewhere(self, run_id: str) -> float:
        """When a page of another server sharing the store last showed the run (0: never, or the store can't say): a
        browser whose replica changed while its run trains here still watches it."""
        from dlviz.training.store import STORE_ERRORS, RunStore

        try:
            store = RunStore(self.store_path)
            try:
                return store.run(run_id).get("seen") or 0.0
            finally:
                store.close()
        except (UserError, *STORE_ERRORS):
            return 0.0

    def _reap_loop(self) -> None:
        while True:
            time.sleep(5)
            try:
                self.reap()
            except Exception:  # the reaper must never die; a failed pass is retried in 5 s
                pass

    def shutdown(self) -> None:
        self._closing.set()
        for h in list(self._runs.values()):
            self.stop(h.run_id, wait=2)
