"""Initializations against their published formulas, within the sampling error of the layer's size."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import preset

from dlviz.model.build import build_model
from dlviz.preset.registry import INITS
from dlviz.preset.schema import validate

Z = 5.0  # standard errors allowed: a false alarm has odds of about 1 in 1.7 million

# Conv 32→64 5×5 (fan_in 800, fan_out 1600), a wide Linear 1024→256 and a tall Linear 256→1024, with norm layers
# and a PReLU whose weights no init may touch.
LAYERS = [
    {"type": "Conv2d", "out_channels": 64, "kernel_size": 5, "padding": 2},
    {"type": "BatchNorm2d"},
    {"type": "PReLU", "num_parameters": 64},
    {"type": "AdaptiveAvgPool2d", "output_size": 4},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 256},
    {"type": "LayerNorm"},
    {"type": "Linear", "out_features": 1024},
]
INPUT = [32, 8, 8]
FANS = {"layers.0": (800, 1600), "layers.5": (1024, 256), "layers.7": (256, 1024)}  # (fan_in, fan_out)
NORMS = {"layers.1.weight": 1.0, "layers.2.weight": 0.25, "layers.6.weight": 1.0}


def build(init, layers=LAYERS, seed=0):
    doc = preset(layers, INPUT, **({"init": init} if init is not None else {}))
    return build_model(validate(doc), seed=seed)


def _gain(nonlinearity, a=0.0):
    """The gains of Glorot & Bengio / He et al. as torch.nn.init documents them."""
    return {"linear": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2.0), "leaky_relu": math.sqrt(2.0 / (1 + a * a)), "selu": 3 / 4}[nonlinearity]


def _trunc_var(std, a, b):
    """Variance of N(0, std²) truncated to [a, b] (symmetric, mean 0)."""
    alpha, beta = a / std, b / std
    phi = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))
    zz = cdf(beta) - cdf(alpha)
    return std * std * (1 + (alpha * phi(alpha) - beta * phi(beta)) / zz - ((phi(alpha) - phi(beta)) / zz) ** 2)


# name: (init spec, kind, mean, variance as a function of (fan_in, fan_out))
RANDOM = {
    "xavier_uniform": ("xavier_uniform", "uniform", 0.0, lambda i, o: 2 / (i + o)),
    "xavier_uniform-gain": ({"type": "xavier_uniform", "gain": 2.0}, "uniform", 0.0, lambda i, o: 4 * 2 / (i + o)),
    "xavier_normal": ({"type": "xavier_normal", "gain": 0.5}, "normal", 0.0, lambda i, o: 0.25 * 2 / (i + o)),
    "kaiming_uniform": ("kaiming_uniform", "uniform", 0.0, lambda i, o: 2 / i),
    "kaiming_normal": ("kaiming_normal", "normal", 0.0, lambda i, o: 2 / i),
    "kaiming_normal-fan_out": ({"type": "kaiming_normal", "mode": "fan_out"}, "normal", 0.0, lambda i, o: 2 / o),
    "kaiming_uniform-fan_out": ({"type": "kaiming_uniform", "mode": "fan_out"}, "uniform", 0.0, lambda i, o: 2 / o),
    "kaiming_normal-leaky": ({"type": "kaiming_normal", "nonlinearity": "leaky_relu", "a": 0.2}, "normal", 0.0, lambda i, o: 2 / ((1 + 0.04) * i)),
    **{
        f"kaiming_normal-{nl}": ({"type": "kaiming_normal", "nonlinearity": nl}, "normal", 0.0, lambda i, o, nl=nl: _gain(nl) ** 2 / i)
        for nl in ("linear", "tanh", "sigmoid", "selu")
    },
    "lecun_normal": ("lecun_normal", "normal", 0.0, lambda i, o: 1 / i),
    "lecun_normal-gain": ({"type": "lecun_normal", "gain": 2.0}, "normal", 0.0, lambda i, o: 4 / i),
    "normal": ({"type": "normal", "mean": 0.5, "std": 0.1}, "normal", 0.5, lambda i, o: 0.01),
    "uniform": ({"type": "uniform", "a": -0.3, "b": 0.7}, "uniform", 0.2, lambda i, o: 1.0 / 12),
    "trunc_normal": ("trunc_normal", "trunc", 0.0, lambda i, o: _trunc_var(1.0, -2.0, 2.0)),
    "trunc_normal-narrow": ({"type": "trunc_normal", "std": 0.02, "a": -0.03, "b": 0.03}, "trunc", 0.0, lambda i, o: _trunc_var(0.02, -0.03, 0.03)),
    # PyTorch's own: kaiming_uniform with a = √5, i.e. U(−1/√fan_in, 1/√fan_in)
    "default": ("default", "uniform", 0.0, lambda i, o: 1 / (3 * i)),
}
KURTOSIS = {"normal": 3.0, "uniform": 1.8, "trunc": 3.0}  # E[(w−μ)⁴]/σ⁴; a truncated normal's is below 3


def check_distribution(w: torch.Tensor, kind: str, mean: float, var: float, spec=None) -> None:
    w = w.detach().double().flatten()
    n = w.numel()
    assert abs(w.mean().item() - mean) <= Z * math.sqrt(var / n), "mean"
    sample_var = ((w - mean) ** 2).mean().item()
    assert abs(sample_var - var) <= Z * var * math.sqrt((KURTOSIS[kind] - 1) / n), f"variance {sample_var} vs {var}"
    if kind == "uniform":
        half = math.sqrt(3 * var)
        lo, hi = mean - half, mean + half
        assert lo - 1e-6 <= w.min().item() and w.max().item() <= hi + 1e-6
        # the extremes come within 20/n of the interval's ends unless something has odds of e^-20
        assert w.min().item() - lo < 20 * (hi - lo) / n and hi - w.max().item() < 20 * (hi - lo) / n
    if kind == "trunc":
        a, b = spec.get("a", -2.0), spec.get("b", 2.0)
        assert a <= w.min().item() and w.max().item() <= b


def _norms_untouched(net):
    params = dict(net.named_parameters())
    for name, value in NORMS.items():
        assert torch.all(params[name] == value), name
    assert torch.all(net.layers[1].running_mean == 0) and torch.all(net.layers[1].running_var == 1)


def _biases(net):
    return {name: p for name, p in net.named_parameters() if name.endswith("bias")}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_inits_follow_their_formulas(name):
    spec, kind, mean, var = RANDOM[name]
    net = build(spec)
    params = dict(net.named_parameters())
    for mod, (fan_in, fan_out) in FANS.items():
        check_distribution(params[f"{mod}.weight"], kind, mean, var(fan_in, fan_out), spec if isinstance(spec, dict) else {})
    _norms_untouched(net)
    for bname, b in _biases(net).items():
        mod = bname.rsplit(".", 1)[0]
        if name == "default" and mod in FANS:  # PyTorch's own bias: U(−1/√fan_in, 1/√fan_in), not zeros
            bound = 1 / math.sqrt(FANS[mod][0])
            assert b.abs().max().item() <= bound and torch.count_nonzero(b) == b.numel()
        else:
            assert torch.all(b == 0), bname


@pytest.mark.parametrize("spec,value", [("zeros", 0.0), ("ones", 1.0), ({"type": "constant", "val": 0.7}, 0.7), ("constant", 0.0)])
def test_constant_inits(spec, value):
    net = build(spec)
    params = dict(net.named_parameters())
    for mod in FANS:
        assert torch.all(params[f"{mod}.weight"] == value)
    _norms_untouched(net)
    assert all(torch.all(b == 0) for b in _biases(net).values())


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal(gain):
    net = build({"type": "orthogonal", "gain": gain})
    params = dict(net.named_parameters())
    for mod in FANS:
        w = params[f"{mod}.weight"].detach().double().flatten(1)
        rows, cols = w.shape
        gram = w @ w.T if rows <= cols else w.T @ w  # the smaller Gram matrix is gain²·I
        eye = torch.eye(min(rows, cols), dtype=torch.float64)
        torch.testing.assert_close(gram, gain * gain * eye, atol=1e-4 * gain * gain, rtol=0)
    assert params["layers.7.weight"].shape == (1024, 256)  # a tall matrix: here WᵀW = gain²·I
    _norms_untouched(net)


def test_bias_default_keeps_pytorch_biases():
    net = build({"type": "xavier_normal", "bias": "default"})
    params = dict(net.named_parameters())
    check_distribution(params["layers.5.weight"], "normal", 0.0, 2 / (1024 + 256))
    for mod, (fan_in, _) in FANS.items():
        b = params[f"{mod}.bias"]
        assert b.abs().max().item() <= 1 / math.sqrt(fan_in) and torch.count_nonzero(b) == b.numel(), mod
    # the tall Linear has 1024 biases: enough for their U(−1/√256, 1/√256) variance
    check_distribution(params["layers.7.bias"], "uniform", 0.0, 1 / (3 * 256))
    _norms_untouched(net)


def test_per_layer_overrides_and_inheritance():
    layers = [
        dict(LAYERS[0], init="zeros"),
        *LAYERS[1:5],
        {
            "type": "Residual",
            "init": {"type": "normal", "std": 0.5},
            "body": [{"type": "Linear", "out_features": 1024}, {"type": "Sequential", "layers": [{"type": "Linear", "out_features": 1024, "init": "ones"}]}],
        },
        dict(LAYERS[5], init={"type": "uniform", "a": 1.0, "b": 2.0, "bias": "default"}),
        *LAYERS[6:],
    ]
    net = build({"type": "kaiming_normal", "mode": "fan_out"}, layers)
    p = dict(net.named_parameters())
    assert torch.all(p["layers.0.weight"] == 0) and torch.all(p["layers.0.bias"] == 0)
    check_distribution(p["layers.5.body.0.weight"], "normal", 0.0, 0.25)  # inherited from the Residual
    assert torch.all(p["layers.5.body.1.0.weight"] == 1)  # its own init wins inside the block
    assert all(torch.all(p[k] == 0) for k in ("layers.5.body.0.bias", "layers.5.body.1.0.bias"))
    w = p["layers.6.weight"]
    assert 1.0 <= w.min().item() and w.max().item() <= 2.0
    assert torch.count_nonzero(p["layers.6.bias"]) == 256  # "bias": "default" keeps PyTorch's biases
    check_distribution(p["layers.8.weight"], "normal", 0.0, 2 / 1024)  # the model-wide init, fan_out 1024
    assert torch.all(p["layers.8.bias"] == 0)


def test_embeddings_keep_their_unit_normal_table_unless_given_an_init():
    emb = {"type": "Embedding", "num_embeddings": 1000, "embedding_dim": 256}
    doc = preset([emb], [4], init="xavier_uniform")
    check_distribution(build_model(validate(doc), seed=0).layers[0].weight, "normal", 0.0, 1.0)
    doc = preset([dict(emb, init={"type": "normal", "std": 0.1})], [4], init="xavier_uniform")
    check_distribution(build_model(validate(doc), seed=0).layers[0].weight, "normal", 0.0, 0.01)


def test_every_init_is_covered():
    covered = {(s if isinstance(s, str) else s["type"]) for s, *_ in RANDOM.values()}
    assert set(INITS) - covered == {"zeros", "ones", "constant", "orthogonal"}


@pytest.mark.parametrize("init", [None, "default", "kaiming_uniform", "orthogonal"])
def test_same_seed_same_weights(init):
    a, b, c = build(init, seed=7), build(init, seed=7), build(init, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["layers.5.weight"], sc["layers.5.weight"])
