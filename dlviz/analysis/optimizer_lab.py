"""Optimizers on 2-D test functions: the functions and their minima, runs with real torch.optim, and convergence rates."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (the first torch.optim optimizer imports it, 1-2 s: paid with this module, at the server's start)

from dlviz.errors import UserError, did_you_mean
from dlviz.preset.args import Arg, ArgError, check_args
from dlviz.preset.registry import OPTIMIZERS

Tensor = torch.Tensor
TWO_PI = 2 * math.pi


@dataclass(frozen=True)
class Function2D:
    """A test function f(x, y) with what is known about it.

    `f` takes tensors (or arrays) x and y of one shape and returns f elementwise; it is written in torch so that
    autograd differentiates it. `grad` is the gradient derived by hand, an independent check of the same formula."""

    name: str
    formula: str
    f: Callable[[Tensor, Tensor], Tensor]
    grad: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    minima: tuple[tuple[float, float], ...]  # global minima; empty when f is unbounded below
    min_value: Optional[float]
    start: tuple[float, float]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    note: str
    eigenvalues: Optional[tuple[float, float]] = None  # Hessian eigenvalues λ1 ≤ λn, for a quadratic

    def value(self, x, y) -> np.ndarray:
        """f on numbers or arrays, in float64."""
        with torch.no_grad():
            return self.f(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)).numpy()

    def grid(self, n: int = 201) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x (n), y (n) and f on the grid (n × n, rows along y) over the plotting ranges."""
        xs = np.linspace(*self.x_range, n)
        ys = np.linspace(*self.y_range, n)
        xx, yy = np.meshgrid(xs, ys)
        return xs, ys, self.value(xx, yy)

    def distance_to_minimum(self, points: np.ndarray) -> np.ndarray:
        """Distance from each point (k × 2) to the nearest global minimum; NaN when there is none."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not self.minima:
            return np.full(len(points), np.nan)
        m = np.asarray(self.minima)
        return np.min(np.linalg.norm(points[:, None, :] - m[None, :, :], axis=2), axis=1)


# ---------------------------------------------------------------- the functions


def rosenbrock() -> Function2D:
    def f(x, y):
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2

    def grad(x, y):
        return -2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)

    return Function2D(
        "Rosenbrock",
        "(1 − x)² + 100·(y − x²)²",
        f,
        grad,
        ((1.0, 1.0),),
        0.0,
        (-1.2, 1.0),
        (-2.0, 2.0),
        (-1.0, 3.0),
        "A curved, flat-bottomed valley: reaching it is easy, following it to (1, 1) is slow.",
    )


def beale() -> Function2D:
    def terms(x, y):
        return 1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y**3

    def f(x, y):
        t1, t2, t3 = terms(x, y)
        return t1**2 + t2**2 + t3**2

    def grad(x, y):
        t1, t2, t3 = terms(x, y)
        return (2 * t1 * (y - 1) + 2 * t2 * (y * y - 1) + 2 * t3 * (y**3 - 1), 2 * t1 * x + 4 * t2 * x * y + 6 * t3 * x * y * y)

    return Function2D(
        "Beale",
        "(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²",
        f,
        grad,
        ((3.0, 0.5),),
        0.0,
        (1.0, 1.5),
        (-4.5, 4.5),
        (-4.5, 4.5),
        "Flat plateaus next to steep walls: gradient sizes vary by orders of magnitude, which adaptive methods absorb.",
    )


HIMMELBLAU_MINIMA = ((3.0, 2.0), (-2.805118086952745, 3.131312518250573), (-3.779310253377747, -3.283185991286170), (3.584428340330492, -1.848126526964404))


def himmelblau() -> Function2D:
    def f(x, y):
        return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2

    def grad(x, y):
        a, b = x * x + y - 11, x + y * y - 7
        return 4 * x * a + 2 * b, 2 * a + 4 * y * b

    return Function2D(
        "Himmelblau",
        "(x² + y − 11)² + (x + y² − 7)²",
        f,
        grad,
        HIMMELBLAU_MINIMA,
        0.0,
        (-0.3, -0.9),
        (-5.0, 5.0),
        (-5.0, 5.0),
        "Four equal minima; starting near the central maximum, different optimizers end in different ones.",
    )


def rastrigin() -> Function2D:
    def f(x, y):
        return 20 + x * x - 10 * torch.cos(TWO_PI * x) + y * y - 10 * torch.cos(TWO_PI * y)

    def grad(x, y):
        return 2 * x + 20 * math.pi * np.sin(TWO_PI * x), 2 * y + 20 * math.pi * np.sin(TWO_PI * y)

    return Function2D(
        "Rastrigin",
        "20 + x² − 10·cos 2πx + y² − 10·cos 2πy",
        f,
        grad,
        ((0.0, 0.0),),
        0.0,
        (-3.3, 2.6),
        (-5.12, 5.12),
        (-5.12, 5.12),
        "A bowl covered in local minima: gradient methods stop in the first one they fall into.",
    )


def ackley() -> Function2D:
    def f(x, y):
        r2 = 0.5 * (x * x + y * y)
        # √ has an infinite slope at 0; the double where keeps autograd finite there (0 is a subgradient of the cone)
        r = torch.where(r2 > 0, torch.sqrt(torch.where(r2 > 0, r2, torch.ones_like(r2))), torch.zeros_like(r2))
        return -20 * torch.exp(-0.2 * r) - torch.exp(0.5 * (torch.cos(TWO_PI * x) + torch.cos(TWO_PI * y))) + math.e + 20

    def grad(x, y):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        r = np.sqrt(0.5 * (x * x + y * y))
        safe = np.where(r > 0, r, 1.0)
        cone = np.where(r > 0, 2 * np.exp(-0.2 * r) / safe, 0.0)
        wave = math.pi * np.exp(0.5 * (np.cos(TWO_PI * x) + np.cos(TWO_PI * y)))
        return cone * x + wave * np.sin(TWO_PI * x), cone * y + wave * np.sin(TWO_PI * y)

    return Function2D(
        "Ackley",
        "−20·exp(−0.2·√(½(x² + y²))) − exp(½(cos 2πx + cos 2πy)) + e + 20",
        f,
        grad,
        ((0.0, 0.0),),
        0.0,
        (3.1, -2.4),
        (-5.0, 5.0),
        (-5.0, 5.0),
        "A nearly flat, rippled plateau around one deep funnel; the minimum itself is a sharp point.",
    )


def saddle() -> Function2D:
    def f(x, y):
        return x * x - y * y

    def grad(x, y):
        return 2 * x, -2 * y

    return Function2D(
        "Saddle",
        "x² − y²",
        f,
        grad,
        (),
        None,
        (-1.8, 0.02),
        (-2.0, 2.0),
        (-2.0, 2.0),
        "No minimum: (0, 0) is a saddle point. Started almost on the ridge, how fast does each optimizer escape?",
    )


RAVINE_ANGLE = math.pi / 6  # the ravine is turned 30° so that per-coordinate methods get no help from the axes


def ravine(kappa: float = 10.0) -> Function2D:
    """½(λ1·u² + λn·v²) with λ1 = 1, λn = κ, in axes (u, v) turned by 30°: the quadratic of Distill's "Why Momentum
    Really Works", whose condition number κ sets how fast gradient descent and momentum can converge."""
    l1, ln = 1.0, float(kappa)
    c, s = math.cos(RAVINE_ANGLE), math.sin(RAVINE_ANGLE)

    def f(x, y):
        u, v = c * x + s * y, -s * x + c * y
        return 0.5 * (l1 * u * u + ln * v * v)

    def grad(x, y):
        u, v = c * x + s * y, -s * x + c * y
        gu, gv = l1 * u, ln * v
        return c * gu - s * gv, s * gu + c * gv

    return Function2D(
        "Quadratic ravine",
        f"½(u² + {ln:g}·v²), (u, v) the axes turned 30°",
        f,
        grad,
        ((0.0, 0.0),),
        0.0,
        (-2.6, 0.6),
        (-3.0, 3.0),
        (-2.0, 2.0),
        "Steep across, shallow along: the step must stay small for the steep direction, so progress along the ravine is slow.",
        eigenvalues=(l1, ln),
    )


