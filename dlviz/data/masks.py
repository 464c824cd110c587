"""The segmentation set: MNIST digits pasted on square canvases, with a class for every pixel from their thresholded strokes."""

from __future__ import annotations

import numpy as np

from dlviz.loop import INK, MASK_SIDES, mnist_masks
from dlviz.runtime import PIXEL_STATS, SAMPLE_STREAM, split_data

NAME = "mnist-masks"


def class_names(binary: bool) -> list[str]:
    """The pixel classes: the background, then a stroke of each digit (or of any digit with binary masks)."""
    return ["background", "stroke"] if binary else ["background", *(f"digit {d}" for d in range(10))]


def shapes(side: int, binary: bool) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """(input shape, number of classes, target shape) of a canvas: one channel of side×side pixels, a class for each pixel."""
    return (1, side, side), len(class_names(binary)), (side, side)


def canvases(n: int, side: int, max_digits: int, binary: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n canvases (pixels normalized with MNIST's constants, (n, 1, side, side)) and their masks (n, side, side)."""
    from dlviz.data.datasets import _raw_images

    images, labels = _raw_images("mnist")
    mean, std = PIXEL_STATS["mnist"]
    x, y = mnist_masks(images, labels, n, side, max_digits, binary, rng)
    return (x - np.float32(mean)) / np.float32(std), y


def load(spec, seed: int):
    """The canvases of a preset's `data`, split by its fractions."""
    from dlviz.data.datasets import _check_split, option

    n, side, most, binary = option(spec, "num_samples"), option(spec, "canvas"), option(spec, "max_digits"), option(spec, "masks") == "strokes"
    _check_split(n, spec)
    x, y = canvases(n, side, most, binary, np.random.default_rng([seed, SAMPLE_STREAM]))
    xs, ys, _ = split_data(x, y, seed, spec.val_fraction, spec.test_fraction)
    mean, std = PIXEL_STATS["mnist"]
    what = "1 for a stroke of any digit" if binary else "1 + the digit on its strokes"
    note = (
        f"{NAME}: {n:,} {side}×{side} canvases with 1 to {most} MNIST digits each (sides {MASK_SIDES[0]} to {MASK_SIDES[1] - 1} px); "
        f"a class per pixel: 0 for the background, {what} (pixels brighter than {INK:g}); pixels normalized with mean {mean} and std {std}"
    )
    return pixel_classes(NAME, xs, ys, spec.test_fraction > 0, class_names(binary), note, (mean, std))


def pixel_classes(name: str, xs: list, ys: list, has_test: bool, names: list[str], note: str, normalization: tuple[float, float]):
    """A segmentation Dataset from its [train, validation, test] images (N, 1, H, W) and their masks (N, H, W), a class
    of `names` for every pixel."""
    from dlviz.data.datasets import Dataset, _parts

    return Dataset(
        name=name,
        task="classification",
        num_classes=len(names),
        input_shape=tuple(xs[0].shape[1:]),
        target_shape=tuple(ys[0].shape[1:]),
        **_parts(xs, ys, has_test),
        feature_names=[],
        class_names=names,
        note=note,
        normalization=normalization,
    )
