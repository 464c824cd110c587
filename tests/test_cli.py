"""The command line as a user runs it: a subprocess, exit codes, stdout and stderr (DESIGN.md's CLI contract)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlviz.preset import gallery

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, stdin=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "dlviz", *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    return p.returncode, p.stdout, p.stderr


def user_error(code, out, err):
    """Exit 2, nothing on stdout, one line on stderr, no traceback."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_validate_ok():
    code, out, err = cli("validate", "lenet5-mnist")
    assert code == 0 and err == "" and "LeNet-5" in out


@pytest.mark.parametrize(
    "doc,words",
    [
        ("{ nope", ["not valid JSON", "line 1"]),
        (
            json.dumps({**gallery.raw("lenet5-mnist"), "model": {"input_shape": [784], "layers": gallery.raw("lenet5-mnist")["model"]["layers"]}}),
            ["model.layers[0]", "Unflatten"],
        ),
        (json.dumps({"format": "dlviz-preset/1", "model": {"input_shape": [4]}, "\nkey\x1b[2J": 1}), ["unknown key"]),
        (
            '{"format": "dlviz-preset/1", "model": {"input_shape": [4], "layers": [' + '{"type": "Sequential", "layers": [' * 5000 + "]}" * 5000 + "]}}",
            ["nested"],
        ),
    ],
    ids=["bad-json", "shape", "control-characters", "deep"],
)
def test_validate_rejects_with_one_line(doc, words, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(doc)
    line = user_error(*cli("validate", str(path)))
    for w in words:
        assert w in line


def test_bad_references():
    assert "did you mean 'lenet5-mnist'" in user_error(*cli("summary", "lenet5-mnst"))
    assert "not valid JSON" in user_error(*cli("validate", "-", stdin="[1, 2"))
    assert "share link" in user_error(*cli("validate", "http://localhost:8501/?preset=AAAA"))


def test_summary_json_follows_the_contract():
    code, out, err = cli("summary", "resnet18", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert {"total_params", "trainable_params", "flops", "output_shape", "receptive_field", "layers"} <= set(s)
    assert all(isinstance(s[k], int) and not isinstance(s[k], bool) for k in ("total_params", "trainable_params", "flops"))
    assert s["total_params"] == 11_689_512 and s["output_shape"] == [1000]
    assert s["receptive_field"] == {"size": 435, "stride": 32, "padding": 217}
    for row in s["layers"]:
        assert {"path", "type", "output_shape", "trainable_params", "non_trainable_params", "flops", "receptive_field"} <= set(row)
    paths = [r["path"] for r in s["layers"]]
    assert paths[0] == "model.layers[0]" and "model.layers[4].layers[0].body[0]" in paths
    assert "model.layers[5].layers[0].shortcut[0]" in paths
    bn = next(r for r in s["layers"] if r["type"] == "BatchNorm2d")
    assert bn["trainable_params"] == 128  # weight and bias of 64 channels; running statistics are buffers


def test_summary_of_an_mlp_has_no_receptive_field_and_reads_stdin():
    code, out, err = cli("summary", "-", "--json", stdin=json.dumps(gallery.raw("xor")))
    assert code == 0, err
    s = json.loads(out)
    assert s["receptive_field"] is None and s["total_params"] == (2 + 1) * 8 + (8 + 1) * 2 and s["output_shape"] == [2]


def test_summary_text():
    code, out, err = cli("summary", "lenet5-mnist")
    assert code == 0, err
    assert "61,706" in out and "833,040" in out and "16/4/2" in out


def test_list_and_schema():
    code, out, err = cli("list", "--json")
    assert code == 0, err
    items = json.loads(out)
    assert sorted(i["name"] for i in items) == sorted(gallery.names())
    for i in items:
        assert set(i) == {"name", "title", "description"}
        assert i["title"] == gallery.raw(i["name"])["name"] and "\n" not in i["description"]
    code, out, err = cli("schema")
    assert code == 0, err
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/") and "LayerSpec" in schema["$defs"]


def test_the_schema_lists_each_dataset_s_options_with_the_defaults_and_ranges_training_uses():
    import jsonschema

    from dlviz.data.datasets import option
    from dlviz.preset.options import DATA_ARGS, DATASETS
    from dlviz.preset.schema import DataSpec

    code, out, err = cli("schema")
    assert code == 0, err
    schema = json.loads(out)
    sets = {s["properties"]["name"]["const"]: s for s in schema["$defs"]["DataSpec"]["oneOf"]}
    assert list(sets) == list(DATASETS)
    for name, s in sets.items():
        assert set(s["properties"]) == {"name", *DATASETS[name].args, *DATA_ARGS} and s["additionalProperties"] is False
        spec = DataSpec.model_validate({"name": name, **({"target": "y"} if name == "csv" else {})})
        for key, prop in s["properties"].items():
            if key != "name" and key not in s["required"]:
                assert prop["default"] == option(spec, key), (name, key)  # what the data layer uses without the key
    assert sets["csv"]["required"] == ["name", "target"]
    assert sets["circle"]["properties"]["noise"]["maximum"] == 0.5 and sets["moons"]["properties"]["noise"]["maximum"] == 10
    assert sets["tokens"]["properties"]["task"]["enum"] == ["reverse", "sort", "majority", "brackets"]
    validator = jsonschema.Draft202012Validator(schema)
    doc = gallery.raw("lenet5-mnist")
    assert not list(validator.iter_errors(doc))
    for data in ({"name": "mnist", "noise": 0.1}, {"name": "circle", "noise": 0.6}, {"name": "digits", "subset": 2000}):
        assert list(validator.iter_errors({**doc, "data": data})), data  # the schema refuses what validate refuses
        assert user_error(*cli("validate", "-", stdin=json.dumps({**doc, "data": data}))).startswith(f"error: data.{[*data][1]}:")


def test_share_link_round_trip():
    code, link, err = cli("share", "lenet5-mnist", "--base-url", "https://example.org/app/")
    assert code == 0, err
    link = link.strip()
    assert link.startswith("https://example.org/app/?preset=") and len(link.splitlines()) == 1
    code, out, err = cli("summary", link, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["total_params"] == 61_706 and s["receptive_field"] == {"size": 16, "stride": 4, "padding": 2}
