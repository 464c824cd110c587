"""The data and training sections' catalog: every dataset with its options, the options every set takes, the training
fields and the seed, each an Arg. The schema checks them, the data layer takes its defaults from them, the Train page
draws its widgets from them and `python -m dlviz schema` documents them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlviz import runtime
from dlviz.preset.args import REQUIRED, Arg
from dlviz.preset.registry import CURVES, TOKEN_TASKS

FEATURES = tuple(runtime.FEATURES)  # TensorFlow Playground's input features of a 2-D point


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset a preset can name: its options (besides those every set takes) and what it is."""

    args: dict[str, Arg]
    doc: str


def _noise(default: float, playground: bool) -> Arg:
    if playground:
        return Arg("float", default, ge=0, le=0.5, step=0.05, widget="slider", label="Noise", help="TensorFlow Playground's noise, from 0 to 0.5")
    return Arg("float", default, ge=0, le=10, step=0.05, label="Noise", help="how much noise is added to the clean samples")


def _samples(default: int) -> Arg:
    return Arg("int", default, ge=10, step=50, label="Samples", help="how many samples are generated, before the split")


_FEATURES = Arg("choices", ["x1", "x2"], choices=FEATURES, label="Input features", help="TensorFlow Playground's feature transforms of the two coordinates")
_SEQ_LEN = "steps in each sequence"


_CLICKED = Arg(
    "points",
    [],
    le=50.0,  # well beyond every generated set's plane
    label="Added points",
    help="training points added by hand, each [x1, x2, label] (label 1 or 0 for the two classes; the target for regression)",
)


def _points(noise: float, samples: int, playground: bool = True) -> dict[str, Arg]:
    return {"noise": _noise(noise, playground), "num_samples": _samples(samples), "features": _FEATURES, "points": _CLICKED}


def _images(count: int) -> dict[str, Arg]:
    return {
        "classes": Arg(
            "choices",
            None,
            choices=tuple(range(10)),
            label="Digits used (empty: all)",
            help="the digits kept, relabelled 0, 1, … in the order listed, so the model needs one output per digit listed",
        ),
        "subset": Arg(
            "int", None, ge=10, le=count, step=100, label="Images used (empty: all)", help=f"how many of the {count:,} images are used, drawn with the seed"
        ),
        "augment": Arg(
            "object",
            None,
            fields=AUGMENT,
            label="Augmentation at train time",
            help="random changes to each training batch; validation and test images stay as they are",
        ),
    }


AUGMENT: dict[str, Arg] = {
    "hflip": Arg("bool", False, label="flip", help="flip half of the images left to right"),
    "crop": Arg("int", 0, ge=0, le=8, label="shift px", help="random shifts of up to this many pixels"),
    "noise": Arg("float", 0.0, ge=0, le=1, step=0.05, label="noise", help="std of Gaussian noise added to the pixels"),
}

