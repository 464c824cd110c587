"""The detection set: MNIST digits pasted on 64×64 canvases, with YOLO grid targets that hold their true boxes."""

from __future__ import annotations

import numpy as np

from dlviz.loop import CANVAS, DIGIT_SIDES, mnist_boxes
from dlviz.runtime import PIXEL_STATS, SAMPLE_STREAM, split_data

NAME = "mnist-boxes"
CLASSES = 10  # the digits


def shapes(grid: int, anchors: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, target shape) of a canvas: (1, 64, 64) and per anchor 5 box numbers and the 10 digits' one-hot on each cell."""
    return (1, CANVAS, CANVAS), (anchors * (5 + CLASSES), grid, grid)


def load(spec, seed: int):
    """The canvases of a preset's `data`, split by its fractions; pixels normalized with MNIST's constants."""
    from dlviz.data.datasets import Dataset, _check_split, _parts, _raw_images, option

    n, grid, anchors, most = (option(spec, k) for k in ("num_samples", "grid", "anchors", "max_digits"))
    images, labels = _raw_images("mnist")
    mean, std = PIXEL_STATS["mnist"]
    _check_split(n, spec)
    x, y = mnist_boxes(images, labels, n, grid, anchors, most, np.random.default_rng([seed, SAMPLE_STREAM]))
    xs, ys, _ = split_data((x - np.float32(mean)) / np.float32(std), y, seed, spec.val_fraction, spec.test_fraction)
    digits = sum(int(t[:, :: 5 + CLASSES].sum()) for t in ys)
    note = (
        f"{NAME}: {n:,} 64×64 canvases holding {digits:,} MNIST digits (1 to {most} each, sides {DIGIT_SIDES[0]} to {DIGIT_SIDES[1] - 1} px), "
        f"targets on a {grid}×{grid} grid with {anchors} anchor{'s' if anchors > 1 else ''} a cell; pixels normalized with mean {mean} and std {std}"
    )
    input_shape, target_shape = shapes(grid, anchors)
    return Dataset(
        name=NAME,
        task="regression",
        num_classes=None,
        input_shape=input_shape,
        target_shape=target_shape,
        **_parts(xs, ys, spec.test_fraction > 0),
        feature_names=[],
        class_names=[str(d) for d in range(CLASSES)],
        note=note,
        normalization=(mean, std),
    )
