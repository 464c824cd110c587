"""A network's own loss surface: lines and planes through its weights, evaluated point by point or many points at once."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from dlviz import limits as _limits
from dlviz.analysis.surface_points import (  # noqa: F401  (the page and the benchmarks reach them through this module)
    COARSE,
    EVAL_SAMPLES,
    FILTER_EPS,
    METHODS,
    Direction,
    Problem,
    evaluate_batched,
    evaluate_loop,
    evaluation_batch,
    make_problem,
    within_flops,
)
from dlviz.errors import UserError

# ---------------------------------------------------------------- flat vectors and directions


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(flat, like: Sequence[torch.Tensor]) -> Direction:
    """Split a flat vector (the trainer's trajectory layout) into tensors shaped like `like`."""
    flat = torch.as_tensor(flat)
    sizes = [t.numel() for t in like]
    if flat.numel() != sum(sizes):
        raise UserError(
            "surface.trajectory",
            f"a saved parameter vector has {flat.numel():,} values but the model has {sum(sizes):,} "
            "trainable parameters; the run's preset and model no longer match",
        )
    return [part.reshape(t.shape).to(t.device, t.dtype) for part, t in zip(torch.split(flat, sizes), like)]


def filter_normalize(direction: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> Direction:
    """Li et al. (2018): each filter of the direction (a slice along dim 0: a conv filter, a row of a Linear) is
    rescaled to the norm of the same filter of the weights; 1-D tensors (biases, normalization scales) get zero."""
    out = []
    for d, w in zip(direction, weights):
        if d.dim() <= 1:
            out.append(torch.zeros_like(d))
            continue
        dn = d.reshape(d.shape[0], -1).norm(dim=1)
        wn = w.reshape(w.shape[0], -1).norm(dim=1)
        out.append(d * (wn / (dn + FILTER_EPS)).reshape(-1, *[1] * (d.dim() - 1)))
    return out


def random_directions(weights: Sequence[torch.Tensor], count: int = 2, seed: int = 0) -> list[Direction]:
    """`count` seeded Gaussian directions, each filter-normalized to `weights` (drawn on the CPU, then moved to the
    weights' device: the same directions on every device)."""
    g = torch.Generator().manual_seed(seed)
    return [filter_normalize([torch.randn(w.shape, generator=g, dtype=w.dtype).to(w.device) for w in weights], weights) for _ in range(count)]


def pca_directions(snapshots: np.ndarray, center: torch.Tensor, like: Sequence[torch.Tensor]) -> tuple[list[Direction], np.ndarray]:
    """The first two principal directions of the trajectory (snapshots × parameters) about the centre weights, as in
    Li et al.: the rows θᵢ − θ_centre, mean-centred, then their principal axes (the SVD's, found through the small
    snapshots × snapshots Gram matrix). Returns unit directions and the explained variance ratio."""
    if len(snapshots) < 3:
        raise UserError(
            "surface.trajectory",
            f"the run saved {len(snapshots)} parameter snapshots; the PCA plane needs at least 3 (train longer, or lower training.trajectory_every)",
        )
    m = torch.as_tensor(np.asarray(snapshots, dtype=np.float64)) - center.double().cpu()
    m = m - m.mean(dim=0)
    # the Gram matrix is snapshots × snapshots: small even when the model has millions of weights
    evals, evecs = torch.linalg.eigh(m @ m.T)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    total = float(evals.sum())
    if total <= 0 or evals[1] <= 1e-12 * total:
        raise UserError("surface.trajectory", "the saved trajectory lies on a line or a point, so it spans no plane; use random directions")
    dirs = []
    for i in range(2):
        v = evecs[:, i] @ m
        dirs.append(unflatten((v / v.norm()).float(), like))
    return dirs, (evals[:2] / total).numpy()


def project(points: np.ndarray, center: torch.Tensor, directions: Sequence[Direction]) -> np.ndarray:
    """Coordinates (points × directions) of the least-squares projection of flat weight vectors onto the plane (or line)
    through `center` along `directions`; for orthonormal directions these are plain dot products."""
    d = torch.stack([flatten(dir_).double().cpu() for dir_ in directions])
    diff = torch.as_tensor(np.asarray(points, dtype=np.float64)) - center.double().cpu()
    return torch.linalg.solve(d @ d.T, d @ diff.T).T.numpy()


# ---------------------------------------------------------------- grids


def axis(radius: float, n: int, name: str = "resolution") -> np.ndarray:
    """n coordinates from −radius to radius; n must be odd so that 0 is a grid point, and the axis is symmetric
    bit for bit (each coordinate is i·h for an integer i)."""
    if n < 3 or n % 2 == 0:
        raise UserError(name, f"use an odd number of points of at least 3 (not {n}), so that the centre is a grid point")
    k = n // 2
    return np.arange(-k, k + 1, dtype=np.float64) * (radius / k)


def check_grid(points: int, name: str = "resolution") -> None:
    lim = _limits.current().max_grid_points
    if points > lim:
        side = math.isqrt(lim)
        raise UserError(name, f"{points:,} grid points is over the limit of {lim:,} ({side}×{side}); lower the resolution (the limit is DLVIZ_MAX_GRID_POINTS)")


# ---------------------------------------------------------------- surfaces for the page

MODES = {
    "line": "interpolation from the initial weights",
    "random": "plane along two random filter-normalized directions",
    "pca": "plane along the trajectory's first two principal directions",
}
PATH_POINTS = 100  # trajectory points evaluated exactly on the plane


@dataclass
class Surface:
    """The loss over a line (1-D) or a plane (2-D) through the weights, and the run's path projected onto it."""

    mode: str
    a: np.ndarray  # coordinates along the first axis (t for the line)
    b: Optional[np.ndarray]  # along the second axis; None for the line
    loss: np.ndarray  # (len(b), len(a)) for a plane, rows along b; (len(a),) for the line
    center_loss: float  # a plain forward pass at the centre (the checkpoint) for comparison
    axis_titles: tuple[str, str]
    path: Optional[np.ndarray] = None  # (points × 2) coordinates of the projected trajectory
    path_loss: Optional[np.ndarray] = None  # the loss at those coordinates, on the plane
    path_steps: Optional[np.ndarray] = None
    explained: Optional[np.ndarray] = None  # PCA: the explained variance ratio of the two axes
    samples: int = 0  # size of the evaluation batch
    samples_asked: int = 0  # the batch it was made from, when the budget of operations cut it to `samples`
    seconds: float = 0.0

    @property
    def points(self) -> int:
        return self.loss.size


def line_axis(resolution: int, margin: float) -> np.ndarray:
    """t from −margin to 1 + margin with `resolution` steps between 0 and 1; 0 and 1 are grid points exactly."""
    if resolution < 2:
        raise UserError("resolution", f"use at least 2 steps between the two weights (not {resolution})")
    m = int(round(margin * resolution))
    return np.arange(-m, resolution + m + 1, dtype=np.float64) / resolution


def _path_sample(steps: np.ndarray, snapshots: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    if len(steps) <= limit:
        return steps, snapshots
    idx = np.unique(np.linspace(0, len(steps) - 1, limit).round().astype(int))
    return steps[idx], snapshots[idx]


# The first picture of a plane comes within about a second of the click: a coarse sub-grid, as many points per side as
# fit FIRST_SECONDS at the measured cost of one point (at most FIRST_GRID, at least 3). Then the rest of the grid, in
# parts of about PROGRESS_SECONDS each, with a report after each part. Each report redraws the page's progress bar in
# a browser that may share the server's cores: in parts of 0.5 s, LeNet-5's 31×31 plane took 72 s on this 2-core
# machine instead of 40 s; in parts of 2 s, 40 s.
FIRST_GRID = 7
FIRST_SECONDS = 0.5
PROGRESS_SECONDS = 2.0


def coarse_side(n: int, point_seconds: float, budget: float = FIRST_SECONDS) -> int:
    """Points per side of the first, coarse picture of an n × n plane: the largest odd m ≤ FIRST_GRID whose m − 1
    intervals divide n − 1 (so that each of its points is one of the full grid's: 7 for 31, 5 for 21, 3 for 11) and
    whose m² points take at most `budget` seconds at `point_seconds` each; the smallest such m when none is that quick;
    n itself when there is none (n = 3)."""
    sides = [m for m in range(FIRST_GRID, 2, -2) if m < n and (n - 1) % (m - 1) == 0]
    if not sides:
        return n
    return next((m for m in sides if m * m * point_seconds <= budget), sides[-1])


Report = Callable[[int, int], None]  # (points done, points in all)


def _evaluate_in_parts(evaluate, problem, origin, dirs, coords, out, which, point_seconds, on_progress: Optional[Report]) -> None:
    """out[which] = the losses at coords[which], in parts of about PROGRESS_SECONDS each, reporting after each part
    how many of `out`'s points are done (those not in `which` were done before); in one part without a report."""
    per = len(which) if on_progress is None else max(1, int(PROGRESS_SECONDS / max(point_seconds, 1e-9)))
    before = len(out) - len(which)
    for start in range(0, len(which), per):
        part = which[start : start + per]
        out[part] = evaluate(problem, origin, dirs, coords[part])
        if on_progress is not None:
            on_progress(before + start + len(part), len(out))


@contextmanager
def _threads(n: int):
    """torch's thread count for this thread, for the duration of a block."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def network_surface(
    problem: Problem,
    mode: str,
    radius: float,
    resolution: int,
    *,
    threads: Optional[int] = None,
    on_coarse: Optional[Callable[[Surface], None]] = None,
    on_progress: Optional[Report] = None,
    **kwargs,
) -> Surface:
    """The loss surface around the problem's current weights (the centre).

    mode "line": t·centre + (1 − t)·initial for t over [−radius, 1 + radius], `resolution` steps per unit.
    mode "random": the plane centre + a·d1 + b·d2 over [−radius, radius]², d1 and d2 seeded and filter-normalized.
    mode "pca": the plane along the first two principal directions of the snapshots (snapshots × parameters, with
    their training `steps`); `radius` is then a multiple of the farthest projected snapshot.
    On planes, the snapshots up to `center_step` are projected and their loss evaluated on the plane.
    Keyword arguments: initial, steps, snapshots, center_step, seed, method ("batched" or "loop").
    It is computed with `threads` torch threads, by default the limit for training: on a shared 2-core server a 31×31
    spiral-network surface measured 0.14 s with one thread and 3 to 6 s with two.
    A page that shows it as it comes passes `on_coarse`, called with the plane's coarse sub-grid (coarse_side) before
    the rest is computed, without the path; and `on_progress`, called with (points done, points in all) as they are.
    The coarse grid's losses are the full grid's at its points, unless even its 9 points on every sample would take
    more than FIRST_SECONDS: it is then a first look on the first samples that fit (its `samples` says how many of
    `samples_asked`), and the full grid computes those points again. The full grid's losses are the same either way."""
    with _threads(threads or _limits.current().train_threads):
        return _network_surface(problem, mode, radius, resolution, on_coarse=on_coarse, on_progress=on_progress, **kwargs)


def _network_surface(
    problem: Problem,
    mode: str,
    radius: float,
    resolution: int,
    *,
    initial: Optional[Direction] = None,
    steps: Optional[np.ndarray] = None,
    snapshots: Optional[np.ndarray] = None,
    center_step: Optional[int] = None,
    seed: int = 0,
    method: str = "batched",
    on_coarse: Optional[Callable[[Surface], None]] = None,
    on_progress: Optional[Report] = None,
) -> Surface:
    """network_surface without the thread setting."""

    if mode not in MODES:
        raise UserError("mode", f"unknown surface mode '{mode}'; use one of {', '.join(MODES)}")
    if not radius > 0 or not math.isfinite(radius):
        raise UserError("range", f"the range must be a positive number, not {radius}")
    evaluate = METHODS[method]
    t0 = time.perf_counter()
    full = len(problem.x)
    if mode == "line":
        problem = within_flops(problem, len(line_axis(resolution, radius)) if resolution >= 2 else 1)
    else:
        problem = within_flops(problem, resolution * resolution + (PATH_POINTS if snapshots is not None else 0))
    center = problem.weights()
    started = time.perf_counter()
    center_loss = problem.loss()
    point_seconds = time.perf_counter() - started  # one forward over the samples: about what one point costs
    if mode == "line":
        if initial is None:
            raise UserError("mode", "the interpolation needs the run's initial weights; train first")
        t = line_axis(resolution, radius)
        check_grid(len(t))
        direction = [c - i for c, i in zip(center, initial)]
        loss = np.empty(len(t))
        _evaluate_in_parts(evaluate, problem, initial, [direction], t[:, None], loss, np.arange(len(t)), point_seconds, on_progress)
        return Surface(
            mode,
            t,
            None,
            loss,
            center_loss,
            ("t (0: initial weights, 1: this checkpoint)", ""),
            samples=len(problem.x),
            samples_asked=full,
            seconds=time.perf_counter() - t0,
        )
    n = resolution
    axis(1.0, n)  # the odd-size check, before the grid-size check
    check_grid(n * n)
    flat_center = flatten(center)
    if snapshots is not None and len(snapshots):
        keep = np.ones(len(steps), bool) if center_step is None else np.asarray(steps) <= center_step
        steps, snapshots = np.asarray(steps)[keep], np.asarray(snapshots)[keep]
    explained = None
    if mode == "pca":
        if snapshots is None or not len(snapshots):
            raise UserError("mode", "the PCA plane needs the run's saved trajectory; train first")
        dirs, explained = pca_directions(snapshots, flat_center, center)
        titles = tuple(f"PC{i + 1} ({100 * explained[i]:.1f} % of the path's variance)" for i in range(2))
    else:
        dirs = random_directions(center, 2, seed)
        titles = ("direction 1 (filter-normalized)", "direction 2 (filter-normalized)")
    path = path_loss = path_steps = None
    if snapshots is not None and len(snapshots):
        path_steps, picked = _path_sample(np.asarray(steps), np.asarray(snapshots), PATH_POINTS - 1)
        path = project(picked, flat_center, dirs)
        # the checkpoint itself ends the path, at the centre
        if center_step is not None and (not len(path_steps) or path_steps[-1] != center_step):
            path_steps, path = np.append(path_steps, center_step), np.vstack([path, [[0.0, 0.0]]])
    scale = 1.0
    if mode == "pca":
        scale = float(np.abs(path).max()) if path is not None and np.abs(path).max() > 0 else 1.0
    a = axis(radius * scale, n)
    aa, bb = np.meshgrid(a, a)
    coords = np.stack([aa.ravel(), bb.ravel()], axis=1)  # row i, column j of the grid: b = a[i], a = a[j]
    if path is not None:
        coords = np.vstack([coords, path])
    values = np.empty(len(coords))
    rest = np.ones(len(coords), bool)
    m = coarse_side(n, point_seconds) if on_coarse is not None else n
    if m < n:
        sub = np.arange(0, n, (n - 1) // (m - 1))
        coarse = (sub[:, None] * n + sub[None, :]).ravel()
        samples = len(problem.x)
        k = min(samples, max(1, int(samples * FIRST_SECONDS / (m * m * point_seconds or 1e-9))))
        if k == samples:  # on every sample: these are the full grid's losses at those points, computed once
            values[coarse] = evaluate(problem, center, dirs, coords[coarse])
            rest[coarse] = False
            picture = values[coarse]
        else:  # a model so slow that even m × m points on every sample would take too long: a first look on fewer
            fewer = Problem(problem.model, problem.objective, problem.x[:k], problem.y[:k], problem.flops)
            picture = evaluate(fewer, center, dirs, coords[coarse])
        elapsed = time.perf_counter() - t0
        on_coarse(Surface(mode, a[sub], a[sub], picture.reshape(m, m), center_loss, titles, None, None, None, explained, k, samples, seconds=elapsed))
        if on_progress is not None:
            on_progress(int((~rest).sum()), len(coords))
    _evaluate_in_parts(evaluate, problem, center, dirs, coords, values, np.flatnonzero(rest), point_seconds, on_progress)
    loss = values[: n * n].reshape(n, n)
    if path is not None:
        path_loss = values[n * n :]
    return Surface(mode, a, a, loss, center_loss, titles, path, path_loss, path_steps, explained, len(problem.x), full, seconds=time.perf_counter() - t0)
