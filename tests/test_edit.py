"""Tests for dlviz.edit: preset edits addressed by JSON paths, checked against the schema and the summary."""

import copy

import pytest

from dlviz.errors import UserError
from dlviz.model import build
from dlviz.model.build import summarize
from dlviz.preset import edit, gallery
from dlviz.preset.registry import ALL_LAYERS, BLOCKS, GROUPS
from dlviz.preset.schema import validate

TOP = edit.TOP


def doc(layers, input_shape=(2,), **model):
    return {
        "format": "dlviz-preset/1",
        "name": "t",
        "data": {"name": "xor"},
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01},
        "model": {"input_shape": list(input_shape), **model, "layers": layers},
    }


def params(d) -> int:
    return summarize(validate(d)).total_params


MLP = doc([{"type": "Linear", "out_features": 8}, {"type": "ReLU"}, {"type": "Linear", "out_features": 2}])
BLOCKY = doc(
    [
        {"type": "Linear", "out_features": 4},
        {"type": "Residual", "body": [{"type": "Linear", "out_features": 4}, {"type": "Tanh"}]},
        {"type": "Concat", "branches": [[{"type": "Sigmoid"}], [{"type": "Sequential", "name": "g", "layers": [{"type": "ReLU"}]}]]},
    ]
)


# ---------------------------------------------------------------- new layers


@pytest.mark.parametrize("type_name", [*ALL_LAYERS, *BLOCKS])
def test_every_new_layer_passes_the_schema(type_name):
    layer = edit.new_layer(type_name)
    assert layer["type"] == type_name
    validate(doc([layer], (3, 8, 8)))  # argument checks are per layer, so any input shape will do here


def test_new_layers_get_the_documented_defaults():
    assert edit.new_layer("Linear") == {"type": "Linear", "out_features": 16}
    assert edit.new_layer("Conv2d") == {"type": "Conv2d", "out_channels": 8, "kernel_size": 3}
    assert edit.new_layer("MaxPool2d") == {"type": "MaxPool2d", "kernel_size": 2}
    assert edit.new_layer("Residual") == {"type": "Residual", "body": []}
    assert edit.new_layer("Concat") == {"type": "Concat", "branches": [[], []]}
    assert edit.new_layer("ReLU") == {"type": "ReLU"}


def test_new_layer_rejects_unknown_types():
    with pytest.raises(UserError):
        edit.new_layer("Conv3d")


def test_layer_types_cover_every_group_and_every_type_once():
    seen = [t for g in GROUPS for t in edit.layer_types(g)]
    assert sorted(seen) == sorted([*ALL_LAYERS, *BLOCKS])
    assert edit.layer_types("blocks") == ["Residual", "Concat", "Sequential"]


# ---------------------------------------------------------------- inserting


def test_add_layer_appends_and_changes_the_parameter_count():
    out = edit.add_layer(MLP, TOP, "Linear")
    assert out["model"]["layers"][-1] == {"type": "Linear", "out_features": 16}
    assert params(out) == params(MLP) + 2 * 16 + 16


def test_insert_at_an_index_and_the_input_is_untouched():
    before = copy.deepcopy(MLP)
    out = edit.add_layer(MLP, TOP, "Tanh", index=0)
    assert [l["type"] for l in out["model"]["layers"]] == ["Tanh", "Linear", "ReLU", "Linear"]
    assert MLP == before


@pytest.mark.parametrize("container", [(*TOP, 1, "body"), (*TOP, 1, "shortcut"), (*TOP, 2, "branches", 0), (*TOP, 2, "branches", 1, 0, "layers")])
def test_insert_into_every_kind_of_container(container):
    out = edit.add_layer(BLOCKY, container, "Identity")
    assert edit.get(out, container)[-1] == {"type": "Identity"}
    validate(out)


def test_a_linear_shortcut_matches_the_body():
    out = edit.add_layer(BLOCKY, (*TOP, 1, "shortcut"), "Linear")
    out = edit.set_arg(out, (*TOP, 1, "shortcut", 0), "out_features", 4)
    assert params(out) == params(BLOCKY) + 4 * 4 + 4


