"""The Playground's costs: every neuron's map against a forward pass, the board's redraw rate in Chromium, the latency of
a structural edit and of Play against a minimal Streamlit app's button round trip, and training throughput with the
board's frames on against headless training.

The preset: Playground's defaults on 1,000 spiral points, 6 input features, hidden layers of 8 and 8 tanh neurons.

Cases (JSON lines {"bench", "case", "ratio", ...}; ratio = our time / the reference's time, measured side by side in
this run, lower is better):
  maps-vs-forward-batch, maps-vs-forward-train   every neuron's 40×40 map (and the output's 80×80) against one forward
                                                 pass of a training batch (10 points) or of the whole training set
  frame-vs-forward-batch, frame-vs-forward-train the board's whole frame (maps, weights, train and test losses) against
                                                 the same
  redraw-rate                                    ratio = the 10 Hz goal / the frames drawn per second while training
                                                 (≤ 1 meets the goal)
  structural-edit-latency, play-latency          click until the first new frame is drawn, against the minimal app's
                                                 button round trip (bench/interactions.py's)
  throughput-maps-on                             time per step with the board's frames sent against headless training
                                                 (≤ 1.25 meets the goal); throughput_ratio = steps/s over headless
                                                 steps/s (≥ 0.8 meets the goal)

Run: python bench/playground.py [--quick] [--no-browser]; the timings run on one thread, as the page's worker does.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import torch  # noqa: E402

from dlviz.model import neurons  # noqa: E402
from dlviz.preset import playground, share  # noqa: E402
from dlviz.preset.schema import validate  # noqa: E402
from dlviz.training.board import BoardCallback, board_frame  # noqa: E402
from dlviz.training.trainer import Callback, Trainer  # noqa: E402

FEATURES = ["x1", "x2", "x1^2", "x2^2", "x1*x2", "sin(x1)"]
GOAL_HZ = 10.0
BENCH = "playground"


def preset(epochs: int | None = None) -> dict:
    """Playground's defaults on 1,000 spiral points, 6 features, hidden layers 8 and 8 tanh."""
    doc = playground.default_doc()
    doc["data"] = {**doc["data"], "name": "spiral", "num_samples": 1000, "features": list(FEATURES)}
    doc["model"] = {**doc["model"], "input_shape": [len(FEATURES)], "layers": playground.layers_doc(((8, "Tanh"), (8, "Tanh")), 1)}
    if epochs is not None:
        doc["training"] = {**doc["training"], "epochs": epochs}
    return doc


def extent_of(trainer: Trainer) -> float:
    ds = trainer.dataset
    return neurons.plane_extent(torch.cat([ds.points_train, ds.points_val]).numpy())


def emit(case: str, ratio: float, **extra) -> dict:
    line = {"bench": BENCH, "case": case, "ratio": round(ratio, 4), **extra}
    print(json.dumps(line), flush=True)
    return line


def per_call(fn, repeats: int, min_s: float = 0.02) -> float:
    """Median seconds per call of `fn` over `repeats` timings, each of enough calls to take about `min_s`."""
    t = timeit.Timer(fn)
    number, _ = t.autorange()
    number = max(1, int(number * min_s / 0.2))  # autorange aims at 0.2 s
    return statistics.median(x / number for x in t.repeat(repeat=repeats, number=number))


# ---------------------------------------------------------------- 1. neuron maps against a forward pass


