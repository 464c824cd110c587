"""Tests for the Build page's figure builders: the architecture graph and the summary table."""

import xml.etree.ElementTree as ET

import pytest

from dlviz.figures import build as figures
from dlviz.model import build
from dlviz.model.build import summarize
from dlviz.preset import edit, gallery
from dlviz.preset.registry import shape_str
from dlviz.preset.schema import validate


def model_doc(layers, input_shape):
    return {"format": "dlviz-preset/1", "model": {"input_shape": list(input_shape), "layers": layers}}


def drawing(summary, model) -> tuple[ET.Element, list[tuple[str, list[str]]], list[str]]:
    """The architecture SVG parsed: its root, each node as (label, tooltip lines), and every other text."""
    root = ET.fromstring(figures.architecture_svg(summary, model))
    nodes = [(g.find("{*}text").text, g.find("{*}title").text.split("\n")) for g in root.iter("g")]
    inside = {id(t) for g in root.iter("g") for t in g.iter("text")}
    texts = [t.text for t in root.iter("text") if id(t) not in inside]
    return root, nodes, texts


def graph_of(doc):
    exp = validate(doc)
    return figures.model_graph(summarize(exp), exp.to_dict()["model"])


INCEPTION = model_doc(
    [
        {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {
            "type": "Concat",
            "branches": [
                [{"type": "Conv2d", "out_channels": 2, "kernel_size": 1}],
                [
                    {"type": "Conv2d", "out_channels": 2, "kernel_size": 1},
                    {"type": "ReLU"},
                    {"type": "Conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                ],
                [],
            ],
        },
        {"type": "Flatten"},
        {"type": "Linear", "out_features": 2},
    ],
    (1, 8, 8),
)


def test_resnet18_graph_has_a_node_per_layer_and_a_merge_per_block():
    doc = gallery.raw("resnet18")
    s = summarize(validate(doc))
    g, groups = graph_of(doc)
    leaves = [r for r in s.rows if not r.block]
    residuals = [r for r in s.rows if r.type == "Residual"]
    assert len(residuals) == 8
    assert g.number_of_nodes() == len(leaves) + len(residuals) + 2
    assert [name for name, _ in groups] == ["layer1", "layer2", "layer3", "layer4"]
    lanes = [d["lane"] for _, _, d in g.edges(data=True) if "lane" in d]
    assert len(lanes) == 5  # three blocks downsample through a shortcut, five add their input unchanged
    assert all(lane > 0 for lane in lanes)  # identity paths run to the right of the body
    # top to bottom: every edge goes down at least one rank, and the output is the last rank
    assert all(g.nodes[v]["rank"] > g.nodes[u]["rank"] for u, v in g.edges())
    assert g.nodes["output"]["rank"] == max(d["rank"] for _, d in g.nodes(data=True))


def test_concat_branches_sit_side_by_side_and_an_empty_branch_is_an_identity_lane():
    g, _ = graph_of(INCEPTION)
    merge = "model.layers[1]+"
    assert g.nodes[merge]["kind"] == "concat" and g.in_degree(merge) == 3
    firsts = ["model.layers[1].branches[0][0]", "model.layers[1].branches[1][0]"]
    xs = [g.nodes[n]["x"] for n in firsts]
    assert xs[0] < xs[1]
    lane = [d["lane"] for u, v, d in g.edges(data=True) if v == merge and "lane" in d]
    assert len(lane) == 1 and lane[0] > max(xs)
    assert g.nodes[merge]["rank"] == g.nodes["model.layers[1].branches[1][2]"]["rank"] + 1


def test_a_new_residual_keeps_both_of_its_paths():
    doc = model_doc([{"type": "Linear", "out_features": 3}, edit.new_layer("Residual")], (2,))
    g, _ = graph_of(doc)
    assert g.number_of_edges("model.layers[0]", "model.layers[1]+") == 2  # x + x


def test_the_architecture_drawing_labels_layers_and_every_tensor():
    doc = gallery.raw("lenet5-mnist")
    exp = validate(doc)
    s = summarize(exp)
    _, nodes, texts = drawing(s, exp.to_dict()["model"])
    labels = [label for label, _ in nodes]
    for label in ("input [1, 28, 28]", "Conv2d 6@5×5", "AvgPool2d 2×2", "Conv2d 16@5×5", "Linear 120", "output [10]"):
        assert label in labels
    shapes = [t for t in texts if t.startswith("[")]
    assert shapes == [shape_str(s.input_shape)] + [shape_str(r.output_shape) for r in s.rows]
    first = next(tip for label, tip in nodes if label == "Conv2d 6@5×5")
    assert first[1:4] == ["model.layers[0]", "[1, 28, 28] → [6, 28, 28]", "params 156"]  # 6·(25+1)
    assert f"FLOPs {figures.human_count(s.rows[0].flops)}" in first
    assert {"convolution", "pooling", "dense", "input / output"} <= set(texts)  # the legend names the groups drawn


def test_a_deep_model_gets_a_tall_drawing():
    exp = validate(gallery.raw("resnet18"))
    root, nodes, _ = drawing(summarize(exp), exp.to_dict()["model"])
    g, _ = figures.model_graph(summarize(exp), exp.to_dict()["model"])
    ranks = g.nodes["output"]["rank"]
    assert ranks > 60 and float(root.find("{*}svg").get("height")) >= figures.ROW_PX * ranks
    assert len(nodes) == g.number_of_nodes()


def test_a_partial_summary_still_draws():
    # a Conv2d inserted after the ReLU of xor's Linear 8 → ReLU → Linear 2 meets a flat [8] tensor
    bad = edit.add_layer(gallery.raw("xor"), edit.TOP, "Conv2d", index=2)
    p = build.preview(bad)
    assert p.partial and edit.error_layer(p.error) == (*edit.TOP, 2)
    assert [r.path for r in p.summary.rows] == ["model.layers[0]", "model.layers[1]"]
    _, nodes, _ = drawing(p.summary, p.model)
    drawn = [(label, tip[1] if len(tip) > 1 else tip[0]) for label, tip in nodes]
    # one node per layer before the problem, between the input and an output with layer 1's shape; the Conv2d and
    # the Linear 2 after it are not drawn (the page says why above the figure)
    assert sorted(drawn) == sorted([("input [2]", "input [2]"), ("Linear 8", "model.layers[0]"), ("ReLU", "model.layers[1]"), ("output [8]", "output [8]")])


HOSTILE = '</svg><script>x</script>$x$ **b** _i_ :smile: [l](http://e.invalid) & "q" `c`'


def test_names_from_a_preset_read_literally_in_the_drawing():
    """A block's and a layer's name are written as text: the XML parses, reads them back as they were typed, and
    carries none of the characters Markdown (math, emphasis, emoji, links, code) or HTML would act on."""
    doc = gallery.raw("xor")
    first, *rest = doc["model"]["layers"]
    doc["model"]["layers"] = [{"type": "Sequential", "name": HOSTILE, "layers": [{**first, "name": HOSTILE + "\n2"}]}, *rest]
    exp = validate(doc)
    svg = figures.architecture_svg(summarize(exp), exp.to_dict()["model"])
    root, nodes, texts = drawing(summarize(exp), exp.to_dict()["model"])
    assert HOSTILE in texts  # the block's frame is named
    tip = next(tip for label, tip in nodes if tip[1:2] == ["model.layers[0].layers[0]"])
    assert tip[0].endswith(f"“{HOSTILE}\\n2”")  # the layer's name in its tooltip, on one line (dlviz.text.clean)
    assert [e.tag.split("}")[-1] for e in root.iter() if e.tag.split("}")[-1] in ("script", "a", "foreignObject")] == []
    body = svg.split("\n", 1)[1]  # the opening tag stands alone on the first line: an HTML block to Markdown
    assert "\n\n" not in svg and not any(c in body for c in "$*_`[]") and ":smile:" not in body and "<a " not in body


def test_summary_frame_indents_by_depth_and_ends_with_totals():
    s = summarize(validate(gallery.raw("resnet18")))
    frame = figures.summary_frame(s)
    assert list(frame.columns) == figures.SUMMARY_COLUMNS
    assert len(frame) == len(s.rows) + 1
    total = frame.iloc[-1]
    assert (total["layer"], total["params"], total["FLOPs"]) == ("Total", 11_689_512, s.flops)
    assert frame.iloc[0]["layer"] == "[0]" and frame.iloc[0]["RF size"] == "7"
    nested = frame[frame["layer"].str.contains(r"body\[0\]")].iloc[0]
    assert nested["layer"].startswith("\u2003\u2003") and nested["type"] == "Conv2d"
    assert frame[frame["layer"].str.contains("layer1")].iloc[0]["params"] == 147_968


@pytest.mark.parametrize("name", ["lenet5-mnist", "xor"])
def test_summary_frame_totals_receptive_field(name):
    s = summarize(validate(gallery.raw(name)))
    total = figures.summary_frame(s).iloc[-1]
    rf = s.receptive_field
    assert (total["RF size"], total["RF stride"], total["RF padding"]) == ((str(rf["size"]), str(rf["stride"]), str(rf["padding"])) if rf else ("", "", ""))


def test_a_non_square_receptive_field_is_written_per_dimension():
    doc = model_doc([{"type": "Conv2d", "out_channels": 2, "kernel_size": [3, 5]}], (1, 9, 9))
    s = summarize(validate(doc))
    assert figures.summary_frame(s).iloc[-1]["RF size"] == "3×5"
    assert figures.size_text(s.receptive_field["size"]) == "3×5"


def test_human_count():
    assert [figures.human_count(n) for n in (999, 61_706, 3_630_000_000)] == ["999", "61.7k", "3.63G"]


@pytest.mark.parametrize("name", gallery.names())
def test_every_gallery_preset_draws_one_node_per_layer(name):
    exp = validate(gallery.raw(name))
    s = summarize(exp)
    g, _ = figures.model_graph(s, exp.to_dict()["model"])
    leaves = {r.path for r in s.rows if not r.block}
    assert leaves <= set(g.nodes)
    merges = [r for r in s.rows if r.type in ("Residual", "Concat")]
    assert g.number_of_nodes() == len(leaves) + len(merges) + 2
    _, nodes, _ = drawing(s, exp.to_dict()["model"])
    assert len(nodes) == g.number_of_nodes()