def test_add_and_remove_branches():
    out = edit.add_branch(BLOCKY, (*TOP, 2))
    assert edit.get(out, (*TOP, 2))["branches"][-1] == []
    assert len(edit.get(out, (*TOP, 2))["branches"]) == 3
    out = edit.remove_branch(out, (*TOP, 2), 0)
    assert edit.get(out, (*TOP, 2))["branches"][0][0]["type"] == "Sequential"
    one = edit.remove_branch(out, (*TOP, 2), 0)
    with pytest.raises(UserError, match="at least one branch"):
        edit.remove_branch(one, (*TOP, 2), 0)


# ---------------------------------------------------------------- moving and deleting


def test_move_up_and_down_and_clamp_at_the_ends():
    types = lambda d: [l["type"] for l in d["model"]["layers"]]  # noqa: E731
    assert types(edit.move(MLP, (*TOP, 1), -1)) == ["ReLU", "Linear", "Linear"]
    assert types(edit.move(MLP, (*TOP, 1), 1)) == ["Linear", "Linear", "ReLU"]
    assert types(edit.move(MLP, (*TOP, 0), -1)) == types(MLP)
    assert types(edit.move(MLP, (*TOP, 2), 5)) == types(MLP)


def test_move_inside_a_block():
    out = edit.move(BLOCKY, (*TOP, 1, "body", 1), -1)
    assert [l["type"] for l in edit.get(out, (*TOP, 1, "body"))] == ["Tanh", "Linear"]


def test_delete_removes_a_layer_and_everything_inside_it():
    out = edit.delete(BLOCKY, (*TOP, 1))
    assert [l["type"] for l in out["model"]["layers"]] == ["Linear", "Concat"]
    assert params(out) == 2 * 4 + 4


def test_empty_model_keeps_input_data_loss_and_optimizer():
    out = edit.empty_model(gallery.raw("lenet5-mnist"))
    assert out["model"] == {"input_shape": [1, 28, 28], "layers": []}
    for key in ("data", "loss", "optimizer", "training", "format"):
        assert out[key] == gallery.raw("lenet5-mnist")[key]
    assert params(out) == 0


# ---------------------------------------------------------------- values


def test_set_arg_writes_a_value_and_drops_a_default():
    out = edit.set_arg(MLP, (*TOP, 0), "bias", False)
    assert out["model"]["layers"][0]["bias"] is False
    assert params(out) == params(MLP) - 8
    back = edit.set_arg(out, (*TOP, 0), "bias", True)
    assert "bias" not in back["model"]["layers"][0]
    assert edit.arg_value(back["model"]["layers"][0], "bias") is True


def test_set_arg_keeps_required_values_even_when_equal_to_a_default():
    out = edit.set_arg(MLP, (*TOP, 0), "out_features", 3)
    assert out["model"]["layers"][0]["out_features"] == 3


def test_set_arg_rejects_unknown_arguments():
    with pytest.raises(UserError, match="no argument 'kernel'"):
        edit.set_arg(MLP, (*TOP, 0), "kernel", 3)


def test_set_name_and_clear_it():
    out = edit.set_name(MLP, (*TOP, 0), "  hidden ")
    assert out["model"]["layers"][0]["name"] == "hidden"
    assert "name" not in edit.set_name(out, (*TOP, 0), "")["model"]["layers"][0]


def test_parse_ints():
    assert edit.parse_ints("1, 28, 28") == [1, 28, 28]
    assert edit.parse_ints("[3 32 32]") == [3, 32, 32]
    assert edit.parse_ints("2") == [2]
    assert edit.parse_ints("3×32x32") == [3, 32, 32]
    with pytest.raises(UserError, match="whole numbers"):
        edit.parse_ints("1, a")