DATASETS: dict[str, DatasetEntry] = {
    # Playground's own sample counts: 500 for its classification sets, 1,200 for its regression sets
    "circle": DatasetEntry(_points(0.0, 500), "TensorFlow Playground: one class inside a circle, the other in a ring around it"),
    "xor": DatasetEntry(_points(0.0, 500), "TensorFlow Playground: the class is the sign of x1·x2"),
    "gauss": DatasetEntry(_points(0.0, 500), "TensorFlow Playground: two Gaussian clusters"),
    "spiral": DatasetEntry(_points(0.0, 500), "TensorFlow Playground: two interleaved spiral arms"),
    "reg-plane": DatasetEntry(_points(0.0, 1200), "TensorFlow Playground regression: a tilted plane"),
    "reg-gauss": DatasetEntry(_points(0.0, 1200), "TensorFlow Playground regression: Gaussian bumps of either sign"),
    "moons": DatasetEntry(_points(0.1, 500, playground=False), "two interleaved half circles (scikit-learn's make_moons)"),
    "blobs": DatasetEntry(
        {**_points(0.0, 500, playground=False), "classes": Arg("int", 3, ge=2, le=10, label="Classes", help="how many Gaussian clusters, one a class")},
        "Gaussian clusters, one for each class",
    ),
    "curve": DatasetEntry(
        {
            "noise": _noise(0.1, False),
            "num_samples": _samples(500),
            "function": Arg("choice", "sin", choices=CURVES, label="Curve", help="the function y = f(x) to fit"),
            "outliers": Arg(
                "float",
                0.0,
                ge=0,
                le=0.5,
                step=0.05,
                widget="slider",
                label="Outliers (training targets)",
                help="the fraction of training targets moved far above the curve",
            ),
            "points": Arg(
                "points",
                [],
                le=50.0,
                label="Added points",
                help="training points added by hand, each [x, 0, y]: the x, an unused 0, the target y",
            ),
        },
        "1-D regression: fit y = f(x) plus noise",
    ),
    "sine": DatasetEntry(
        {"noise": _noise(0.0, False), "num_samples": _samples(1000), "seq_len": Arg("int", 20, ge=2, le=512, label="Sequence length", help=_SEQ_LEN)},
        "forecast the next value of a sine wave from the last seq_len values",
    ),
    "tokens": DatasetEntry(
        {
            "num_samples": _samples(2000),
            "seq_len": Arg("int", 8, ge=2, le=512, label="Sequence length", help=_SEQ_LEN),
            "task": Arg(
                "choice",
                "reverse",
                choices=TOKEN_TASKS,
                label="Task",
                help="reverse or sort the sequence, name its majority token, or predict the next token of a language of balanced brackets",
            ),
            "vocab": Arg("int", 10, ge=2, le=1000, label="Vocabulary", help="how many different token ids"),
        },
        "a toy sequence task for attention: token ids in, token ids out",
    ),
    "digits": DatasetEntry(_images(1797), "scikit-learn's 1,797 8×8 handwritten digits"),
    "mnist": DatasetEntry(_images(5000), "5,000 real 28×28 MNIST digits"),
    "mnist-boxes": DatasetEntry(
        {
            "num_samples": Arg("int", 2000, ge=10, step=100, label="Canvases", help="how many 64×64 canvases are generated, before the split"),
            "max_digits": Arg("int", 3, ge=1, le=3, label="Digits per canvas (at most)", help="each canvas holds 1 to this many MNIST digits"),
            "grid": Arg(
                "choice", 4, choices=(2, 4, 8), label="Grid S", help="the model predicts on an S×S grid of cells; a digit belongs to the cell of its centre"
            ),
            "anchors": Arg(
                "choice", 1, choices=(1, 2, 3), label="Anchors per cell", help="box shapes each cell predicts from; a digit goes to the best-fitting one"
            ),
        },
        "detection: MNIST digits pasted at random positions and sizes on 64×64 canvases, with their true boxes as YOLO grid targets",
    ),
    "mnist-masks": DatasetEntry(
        {
            "num_samples": Arg("int", 1000, ge=10, step=100, label="Canvases", help="how many canvases are generated, before the split"),
            "canvas": Arg("choice", 32, choices=(32, 48, 64), label="Canvas side", help="each canvas is this many pixels wide and high"),
            "max_digits": Arg("int", 2, ge=1, le=4, label="Digits per canvas (at most)", help="each canvas holds 1 to this many MNIST digits"),
            "masks": Arg(
                "choice",
                "digits",
                choices=("digits", "strokes"),
                label="Pixel classes",
                help="digits: a stroke pixel's class is 1 + its digit (11 classes); strokes: 1 for any digit (2 classes); the background is 0",
            ),
        },
        "segmentation: MNIST digits pasted at random places on square canvases, with a class for every pixel from their thresholded strokes",
    ),
    "coins": DatasetEntry(
        {
            "num_samples": Arg("int", 400, ge=10, step=100, label="Crops", help="how many crops of the photo are drawn, before the split"),
            "crop": Arg("choice", 48, choices=(32, 48, 64), label="Crop side", help="each crop is this many pixels wide and high"),
        },
        "segmentation: random crops of scikit-image's photo of 24 coins, a class for every pixel (coin or background); validation crops come from a strip of the photo training never sees",
    ),
    "csv": DatasetEntry(
        {
            "source": Arg("text", None, dims=200, widget="upload", help="the uploaded file"),
            "target": Arg("text", REQUIRED, dims=200, widget="column", help="name the column to predict"),
        },
        "a table you upload; classification or regression is inferred from the column to predict",
    ),
}

