"""The preset schema: errors name the JSON path with a suggestion, hostile documents fail fast, limits, JSON Schema."""

from __future__ import annotations

import copy
import gc
import json
import time

import jsonschema
import pytest
from conftest import preset, rss_bytes

from dlviz.errors import UserError
from dlviz.model.build import build_model, summarize
from dlviz.preset import gallery
from dlviz.preset.json_schema import json_schema
from dlviz.preset.registry import BLOCKS, INITS, LOSSES, OPTIMIZERS, SCHEDULES
from dlviz.preset.schema import load_json, parse_text, validate

LENET = gallery.raw("lenet5-mnist")


def edit(change, doc=None):
    doc = copy.deepcopy(LENET if doc is None else doc)
    change(doc)
    return doc


def rejects(doc, path, *words):
    """The document fails validation (or, if it validates, its summary) with a UserError at `path`."""
    with pytest.raises(UserError) as info:
        exp = parse_text(doc) if isinstance(doc, (str, bytes)) else validate(doc)
        summarize(exp)
    err = info.value
    assert err.path == path, err
    for w in words:
        assert w in err.message, err
    assert "Traceback" not in str(err) and "\n" not in str(err)
    return err


# ---------------------------------------------------------------- did you mean


@pytest.mark.parametrize(
    "change,path,hint",
    [
        (lambda d: d["model"]["layers"][0].update(type="Conv2D"), "model.layers[0].type", "did you mean 'Conv2d'"),
        (lambda d: d["model"]["layers"][0].update(kernal_size=5), "model.layers[0].kernal_size", "did you mean 'kernel_size'"),
        (lambda d: d["data"].update(name="spirale"), "data.name", "did you mean 'spiral'"),
        (lambda d: d["optimizer"].update(type="adam"), "optimizer.type", "did you mean 'Adam'"),
        (lambda d: d["loss"].update(type="CrossEntropy"), "loss.type", "did you mean 'CrossEntropyLoss'"),
        (lambda d: d["model"].update(init="xavier_unifrom"), "model.init.type", "did you mean 'xavier_uniform'"),
        (lambda d: d.update(schedule={"type": "StepLr", "step_size": 2}), "schedule.type", "did you mean 'StepLR'"),
        (lambda d: d["optimizer"].update(momentun=0.9), "optimizer.momentun", "did you mean 'momentum'"),
        (lambda d: d["training"].update(epoch=3), "training.epoch", "did you mean 'epochs'"),
        (lambda d: d.update(seeds=1), "seeds", "did you mean 'seed'"),
        (lambda d: d["model"].update(input_shap=[1, 28, 28]), "model.input_shap", "did you mean 'input_shape'"),
        (
            lambda d: d["model"]["layers"].insert(0, {"type": "Residual", "body": [{"type": "Linear", "out_feature": 3}]}),
            "model.layers[0].body[0].out_feature",
            "did you mean 'out_features'",
        ),
        (lambda d: d["model"]["layers"].insert(0, {"type": "Concat", "branch": []}), "model.layers[0].branch", "did you mean 'branches'"),
        (
            lambda d: d["model"]["layers"].insert(0, {"type": "Concat", "branches": [[], [{"type": "relu"}]]}),
            "model.layers[0].branches[1][0].type",
            "did you mean 'ReLU'",
        ),
    ],
    ids=[
        "Conv2D",
        "kernal_size",
        "spirale",
        "adam",
        "loss",
        "init",
        "schedule",
        "momentun",
        "epoch",
        "seeds",
        "input_shap",
        "nested-key",
        "block-key",
        "nested-type",
    ],
)
def test_errors_name_the_path_and_suggest(change, path, hint):
    rejects(edit(change), path, hint)


