"""Translation equivariance: how each layer's output moves when the input is shifted by whole pixels.

A convolution's maps shift with its input (equivariance): f(shift(x)) = shift(f(x)), exactly so with circular padding.
A layer of total stride s moves its maps by shift / s, so a shift that s does not divide can only be matched
approximately (pooling is partly invariant), and a vector (after Flatten or global pooling) has no positions to move:
it is compared with the unshifted input's vector (invariance)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from dlviz.analysis.features import LayerOutput, feature_maps
from dlviz.model.build import Network, Summary


@dataclass
class LayerShift:
    """One layer under a shift of the input: its output for the shifted input, what equivariance predicts it to be
    (the unshifted input's output moved by `moved` positions; for a vector, that output itself), and their correlation."""

    path: str
    type: str
    kind: str  # "maps", "rows" or "vector": LayerOutput.kind
    stride: Optional[tuple[int, int]]  # the layer's total stride (rows, columns) for maps
    moved: Optional[tuple[float, float]]  # the map shift (rows, columns) equivariance predicts; None for a vector
    shifted: np.ndarray  # f(shift(x))
    expected: np.ndarray  # shift(f(x)), rounded to whole positions; f(x) for a vector
    correlation: float  # Pearson's r between the two, 1: equivariant (or, for a vector, invariant)

    @property
    def exact_shift(self) -> bool:
        """Whether the predicted map shift is a whole number of positions (the stride divides the input's shift)."""
        return self.moved is not None and all(float(m).is_integer() for m in self.moved)


def shift_input(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The input moved dy pixels down and dx right, circularly: what leaves one side enters the other."""
    return torch.roll(x, shifts=(int(dy), int(dx)), dims=(-2, -1))


def shift_map(values: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """A [channels, height, width] map moved the same way, circularly."""
    return np.roll(values, shift=(int(dy), int(dx)), axis=(-2, -1))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two arrays' values; for a constant array, 1 when the other equals it and 0 otherwise."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    da, db = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(da @ da) * float(db @ db))
    if norm == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(da @ db) / norm


def layer_strides(summary: Summary) -> dict[str, tuple[int, int]]:
    """Each layer's total stride (rows, columns) from the summary's receptive fields, for layers whose output is a map."""
    out = {}
    for row in summary.rows:
        rf = row.receptive_field
        if rf is not None and len(row.output_shape) == 3:
            s = rf["stride"]
            out[row.path] = (int(s[0]), int(s[1])) if isinstance(s, list) else (int(s), int(s))
    return out


def _stride(o: LayerOutput, strides: dict, input_hw: tuple[int, int]) -> tuple[int, int]:
    """The layer's stride from the summary, else the ratio of the input's size to the map's (a map after an upsampling)."""
    if o.path in strides:
        return strides[o.path]
    h, w = o.values.shape[-2:]
    return max(1, round(input_hw[0] / h)), max(1, round(input_hw[1] / w))


def equivariance(net: Network, x: torch.Tensor, dy: int, dx: int, strides: dict[str, tuple[int, int]]) -> list[LayerShift]:
    """Every layer's output for the input `x` (one sample) shifted by (dy, dx) pixels, beside the unshifted input's output
    moved by (dy, dx) / the layer's stride (rounded to whole positions), and their correlation."""
    if x.dim() < 3:
        raise ValueError("equivariance needs an input with height and width")
    base = feature_maps(net, x)
    moved = feature_maps(net, shift_input(x, dy, dx))
    input_hw = tuple(x.shape[-2:])
    out = []
    for b, m in zip(base, moved):
        if b.kind == "maps":
            sy, sx = _stride(b, strides, input_hw)
            ty, tx = dy / sy, dx / sx
            expected = shift_map(b.values, round(ty), round(tx))
            out.append(LayerShift(b.path, b.type, b.kind, (sy, sx), (ty, tx), m.values, expected, correlation(m.values, expected)))
        else:  # no positions to move: a vector (or a sequence's rows) compared with the unshifted input's
            out.append(LayerShift(b.path, b.type, b.kind, None, None, m.values, b.values, correlation(m.values, b.values)))
    return out
