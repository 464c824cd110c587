"""Loss-surface evaluation: our batched method against the one-forward-per-point loop of the public libraries.

Prints JSON lines {"bench": "landscape", "case", "ratio", "max_abs_diff", "max_rel_diff", ...}; ratio = our time /
the loop's time on the same 51×51 plane (two filter-normalized random directions through the initial weights),
measured in this run, the best of 5 runs each for the MLP and one for LeNet-5. The loop's time for LeNet-5 is its time
per point on every 13th grid point times the 2,601 points (its cost per point does not depend on the point); ours is
always the whole grid, set-up included.
`cpu_ratio` is the same ratio in process CPU time, which other programs on the machine do not inflate.
Run: python bench/landscape.py [--quick] [--threads 1,2]
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dlviz.analysis import surface  # noqa: E402
from dlviz.preset import gallery  # noqa: E402
from dlviz.preset.schema import validate  # noqa: E402

QUICK = "--quick" in sys.argv
THREADS = [int(t) for t in (sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1").split(",")]
SIDE = 51

# TensorFlow Playground's size: two inputs, two tanh layers of 8, one logit; 500 points.
MLP = {
    "format": "dlviz-preset/1",
    "name": "playground MLP",
    "seed": 0,
    "data": {"name": "circle", "num_samples": 625, "noise": 0.1, "val_fraction": 0.2, "batch_size": 10},
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "Linear", "out_features": 8},
            {"type": "Tanh"},
            {"type": "Linear", "out_features": 8},
            {"type": "Tanh"},
            {"type": "Linear", "out_features": 1},
        ],
    },
    "loss": {"type": "BCEWithLogitsLoss"},
    "optimizer": {"type": "SGD", "lr": 0.1},
}


def timed(fn, repeat: int):
    """The result and the best wall and CPU times of `repeat` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return out, min(walls), min(cpus)


def case(name: str, exp, samples: int, loop_every: int, threads: int, repeat: int) -> dict:
    torch.set_num_threads(threads)
    problem = surface.make_problem(exp, samples=samples)
    assert len(problem.x) == samples, len(problem.x)
    w = problem.weights()
    dirs = surface.random_directions(w, 2, seed=0)
    a = surface.axis(1.0, SIDE)
    aa, bb = np.meshgrid(a, a)
    coords = np.stack([aa.ravel(), bb.ravel()], axis=1)
    timed_points = coords[::loop_every]
    surface.evaluate_loop(problem, w, dirs, timed_points[:2])  # first-call set-up of the kernels, for both methods
    ref, loop_wall, loop_cpu = timed(lambda: surface.evaluate_loop(problem, w, dirs, timed_points), repeat)
    scale = len(coords) / len(timed_points)
    ours, our_wall, our_cpu = timed(lambda: surface.evaluate_batched(problem, w, dirs, coords), repeat)
    diff = np.abs(ours[::loop_every] - ref)
    return {
        "bench": "landscape",
        "case": f"{name}-{SIDE}x{SIDE}-{threads}thread{'s' if threads > 1 else ''}",
        "ratio": round(our_wall / (loop_wall * scale), 4),
        "cpu_ratio": round(our_cpu / (loop_cpu * scale), 4),
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float((diff / np.abs(ref)).max()),
        "ours_s": round(our_wall, 3),
        "loop_s": round(loop_wall * scale, 3),
        "points": len(coords),
        "loop_points_timed": len(timed_points),
        "samples": samples,
        "threads": threads,
    }


def main() -> None:
    for threads in THREADS:
        print(json.dumps(case("mlp-2-8-8-1-500pts", validate(MLP), 500, 1, threads, repeat=5)), flush=True)
        if not QUICK:
            print(json.dumps(case("lenet5-mnist-1000imgs", gallery.load("lenet5-mnist"), 1000, 13, threads, repeat=1)), flush=True)


if __name__ == "__main__":
    main()