def test_wrong_values_name_their_path():
    rejects(edit(lambda d: d["model"]["layers"][0].update(kernel_size=0)), "model.layers[0].kernel_size", "at least 1")
    rejects(edit(lambda d: d["model"]["layers"][0].update(kernel_size="5")), "model.layers[0].kernel_size")
    rejects(edit(lambda d: d["model"]["layers"][0].update(padding="full")), "model.layers[0].padding", "same")
    rejects(edit(lambda d: d["model"]["layers"][0].pop("out_channels")), "model.layers[0].out_channels", "required")
    rejects(edit(lambda d: d["model"]["layers"][0].update(bias=1)), "model.layers[0].bias")
    rejects(preset([{"type": "CELU", "alpha": 1e-308}], [4]), "model.layers[0].alpha")  # 1/alpha overflows float32
    rejects(edit(lambda d: d["model"]["layers"].append(7)), "model.layers[12]")
    rejects(edit(lambda d: d["model"]["layers"].append({})), "model.layers[12].type", "required")
    rejects(edit(lambda d: d["model"].update(input_shape=[0, 28, 28])), "model.input_shape[0]", "positive")
    rejects(edit(lambda d: d["model"].update(input_shape=[1.5, 28, 28])), "model.input_shape[0]")
    rejects(edit(lambda d: d["model"].update(input_shape=[True, 28, 28])), "model.input_shape[0]")
    rejects(edit(lambda d: d.update(seed=-1)), "seed")
    rejects(edit(lambda d: d.update({"²": 1})), "²", "unknown key")  # a digit to str.isdigit, not to int()
    rejects(edit(lambda d: d["model"].update({"3": 1})), "model.3", "unknown key")
    rejects(edit(lambda d: d.update(format="dlviz-preset/9")), "format", "dlviz-preset/1")
    rejects(edit(lambda d: d.pop("model")), "model", "required")
    rejects("[1, 2]", "preset", "object")
    rejects("{ nope", "preset", "JSON")
    rejects(b"\xff\xfe{}", "preset", "UTF-8")


# ---------------------------------------------------------------- data section


@pytest.mark.parametrize(
    "data,path,words",
    [
        ({"name": "mnist", "noise": 0.1}, "data.noise", ["does not apply to the mnist dataset"]),
        ({"name": "xor", "subset": 100}, "data.subset", ["does not apply to the xor dataset"]),
        ({"name": "circle", "classes": 3}, "data.classes", ["does not apply"]),
        ({"name": "xor", "features": ["x1", "x3"]}, "data.features[1]", ["'x3' is not one of 'x1', 'x2'"]),
        ({"name": "xor", "features": ["x1", "x1"]}, "data.features", ["twice"]),
        ({"name": "curve", "function": "sine"}, "data.function", ["did you mean 'sin'"]),
        ({"name": "tokens", "task": "revers"}, "data.task", ["did you mean 'reverse'"]),
        ({"name": "csv", "source": "a.csv"}, "data.target", ["required"]),
        ({"name": "xor", "val_fraction": 1.5}, "data.val_fraction", ["less than 1"]),
        ({"name": "xor", "val_fraction": -0.1}, "data.val_fraction", ["at least 0"]),
        ({"name": "xor", "test_fraction": 1}, "data.test_fraction", []),
        ({"name": "xor", "val_fraction": 0.5, "test_fraction": 0.45}, "data.test_fraction", ["10%"]),
        ({"name": "xor", "val_fraction": "0.2"}, "data.val_fraction", []),
        ({"name": "xor", "batch_size": 0}, "data.batch_size", []),
        ({"name": "xor", "batch_size": 10**9}, "data.batch_size", ["DLVIZ_MAX_BATCH_SIZE"]),
        ({"name": "xor", "num_samples": 10**9}, "data.num_samples", ["DLVIZ_MAX_SAMPLES"]),
        ({"name": "xor", "noise": float("nan")}, "data.noise", []),
        ({"val_fraction": 0.2}, "data.name", ["required"]),
    ],
)
def test_bad_data(data, path, words):
    rejects(edit(lambda d: d.update(data=data)), path, *words)


