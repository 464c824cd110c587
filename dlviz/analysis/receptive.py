"""Receptive fields of a model: the theoretical field of every spatial layer and of any one unit, and the effective field, the input gradient of a unit (Luo et al. 2016)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from dlviz.analysis.features import HOOK_LOCK
from dlviz.errors import UserError
from dlviz.model import budget
from dlviz.model.build import Network, Summary, device_of

MASS = 0.95  # the effective size is the central extent holding this share of the gradient


@dataclass(frozen=True)
class Field:
    """A layer's theoretical receptive field per spatial axis, in the Distill convention: unit i of the layer's map
    sees input positions i·stride − padding to i·stride − padding + size − 1."""

    path: str
    type: str
    output_shape: tuple[int, ...]
    size: tuple[float, ...]
    stride: tuple[float, ...]
    padding: tuple[float, ...]
    block: bool = False

    @classmethod
    def from_row(cls, row) -> "Field":
        dims = len(row.output_shape) - 1
        rf = row.receptive_field

        def axes(v):
            return tuple(v) if isinstance(v, list) else (v,) * dims

        return cls(row.path, row.type, tuple(row.output_shape), axes(rf["size"]), axes(rf["stride"]), axes(rf["padding"]), row.block)


def theoretical(summary: Summary) -> list[Field]:
    """Every layer and block whose output is still a spatial map, in preset order, with its receptive field."""
    return [Field.from_row(r) for r in summary.rows if r.receptive_field is not None and len(r.output_shape) >= 2]


@dataclass(frozen=True)
class Box:
    """The input span one unit sees, per axis: [start, end] as the theory gives it (it may reach into the padding),
    and [lo, hi], the same span clipped to the input."""

    start: tuple[int, ...]
    end: tuple[int, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def clipped(self) -> bool:
        return self.start != self.lo or self.end != self.hi


def unit_box(field: Field, unit: Sequence[int], input_size: Sequence[int]) -> Box:
    """The theoretical field of the unit at spatial index `unit` of the field's layer, on an input of `input_size`."""
    if len(unit) != len(field.size) or len(input_size) != len(field.size):
        raise UserError(
            "receptive.unit",
            f"the layer's map has {len(field.size)} spatial axes; give a unit and an input size with "
            f"{len(field.size)} each, not {tuple(unit)} and {tuple(input_size)}",
        )
    for i, n in zip(unit, field.output_shape[1:]):
        if not 0 <= i < n:
            raise UserError("receptive.unit", f"unit {tuple(unit)} is outside the layer's {'×'.join(map(str, field.output_shape[1:]))} map")
    start = tuple(int(math.floor(i * s - p)) for i, s, p in zip(unit, field.stride, field.padding))
    end = tuple(int(math.ceil(a + r - 1)) for a, r in zip(start, field.size))
    lo = tuple(min(max(a, 0), n - 1) for a, n in zip(start, input_size))
    hi = tuple(max(min(b, n - 1), 0) for b, n in zip(end, input_size))
    return Box(start, end, lo, hi)


class _Stop(Exception):
    """Raised by a hook once the layer of interest has run: the rest of the network is not needed."""


def module_name(net: Network, path: str) -> str:
    for name, p in net.json_paths.items():
        if p == path:
            return name
    raise KeyError(path)


