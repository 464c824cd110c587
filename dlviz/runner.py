"""Training off the UI thread: each run is a worker process; the server caps runs and stops those of closed sessions.

Why processes and not threads (bench/train_overhead.py measures both): a process has its own torch random
generator, so dropout draws of two runs training at once cannot interleave and every run stays bit-identical to
`python -m dlviz train`; it does not share the GIL with the Streamlit server; a crash or a runaway allocation kills
the run, not the app; and Stop can end it even inside a long operation. The start-up cost of a fresh process (importing
torch) is avoided by forking workers from a forkserver that has already imported the engine.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from . import limits as _limits
from .errors import UserError
from .live import LiveFeed
from .spec import Experiment

SESSION_TIMEOUT = float(os.environ.get("DLVIZ_SESSION_TIMEOUT", "60"))  # seconds without a page refresh before a run is stopped
# seconds a worker gets to finish cleanly after Stop (it leaves its step loop at once; this bounds the saving of its
# trajectory and status) before it is terminated
STOP_GRACE = 5.0


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


def _watch_server(server_pid: int, control) -> None:
    """Stop the run when the server that started it has gone (a restart or a crash): its checkpoints stay in the store."""
    while not control.stop_event.is_set():
        if not _alive(server_pid):
            control.stop("the server stopped during this run; continue it from its last checkpoint")
            return
        time.sleep(1.0)


def _worker(preset: dict, run_id: str, store_path: str, csv_bytes: Optional[bytes], resume: Optional[tuple],
            out_q, stop_ev, run_ev, threads: int, server_pid: int) -> None:
    """Runs in the worker process: train, write the store, and report progress as messages."""
    import torch

    from .live import FeedCallback
    from .spec import validate
    from .store import RunStore, StoreCallback
    from .train import Control, Trainer

    torch.set_num_threads(threads)
    try:
        os.nice(int(os.environ.get("DLVIZ_TRAIN_NICE", "10")))
    except OSError:
        pass
    store = RunStore(store_path)
    try:
        exp = validate(preset)
        state = store.load_checkpoint(*resume) if resume else None
        control = Control(stop_event=stop_ev, run_event=run_ev)
        threading.Thread(target=_watch_server, args=(server_pid, control), daemon=True).start()
        trainer = Trainer(exp, [StoreCallback(store, run_id), FeedCallback(out_q.put)], csv_bytes=csv_bytes,
                          resume=state, control=control)
        trainer.run()
    except UserError as e:
        store.set_status(run_id, "failed", str(e))
        out_q.put({"kind": "error", "message": str(e)})
    except Exception as e:  # a bug, not the user's fault: the run fails, the server stays up
        msg = f"internal error ({type(e).__name__}: {e}); the run was stopped"
        store.set_status(run_id, "failed", msg)
        out_q.put({"kind": "error", "message": msg})
    finally:
        out_q.put({"kind": "closed"})
        store.close()
        out_q.close()
        if _alive(server_pid):
            out_q.join_thread()  # hand the last messages (the result, "closed") to the pipe before the process exits
        else:
            out_q.cancel_join_thread()  # nobody reads them any more


_CTX = None


def _noop() -> None:
    """A worker that does nothing: starting one proves the forkserver is warm."""


def context():
    """The multiprocessing context: a forkserver that preloads torch and the engine, so a worker starts in ~0.1 s."""
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["dlviz.runner", "dlviz.warm"])
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


class Runner:
    """All runs of one server process. Thread-safe; pages call it from their script threads."""

    def __init__(self, store_path: str, threads: Optional[int] = None):
        from .store import RunStore

        self.store_path = str(store_path)
        self.threads = threads or _limits.current().train_threads
        self._lock = threading.Lock()
        self._runs: dict[str, RunHandle] = {}
        self._seen: dict[str, float] = {}
        store = RunStore(self.store_path)
        store.mark_interrupted()  # whatever was running when the last server stopped
        store.close()
        self.ready = threading.Event()  # set once a worker can start without waiting for the forkserver's imports
        # start the forkserver now, in the background, so that the first Train click does not pay for its imports
        threading.Thread(target=self._warm_up, daemon=True, name="dlviz-forkserver").start()
        self._reaper = threading.Thread(target=self._reap_loop, daemon=True, name="dlviz-reaper")
        self._reaper.start()

    def _warm_up(self) -> None:
        from . import build, gallery

        build.summarize(gallery.load("xor"))  # the server's own first meta-device build imports torch lazily (~1 s)
        ctx = context()
        proc = ctx.Process(target=_noop, daemon=True)
        proc.start()  # returns once the forkserver has imported and warmed the engine
        proc.join()
        self.ready.set()

    # ------------------------------------------------------------ starting and stopping

    def start(self, exp: Experiment, session: str, csv_bytes: Optional[bytes] = None,
              resume: Optional[tuple[str, Optional[int]]] = None) -> RunHandle:
        """Start a run in a worker process, or raise UserError when a cap is reached."""
        from .store import RunStore

        lim = _limits.current()
        with self._lock:
            live = [h for h in self._runs.values() if h.alive]
            mine = [h for h in live if h.session == session]
            if len(mine) >= lim.max_runs_per_session:
                raise UserError("", f"you already have {len(mine)} run{'s' if len(mine) > 1 else ''} training "
                                    f"(the limit per person is {lim.max_runs_per_session}, DLVIZ_MAX_RUNS_PER_SESSION); stop it first")
            if len(live) >= lim.max_concurrent_runs:
                raise UserError("", f"the server is already training {len(live)} runs, its limit (DLVIZ_MAX_CONCURRENT_RUNS); "
                                    "try again when one finishes")
            if exp.data is None:
                raise UserError("data", "this preset has no data section; add one to train it")
            store = RunStore(self.store_path)
            run_id = store.create_run(exp, session, status="queued")
            store.close()
            ctx = context()
            q = ctx.Queue()
            stop_ev, run_ev = ctx.Event(), ctx.Event()
            run_ev.set()
            proc = ctx.Process(target=_worker, name=f"dlviz-run-{run_id}", daemon=True,
                               args=(exp.to_dict(full=True), run_id, self.store_path, csv_bytes, resume, q, stop_ev, run_ev, self.threads,
                                     os.getpid()))
            proc.start()
            handle = RunHandle(run_id, session, exp.name, proc, q, stop_ev, run_ev, LiveFeed())
            self._runs[run_id] = handle
            self._seen[session] = time.time()
        threading.Thread(target=self._pump, args=(handle,), daemon=True, name=f"dlviz-feed-{run_id}").start()
        return handle

    def _pump(self, h: RunHandle) -> None:
        """Move the worker's messages into the live feed until it closes or dies."""
        while True:
            try:
                msg = h.queue.get(timeout=0.5)
            except queue_mod.Empty:
                if h.process.is_alive():
                    continue
                # the worker may have sent its last messages and exited between the wait above and this check: what
                # it wrote before exiting is still in the pipe
                try:
                    msg = h.queue.get(timeout=0.5)
                except (queue_mod.Empty, OSError, EOFError):
                    self._finish(h, "the training process ended unexpectedly")
                    return
            if msg["kind"] == "closed":
                self._finish(h)
                return
            h.feed.handle(msg)

    def _finish(self, h: RunHandle, problem: str = "") -> None:
        """The worker has gone: make sure the feed and the store say how the run ended, then mark the handle closed.

        `closed` is set last, so a page that sees a closed handle always finds the final status in its feed."""
        h.process.join(timeout=5)
        if h.feed.result is None and h.feed.status != "failed":
            from .store import RunStore

            store = RunStore(self.store_path)
            run = store.run(h.run_id)
            if run["status"] in ("finished", "stopped", "diverged", "failed"):
                # the worker recorded how the run ended before its last messages were lost: the store has the truth
                h.feed.handle({"kind": "end", "result": run["result"] or {"status": run["status"], "reason": run["reason"]}})
            elif h.stopping:  # ended by the grace period's terminate, or died while stopping
                h.feed.handle({"kind": "end", "result": {"status": "stopped", "reason": "stopped by the user"}})
                store.set_status(h.run_id, "stopped", "stopped by the user")
            else:
                reason = problem or "the training process ended without a result"
                h.feed.handle({"kind": "error", "message": reason})
                store.set_status(h.run_id, "failed", reason)
            store.close()
        h.closed = True

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
        now = time.time()
        stopped = []
        for h in list(self._runs.values()):
            if h.alive and now - self._seen.get(h.session, 0) > timeout:
                self.stop(h.run_id)
                stopped.append(h.run_id)
        with self._lock:
            for rid, h in list(self._runs.items()):
                if h.closed and now - h.started > 3600:
                    del self._runs[rid]
        return stopped

    def _reap_loop(self) -> None:
        while True:
            time.sleep(5)
            try:
                self.reap()
            except Exception:  # the reaper must never die; a failed pass is retried in 5 s
                pass

    def shutdown(self) -> None:
        for h in list(self._runs.values()):
            self.stop(h.run_id, wait=2)