DATA_ARGS: dict[str, Arg] = {  # the options every dataset takes
    "val_fraction": Arg(
        "float", 0.2, ge=0, lt=1, step=0.05, widget="slider", label="Validation fraction", help="the share of the samples held out to validate on"
    ),
    "test_fraction": Arg(
        "float", 0.0, ge=0, lt=1, step=0.05, widget="slider", label="Test fraction", help="the share of the samples held out to test on, once, at the end"
    ),
    "batch_size": Arg("int", 32, ge=1, label="Batch size", help="samples in each training step"),
}

EARLY_STOPPING: dict[str, Arg] = {
    "patience": Arg("int", 5, ge=1, label="Patience (epochs)", help="epochs without a better validation loss before stopping"),
    "min_delta": Arg("float", 0.0, ge=0, step=1e-3, label="Smallest improvement", help="a validation loss lower by less does not count as better"),
    "restore_best": Arg("bool", True, label="Restore best weights", help="end with the weights of the best epoch"),
}

TRAINING: dict[str, Arg] = {
    "epochs": Arg("int", 10, ge=1, label="Epochs", help="passes over the training set"),
    "l1": Arg("float", 0.0, ge=0, step=1e-4, label="L1 penalty λ₁", help="λ₁·Σ|w| added to the loss (weights only, not biases)"),
    "l2": Arg(
        "float", 0.0, ge=0, step=1e-4, label="L2 penalty λ₂", help="λ₂·Σw² added to the loss; unlike weight_decay it flows through the optimizer's statistics"
    ),
    "max_norm": Arg(
        "float", None, gt=0, step=0.5, label="Max-norm c", help="rescale each unit's incoming weight vector to norm ≤ max_norm after each step (empty: off)"
    ),
    "grad_clip": Arg("float", None, gt=0, step=0.5, label="Clip gradient norm", help="clip the global gradient norm to this value (empty: off)"),
    "tbptt": Arg(
        "int",
        None,
        ge=1,
        label="Truncated BPTT (steps)",
        help="recurrent layers detach their hidden state every k steps, so gradients flow back at most k steps (empty: the whole sequence)",
    ),
    "early_stopping": Arg(
        "object", None, fields=EARLY_STOPPING, widget="toggle", label="Early stopping", help="stop when the validation loss has not improved for a while"
    ),
    "telemetry_every": Arg(
        "int",
        None,
        ge=1,
        label="Telemetry every (steps)",
        help="steps between activation statistics and histograms; empty: about 30 probes a run, every step in a run of under 60 steps, at most 50 apart, "
        "and further apart on large models, so that probes take at most about 5 % of the training",
    ),
    "trajectory_every": Arg("int", 10, ge=1, label="Trajectory every (steps)", help="steps between saved parameter snapshots"),
}

SEED = Arg("int", 0, ge=0, le=2**32 - 1, label="Seed", help="the seed of the initial weights, the data and the batches")


def data_option(name: str, key: str) -> Arg | None:
    """The Arg of option `key` of dataset `name` (one every set takes, or its own); None when it does not take `key`."""
    entry = DATASETS.get(name)
    return DATA_ARGS.get(key) or (entry.args.get(key) if entry else None)


def default(name: str, key: str) -> Any:
    """What dataset `name` uses when a preset leaves option `key` out (None when the option has no default)."""
    arg = data_option(name, key)
    return None if arg is None or arg.required else arg.default