def input_gradient(net: Network, x: torch.Tensor, path: str, unit: Sequence[int], channels: int | Sequence[int] = 0) -> np.ndarray:
    """|∂y/∂x| for the output unit y at spatial index `unit` of the layer at `path`, summed over the input's channels:
    the effective receptive field of that unit for this input and the current weights.

    With several `channels` the maps of those channels' units at `unit` are averaged; they are computed in one
    backward pass over a batch of copies of the input (sample b differentiates channel b)."""
    if not x.is_floating_point():
        raise UserError("receptive.input", "this model takes token ids, which have no gradient; effective receptive fields need a numeric input")
    chans = [channels] if isinstance(channels, int) else list(channels)
    per_copy = budget.gradient_bytes_per_copy(net.footprint)
    group = budget.rows_that_fit(per_copy)
    if group < 1:
        raise budget.over_budget("The effective receptive field of this model", per_copy, budget.SMALLER_MODEL)
    if len(chans) > group:  # the channels' maps are averaged, so groups of copies that fit add up to the same map
        return sum(len(part) * input_gradient(net, x, path, unit, part) for part in (chans[i : i + group] for i in range(0, len(chans), group))) / len(chans)
    device = device_of(net)
    xb = x[:1].detach().to(device).expand(len(chans), *x.shape[1:]).clone().requires_grad_(True)
    mod = net.get_submodule(module_name(net, path))
    seen = {}

    def stop(m, i, o):
        seen["y"] = o
        raise _Stop

    with HOOK_LOCK:
        handle = mod.register_forward_hook(stop)
        try:
            with torch.enable_grad():
                net(xb)
        except _Stop:
            pass
        finally:
            handle.remove()
    y = seen["y"]
    if y.dim() != 2 + len(unit):
        raise UserError("receptive.unit", f"{path} gives [{', '.join(map(str, y.shape[1:]))}], not a map with {len(unit)} spatial axes")
    picked = y[(torch.arange(len(chans), device=device), torch.tensor(chans, device=device), *(torch.full((len(chans),), i, device=device) for i in unit))]
    if not picked.requires_grad:  # a layer whose output does not depend on the input (e.g. constant weights of zero)
        return np.zeros(x.shape[2:], dtype=np.float32)
    (g,) = torch.autograd.grad(picked.sum(), xb)
    return g.abs().sum(1).mean(0).float().cpu().numpy()


@dataclass(frozen=True)
class Spread:
    """The gradient map read as a distribution over input positions, per axis: its mean, its standard deviation σ,
    and the central span [lo, hi] holding `MASS` of it (size = hi − lo + 1)."""

    mean: tuple[float, ...]
    sigma: tuple[float, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(b - a + 1 for a, b in zip(self.lo, self.hi))


def spread(g: np.ndarray, mass: float = MASS) -> Optional[Spread]:
    """The spread of a non-negative map, or None when it is zero everywhere (no gradient reaches the input)."""
    g = np.asarray(g, dtype=np.float64)
    total = g.sum()
    if not total > 0:
        return None
    tail = (1 - mass) / 2
    means, sigmas, los, his = [], [], [], []
    for axis in range(g.ndim):
        p = g.sum(axis=tuple(a for a in range(g.ndim) if a != axis)) / total
        idx = np.arange(len(p))
        mu = float((idx * p).sum())
        means.append(mu)
        sigmas.append(float(np.sqrt(((idx - mu) ** 2 * p).sum())))
        cdf = np.cumsum(p)
        los.append(int(np.searchsorted(cdf, tail, side="right")))
        his.append(int(min(np.searchsorted(cdf, 1 - tail, side="left"), len(p) - 1)))
    return Spread(tuple(means), tuple(sigmas), tuple(los), tuple(his))


@dataclass(frozen=True)
class Growth:
    """One row of the growth chart: a layer's theoretical field and the effective field of its centre unit."""

    path: str
    type: str
    theory: tuple[float, ...]
    effective: Optional[tuple[int, ...]]
    sigma: Optional[tuple[float, ...]]


def growth(net: Network, summary: Summary, x: torch.Tensor, channels: int = 8) -> list[Growth]:
    """For every leaf layer with a spatial output: its theoretical size and the effective size of its centre unit,
    averaged over up to `channels` of its channels (spread evenly), for this input and the current weights."""
    rows = []
    for f in theoretical(summary):
        if f.block:
            continue
        c = f.output_shape[0]
        chans = sorted({round(i * (c - 1) / max(channels - 1, 1)) for i in range(min(channels, c))})
        centre = tuple(n // 2 for n in f.output_shape[1:])
        s = spread(input_gradient(net, x, f.path, centre, chans))
        rows.append(Growth(f.path, f.type, f.size, s.size if s else None, s.sigma if s else None))
    return rows
