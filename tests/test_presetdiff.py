"""Telling runs apart: the preset hash ignores how a preset is written, and labels name exactly the fields that differ."""

import copy

from dlviz.preset import gallery
from dlviz.preset.diff import differences, leaves, preset_hash
from dlviz.preset.schema import validate


def test_the_hash_is_the_canonical_preset_s():
    raw = gallery.raw("xor")
    reordered = dict(reversed(list(raw.items())))
    assert preset_hash(validate(raw)) == preset_hash(validate(reordered)) == preset_hash(validate(raw).to_dict())
    changed = copy.deepcopy(raw)
    changed["optimizer"]["lr"] = 0.5
    assert preset_hash(validate(changed)) != preset_hash(validate(raw))


def test_differences_name_the_fields_that_differ_and_nothing_else():
    a = validate(gallery.raw("xor")).to_dict()
    b = copy.deepcopy(a)
    b["optimizer"]["lr"] = 0.5
    b["model"]["layers"][0]["out_features"] = 3
    da, db = differences([a, b])
    assert da.split(", ") == [f"model.layers[0].out_features {a['model']['layers'][0]['out_features']}", f"optimizer.lr {a['optimizer']['lr']:g}"]
    assert db == "model.layers[0].out_features 3, optimizer.lr 0.5"
    assert differences([a, a]) == ["", ""]
    renamed = {**a, "name": "another name"}
    assert differences([a, renamed]) == [f"name {a['name']}", "name another name"]  # only the name differs: it is shown
    assert "model.input_shape" in leaves(a) and leaves(a)["model.input_shape"] == a["model"]["input_shape"]