@dataclass(frozen=True)
class FunctionEntry:
    make: Callable[..., Function2D]
    args: dict[str, Arg] = field(default_factory=dict)


FUNCTIONS: dict[str, FunctionEntry] = {
    "Rosenbrock": FunctionEntry(rosenbrock),
    "Beale": FunctionEntry(beale),
    "Himmelblau": FunctionEntry(himmelblau),
    "Rastrigin": FunctionEntry(rastrigin),
    "Ackley": FunctionEntry(ackley),
    "Saddle": FunctionEntry(saddle),
    "Quadratic ravine": FunctionEntry(ravine, {"kappa": Arg("float", 10.0, ge=1, le=10_000, help="condition number κ = λn / λ1")}),
}


def make_function(name: str, **given: Any) -> Function2D:
    if name not in FUNCTIONS:
        raise UserError("function", f"no test function named '{name}'{did_you_mean(name, FUNCTIONS)}")
    entry = FUNCTIONS[name]
    try:
        args = check_args(entry.args, given)
    except ArgError as e:
        raise e.user_error("function") from None
    return _made(name, tuple(sorted(args.items())))


@functools.lru_cache(maxsize=64)
def _made(name: str, args: tuple) -> Function2D:
    """One Function2D per function and arguments, the same object each time it is asked for (they never change), so
    that what is drawn of it once (figures.landscape.contour_image) is kept."""
    return FUNCTIONS[name].make(**dict(args))