def test_fractions_that_leave_a_training_set_are_fine():
    validate(edit(lambda d: d.update(data={"name": "xor", "val_fraction": 0.5, "test_fraction": 0.3})))
    validate(edit(lambda d: d.update(data={"name": "xor", "val_fraction": 0.0})))


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), float("-inf"), 0.0, -0.1, 1e9])
def test_bad_learning_rates(lr):
    rejects(edit(lambda d: d["optimizer"].update(lr=lr)), "optimizer.lr")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_json_text(token):
    text = json.dumps(LENET).replace('"lr": 0.05', f'"lr": {token}')
    assert token in text
    rejects(text, "optimizer.lr", "finite")


def test_non_finite_numbers_anywhere():
    rejects(edit(lambda d: d["training"].update(l2=float("nan"))), "training.l2")
    rejects(edit(lambda d: d["model"]["layers"][1].update(type="LeakyReLU", negative_slope=float("inf"))), "model.layers[1].negative_slope", "finite")
    rejects(edit(lambda d: d["model"].update(init={"type": "normal", "std": float("nan")})), "model.init.std", "finite")


# ---------------------------------------------------------------- keys that are never preset keys


@pytest.mark.parametrize("where", ["top", "model", "layer", "optimizer", "data", "training", "init"])
@pytest.mark.parametrize("key", ["device", "dtype"])
def test_device_and_dtype_are_never_keys(where, key):
    value = "cuda" if key == "device" else "float64"
    target = {
        "top": lambda d: d,
        "model": lambda d: d["model"],
        "layer": lambda d: d["model"]["layers"][0],
        "optimizer": lambda d: d["optimizer"],
        "data": lambda d: d["data"],
        "training": lambda d: d["training"],
        "init": lambda d: d["model"].__setitem__("init", {"type": "normal"}) or d["model"]["init"],
    }[where]
    prefix = {
        "top": "",
        "model": "model.",
        "layer": "model.layers[0].",
        "optimizer": "optimizer.",
        "data": "data.",
        "training": "training.",
        "init": "model.init.",
    }[where]
    rejects(edit(lambda d: target(d).update({key: value})), prefix + key, f"unknown key '{key}'")


DUNDERS = ["__class__", "__init__", "__subclasses__", "__dict__", "__builtins__", "__import__", "__globals__"]


@pytest.mark.parametrize("name", DUNDERS)
def test_dunder_names_are_unknown_types(name):
    rejects(edit(lambda d: d["model"]["layers"][0].update(type=name)), "model.layers[0].type", "unknown layer type")
    rejects(edit(lambda d: d["optimizer"].update(type=name)), "optimizer.type", "unknown optimizer")
    rejects(edit(lambda d: d["loss"].update(type=name)), "loss.type", "unknown loss")
    rejects(edit(lambda d: d["model"].update(init=name)), "model.init.type", "unknown init")
    rejects(edit(lambda d: d.update(schedule={"type": name})), "schedule.type", "unknown schedule")
    rejects(edit(lambda d: d["model"]["layers"][0].update({name: 1})), f"model.layers[0].{name}", "unknown key")
    rejects(edit(lambda d: d["optimizer"].update({name: 1})), f"optimizer.{name}", "unknown key")
    rejects(edit(lambda d: d.update({name: 1})), name, "unknown key")


def test_inherited_attributes_are_not_table_entries():
    for table in (INITS, LOSSES, OPTIMIZERS, SCHEDULES, BLOCKS):
        for name in ("keys", "items", "get", "mro", "__len__"):
            assert name not in table


# ---------------------------------------------------------------- limits, checked before anything is allocated


@pytest.fixture(scope="module", autouse=True)
def _warm():
    summarize(gallery.load("lenet5-mnist"))  # one-time torch set-up stays out of the timings below


