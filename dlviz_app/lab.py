"""The Landscape page's optimizer lab: each function's suggested optimizers and settings, and the cached race of the
optimizers, which the server's start-up runs once for every function as the page first shows it."""

from __future__ import annotations

import json

import streamlit as st

from dlviz.analysis import optimizer_lab as landscape

# Settings that show each function's lesson from its default start within the default number of steps.
SUGGESTED = {
    "Rosenbrock": [("SGD", {"lr": 1e-3}), ("SGD", {"lr": 1e-3, "momentum": 0.9}), ("Adam", {"lr": 0.1})],
    "Beale": [("SGD", {"lr": 3e-3}), ("SGD", {"lr": 3e-3, "momentum": 0.9}), ("Adam", {"lr": 0.05})],
    "Himmelblau": [("SGD", {"lr": 1e-2}), ("SGD", {"lr": 1e-2, "momentum": 0.9}), ("Adam", {"lr": 0.05})],
    "Rastrigin": [("SGD", {"lr": 1e-3}), ("SGD", {"lr": 1e-3, "momentum": 0.9}), ("Adam", {"lr": 0.1})],
    "Ackley": [("SGD", {"lr": 1e-2}), ("SGD", {"lr": 5e-2, "momentum": 0.9}), ("Adam", {"lr": 0.1})],
    "Saddle": [("SGD", {"lr": 1e-2}), ("SGD", {"lr": 1e-2, "momentum": 0.9}), ("Adam", {"lr": 0.05})],
    "Quadratic ravine": [("SGD", {"lr": 0.02}), ("SGD", {"lr": 0.02, "momentum": 0.9}), ("Adam", {"lr": 0.05})],
}
TOLERANCES = [1e-1, 1e-2, 1e-3, 1e-4, 1e-6]
DEFAULT_TOLERANCE = TOLERANCES[2]


def default_steps(fn_name: str) -> int:
    return 300 if fn_name == "Quadratic ravine" else 500


def suggested(fn_name: str) -> list[dict]:
    """A function's suggested optimizers as the page's editor holds them."""
    return [{"type": t, "args": dict(a)} for t, a in SUGGESTED[fn_name]]


@st.cache_data(max_entries=64, show_spinner=False)
def race(fn_name: str, fn_args: str, start: tuple, items: str, steps: int, tol: float) -> list[landscape.Trajectory]:
    fn = landscape.make_function(fn_name, **json.loads(fn_args))
    return landscape.run_optimizers(fn, start, [(o["type"], o["args"]) for o in json.loads(items)], steps, tol)


def race_of(fn_name: str, given: dict, start: tuple, items: list[dict], steps: int, tol: float) -> list[landscape.Trajectory]:
    """The race the page draws, from its settings (the cache's key is made here, for the page and the start-up alike)."""
    return race(fn_name, json.dumps(given, sort_keys=True), (float(start[0]), float(start[1])), json.dumps(items, sort_keys=True), int(steps), float(tol))


def warm() -> None:
    """Every function's race as the page first shows it (its own arguments, start, suggested optimizers, steps and
    tolerance): a student who flips through the functions finds each one computed."""
    for fn_name in SUGGESTED:
        fn = landscape.make_function(fn_name)
        race_of(fn_name, {}, fn.start, suggested(fn_name), default_steps(fn_name), DEFAULT_TOLERANCE)