# ---------------------------------------------------------------- optimizer runs


@dataclass
class Trajectory:
    """One optimizer's run: the points it visited (start included) and f at each."""

    label: str
    optimizer: str
    args: dict
    points: np.ndarray  # (steps + 1) × 2
    values: np.ndarray  # steps + 1
    diverged: bool = False
    reason: str = ""
    steps_to_tolerance: Optional[int] = None  # first step from which the point stays within tolerance of a minimum
    final_distance: float = float("nan")  # to the nearest global minimum

    @property
    def steps(self) -> int:
        return len(self.points) - 1


def optimizer_label(name: str, args: dict) -> str:
    """'SGD (lr=0.01, momentum=0.9)': the arguments that differ from the optimizer's defaults, and always lr."""
    spec = OPTIMIZERS[name].args
    shown = [f"{k}={_fmt(v)}" for k, v in args.items() if k == "lr" or (k in spec and not spec[k].required and v != spec[k].default)]
    return f"{name} ({', '.join(shown)})" if shown else name


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


def make_optimizer(name: str, args: dict, params: list[Tensor], where: str = "optimizer") -> torch.optim.Optimizer:
    """A torch.optim optimizer from the registry, its arguments checked as a preset's would be."""
    if name not in OPTIMIZERS:
        raise UserError(f"{where}.type", f"no optimizer named '{name}'{did_you_mean(name, OPTIMIZERS)}")
    try:
        full = check_args(OPTIMIZERS[name].args, args)
    except ArgError as e:
        raise e.user_error(where) from None
    full = {k: tuple(v) if isinstance(v, list) else v for k, v in full.items()}
    try:
        return OPTIMIZERS[name].cls(params, **full)
    except ValueError as e:  # torch's own consistency checks, e.g. Nesterov without momentum
        raise UserError(where, f"{name}: {e}") from None


ESCAPE = 1e6  # a run that goes this many plot widths away has left for good