def fails_fast(make_call, path=None, *words):
    """make_call() raises UserError within a second of CPU and without growing the process by more than 50 MB."""
    # The CPU time of this thread alone: neither other processes nor threads that earlier tests left running in this
    # one (trainers, heartbeats) count. The heap is frozen so the collector's passes over earlier tests' objects don't.
    gc.collect()
    gc.freeze()
    try:
        before, start = rss_bytes(), time.thread_time()
        with pytest.raises(UserError) as info:
            make_call()
        seconds, grown = time.thread_time() - start, rss_bytes() - before
    finally:
        gc.unfreeze()
    assert seconds < 1.0, f"{seconds:.2f} s of CPU"
    assert grown < 50 * 2**20, f"{grown / 2**20:.0f} MB"
    if path is not None:
        assert info.value.path == path, info.value
    for w in words:
        assert w in info.value.message, info.value
    return info.value


def _pipeline(doc):
    def run():
        exp = parse_text(doc) if isinstance(doc, str) else validate(doc)
        summarize(exp)
        build_model(exp)

    return run


def test_a_trillion_unit_linear():
    doc = preset([{"type": "Linear", "out_features": 10**12}], [1000])
    fails_fast(_pipeline(doc), "model.layers[0]", "DLVIZ_MAX_PARAMS")
    exp = validate(doc)
    fails_fast(lambda: build_model(exp), "model.layers[0]")
    doc = preset([{"type": "Linear", "out_features": 2**70}], [4])
    fails_fast(_pipeline(doc), "model.layers[0]")


def test_a_hundred_thousand_layers():
    doc = preset([{"type": "ReLU"}] * 100_000, [4])
    fails_fast(_pipeline(doc), "model.layers", "DLVIZ_MAX_LAYERS")
    fails_fast(_pipeline(json.dumps(doc)), "preset", "DLVIZ_MAX_DOCUMENT_BYTES")  # 1.8 MB of text
    fails_fast(_pipeline(json.dumps(preset([{"type": "ReLU"}] * 5_000, [4]))), "model.layers", "DLVIZ_MAX_LAYERS")


def _deep_dict(depth):
    node = {"type": "ReLU"}
    for _ in range(depth):
        node = {"type": "Sequential", "layers": [node]}
    return node


def _deep_text(depth):
    return (
        '{"format": "dlviz-preset/1", "model": {"input_shape": [4], "layers": ['
        + '{"type": "Sequential", "layers": [' * depth
        + '{"type": "ReLU"}'
        + "]}" * depth
        + "]}}"
    )


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_nesting_thousands_deep(depth):
    fails_fast(_pipeline(_deep_text(depth)), "preset")
    if depth <= 5_000:
        fails_fast(_pipeline(preset([_deep_dict(depth)], [4])))


def test_deep_lists_outside_the_model():
    fails_fast(_pipeline('{"format": "dlviz-preset/1", "name": ' + "[" * 50_000 + "]" * 50_000 + "}"), "preset")
    doc = []
    for _ in range(5_000):
        doc = [doc]
    fails_fast(_pipeline({"format": "dlviz-preset/1", "name": doc, "model": {"input_shape": [4]}}), "preset")


def test_blocks_nested_just_past_the_depth_limit():
    err = fails_fast(_pipeline(preset([_deep_dict(33)], [4])))
    assert "DLVIZ_MAX_DEPTH" in err.message or "nested" in err.message
    validate(preset([_deep_dict(30)], [4]))


def test_an_oversize_document():
    text = json.dumps(edit(lambda d: d.update(description="x" * 2_000_000)))
    fails_fast(_pipeline(text), "preset", "DLVIZ_MAX_DOCUMENT_BYTES")
    fails_fast(lambda: load_json(text.encode()), "preset", "DLVIZ_MAX_DOCUMENT_BYTES")


