"""The gradient check of the spiral MLP (gallery "spiral-tanh", 354 parameters, every entry checked) against the goal of
one second.

Prints JSON lines {"bench", "case", "ratio", "seconds", ...}; ratio = seconds / the 1 s goal (lower is better). Cases:
"spiral-tanh" is the check itself, the dataset loaded (median of repeats); "spiral-tanh-cold" is a first call in a fresh
process, loading the data and building the model. `torch_gradcheck_seconds` is torch.autograd.gradcheck's time on the
same loss, tensor by tensor, measured in the same run. Run: python bench/gradcheck.py
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from dlviz.analysis.gradcheck import gradient_check, setup  # noqa: E402
from dlviz.preset import gallery  # noqa: E402

GOAL_SECONDS = 1.0


def seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_reference(exp, ds) -> None:
    _, objective, model = setup(exp, dataset=ds)
    model = copy.deepcopy(model).double().eval()
    x, y = ds.x_train[:4].double(), ds.y_train[:4]
    state = dict(model.named_parameters())
    for name, p in state.items():

        def f(t, name=name):
            return objective.loss(torch.func.functional_call(model, {**state, name: t}, (x,)), y)

        torch.autograd.gradcheck(f, (p.detach().clone().requires_grad_(True),), eps=1e-6, atol=1e-5, rtol=1e-4)


def main() -> None:
    exp = gallery.load("spiral-tanh")
    t = time.perf_counter()
    checks = gradient_check(exp)
    cold = time.perf_counter() - t
    ds = setup(exp)[0]
    warm = seconds(lambda: gradient_check(exp, dataset=ds), 10)
    ref = seconds(lambda: torch_reference(exp, ds), 3)
    entries = sum(c.checked for c in checks)
    common = {"entries": entries, "threads": torch.get_num_threads(), "torch_gradcheck_seconds": round(ref, 4)}
    print(json.dumps({"bench": "gradcheck", "case": "spiral-tanh", "ratio": round(warm / GOAL_SECONDS, 4), "seconds": round(warm, 4), **common}))
    print(json.dumps({"bench": "gradcheck", "case": "spiral-tanh-cold", "ratio": round(cold / GOAL_SECONDS, 4), "seconds": round(cold, 4), **common}))


if __name__ == "__main__":
    main()