def test_parse_value_per_kind():
    conv = ALL_LAYERS["Conv2d"].args
    assert edit.parse_value(conv["kernel_size"], "3") == 3
    assert edit.parse_value(conv["kernel_size"], "3, 5") == [3, 5]
    assert edit.parse_value(conv["padding"], "same") == "same"
    assert edit.parse_value(conv["stride"], "") == 1  # empty is the default
    pool = ALL_LAYERS["MaxPool2d"].args
    assert edit.parse_value(pool["stride"], "") is None
    assert edit.parse_value(ALL_LAYERS["Unflatten"].args["unflattened_size"], "1, 28, 28") == [1, 28, 28]
    assert edit.parse_value(ALL_LAYERS["Unflatten"].args["unflattened_size"], "784") == [784]
    assert edit.parse_value(ALL_LAYERS["Upsample"].args["scale_factor"], "2") == 2.0
    with pytest.raises(UserError, match="at least 1"):
        edit.parse_value(conv["kernel_size"], "0")
    with pytest.raises(UserError, match="needs a value"):
        edit.parse_value(conv["kernel_size"], "")
    with pytest.raises(UserError, match="like 3 or 3, 5"):
        edit.parse_value(conv["kernel_size"], "3, x", "kernel_size")


def test_format_value_round_trips_through_parse_value():
    conv = ALL_LAYERS["Conv2d"].args
    for arg, value in ((conv["kernel_size"], [3, 5]), (conv["padding"], "same"), (conv["stride"], 2), (ALL_LAYERS["Upsample"].args["scale_factor"], 1.5)):
        assert edit.parse_value(arg, edit.format_value(arg, value)) == value
    assert edit.format_value(ALL_LAYERS["MaxPool2d"].args["stride"], None) == ""


def test_set_input_shape_changes_inferred_sizes():
    out = edit.set_input_shape(MLP, [5])
    assert params(out) == params(MLP) + 3 * 8


# ---------------------------------------------------------------- whole-model edits


def test_set_all_activations_replaces_every_activation_in_place():
    d = edit.set_name(BLOCKY, (*TOP, 2, "branches", 0, 0), "gate")
    out = edit.set_all_activations(d, "GELU")
    types = [layer["type"] for _, layer, _ in edit.walk(out)]
    assert types == ["Linear", "Residual", "Linear", "GELU", "Concat", "GELU", "Sequential", "GELU"]
    assert edit.get(out, (*TOP, 2, "branches", 0, 0)) == {"type": "GELU", "name": "gate"}
    assert params(out) == params(BLOCKY)


def test_set_all_activations_drops_arguments_of_the_old_type():
    d = doc([{"type": "LeakyReLU", "negative_slope": 0.2}])
    assert edit.set_all_activations(d, "ReLU")["model"]["layers"] == [{"type": "ReLU"}]
    with pytest.raises(UserError):
        edit.set_all_activations(d, "Linear")


def test_set_all_inits_clears_overrides_but_not_prelu_slopes():
    d = doc(
        [
            {"type": "Linear", "out_features": 4, "init": "zeros"},
            {"type": "PReLU", "init": 0.1},
            {"type": "Residual", "body": [{"type": "Linear", "out_features": 4, "init": "ones"}]},
        ],
        init="orthogonal",
    )
    out = edit.set_all_inits(d, "kaiming_normal")
    assert out["model"]["init"] == "kaiming_normal"
    assert [layer.get("init") for _, layer, _ in edit.walk(out)] == [None, 0.1, None, None]
    validate(out)
    assert "init" not in edit.set_all_inits(d, "default")["model"]
    assert edit.set_all_inits(d, {"type": "normal", "std": 0.1})["model"]["init"] == {"type": "normal", "std": 0.1}
    with pytest.raises(UserError):
        edit.set_all_inits(d, "glorot")


# ---------------------------------------------------------------- reading


def test_containers_list_every_insertion_point_with_a_label():
    found = edit.containers(BLOCKY)
    assert [p for p, _ in found] == [
        TOP,
        (*TOP, 1, "body"),
        (*TOP, 1, "shortcut"),
        (*TOP, 2, "branches", 0),
        (*TOP, 2, "branches", 1),
        (*TOP, 2, "branches", 1, 0, "layers"),
    ]
    labels = dict(found)
    assert labels[TOP] == "Top level"
    assert labels[(*TOP, 1, "shortcut")] == "layers[1] Residual › shortcut"
    assert labels[(*TOP, 2, "branches", 1)] == "layers[2] Concat › branch 2"
    assert labels[(*TOP, 2, "branches", 1, 0, "layers")] == "layers[2].branches[1][0] Sequential “g” › layers"


