"""The coins segmentation set: random crops of scikit-image's photo of 24 coins, a class for every pixel (coin or
background) from a classical mask of the photo, validated on a strip of the photo the training crops never touch."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dlviz.data.masks import pixel_classes
from dlviz.errors import UserError
from dlviz.loop import COINS_SIGMAS, coins_photo, crop_strips, photo_crops
from dlviz.runtime import PIXEL_STATS, SAMPLE_STREAM, count

NAME = "coins"
CLASS_NAMES = ["background", "coin"]
PARTS = ("training", "validation", "test")


@lru_cache(maxsize=1)
def photo() -> tuple[np.ndarray, np.ndarray]:
    """The photo's pixels in [0, 1] (303, 384) and its mask (303, 384), made once per process (read-only)."""
    pixels, mask = coins_photo()
    pixels.flags.writeable = mask.flags.writeable = False
    return pixels, mask


def normalized(pixels: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] normalized with the photo's own fixed mean and std, as the crops are."""
    mean, std = PIXEL_STATS[NAME]
    return (pixels - np.float32(mean)) / np.float32(std)


def shapes(side: int) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """(input shape, number of classes, target shape) of a crop: one channel of side×side pixels, a class for each pixel."""
    return (1, side, side), len(CLASS_NAMES), (side, side)


def part_counts(n: int, val_fraction: float, test_fraction: float) -> list[int]:
    """Crops in [train, validation, test]: the fractions of n as every set splits, the rest for training."""
    n_val, n_test = count(n, val_fraction), count(n, test_fraction)
    return [n - n_val - n_test, n_val, n_test]


def strips(spec) -> list[tuple[int, int]]:
    """Each part's strip of the photo's columns, [start, end), refusing a part whose strip is narrower than a crop."""
    from dlviz.data.datasets import _check_split, option

    n, side = option(spec, "num_samples"), option(spec, "crop")
    _check_split(n, spec)
    counts = part_counts(n, spec.val_fraction, spec.test_fraction)
    out = crop_strips(photo()[0].shape[1], counts)
    for part, k, (a, b) in zip(PARTS, counts, out):
        if k and b - a < side:
            key = "test_fraction" if part == "test" else "val_fraction"
            change = "lower the fractions" if part == "training" else f"raise {key}"
            raise UserError(
                f"data.{key}", f"the {part} strip of the photo is {b - a} columns wide, narrower than a {side}-pixel crop; {change} or pick a smaller crop"
            )
    return out


def load(spec, seed: int):
    """The crops of a preset's `data`: each part from its own strip of the photo, as `strips` cuts it."""
    from dlviz.data.datasets import option

    n, side = option(spec, "num_samples"), option(spec, "crop")
    edges = strips(spec)
    counts = part_counts(n, spec.val_fraction, spec.test_fraction)
    pixels, mask = photo()
    xs, ys = photo_crops(normalized(pixels), mask, counts, side, np.random.default_rng([seed, SAMPLE_STREAM]))
    mean, std = PIXEL_STATS[NAME]
    h, w = pixels.shape
    where = "; ".join(f"{part} from columns {a} to {b - 1}" for part, k, (a, b) in zip(PARTS, counts, edges) if k)
    note = (
        f"{NAME}: {n:,} random {side}×{side} crops of scikit-image's {h}×{w} photo of 24 coins, each part from its own strip "
        f"of the photo, left to right ({where}), so no validation pixel is ever trained on; a class per pixel: 1 on a coin, "
        f"0 on the background, from the photo blurred by {COINS_SIGMAS[0]} px less its lighting (a {COINS_SIGMAS[1]} px blur) "
        f"above Otsu's threshold, holes filled; pixels normalized with the photo's mean {mean} and std {std}"
    )
    return pixel_classes(NAME, xs, ys, spec.test_fraction > 0, list(CLASS_NAMES), note, (mean, std))
