"""Shape inference for every layer and block, checked against a real forward pass of the built model."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import preset

from dlviz.errors import UserError
from dlviz.model.build import build_model, summarize
from dlviz.preset.registry import ACTIVATIONS, ALL_LAYERS
from dlviz.preset.schema import validate

BATCH = 2


def L(t, **kw):
    return {"type": t, **kw}


def conv(out, k, **kw):
    return L("Conv2d", out_channels=out, kernel_size=k, **kw)


# (id, layers, input_shape): every entry of ALL_LAYERS appears at least once (checked below).
CASES = [
    # dense
    ("linear", [L("Linear", out_features=5)], [7]),
    ("linear-last-dim", [L("Linear", out_features=5, bias=False)], [4, 6]),
    ("bilinear", [L("Bilinear", out_features=3)], [6]),
    # convolution
    ("conv1d", [L("Conv1d", out_channels=4, kernel_size=3)], [3, 20]),
    ("conv1d-stride-pad-dil", [L("Conv1d", out_channels=4, kernel_size=3, stride=3, padding=2, dilation=2)], [3, 20]),
    ("conv1d-same-even", [L("Conv1d", out_channels=4, kernel_size=4, padding="same")], [3, 21]),
    ("conv2d", [conv(4, 3)], [3, 17, 19]),
    ("conv2d-rect", [conv(4, [3, 5], stride=[2, 1], padding=[1, 2])], [3, 17, 19]),
    ("conv2d-dilation", [conv(4, 3, dilation=2, padding=1)], [3, 17, 19]),
    ("conv2d-dilation-rect", [conv(4, [3, 2], dilation=[1, 3], stride=2)], [3, 17, 19]),
    ("conv2d-same", [conv(4, 3, padding="same")], [3, 17, 19]),
    ("conv2d-same-even-dilated", [conv(4, 4, padding="same", dilation=2)], [3, 9, 10]),
    ("conv2d-valid", [conv(4, 5, padding="valid")], [3, 17, 19]),
    ("conv2d-groups", [conv(6, 3, groups=3, bias=False)], [3, 8, 8]),
    ("conv2d-reflect", [conv(2, 3, padding=1, padding_mode="reflect")], [3, 8, 8]),
    ("conv2d-circular", [conv(2, 3, padding=2, padding_mode="circular")], [3, 8, 8]),
    ("convT", [L("ConvTranspose2d", out_channels=5, kernel_size=3, stride=2, padding=1, output_padding=1)], [4, 5, 6]),
    ("convT-rect", [L("ConvTranspose2d", out_channels=6, kernel_size=[3, 4], stride=[2, 3], padding=[1, 0], output_padding=[1, 2], groups=2)], [4, 5, 6]),
    ("convT-dilation", [L("ConvTranspose2d", out_channels=2, kernel_size=3, dilation=2)], [4, 5, 6]),
    # pooling
    ("maxpool1d", [L("MaxPool1d", kernel_size=3, stride=2)], [3, 20]),
    ("maxpool1d-dil-ceil", [L("MaxPool1d", kernel_size=2, dilation=2, ceil_mode=True)], [3, 20]),
    ("maxpool2d-default-stride", [L("MaxPool2d", kernel_size=2)], [3, 15, 15]),
    ("maxpool2d-floor", [L("MaxPool2d", kernel_size=3, stride=2)], [3, 10, 10]),
    ("maxpool2d-ceil", [L("MaxPool2d", kernel_size=3, stride=2, ceil_mode=True)], [3, 10, 10]),
    ("maxpool2d-pad-dil", [L("MaxPool2d", kernel_size=[3, 2], stride=[1, 2], padding=[1, 0], dilation=[2, 1])], [3, 11, 9]),
    ("avgpool1d-ceil", [L("AvgPool1d", kernel_size=3, stride=2, ceil_mode=True)], [3, 20]),
    ("avgpool2d", [L("AvgPool2d", kernel_size=2)], [3, 15, 15]),
    ("avgpool2d-ceil-pad", [L("AvgPool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)], [3, 10, 11]),
    ("adaptive-avg-1", [L("AdaptiveAvgPool2d", output_size=1)], [3, 7, 9]),
    ("adaptive-avg-rect", [L("AdaptiveAvgPool2d", output_size=[3, 4])], [3, 7, 9]),
    ("adaptive-max", [L("AdaptiveMaxPool2d", output_size=[2, 5])], [3, 7, 9]),
    # normalization
    ("batchnorm1d", [L("BatchNorm1d")], [8]),
    ("batchnorm1d-seq", [L("BatchNorm1d", affine=False, track_running_stats=False)], [8, 10]),
    ("batchnorm2d", [L("BatchNorm2d", momentum=0.5)], [3, 5, 5]),
    ("layernorm", [L("LayerNorm")], [10]),
    ("layernorm-last", [L("LayerNorm", normalized_shape=[10])], [4, 10]),
    ("layernorm-two-dims", [L("LayerNorm", normalized_shape=[4, 10])], [4, 10]),
    ("layernorm-no-bias", [L("LayerNorm", bias=False)], [3, 4, 5]),
    ("groupnorm-2d", [L("GroupNorm", num_groups=3)], [6, 5, 5]),
    ("groupnorm-seq", [L("GroupNorm", num_groups=2, affine=False)], [6, 10]),
    ("groupnorm-features", [L("GroupNorm", num_groups=3)], [6]),
    ("groupnorm-3d", [L("GroupNorm", num_groups=1)], [6, 2, 3, 4]),
    ("instancenorm", [L("InstanceNorm2d")], [3, 6, 6]),
    ("instancenorm-affine", [L("InstanceNorm2d", affine=True, track_running_stats=True)], [3, 6, 6]),
    ("lrn", [L("LocalResponseNorm", size=5)], [8, 5, 5]),
    ("lrn-seq", [L("LocalResponseNorm", size=2)], [8, 10]),
    # regularization
    ("dropout", [L("Dropout", p=0.3)], [10]),
    ("dropout2d", [L("Dropout2d")], [3, 4, 4]),
    ("alphadropout", [L("AlphaDropout")], [10]),
    # shape
    ("flatten", [L("Flatten")], [3, 4, 5]),
    ("flatten-start", [L("Flatten", start_dim=2)], [3, 4, 5]),
    ("flatten-end", [L("Flatten", end_dim=-2)], [3, 4, 5]),
    ("unflatten", [L("Unflatten", unflattened_size=[1, 3, 4])], [12]),
    ("unflatten-last", [L("Unflatten", dim=-1, unflattened_size=[3, 4])], [2, 12]),
    ("unflatten-mid", [L("Unflatten", dim=2, unflattened_size=[2, 6])], [2, 12, 3]),
    ("unflatten-then-conv", [L("Unflatten", unflattened_size=[1, 28, 28]), conv(2, 5)], [784]),
    ("upsample-scale", [L("Upsample", scale_factor=2)], [3, 4, 5]),
    ("upsample-scale-frac", [L("Upsample", scale_factor=1.5, mode="bilinear")], [3, 4, 5]),
    ("upsample-scale-list", [L("Upsample", scale_factor=[2, 3])], [3, 4, 5]),
    ("upsample-size", [L("Upsample", size=[7, 9])], [3, 4, 5]),
    ("upsample-size-int", [L("Upsample", size=6, mode="bicubic", align_corners=True)], [3, 4, 5]),
    ("upsample-linear", [L("Upsample", scale_factor=2.5, mode="linear")], [3, 6]),
    ("upsample-trilinear", [L("Upsample", size=[4, 6, 8], mode="trilinear", align_corners=False)], [2, 3, 4, 5]),
    ("identity", [L("Identity")], [3, 4]),
    # recurrent
    ("embedding", [L("Embedding", num_embeddings=20, embedding_dim=8)], [7]),
    ("embedding-padding", [L("Embedding", num_embeddings=20, embedding_dim=8, padding_idx=0, max_norm=1.0), L("LSTM", hidden_size=6, output="all")], [7]),
    *[
        (f"{r.lower()}-{name}", [L(r, hidden_size=6, **kw)], [7, 5])
        for r in ("RNN", "LSTM", "GRU")
        for name, kw in (
            ("last", {}),
            ("all", {"output": "all"}),
            ("bi-all", {"bidirectional": True, "output": "all"}),
            ("bi-last", {"bidirectional": True}),
            ("stacked", {"num_layers": 2, "dropout": 0.1, "bidirectional": True, "bias": False}),
        )
    ],
    ("rnn-relu", [L("RNN", hidden_size=6, nonlinearity="relu", output="all")], [7, 5]),
    # attention
    ("attention", [L("MultiheadAttention", num_heads=2)], [7, 8]),
    ("attention-causal", [L("MultiheadAttention", num_heads=4, causal=True, bias=False, dropout=0.1)], [7, 8]),
    ("transformer", [L("TransformerEncoderLayer", nhead=2, dim_feedforward=16)], [7, 8]),
    ("transformer-prenorm", [L("TransformerEncoderLayer", nhead=4, dim_feedforward=16, norm_first=True, activation="gelu")], [7, 8]),
    ("positional-sinusoidal", [L("PositionalEncoding"), L("MultiheadAttention", num_heads=2)], [7, 8]),
    ("positional-learned", [L("PositionalEncoding", kind="learned", max_len=12)], [7, 8]),
    # activations with arguments (every activation also runs with its defaults below)
    ("prelu-per-channel", [L("PReLU", num_parameters=6)], [6, 4, 4]),
    ("prelu-per-feature", [L("PReLU", num_parameters=6, init=0.1)], [6]),
    ("maxout-features", [L("Linear", out_features=12), L("Maxout", pieces=3)], [5]),
    ("maxout-channels", [L("Maxout")], [6, 4, 4]),
    ("softmax-last", [L("Softmax", dim=-1)], [3, 5]),
    ("logsoftmax-spatial", [L("LogSoftmax", dim=2)], [3, 4, 5]),
    ("leaky", [L("LeakyReLU", negative_slope=0.2)], [6]),
    ("hardtanh", [L("Hardtanh", min_val=-2.0, max_val=2.0)], [6]),
    *[(f"act-{name}", [L(name)], [6, 4, 4]) for name in ACTIVATIONS],
    # blocks
    ("residual-identity", [L("Residual", body=[conv(4, 3, padding=1), L("BatchNorm2d"), L("ReLU"), conv(4, 3, padding=1)]), L("ReLU")], [4, 8, 8]),
    ("residual-empty-shortcut", [L("Residual", body=[L("Linear", out_features=10), L("Tanh")], shortcut=[])], [10]),
    (
        "residual-projection",
        [L("Residual", body=[conv(8, 3, stride=2, padding=1), L("ReLU"), conv(8, 3, padding=1)], shortcut=[conv(8, 1, stride=2), L("BatchNorm2d")])],
        [4, 9, 9],
    ),
    (
        "concat-inception",
        [
            L(
                "Concat",
                branches=[
                    [conv(4, 1)],
                    [conv(2, 1), L("ReLU"), conv(4, 3, padding=1)],
                    [conv(2, 1), conv(3, 5, padding=2)],
                    [L("MaxPool2d", kernel_size=3, stride=1, padding=1), conv(3, 1)],
                ],
            )
        ],
        [5, 8, 8],
    ),
    ("concat-features", [L("Concat", branches=[[L("Linear", out_features=3)], [L("Linear", out_features=5)], []])], [4]),
    ("sequential", [L("Sequential", name="stem", layers=[conv(4, 3), L("ReLU")]), L("Flatten"), L("Linear", out_features=3)], [3, 6, 6]),
    (
        "nesting",
        [
            L(
                "Sequential",
                layers=[
                    L(
                        "Residual",
                        body=[
                            L(
                                "Concat",
                                branches=[
                                    [L("Residual", body=[conv(2, 3, padding=1)], shortcut=[conv(2, 1)])],
                                    [L("Sequential", layers=[conv(2, 1), L("Sequential", layers=[L("ReLU")])])],
                                ],
                            ),
                            L("BatchNorm2d"),
                        ],
                        shortcut=[conv(4, 1)],
                    ),
                    L("ReLU"),
                ],
            ),
            L("AdaptiveAvgPool2d", output_size=1),
            L("Flatten"),
            L("Linear", out_features=2),
        ],
        [3, 8, 8],
    ),
]


def test_every_layer_has_a_case():
    used = set()

    def walk(layers):
        for layer in layers:
            used.add(layer["type"])
            for key in ("body", "shortcut", "layers"):
                walk(layer.get(key, []))
            for branch in layer.get("branches", []):
                walk(branch)

    for _, layers, _ in CASES:
        walk(layers)
    assert set(ALL_LAYERS) - used == set()
    assert {"Residual", "Concat", "Sequential"} <= used


def _example(net, shape):
    torch.manual_seed(1)
    if net.input_dtype == torch.long:
        return torch.randint(0, 20, (BATCH, *shape))
    return torch.randn(BATCH, *shape)


def _run(layers, shape):
    """Summary and a real forward pass; returns (summary, net, {path: (input shape, output shape)}, output)."""
    exp = validate(preset(layers, shape))
    summary = summarize(exp)
    net = build_model(exp, seed=0).eval()
    modules = dict(net.named_modules())
    seen = {}
    hooks = [
        modules[name].register_forward_hook(lambda m, inp, out, path=path: seen.__setitem__(path, (tuple(inp[0].shape), tuple(out.shape))))
        for name, path in net.json_paths.items()
    ]
    with torch.no_grad():
        y = net(_example(net, shape))
    for h in hooks:
        h.remove()
    return summary, net, seen, y


@pytest.mark.parametrize("layers,shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_shapes_match_a_real_forward_pass(layers, shape):
    summary, net, seen, y = _run(layers, shape)
    rows = {r.path: r for r in summary.rows}
    assert set(rows) == set(seen), "every summary row is a module that ran, and every module has a row"
    for path, row in rows.items():
        real_in, real_out = seen[path]
        assert real_in == (BATCH, *row.input_shape), path
        assert real_out == (BATCH, *row.output_shape), path
    assert tuple(y.shape) == (BATCH, *summary.output_shape)
    # the parameters the summary counts on the meta device are the real model's
    modules = dict(net.named_modules())
    for name, path in net.json_paths.items():
        real = sum(p.numel() for p in modules[name].parameters())
        assert real == rows[path].trainable_params + rows[path].non_trainable_params, path
    assert summary.total_params == sum(p.numel() for p in net.parameters())
    assert torch.isfinite(y.float()).all()


def test_shape_formulas():
    """Output sizes against the textbook formulas, not only against torch."""

    def out(n, k, s=1, p=0, d=1):
        return (n + 2 * p - d * (k - 1) - 1) // s + 1

    s = summarize(validate(preset([conv(4, [3, 5], stride=[2, 1], padding=[1, 2], dilation=[2, 1])], [3, 17, 19])))
    assert s.output_shape == [4, out(17, 3, 2, 1, 2), out(19, 5, 1, 2, 1)]
    s = summarize(validate(preset([L("MaxPool2d", kernel_size=3, stride=2, ceil_mode=True)], [3, 10, 10])))
    h = math.ceil((10 - 3) / 2) + 1
    assert s.output_shape == [3, h, h]
    s = summarize(validate(preset([L("ConvTranspose2d", out_channels=5, kernel_size=3, stride=2, padding=1, output_padding=1)], [4, 5, 6])))
    assert s.output_shape == [5, (5 - 1) * 2 - 2 + 3 + 1, (6 - 1) * 2 - 2 + 3 + 1]


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_recurrent_output_sizes_and_last_step(cell):
    hidden, steps = 6, 7
    for bi in (False, True):
        width = hidden * (2 if bi else 1)
        s_all = summarize(validate(preset([L(cell, hidden_size=hidden, bidirectional=bi, output="all")], [steps, 5])))
        s_last = summarize(validate(preset([L(cell, hidden_size=hidden, bidirectional=bi)], [steps, 5])))
        assert s_all.output_shape == [steps, width] and s_last.output_shape == [width]
        # "last" is the summary of the whole sequence: the final hidden state of each direction (h_n), so the
        # backward direction's half has read every step, not only the last one
        net = build_model(validate(preset([L(cell, hidden_size=hidden, bidirectional=bi)], [steps, 5])), seed=0).eval()
        x = torch.randn(BATCH, steps, 5)
        with torch.no_grad():
            y = net(x)
            h_n = net.layers[0].rnn(x)[1]
        h_n = h_n[0] if cell == "LSTM" else h_n
        expected = torch.cat([h_n[-2], h_n[-1]], dim=1) if bi else h_n[-1]
        torch.testing.assert_close(y, expected)


def test_causal_attention_does_not_look_ahead():
    for causal in (True, False):
        net = build_model(validate(preset([L("MultiheadAttention", num_heads=2, causal=causal)], [6, 8])), seed=0).eval()
        x = torch.randn(BATCH, 6, 8)
        x2 = x.clone()
        x2[:, -1] += 1.0
        with torch.no_grad():
            y, y2 = net(x), net(x2)
        earlier_unchanged = torch.allclose(y[:, :-1], y2[:, :-1], atol=1e-6)
        assert earlier_unchanged == causal
        assert not torch.allclose(y[:, -1], y2[:, -1])


def test_maxout_takes_the_max_of_each_group_of_pieces():
    net = build_model(validate(preset([L("Maxout", pieces=3)], [12])), seed=0)
    x = torch.randn(BATCH, 12)
    torch.testing.assert_close(net(x), x.view(BATCH, 4, 3).max(dim=2).values)


def test_prelu_has_one_slope_per_channel():
    net = build_model(validate(preset([L("PReLU", num_parameters=6, init=0.1)], [6, 4, 4])), seed=0)
    (w,) = list(net.parameters())
    assert w.shape == (6,) and torch.allclose(w, torch.full((6,), 0.1))


# ---------------------------------------------------------------- impossible stacks

LENET_CONVS = [conv(6, 5, padding=2), L("Tanh"), L("AvgPool2d", kernel_size=2), conv(16, 5), L("Tanh"), L("AvgPool2d", kernel_size=2)]

IMPOSSIBLE = [
    ("linear-without-flatten", [*LENET_CONVS, L("Linear", out_features=120)], [1, 28, 28], "model.layers[6]", ["[16, 5, 5]", "add a Flatten before it"]),
    ("conv-on-features", [conv(6, 5)], [784], "model.layers[0]", ["[784]", "Unflatten"]),
    ("conv1d-on-image", [L("Conv1d", out_channels=2, kernel_size=3)], [3, 8, 8], "model.layers[0]", ["input_shape"]),
    ("pool-bigger-than-input", [L("MaxPool2d", kernel_size=5)], [3, 4, 4], "model.layers[0]", ["[3, 4, 4]", "smaller kernel"]),
    ("avgpool-bigger-than-input", [conv(2, 3), L("AvgPool2d", kernel_size=7)], [3, 8, 8], "model.layers[1]", ["[2, 6, 6]", "smaller kernel"]),
    ("conv-kernel-bigger-than-input", [L("Residual", body=[conv(3, 9, padding=1)])], [3, 6, 6], "model.layers[0].body[0]", ["[3, 6, 6]", "smaller kernel"]),
    ("pool-padding-over-half-kernel", [L("MaxPool2d", kernel_size=2, padding=2)], [3, 8, 8], "model.layers[0]", ["padding"]),
    ("residual-mismatch", [L("Residual", body=[conv(8, 3, stride=2, padding=1)])], [4, 8, 8], "model.layers[0]", ["[8, 4, 4]", "[4, 8, 8]", "shortcut"]),
    (
        "residual-mismatch-features",
        [L("Linear", out_features=4), L("Residual", body=[L("Linear", out_features=3)])],
        [5],
        "model.layers[1]",
        ["shortcut a Linear"],
    ),
    (
        "concat-mismatch",
        [L("Sequential", layers=[L("Concat", branches=[[conv(4, 3)], [conv(4, 1)]])])],
        [3, 8, 8],
        "model.layers[0].layers[0]",
        ["[4, 6, 6]", "[4, 8, 8]", "strides and padding"],
    ),
    ("groupnorm-groups", [conv(6, 3), L("GroupNorm", num_groups=4)], [3, 8, 8], "model.layers[1]", ["num_groups=4", "divisor of 6"]),
    ("attention-heads", [L("MultiheadAttention", num_heads=3)], [5, 8], "model.layers[0]", ["num_heads=3", "divisor of 8"]),
    ("transformer-heads", [L("TransformerEncoderLayer", nhead=5)], [5, 8], "model.layers[0]", ["nhead=5", "divisor of 8"]),
    ("attention-on-features", [L("MultiheadAttention")], [8], "model.layers[0]", ["[steps, features]"]),
    ("positional-on-features", [L("PositionalEncoding")], [8], "model.layers[0]", ["[time, features]"]),
    ("positional-too-short", [L("PositionalEncoding", max_len=4)], [5, 8], "model.layers[0]", ["max_len=4", "at least 5"]),
    ("positional-too-long", [L("PositionalEncoding", max_len=4096)], [5, 20_000], "model.layers[0]", ["4096 × 20000", "smaller max_len"]),
    ("embedding-not-first", [L("Linear", out_features=4), L("Embedding", num_embeddings=10, embedding_dim=4)], [5], "model.layers[1]", ["first layer"]),
    (
        "embedding-in-block",
        [L("Identity"), L("Residual", body=[L("Embedding", num_embeddings=10, embedding_dim=4)])],
        [5],
        "model.layers[1].body[0]",
        ["first layer"],
    ),
    ("embedding-padding-idx", [L("Embedding", num_embeddings=10, embedding_dim=4, padding_idx=10)], [5], "model.layers[0]", ["padding_idx"]),
    ("lstm-on-image", [L("LSTM", hidden_size=4)], [3, 8, 8], "model.layers[0]", ["[steps, features]"]),
    ("layernorm-shape", [L("LayerNorm", normalized_shape=[5])], [3, 4], "model.layers[0]", ["leave it out"]),
    ("maxout-pieces", [L("Linear", out_features=8), L("Maxout", pieces=3)], [5], "model.layers[1]", ["multiple of 3"]),
    ("prelu-parameters", [L("PReLU", num_parameters=3)], [8, 2], "model.layers[0]", ["1 or the 8 channels"]),
    ("unflatten-size", [L("Unflatten", unflattened_size=[3, 3])], [8], "model.layers[0]", ["9 elements"]),
    ("batchnorm2d-on-features", [L("BatchNorm2d")], [8], "model.layers[0]", ["BatchNorm1d"]),
    ("conv-groups", [conv(3, 3, groups=2)], [4, 8, 8], "model.layers[0]", ["groups=2"]),
    ("upsample-both", [L("Upsample", size=4, scale_factor=2)], [3, 4, 4], "model.layers[0]", ["exactly one"]),
    ("softmax-dim", [L("Softmax", dim=3)], [3, 8], "model.layers[0]", ["dim"]),
    ("conv-kernel-dims", [conv(2, [1, 1, 1])], [1, 4, 4], "model.layers[0]", ["kernel_size", "give one number or 2"]),
    ("convT-stride-dims", [L("ConvTranspose2d", out_channels=2, kernel_size=2, stride=[1, 2, 1])], [1, 4, 4], "model.layers[0]", ["stride"]),
    ("pool-kernel-dims", [L("MaxPool1d", kernel_size=[2, 2])], [3, 8], "model.layers[0]", ["kernel_size", "give one number"]),
    ("adaptive-output-dims", [L("AdaptiveAvgPool2d", output_size=[1, 2, 3])], [3, 4, 4], "model.layers[0]", ["output_size"]),
    (
        "convT-output-padding",
        [L("ConvTranspose2d", out_channels=3, kernel_size=3, stride=2, output_padding=2)],
        [3, 8, 8],
        "model.layers[0]",
        ["output_padding"],
    ),
]


@pytest.mark.parametrize("layers,shape,path,words", [c[1:] for c in IMPOSSIBLE], ids=[c[0] for c in IMPOSSIBLE])
def test_impossible_stacks_name_the_path_and_a_fix(layers, shape, path, words):
    exp = validate(preset(layers, shape))
    with pytest.raises(UserError) as info:
        summarize(exp)
    err = info.value
    assert err.path == path, err
    for w in words:
        assert w in err.message, err
    with pytest.raises(UserError):
        build_model(exp)