def test_walk_visits_parents_first_with_depths():
    assert [(p[2:], d) for p, _, d in edit.walk(BLOCKY)][:4] == [((0,), 0), ((1,), 0), ((1, "body", 0), 1), ((1, "body", 1), 1)]


def test_layer_labels():
    assert edit.layer_label({"type": "Conv2d", "out_channels": 6, "kernel_size": 5}) == "Conv2d 6@5×5"
    assert edit.layer_label({"type": "Conv2d", "out_channels": 6, "kernel_size": [3, 1], "stride": 2}) == "Conv2d 6@3×1 /2"
    assert edit.layer_label({"type": "Conv1d", "out_channels": 4, "kernel_size": 3}) == "Conv1d 4@3"
    assert edit.layer_label({"type": "Linear", "out_features": 120}) == "Linear 120"
    assert edit.layer_label({"type": "MaxPool2d", "kernel_size": 2}) == "MaxPool2d 2×2"
    assert edit.layer_label({"type": "MaxPool2d", "kernel_size": 3, "stride": 2}) == "MaxPool2d 3×3 /2"
    assert edit.layer_label({"type": "Dropout"}) == "Dropout p=0.5"
    assert edit.layer_label({"type": "Sequential", "name": "layer1", "layers": []}) == "Sequential “layer1”"
    assert edit.layer_label({"type": "ReLU"}) == "ReLU"


def test_parse_path_inverts_json_path():
    assert edit.parse_path("model.layers[3].body[0].kernel_size") == ("model", "layers", 3, "body", 0, "kernel_size")
    assert edit.parse_path("model.layers[2].branches[1][0]") == ("model", "layers", 2, "branches", 1, 0)
    assert edit.parse_path("") == ()


# ---------------------------------------------------------------- preview while editing


def test_preview_of_a_valid_preset():
    p = build.preview(MLP)
    assert p.error is None and not p.partial
    assert p.summary.total_params == params(MLP)
    assert p.model["layers"] == MLP["model"]["layers"]


def test_preview_of_an_impossible_stack_summarises_the_layers_before_it():
    bad = edit.add_layer(MLP, TOP, "Conv2d", index=2)  # a Conv2d on [8] features cannot work
    p = build.preview(bad)
    assert p.error.path == "model.layers[2]" and "Conv2d" in p.error.message
    assert p.partial and [r.path for r in p.summary.rows] == ["model.layers[0]", "model.layers[1]"]
    assert edit.error_layer(p.error) == (*TOP, 2)


def test_preview_of_a_bad_argument_inside_a_block():
    bad = edit.set_arg(BLOCKY, (*TOP, 1, "body", 0), "out_features", 0)
    p = build.preview(bad)
    assert p.error.path == "model.layers[1].body[0].out_features"
    assert edit.error_layer(p.error) == (*TOP, 1, "body", 0)
    assert edit.error_at(p.error, (*TOP, 1)) and edit.error_at(p.error, (*TOP, 1, "body", 0))
    assert not edit.error_at(p.error, (*TOP, 1, "body", 1)) and not edit.error_at(p.error, (*TOP, 0))
    assert p.partial and p.summary.total_params == 2 * 4 + 4


def test_preview_of_a_problem_outside_the_layers_has_no_summary():
    bad = {**MLP, "model": {**MLP["model"], "input_shape": [0]}}
    p = build.preview(bad)
    assert p.summary is None and p.error.path == "model.input_shape[0]"
    assert edit.error_layer(p.error) is None


def test_error_layer_inside_a_concat_branch():
    err = UserError("model.layers[2].branches[1][0].layers[0].p", "must be less than 1")
    assert edit.error_layer(err) == (*TOP, 2, "branches", 1, 0, "layers", 0)
    assert edit.error_layer(UserError("model.layers[2].branches", "needs at least one branch")) == (*TOP, 2)