def run_optimizer(fn: Function2D, start: Sequence[float], name: str, args: dict, steps: int, tol: float = 1e-3, where: str = "optimizer") -> Trajectory:
    """Run one torch.optim optimizer on f from `start` for `steps` steps, in float64, on a 2-element parameter.

    A run stops early, marked diverged, when f, its gradient or the point stops being finite or runs far away."""
    return _race(fn, start, [(name, args, where)], steps, tol)[0]


def run_optimizers(fn: Function2D, start: Sequence[float], optimizers: Sequence[tuple[str, dict]], steps: int, tol: float = 1e-3) -> list[Trajectory]:
    """Every (torch.optim name, arguments) pair run from the same start; each run is run_optimizer's."""
    return _race(fn, start, [(name, args, f"optimizers[{i}]") for i, (name, args) in enumerate(optimizers)], steps, tol)


class _Run:
    """One optimizer's run in a race: its parameter, optimizer, the points and values so far, and why it stopped."""

    def __init__(self, p: Tensor, name: str, args: dict, where: str):
        self.p = p
        self.name, self.args = name, args
        self.opt = make_optimizer(name, args, [p], where)
        self.points, self.values = [tuple(p.tolist())], []
        self.diverged, self.reason = False, ""

    def stop(self, reason: str) -> None:
        self.diverged, self.reason = True, reason


def _race(fn: Function2D, start: Sequence[float], optimizers: Sequence[tuple[str, dict, str]], steps: int, tol: float) -> list[Trajectory]:
    """The runs of several optimizers, stepped together: each step evaluates f once, on the active runs' points as one
    k × 2 tensor, and one backward pass gives every run its gradient.

    Each run keeps its own 2-element leaf and its own torch.optim optimizer; the leaf shares memory with a row of
    `points`, so the optimizer's in-place step moves that row and the next step reads all rows at once. f is elementwise,
    so each row's value and gradient are bit for bit the ones a run of its own gets (the tests compare with plain
    torch.optim loops); the autograd graph no longer grows with the number of runs, and the checks read all values,
    gradients and points in one list each (the same float64 numbers)."""
    points = torch.tensor([[float(start[0]), float(start[1])]] * len(optimizers), dtype=torch.float64)
    runs = [_Run(points[i].detach().requires_grad_(), name, args, where) for i, (name, args, where) in enumerate(optimizers)]
    far = ESCAPE * max(fn.x_range[1] - fn.x_range[0], fn.y_range[1] - fn.y_range[0])
    finite = math.isfinite
    active, rows = list(runs), list(range(len(runs)))  # rows: the active runs' rows of points
    for k in range(steps):
        if not active:
            break
        at = (points if len(rows) == len(runs) else points[rows]).detach().requires_grad_()
        loss = fn.f(at[:, 0], at[:, 1])
        (grads,) = torch.autograd.grad(loss.sum(), at)
        for r, v, g, (gx, gy) in zip(active, loss.tolist(), grads, grads.tolist()):
            r.values.append(v)
            if finite(v) and finite(gx) and finite(gy):
                r.p.grad = g
                r.opt.step()
            else:
                r.stop(f"f or its gradient became non-finite at step {k}")
        moved = points.tolist()
        for r, i in zip(active, rows):
            if r.diverged:
                continue
            x, y = moved[i]
            if not (finite(x) and finite(y)):
                r.stop(f"the point became non-finite at step {k + 1}")
            else:
                r.points.append((x, y))
                if math.hypot(x, y) > far:
                    r.stop(f"left the plot for good at step {k + 1} (|x| > {ESCAPE:g} plot widths)")
        if any(r.diverged for r in active):
            rows = [i for r, i in zip(active, rows) if not r.diverged]
            active = [r for r in active if not r.diverged]
    return [_trajectory(fn, r, tol) for r in runs]