def maps_cost(quick: bool = False) -> list[dict]:
    torch.set_num_threads(1)
    tr = Trainer(validate(preset()), device="cpu")
    model, extent, task = tr.model, extent_of(tr), tr.objective.task
    batch = tr.data.x_train[: tr.exp.data.batch_size]
    whole = tr.data.x_train
    repeats = 7 if quick else 51

    def forward(x):
        with torch.no_grad():
            model(x)

    sides = {
        "forward_batch": lambda: forward(batch),
        "forward_train": lambda: forward(whole),
        "maps": lambda: neurons.maps(model, FEATURES, extent, task, n=40, out_n=80),
        "frame": lambda: board_frame(tr, extent),
    }
    for fn in sides.values():
        fn()  # warm
    # interleaved rounds, so that a noisy neighbour hits every side alike
    got = {k: [] for k in sides}
    rounds = 3
    for _ in range(rounds):
        for k, fn in sides.items():
            got[k].append(per_call(fn, max(repeats // rounds, 3), 0.01 if quick else 0.05))
    s = {k: statistics.median(v) for k, v in got.items()}
    common = {"threads": torch.get_num_threads(), "train_points": len(whole), "batch": len(batch), "grid": 40, "out_grid": 80}
    out = []
    for what in ("maps", "frame"):
        for ref, label in (("forward_batch", "batch"), ("forward_train", "train")):
            out.append(
                emit(
                    f"{what}-vs-forward-{label}",
                    s[what] / s[ref],
                    ours_ms=round(s[what] * 1000, 4),
                    reference_ms=round(s[ref] * 1000, 4),
                    **common,
                )
            )
    return out


# ---------------------------------------------------------------- 4. training throughput with the board's frames on


class Clock(Callback):
    """Steps per second between the first block of steps reaching the callbacks and the last (start-up excluded)."""

    def __init__(self):
        self.first = self.last = None

    def on_steps(self, trainer, block) -> None:
        now, done = time.perf_counter(), int(block.step[-1]) + 1
        if self.first is None:
            self.first = (now, done)
        self.last = (now, done)

    def rate(self) -> float:
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


def board_rate(exp, extent: float) -> tuple[float, int]:
    """Steps/s and frames sent of a run whose BoardCallback puts its frames on a multiprocessing queue, drained by a
    thread (the server's pump), as the page's worker does."""
    q = mp.get_context("spawn").Queue()
    frames = [0]

    def drain():
        while True:
            msg = q.get()
            if msg is None:
                return
            frames[0] += 1

    th = threading.Thread(target=drain, daemon=True)
    th.start()
    clock = Clock()
    Trainer(exp, [BoardCallback(q.put, extent), clock], device="cpu").run()
    q.put(None)
    th.join(30)
    q.close()
    q.join_thread()
    return clock.rate(), frames[0]


def headless_rate(exp) -> float:
    clock = Clock()
    Trainer(exp, [clock], device="cpu").run()
    return clock.rate()


def throughput(quick: bool = False) -> dict:
    torch.set_num_threads(1)
    # 500 training points, 50 steps an epoch: a few seconds of steady training per run
    exp = validate(preset(epochs=20 if quick else 150))
    extent = extent_of(Trainer(exp, device="cpu"))
    on, head, sent = [], [], []
    headless_rate(exp)  # warm
    for _ in range(2 if quick else 5):  # alternating, so that a noisy neighbour hits both alike
        r, n = board_rate(exp, extent)
        on.append(r)
        sent.append(n)
        head.append(headless_rate(exp))
    med = statistics.median
    ratios = [h / o for o, h in zip(on, head)]  # maps-on time per step over headless time per step
    return emit(
        "throughput-maps-on",
        med(ratios),
        throughput_ratio=round(med(o / h for o, h in zip(on, head)), 4),
        maps_on_steps_per_s=round(med(on), 1),
        headless_steps_per_s=round(med(head), 1),
        ratios=[round(r, 4) for r in ratios],
        frames_sent=int(med(sent)),
        steps=exp.training.epochs * 50,
        threads=torch.get_num_threads(),
    )


# ---------------------------------------------------------------- 2 and 3. the board in Chromium

FRAMES_JS = "(window.__dlvizBoardFrames || 0)"
# the Play button shows Play again (not Pause)
PAUSED_JS = "(document.querySelector('[data-testid=board-play]') || {}).title === 'Play'"
BOARD_JS = "(document.querySelector('[data-testid=dlviz-board]') || {}).__board"


def browser_cases(quick: bool = False, log_dir: Path | None = None) -> list[dict]:
    from browser_util import CHROMIUM, CHROMIUM_ARGS, serve
    from playwright.sync_api import sync_playwright

    from bench.interactions import Bench, measure_reference, minimal_server, timed, wait_idle

    repeats = 2 if quick else 5
    out = []
    bench = Bench()
    link = share.encode(validate(preset()))
    with tempfile.TemporaryDirectory(prefix="dlviz-bench-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "DLVIZ_DATA_DIR": str(tmp / "data")}
        with minimal_server(tmp) as minimal_url, serve(log_dir or tmp, env) as (url, _), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                measure_reference(browser, minimal_url, bench, max(repeats, 3))
                pg = browser.new_page(viewport={"width": 1400, "height": 1000})
                pg.set_default_timeout(60_000)
                pg.goto(f"{url}/playground?{share.PARAM}={link}")
                wait_idle(pg, "!!document.querySelector('[data-testid=neuron-1-7]')", timeout_ms=120_000)
                play = pg.locator("[data-testid=board-play]")

                # 2. redraw rate while training
                play.click()
                pg.wait_for_function(f"() => ({BOARD_JS} || {{}}).drawnVersion >= 2", timeout=60_000)
                pg.wait_for_timeout(1000)  # past the start: steady frames
                window = 2.0 if quick else 5.0
                n0, t0 = pg.evaluate(f"() => [{FRAMES_JS}, performance.now()]")
                v0 = pg.evaluate(f"() => {BOARD_JS}.drawnVersion")
                pg.wait_for_timeout(window * 1000)
                n1, t1 = pg.evaluate(f"() => [{FRAMES_JS}, performance.now()]")
                v1 = pg.evaluate(f"() => {BOARD_JS}.drawnVersion")
                hz = (n1 - n0) / ((t1 - t0) / 1000)
                out.append(
                    emit(
                        "redraw-rate",
                        GOAL_HZ / hz if hz > 0 else math.inf,
                        hz=round(hz, 2),
                        goal_hz=GOAL_HZ,
                        frames=n1 - n0,
                        seconds=round((t1 - t0) / 1000, 2),
                        versions_advanced=v1 - v0,
                    )
                )
                play.click()  # pause
                wait_idle(pg, PAUSED_JS)

                # 3. a structural edit while paused or stopped, then Play, until the first new frame
                edit_ms, play_ms = [], []
                for _ in range(repeats):
                    n = pg.evaluate(f"() => {FRAMES_JS}")
                    added = f"{FRAMES_JS} > {n} && !!document.querySelector('[data-testid=neuron-2-0]')"
                    edit_ms.append(timed(pg, pg.locator("[data-testid=layers-plus]").click, added, settle=False))
                    wait_idle(pg)
                    n = pg.evaluate(f"() => {FRAMES_JS}")
                    started = f"{FRAMES_JS} > {n} && ({BOARD_JS} || {{}}).drawnVersion >= 1"
                    play_ms.append(timed(pg, play.click, started, settle=False))
                    wait_idle(pg)
                    play.click()  # pause, and back to two hidden layers (not measured)
                    wait_idle(pg, PAUSED_JS)
                    pg.locator("[data-testid=layers-minus]").click()
                    wait_idle(pg, "!document.querySelector('[data-testid=neuron-2-0]')")
                measure_reference(browser, minimal_url, bench, max(repeats, 3))
            except Exception:
                try:
                    (ROOT / "artifacts").mkdir(exist_ok=True)
                    pg.screenshot(path=str(ROOT / "artifacts" / "bench-playground-failed.png"), full_page=True)
                except Exception:
                    pass
                raise
            finally:
                browser.close()
    ref = bench.reference
    for case, ms in (("structural-edit-latency", edit_ms), ("play-latency", play_ms)):
        med = statistics.median(ms)
        out.append(
            emit(case, med / ref, median_ms=round(med, 1), reference_ms=round(ref, 1), ms=[round(m, 1) for m in ms], reference_n=len(bench.reference_ms))
        )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke test")
    parser.add_argument("--no-browser", action="store_true", help="skip the cases in Chromium (2 and 3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    maps_cost(args.quick)
    if not args.no_browser:
        browser_cases(args.quick)
    throughput(args.quick)


if __name__ == "__main__":
    main()