@pytest.mark.parametrize("name", gallery.names())
def test_gallery_presets_keep_their_counts_through_edits(name):
    d = gallery.raw(name)
    last = len(d["model"]["layers"]) - 1
    assert edit.move(edit.move(d, (*TOP, 0), 1), (*TOP, min(1, last)), -1) == d
    relu = edit.set_all_activations(d, "ReLU")
    assert params(relu) == params(d)  # the gallery's activations carry no parameters
    assert [p for p, _, _ in edit.walk(relu)] == [p for p, _, _ in edit.walk(d)]


def test_a_problem_names_the_layer_as_the_build_page_shows_it_then_its_json_path():
    doc = {
        "format": "dlviz-preset/1",
        "model": {
            "input_shape": [1, 28, 28],
            "layers": [
                {"type": "Flatten"},
                {"type": "Linear", "out_features": 120},
                {"type": "Residual", "body": [{"type": "Linear", "out_features": 120}, {"type": "Tanh"}]},
                {"type": "Concat", "branches": [[], [{"type": "Sequential", "layers": [{"type": "Conv2d", "out_channels": 6, "kernel_size": 5}]}]]},
            ],
        },
    }
    err = UserError("model.layers[1].out_features", "must be at least 1")
    assert edit.name_layers(doc, str(err)) == "layer 1, Linear 120 (model.layers[1].out_features): must be at least 1"
    assert (
        edit.name_layers(doc, "the gradient norm of model.layers[1].weight is 1e-9.")
        == "the gradient norm of layer 1, Linear 120 (model.layers[1].weight) is 1e-9."
    )
    assert edit.name_layers(doc, "layers[2].body[0].weight is 3× smaller than layers[1].weight.") == (
        "layer 0 of the body of layer 2, Linear 120 (layers[2].body[0].weight) is 3× smaller than layer 1, Linear 120 (layers[1].weight)."
    )
    assert edit.layer_place(doc, (*edit.TOP, 2, "body", 1)) == "layer 1 of the body of layer 2, Tanh"
    assert edit.layer_place(doc, (*edit.TOP, 3, "branches", 1, 0, "layers", 0)) == "layer 0 of layer 0 of branch 1 of layer 3, Conv2d 6@5×5"
    # a diagnosis's "(kind, share)" after a path joins the path's brackets instead of naming the kind twice
    assert edit.name_layers(doc, "the units of model.layers[1] (Linear, 60%) and layers[2] (ReLU, 90%) die.") == (
        "the units of layer 1, Linear 120 (model.layers[1], 60%) and layer 2, Residual (layers[2]) (ReLU, 90%) die."
    )
    # a problem outside the layers keeps its plain form
    assert edit.name_layers(doc, "model.input_shape: x") == "model.input_shape: x"
    assert edit.name_layers(doc, "model.layers[9]: x") == "model.layers[9]: x"  # no such layer: left as it is


def test_a_residual_whose_body_loses_its_border_says_which_convolution_needs_padding():
    conv = {"type": "Conv2d", "out_channels": 8, "kernel_size": 3}
    doc = {
        "format": "dlviz-preset/1",
        "model": {"input_shape": [8, 28, 28], "layers": [{"type": "Residual", "body": [conv, {"type": "ReLU"}, {**conv, "padding": 1}]}]},
    }
    with pytest.raises(UserError) as caught:
        summarize(validate(doc))
    assert caught.value.path == "model.layers[0]"
    assert ("the body's 3×3 convolution without padding (model.layers[0].body[0]) shrinks 28×28 to 26×26; give it padding 1") in caught.value.message
    assert "kernel_size 1" not in caught.value.message  # a 1×1 shortcut cannot grow the map back
    # with the channels changed too, both fixes are named
    doc["model"]["layers"][0]["body"][2]["out_channels"] = 16
    with pytest.raises(UserError, match="give it padding 1; and a Conv2d with kernel_size 1 in the shortcut takes 8 channels to 16"):
        summarize(validate(doc))
    # a stride-2 body still gets the projection shortcut advice
    doc["model"]["layers"][0]["body"] = [{**conv, "padding": 1, "stride": 2}]
    with pytest.raises(UserError, match="give the shortcut a Conv2d with kernel_size 1 and the body's stride"):
        summarize(validate(doc))