def _trajectory(fn: Function2D, r: _Run, tol: float) -> Trajectory:
    pts = np.array(r.points, dtype=np.float64)
    values = r.values
    if len(values) < len(pts):  # f at the last point, which no step has evaluated yet
        with torch.no_grad():
            values.append(float(fn.f(torch.tensor(pts[-1, 0]), torch.tensor(pts[-1, 1]))))
    vals = np.asarray(values[: len(pts)], dtype=np.float64)
    dist = fn.distance_to_minimum(pts)
    return Trajectory(optimizer_label(r.name, r.args), r.name, dict(r.args), pts, vals, r.diverged, r.reason, steps_to_tolerance(dist, tol), float(dist[-1]))


def steps_to_tolerance(distances: np.ndarray, tol: float) -> Optional[int]:
    """The first step from which every later distance is within `tol`; None if the run ends outside it."""
    d = np.asarray(distances)
    if not len(d) or not np.isfinite(d[-1]) or d[-1] > tol:
        return None
    outside = np.nonzero(~(d <= tol))[0]
    return int(outside[-1] + 1) if len(outside) else 0


# ---------------------------------------------------------------- convergence rates on the quadratic


def gd_best(l1: float, ln: float) -> tuple[float, float]:
    """Gradient descent's best fixed step on a quadratic with eigenvalues in [λ1, λn] and its rate: α = 2/(λ1 + λn),
    rate (κ − 1)/(κ + 1)."""
    kappa = ln / l1
    return 2.0 / (l1 + ln), (kappa - 1) / (kappa + 1)


def momentum_best(l1: float, ln: float) -> tuple[float, float, float]:
    """Heavy-ball momentum's best step and momentum (Distill, "Why Momentum Really Works"): α = (2/(√λ1 + √λn))²,
    β = ((√λn − √λ1)/(√λn + √λ1))², rate (√κ − 1)/(√κ + 1)."""
    a, b = math.sqrt(l1), math.sqrt(ln)
    kappa = ln / l1
    return (2 / (a + b)) ** 2, ((b - a) / (b + a)) ** 2, (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)


FLOOR = 1e-250  # distances below this are near underflow and carry no rate information


def measured_rate(distances: np.ndarray, late: float = 0.5) -> float:
    """The geometric mean of the ratios of successive distances to the minimum, d[k+1]/d[k], over the last `late`
    fraction of the run (before the distance reaches FLOOR): (d[b]/d[a])^(1/(b − a))."""
    d = np.asarray(distances, dtype=np.float64)
    usable = np.nonzero(~(np.isfinite(d) & (d > FLOOR)))[0]
    end = int(usable[0]) if len(usable) else len(d)
    if end < 3:
        return float("nan")
    b = end - 1
    a = min(int(b * (1 - late)), b - 1)
    return float((d[b] / d[a]) ** (1.0 / (b - a)))


@dataclass
class RateCheck:
    """Gradient descent and momentum at their best settings on the ravine, measured against the theory."""

    kappa: float
    gd: Trajectory
    momentum: Trajectory
    gd_alpha: float
    gd_theory: float
    gd_measured: float
    momentum_alpha: float
    momentum_beta: float
    momentum_theory: float
    momentum_measured: float


def rate_check(kappa: float = 10.0, steps: int = 300, start: Optional[Sequence[float]] = None) -> RateCheck:
    """Run SGD with Distill's best step, and SGD with its best step and momentum, on the ravine with condition number κ;
    measure each rate from the distances to the minimum."""
    fn = make_function("Quadratic ravine", kappa=kappa)
    l1, ln = fn.eigenvalues
    start = fn.start if start is None else start
    ga, gr = gd_best(l1, ln)
    ma, mb, mr = momentum_best(l1, ln)
    gd = run_optimizer(fn, start, "SGD", {"lr": ga}, steps)
    mom = run_optimizer(fn, start, "SGD", {"lr": ma, "momentum": mb}, steps)
    return RateCheck(kappa, gd, mom, ga, gr, measured_rate(fn.distance_to_minimum(gd.points)), ma, mb, mr, measured_rate(fn.distance_to_minimum(mom.points)))
