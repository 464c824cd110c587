"""Feature maps and effective receptive fields of LeNet-5 against a plain forward (and backward) pass on the same input.

Prints JSON lines {"bench", "case", "ratio", "ms", ...}; ratio = our time / the plain pass's time, measured side by side
in this run (lower is better), each time the median of many repeats. The goal: every map of LeNet-5 for one image in
under 100 ms of engine time. Run: python bench/features.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from dlviz.analysis import (
    features,  # noqa: E402
    receptive,  # noqa: E402
)
from dlviz.data.datasets import load_dataset  # noqa: E402
from dlviz.preset import gallery  # noqa: E402

QUICK = "--quick" in sys.argv
REPEATS = 50 if QUICK else 300


def median_ms(fn, repeats: int = REPEATS) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    torch.set_num_threads(1)  # what a server thread gets; also steadier timings
    exp = gallery.load("lenet5-mnist")
    net = features.load_model(exp)
    inp = features.dataset_input(exp, load_dataset(exp.data, exp.seed), 0)
    x = inp.x

    def plain():
        with torch.no_grad():
            y = net(x)
        return y.numpy()

    ours = median_ms(lambda: features.feature_maps(net, x))
    ref = median_ms(plain)
    maps = features.feature_maps(net, x)
    print(
        json.dumps(
            {
                "bench": "features",
                "case": "lenet5-all-maps",
                "ratio": round(ours / ref, 2),
                "ms": round(ours, 3),
                "reference_ms": round(ref, 3),
                "layers": len(maps),
                "goal_ms": 100,
                "met": ours < 100,
            }
        )
    )

    # the whole inspection of one checkpoint: build the model, load weights, every map
    state = {"model": net.state_dict()}
    ours = median_ms(lambda: features.feature_maps(features.load_model(exp, state), x), max(10, REPEATS // 10))
    print(
        json.dumps(
            {"bench": "features", "case": "lenet5-load-and-all-maps", "ratio": round(ours / ref, 2), "ms": round(ours, 3), "reference_ms": round(ref, 3)}
        )
    )

    # one unit's effective receptive field against a hand-written forward and backward to the input
    def plain_grad():
        xi = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = net.layers[:4](xi)
            (g,) = torch.autograd.grad(y[0, 0, 5, 5], xi)
        return g.abs().sum(1)[0].numpy()

    ours = median_ms(lambda: receptive.input_gradient(net, x, "model.layers[3]", (5, 5), 0))
    ref = median_ms(plain_grad)
    print(json.dumps({"bench": "features", "case": "lenet5-effective-rf", "ratio": round(ours / ref, 2), "ms": round(ours, 3), "reference_ms": round(ref, 3)}))


if __name__ == "__main__":
    main()