@pytest.mark.parametrize("shape", [[3, 100_000, 100_000], [10**30], [2**40, 2**40, 2**40, 2**40], [1] * 5])
def test_huge_input_shapes(shape):
    fails_fast(_pipeline(preset([{"type": "ReLU"}], shape)), "model.input_shape")


@pytest.mark.parametrize(
    "layer,shape",
    [
        ({"type": "Conv2d", "out_channels": 10**9, "kernel_size": 3}, [3, 32, 32]),
        ({"type": "Conv2d", "out_channels": 4, "kernel_size": 10**9}, [3, 32, 32]),
        ({"type": "Conv2d", "out_channels": 4, "kernel_size": 1, "padding": 10**9}, [3, 32, 32]),
        ({"type": "ConvTranspose2d", "out_channels": 4, "kernel_size": 1, "stride": 10**9}, [3, 32, 32]),
        ({"type": "Upsample", "scale_factor": 1e6}, [3, 32, 32]),
        ({"type": "Upsample", "size": 10**9}, [3, 32, 32]),
        ({"type": "Embedding", "num_embeddings": 10**12, "embedding_dim": 10**6}, [8]),
        ({"type": "LSTM", "hidden_size": 10**9}, [8, 4]),
        ({"type": "TransformerEncoderLayer", "dim_feedforward": 10**12}, [8, 4]),
        ({"type": "Bilinear", "out_features": 10**6}, [10**3]),
    ],
)
def test_huge_layers(layer, shape):
    fails_fast(_pipeline(preset([layer], shape)), "model.layers[0]")


def test_limits_come_from_the_environment(monkeypatch):
    lenet = gallery.load("lenet5-mnist")
    monkeypatch.setenv("DLVIZ_MAX_PARAMS", "1000")
    fails_fast(lambda: summarize(lenet), "model.layers[3]", "DLVIZ_MAX_PARAMS")  # 156 + 2,416 params so far
    monkeypatch.delenv("DLVIZ_MAX_PARAMS")
    assert summarize(lenet).total_params == 61_706

    monkeypatch.setenv("DLVIZ_MAX_TRAIN_PARAMS", "50_000")
    assert summarize(lenet).total_params == 61_706  # a summary is not a training run
    fails_fast(lambda: build_model(lenet), "model.layers[7]")  # 156 + 2,416 + 48,120 > 50,000
    monkeypatch.delenv("DLVIZ_MAX_TRAIN_PARAMS")

    monkeypatch.setenv("DLVIZ_MAX_LAYERS", "5")
    fails_fast(lambda: validate(LENET), "model.layers", "DLVIZ_MAX_LAYERS")
    monkeypatch.setenv("DLVIZ_MAX_LAYERS", "2000")
    validate(preset([{"type": "ReLU"}] * 1_500, [4]))
    monkeypatch.delenv("DLVIZ_MAX_LAYERS")
    fails_fast(lambda: validate(preset([{"type": "ReLU"}] * 1_500, [4])), "model.layers")

    monkeypatch.setenv("DLVIZ_MAX_DEPTH", "3")
    fails_fast(lambda: validate(preset([_deep_dict(4)], [4])))
    validate(preset([_deep_dict(3)], [4]))
    monkeypatch.delenv("DLVIZ_MAX_DEPTH")

    monkeypatch.setenv("DLVIZ_MAX_DOCUMENT_BYTES", "100")
    fails_fast(lambda: parse_text(json.dumps(LENET)), "preset", "DLVIZ_MAX_DOCUMENT_BYTES")
    monkeypatch.delenv("DLVIZ_MAX_DOCUMENT_BYTES")

    monkeypatch.setenv("DLVIZ_MAX_INPUT_ELEMENTS", "100")
    fails_fast(lambda: validate(LENET), "model.input_shape", "DLVIZ_MAX_INPUT_ELEMENTS")
    monkeypatch.setenv("DLVIZ_MAX_INPUT_ELEMENTS", "2_000_000")
    validate(preset([], [2, 1000, 1000]))
    monkeypatch.delenv("DLVIZ_MAX_INPUT_ELEMENTS")

    monkeypatch.setenv("DLVIZ_MAX_ACTIVATION_ELEMENTS", "1000")
    fails_fast(lambda: summarize(lenet), "model.layers[0]", "DLVIZ_MAX_ACTIVATION_ELEMENTS")  # 6·28·28 = 4,704
    monkeypatch.delenv("DLVIZ_MAX_ACTIVATION_ELEMENTS")

    monkeypatch.setenv("DLVIZ_MAX_EPOCHS", "3")
    fails_fast(lambda: validate(LENET), "training.epochs", "DLVIZ_MAX_EPOCHS")  # the preset asks for 5
    monkeypatch.setenv("DLVIZ_MAX_BATCH_SIZE", "32")
    monkeypatch.delenv("DLVIZ_MAX_EPOCHS")
    fails_fast(lambda: validate(LENET), "data.batch_size", "DLVIZ_MAX_BATCH_SIZE")  # the preset asks for 64


