"""Trainer overhead against a hand-written PyTorch loop, in-app throughput against headless, thread against process workers.

Prints JSON lines {"bench", "case", "ratio", ...}; ratio = our time / the reference's time on the same work, measured
side by side in this run (lower is better). Run: python bench/train_overhead.py [--quick]
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from dlviz.preset import gallery  # noqa: E402
from dlviz.preset.schema import validate  # noqa: E402
from dlviz.training.runner import Runner  # noqa: E402
from dlviz.training.trainer import Callback, Trainer  # noqa: E402

QUICK = "--quick" in sys.argv
torch.set_num_threads(1)

MLP = {
    "format": "dlviz-preset/1",
    "name": "playground MLP",
    "seed": 1,
    "data": {"name": "spiral", "num_samples": 500, "noise": 0.1, "val_fraction": 0.5, "batch_size": 10},
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "Linear", "out_features": 8},
            {"type": "Tanh"},
            {"type": "Linear", "out_features": 8},
            {"type": "Tanh"},
            {"type": "Linear", "out_features": 2},
        ],
    },
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "SGD", "lr": 0.03},
    "training": {"epochs": 10},
}


def lenet(epochs: int) -> dict:
    doc = gallery.raw("lenet5-mnist")
    doc["data"] = {**doc["data"], "subset": 1000}
    doc["training"] = {"epochs": epochs}
    return doc


def reference_loop(trainer: Trainer, model: torch.nn.Module, accuracy: bool = True) -> float:
    """The loop a PyTorch user writes by hand: shuffled mini-batches, zero_grad/backward/step, a validation pass per epoch.

    With accuracy=True it also counts correct predictions, in training and validation, as PyTorch's own tutorials do:
    then it reports per epoch what `train --json` reports (train and validation loss and accuracy), and the ratio
    against it is the cost of the trainer and its telemetry alone. accuracy=False gives a loop that reports losses only."""
    exp, ds = trainer.exp, trainer.dataset
    opt = type(trainer.optimizer)(model.parameters(), **{k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()})
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(exp.seed)
    n, bs = len(ds.x_train), exp.data.batch_size
    t0 = time.perf_counter()
    for _ in range(exp.training.epochs):
        model.train()
        total, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        for idx in torch.randperm(n, generator=g).split(bs):
            out = model(ds.x_train[idx])
            y = ds.y_train[idx]
            loss = loss_fn(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
            if accuracy:
                correct += (out.argmax(1) == y).sum()
        model.eval()
        with torch.no_grad():
            out = model(ds.x_val)
            float(loss_fn(out, ds.y_val))
            if accuracy:
                int((out.argmax(1) == ds.y_val).sum())
            float(total), int(correct)
    return time.perf_counter() - t0


def ours(trainer: Trainer) -> float:
    t0 = time.perf_counter()
    trainer.run()
    return time.perf_counter() - t0


def overhead(case: str, doc: dict, reps: int) -> None:
    """ratio: ours against the loop that reports the same epoch metrics; ratio_loss_only: against one reporting losses only."""
    exp = validate(doc)
    ours_t, ref_t, bare_t = [], [], []
    for _ in range(reps):
        tr = Trainer(exp)
        ref_t.append(reference_loop(tr, copy.deepcopy(tr.model)))
        bare_t.append(reference_loop(tr, copy.deepcopy(tr.model), accuracy=False))
        ours_t.append(ours(tr))
    med = statistics.median
    print(
        json.dumps(
            {
                "bench": "train_overhead",
                "case": case,
                "ratio": round(med(a / b for a, b in zip(ours_t, ref_t)), 4),
                "ratio_loss_only": round(med(a / b for a, b in zip(ours_t, bare_t)), 4),
                "ours_s": round(med(ours_t), 4),
                "reference_s": round(med(ref_t), 4),
                "loss_only_s": round(med(bare_t), 4),
                "steps": tr.step,
                "reps": reps,
                "telemetry_every": tr.telemetry_every,
            }
        ),
        flush=True,
    )


def first_step_latency_thread(exp) -> tuple[float, float]:
    """Start-to-first-step latency and steps/s with the trainer in a thread of this process."""
    from dlviz.training.live import FeedCallback, LiveFeed

    feed, clock = LiveFeed(), Clock()
    t0 = time.perf_counter()
    tr = Trainer(exp, [FeedCallback(feed.handle), clock])
    th = threading.Thread(target=tr.run)
    th.start()
    while feed.first_step_at is None and th.is_alive():
        time.sleep(0.002)
    latency = time.perf_counter() - t0
    th.join()
    return latency, clock.rate()


class Clock(Callback):
    """When the first block of steps and the end of the run reach a callback, and at which steps: the steady-state
    interval that both sides of the in-app comparison time (a worker's start-up is measured on its own, below)."""

    def __init__(self):
        self.first: Optional[tuple[float, int]] = None
        self.last: Optional[tuple[float, int]] = None

    def on_steps(self, trainer, block) -> None:
        self.seen(int(block.step[-1]) + 1)

    def seen(self, steps_done: int) -> None:
        if self.first is None:
            self.first = (time.perf_counter(), steps_done)
        self.last = (time.perf_counter(), steps_done)

    def rate(self) -> float:
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


def in_app(exp, runner, session="bench") -> tuple[float, float]:
    """Start-to-first-step latency and steps/s through the app's Runner (worker process, store and live feed), timed
    where the page reads it: from the first block of steps reaching the server's feed to the last, while a poller
    copies the feed every 0.2 s as the Train page's fragment does."""
    t0 = time.perf_counter()
    h = runner.start(exp, session)
    clock = Clock()
    handle = h.feed.handle

    def timed(msg: dict) -> None:  # the feed's pump thread calls this for every message from the worker
        handle(msg)
        if msg["kind"] == "steps":
            clock.seen(h.feed.steps_done)

    h.feed.handle = timed
    while h.feed.first_step_at is None and h.alive:
        time.sleep(0.002)
    latency = time.perf_counter() - t0
    while h.alive:
        runner.touch(session)
        h.feed.snapshot()
        time.sleep(0.2)
    return latency, clock.rate()


def headless_rate(exp) -> float:
    """Steps/s of `python -m dlviz train`'s trainer (no store, no feed), over the same interval as in_app's."""
    clock = Clock()
    Trainer(exp, [clock]).run()
    return clock.rate()


def threads_stay_deterministic(exp) -> bool:
    """Two runs with dropout trained at once in threads of one process: do they reproduce the headless numbers?"""
    expected = Trainer(exp).run()
    results = []
    trainers = [Trainer(exp) for _ in range(2)]
    threads = [threading.Thread(target=lambda t=t: results.append(t.run())) for t in trainers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return all(r == expected for r in results)


def main() -> None:
    overhead("overhead-playground-mlp", MLP, 5 if QUICK else 15)
    overhead("overhead-lenet5", lenet(1 if QUICK else 2), 2 if QUICK else 3)

    # about 3 s of steady training per run (LeNet-5, 4,000 MNIST training images, 63 steps per epoch), alternating
    # the two sides so that a noisy neighbour hits both alike
    exp = validate(lenet(3 if QUICK else 8))
    exp = validate({**exp.to_dict(), "data": {**exp.to_dict()["data"], "subset": 5000}})
    with tempfile.TemporaryDirectory() as d:
        runner = Runner(os.path.join(d, "runs.sqlite"))
        runner.ready.wait(120)  # a server warms its workers when it starts; the first click comes later
        app, head = [], []
        for _ in range(2 if QUICK else 3):
            app.append(in_app(exp, runner))
            head.append(headless_rate(exp))
        runner.shutdown()
    med = statistics.median
    app_lat, app_rate, head_rate = med(a[0] for a in app), med(a[1] for a in app), med(head)
    th_lat, th_rate = first_step_latency_thread(exp)
    print(
        json.dumps(
            {
                "bench": "train_overhead",
                "case": "in-app-vs-headless-lenet5",
                "ratio": round(head_rate / app_rate, 4),
                "app_steps_per_s": round(app_rate, 2),
                "headless_steps_per_s": round(head_rate, 2),
                "throughput_ratio": round(med(a[1] / h for a, h in zip(app, head)), 4),
                "throughput_ratios": [round(a[1] / h, 4) for a, h in zip(app, head)],
            }
        ),
        flush=True,
    )
    dropout = validate(
        {
            **MLP,
            "model": {
                "input_shape": [2],
                "layers": [{"type": "Linear", "out_features": 32}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.3}, {"type": "Linear", "out_features": 2}],
            },
            "training": {"epochs": 20},
        }
    )
    print(
        json.dumps(
            {
                "bench": "train_overhead",
                "case": "worker-first-step-process-vs-thread",
                "ratio": round(app_lat / th_lat, 4),
                "process_first_step_s": round(app_lat, 3),
                "thread_first_step_s": round(th_lat, 3),
                "process_steps_per_s": round(app_rate, 2),
                "thread_steps_per_s": round(th_rate, 2),
                "threads_reproduce_headless_with_dropout": threads_stay_deterministic(dropout),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
