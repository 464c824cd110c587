"""The exported script's data section for the coins photo: its crops cut by the kernels dlviz cuts them with."""

from __future__ import annotations

from dlviz import runtime
from dlviz.data.coins import NAME, part_counts
from dlviz.data.datasets import option

__all__ = ["NAME", "data_code"]


def data_code(spec, consts: list[str], doc: str) -> tuple[list[str], list[str], str, str]:
    """(constants, kernels, load_data's body, heading): the crops in [train, validation, test] as the data layer counts
    them, each part cut from its own strip of the photo by loop.photo_crops."""
    counts = part_counts(option(spec, "num_samples"), spec.val_fraction, spec.test_fraction)
    consts = [
        *consts,
        f"MEAN, STD = {runtime.PIXEL_STATS[NAME]}  # the photo's fixed pixel statistics",
        f"CROPS, SIDE = {counts}, {option(spec, 'crop')}  # crops in [train, validation, test], and their side",
    ]
    body = [
        doc.format("crops of scikit-image's coins photo (pixels normalized) and a class for every pixel", "cuts"),
        "    photo, mask = coins_photo()",
        "    return photo_crops((photo - MEAN) / STD, mask, CROPS, SIDE, np.random.default_rng([SEED, SAMPLE_STREAM]))",
    ]
    return consts, ["coins_photo", "photo_crops", "SAMPLE_STREAM"], "\n".join(body), "crops of scikit-image's photo of 24 coins, a class for every pixel"