# ---------------------------------------------------------------- JSON Schema and round trips


def test_json_schema_is_a_valid_schema():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema)  # plain JSON


@pytest.mark.parametrize("name", gallery.names())
def test_built_in_presets_satisfy_the_schema_and_round_trip(name):
    validator = jsonschema.Draft202012Validator(json_schema())
    raw = gallery.raw(name)
    assert not list(validator.iter_errors(raw))
    exp = gallery.load(name)
    assert validate(exp.to_dict()) == exp
    assert validate(exp.to_dict(full=True)) == exp
    assert parse_text(json.dumps(exp.to_dict())) == exp
    assert not list(validator.iter_errors(exp.to_dict()))
    assert not list(validator.iter_errors(exp.to_dict(full=True)))
    assert validate(raw) == exp


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["model"]["layers"][0].update(type="Conv2D"),
        lambda d: d["model"]["layers"][0].update(kernal_size=5),
        lambda d: d["model"]["layers"][0].update(device="cuda"),
        lambda d: d["model"]["layers"][0].update(kernel_size=0),
        lambda d: d["optimizer"].update(type="adam"),
        lambda d: d.update(dtype="float16"),
        lambda d: d["model"].pop("input_shape"),
        lambda d: d["model"]["layers"].append({"type": "Residual", "body": [{"type": "__class__"}]}),
    ],
    ids=["type", "key", "device", "value", "optimizer", "dtype", "missing", "nested"],
)
def test_the_schema_rejects_what_validate_rejects(change):
    doc = edit(change)
    with pytest.raises(UserError):
        validate(doc)
    assert list(jsonschema.Draft202012Validator(json_schema()).iter_errors(doc))


def test_validation_errors_carry_their_path_as_data():
    """A validator's sub-path reaches UserError.path as a tuple, never as text parsed out of the message."""
    import pickle
    from pathlib import Path

    from dlviz.errors import FieldError

    src = Path(__file__).resolve().parent.parent / "dlviz"
    assert not [p.name for p in src.rglob("*.py") if "\\0" in p.read_text()]  # no "key\0message" strings left
    err = pickle.loads(pickle.dumps(FieldError("must be at least 1, got 0", ("layers", 3, "out_features"))))
    assert err.loc == ("layers", 3, "out_features") and err.user_error("model").path == "model.layers[3].out_features"
    with pytest.raises(UserError) as info:
        validate({**gallery.raw("xor"), "model": {"input_shape": [2], "layers": [{"type": "Linear", "out_features": 0}]}})
    assert info.value.path == "model.layers[0].out_features" and info.value.message.startswith("must be at least 1")
    with pytest.raises(UserError) as info:
        validate({**gallery.raw("xor"), "data": {**gallery.raw("xor")["data"], "features": ["x1", "x9"]}})
    assert info.value.path == "data.features[1]" and "is not one of" in info.value.message
