"""The convolution lab: classic edge kernels or a typed one applied to a grey image with padding, stride and dilation, the output-size formula, and pooling."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from dlviz.errors import UserError

# x kernels respond to change along x (left to right); y kernels are their transposes. Applied as deep-learning
# convolutions are (cross-correlation, no kernel flip), so a dark-to-bright step from left to right gives a positive x.
EDGE_KERNELS = {
    "Sobel": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32),
    "Prewitt": np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=np.float32),
    "Scharr": np.array([[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]], dtype=np.float32),
}
DIRECTIONS = ("x", "y", "magnitude")
MAX_KERNEL = 15  # a typed kernel's largest side
POOLS = ("max", "average")


def edge_kernel(family: str, direction: str) -> np.ndarray:
    """The x or y kernel of a family (y is the transpose of x)."""
    if family not in EDGE_KERNELS:
        raise UserError("convlab.family", f"no edge kernel family '{family}'; choose one of {', '.join(EDGE_KERNELS)}")
    k = EDGE_KERNELS[family]
    if direction == "x":
        return k.copy()
    if direction == "y":
        return k.T.copy()
    raise UserError("convlab.direction", f"an edge kernel's direction is x or y, not '{direction}'")


def parse_kernel(text: str) -> np.ndarray:
    """A kernel typed as rows of numbers: one row a line (or rows separated by ';'), numbers by spaces or commas."""
    rows = [r for r in re.split(r"[;\n]", text.strip()) if r.strip()]
    if not rows:
        raise UserError("convlab.kernel", "the kernel is empty; type rows of numbers, one row a line, such as -1 0 1")
    values = []
    for i, row in enumerate(rows, 1):
        cells = [c for c in re.split(r"[,\s]+", row.strip().strip("[]").strip()) if c]
        try:
            nums = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            raise UserError("convlab.kernel", f"row {i} of the kernel holds '{bad[:20]}', which is not a number") from None
        if not all(math.isfinite(v) for v in nums):
            raise UserError("convlab.kernel", f"row {i} of the kernel holds an infinite or missing number; use finite numbers")
        values.append(nums)
    widths = {len(r) for r in values}
    if len(widths) != 1:
        raise UserError(
            "convlab.kernel", f"the kernel's rows have different lengths ({', '.join(str(len(r)) for r in values)}); give every row the same number of values"
        )
    k = np.array(values, dtype=np.float32)
    if max(k.shape) > MAX_KERNEL:
        raise UserError("convlab.kernel", f"the kernel is {k.shape[0]}×{k.shape[1]}; the lab takes kernels up to {MAX_KERNEL}×{MAX_KERNEL}")
    return k


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def step_edge(height: int = 32, width: int = 32, column: Optional[int] = None) -> np.ndarray:
    """A synthetic vertical step edge: 0 left of `column` (the middle by default), 1 from it on."""
    column = width // 2 if column is None else column
    image = np.zeros((height, width), dtype=np.float32)
    image[:, column:] = 1.0
    return image


def output_size(n: int, k: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> int:
    """⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1: the output length of a convolution or pooling window along one axis."""
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


@dataclass
class Convolved:
    """A lab result: the output map and, per axis, the size the formula predicts."""

    output: np.ndarray
    predicted: tuple[int, int]

    @property
    def measured(self) -> tuple[int, int]:
        return tuple(self.output.shape)


def convolve(image: np.ndarray, kernel: np.ndarray, padding: int = 0, stride: int = 1, dilation: int = 1) -> Convolved:
    """Cross-correlate a grey image (H×W) with a kernel (kh×kw), zero padding on every side, as nn.Conv2d does."""
    image = np.asarray(image, dtype=np.float32)
    kernel = np.asarray(kernel, dtype=np.float32)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError("convolve takes a 2-D image and a 2-D kernel")
    predicted = tuple(output_size(n, k, padding, stride, dilation) for n, k in zip(image.shape, kernel.shape))
    if min(predicted) < 1:
        reach = [dilation * (k - 1) + 1 for k in kernel.shape]
        raise UserError(
            "convlab.kernel",
            f"the dilated kernel spans {reach[0]}×{reach[1]} pixels, more than the padded "
            f"{image.shape[0] + 2 * padding}×{image.shape[1] + 2 * padding} image; "
            "lower the dilation or the kernel size, or add padding",
        )
    y = F.conv2d(torch.from_numpy(image)[None, None], torch.from_numpy(kernel)[None, None], stride=stride, padding=padding, dilation=dilation)
    return Convolved(y[0, 0].numpy(), predicted)


def gradient_magnitude(image: np.ndarray, family: str, padding: int = 0, stride: int = 1, dilation: int = 1) -> Convolved:
    """√(gx² + gy²) from a family's x and y kernels."""
    gx = convolve(image, edge_kernel(family, "x"), padding, stride, dilation)
    gy = convolve(image, edge_kernel(family, "y"), padding, stride, dilation)
    return Convolved(np.sqrt(gx.output**2 + gy.output**2), gx.predicted)


def pool(image: np.ndarray, kind: str, kernel_size: int = 2, stride: int | None = None) -> np.ndarray:
    """Max or average pooling of a map (no padding; stride defaults to the kernel size, as in PyTorch)."""
    image = np.asarray(image, dtype=np.float32)
    stride = stride or kernel_size
    if min(image.shape) < kernel_size:
        raise UserError(
            "convlab.pool", f"a {kernel_size}×{kernel_size} pool does not fit the {image.shape[0]}×{image.shape[1]} map; use a smaller pool or a larger map"
        )
    t = torch.from_numpy(image)[None, None]
    if kind == "max":
        return F.max_pool2d(t, kernel_size, stride)[0, 0].numpy()
    if kind == "average":
        return F.avg_pool2d(t, kernel_size, stride)[0, 0].numpy()
    raise UserError("convlab.pool", f"pooling is max or average, not '{kind}'")
