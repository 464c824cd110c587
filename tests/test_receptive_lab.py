"""Receptive fields for the Inspect page: the theoretical field of every layer and of any unit against the Distill table
and a gradient probe, the effective field's spread against the √(2n/3) law, and the growth chart's rows."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from conftest import preset
from torch import nn

from dlviz.analysis import features, receptive
from dlviz.errors import UserError
from dlviz.model.build import summarize
from dlviz.preset import gallery
from dlviz.preset.schema import validate


def _positive(net):
    """Weights 1/fan_in and biases 0: every path from input to output carries a positive gradient."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    return net.double()


# ---------------------------------------------------------------- theory


def test_distill_table_alexnet_and_vgg16():
    alex = receptive.theoretical(summarize(gallery.load("alexnet"), count_flops=False))
    last = [f for f in alex if f.output_shape[1] > 1][-1]
    assert (last.size, last.stride) == ((195, 195), (32, 32))
    vgg = receptive.theoretical(summarize(gallery.load("vgg16"), count_flops=False))
    last = [f for f in vgg if f.output_shape[1] > 1][-1]
    assert (last.size, last.stride, last.padding) == ((212, 212), (32, 32), (90, 90))
    # every 3×3 conv adds 2·(product of the strides before it): the formula r0 = Σ (k_l − 1) ∏_{i<l} s_i + 1
    convs = [f for f in vgg if f.type == "Conv2d"]
    assert [f.size[0] for f in convs] == [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]


def test_lenet_fields_by_hand():
    fields = receptive.theoretical(summarize(gallery.load("lenet5-mnist"), count_flops=False))
    # conv5 p2 → 5; pool2 → 5 + 1 = 6, stride 2; conv5 → 6 + 4·2 = 14; pool2 → 14 + 1·2 = 16, stride 4
    assert [(f.type, f.size[0], f.stride[0], f.padding[0]) for f in fields] == [
        ("Conv2d", 5, 1, 2),
        ("Tanh", 5, 1, 2),
        ("AvgPool2d", 6, 2, 2),
        ("Conv2d", 14, 2, 2),
        ("Tanh", 14, 2, 2),
        ("AvgPool2d", 16, 4, 2),
    ]


def test_unit_box_in_input_coordinates():
    f = receptive.theoretical(summarize(gallery.load("lenet5-mnist"), count_flops=False))[3]  # 14×14, stride 2, padding 2
    inside = receptive.unit_box(f, (4, 6), (28, 28))
    assert (inside.start, inside.end) == ((6, 10), (19, 23)) and not inside.clipped
    corner = receptive.unit_box(f, (0, 9), (28, 28))
    assert corner.start == (-2, 16) and corner.end == (11, 29)
    assert corner.lo == (0, 16) and corner.hi == (11, 27) and corner.clipped


def _random_model(seed: int, kind: str):
    """Convolutions and average pools, added while the map stays at least 3 wide. `kind`: "same" keeps every map the
    input's size (odd kernels, padding d·(k − 1)/2, stride 1), "valid" has any padding and stride 1, "strided" adds
    strides of 2."""
    rng = random.Random(seed)
    shape = [rng.randint(1, 2), rng.randint(18, 30), rng.randint(18, 30)]
    layers = []
    for _ in range(rng.randint(2, 5)):
        k = rng.choice([1, 3, 5]) if kind == "same" else rng.choice([1, 2, 3, 5])
        d = rng.choice([1, 1, 2])
        layer = {
            "type": rng.choice(["Conv2d", "Conv2d", "AvgPool2d"]),
            "kernel_size": k,
            "padding": rng.randint(0, k // 2),
            "stride": rng.choice([1, 2]) if kind == "strided" else 1,
        }
        if layer["type"] == "Conv2d":
            layer |= {"out_channels": rng.randint(1, 3), "dilation": d}
        if kind == "same":
            layer["padding"] = layer.get("dilation", 1) * (k - 1) // 2
        try:
            out = summarize(validate(preset(layers + [layer], shape)), count_flops=False).output_shape
        except UserError:
            continue
        if min(out[1:]) >= 3:
            layers.append(layer)
    if not layers:
        layers = [{"type": "Conv2d", "out_channels": 1, "kernel_size": 3}]
    return validate(preset(layers, shape))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("kind", ["same", "valid", "strided"])
def test_unit_boxes_against_a_gradient_probe(seed, kind):
    """The input pixels that get gradient from a unit are exactly its box when the box lies on the image, and when
    every map keeps the image's size, exactly the box clipped to the image. Elsewhere a box that sticks out of the
    image is also cut where an intermediate map ends inside it, so the gradient stays within the clipped box."""
    exp = _random_model(seed, kind)
    summary = summarize(exp, count_flops=False)
    net = _positive(features.load_model(exp))
    n = tuple(exp.model.input_shape[1:])
    x = torch.rand(1, *exp.model.input_shape, dtype=torch.float64)
    field = receptive.theoretical(summary)[-1]
    h, w = field.output_shape[1:]
    rng = random.Random(seed)
    units = {(0, 0), (h - 1, w - 1), (0, w - 1), (h // 2, w // 2), (rng.randrange(h), rng.randrange(w))}
    exact = 0
    for unit in units:
        box = receptive.unit_box(field, unit, n)
        g = receptive.input_gradient(net, x, field.path, unit, list(range(field.output_shape[0])))
        hit = np.argwhere(g > 0)
        span = (tuple(hit.min(0)), tuple(hit.max(0)))
        if not box.clipped or kind == "same":
            assert span == (box.lo, box.hi), (unit, field)
            exact += 1
        else:
            assert all(a <= b for a, b in zip(box.lo, span[0])) and all(a <= b for a, b in zip(span[1], box.hi)), (unit, field)
    if kind == "same":
        assert exact == len(units)


# ---------------------------------------------------------------- effective fields


def _uniform_stack(n: int, margin: int = 3):
    size = 2 * n + 1 + 2 * margin
    layers = [{"type": "Conv2d", "out_channels": 1, "kernel_size": 3, "bias": False} for _ in range(n)]
    exp = validate(preset(layers, [1, size, size], init={"type": "constant", "val": 1 / 9}))
    net = features.load_model(exp)
    out = size - 2 * n
    return net, size, f"model.layers[{n - 1}]", (out // 2, out // 2)


@pytest.mark.parametrize("n", [5, 10, 20])
def test_effective_sigma_of_stacked_uniform_3x3_convs(n):
    """Luo et al.: n stacked 3×3 convolutions with uniform weights and no nonlinearity have a Gaussian-like effective
    field of σ = √(2n/3): each layer adds the variance 2/3 of a uniform step in {−1, 0, 1}."""
    net, size, path, centre = _uniform_stack(n)
    g = receptive.input_gradient(net, torch.zeros(1, 1, size, size), path, centre)
    s = receptive.spread(g)
    want = math.sqrt(2 * n / 3)
    assert s.sigma == pytest.approx((want, want), rel=0.02)
    assert s.mean == pytest.approx((size // 2, size // 2))
    theory = receptive.theoretical(summarize(net_exp(n), count_flops=False))[-1]
    assert theory.size == (2 * n + 1, 2 * n + 1)
    assert s.size[0] < theory.size[0]  # the effective field is narrower than the theoretical one


def net_exp(n):
    layers = [{"type": "Conv2d", "out_channels": 1, "kernel_size": 3, "bias": False} for _ in range(n)]
    return validate(preset(layers, [1, 2 * n + 7, 2 * n + 7]))


def test_the_effective_field_is_gaussian_like_for_many_layers():
    n = 20
    net, size, path, centre = _uniform_stack(n)
    g = receptive.input_gradient(net, torch.zeros(1, 1, size, size), path, centre)
    row = g.sum(1) / g.sum()
    sigma = math.sqrt(2 * n / 3)
    i = np.arange(size)
    gauss = np.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    assert np.abs(row - gauss).max() < 0.02 * gauss.max()
    # 95% of a Gaussian lies within ±1.96σ; on the integer grid the span holds a pixel more
    s = receptive.spread(g)
    assert abs(s.size[0] - (2 * 1.96 * sigma + 1)) <= 1


def test_spread_of_simple_maps():
    delta = np.zeros((7, 9))
    delta[2, 5] = 3.0
    s = receptive.spread(delta)
    assert s.mean == (2, 5) and s.sigma == (0, 0) and s.size == (1, 1)
    assert receptive.spread(np.zeros((4, 4))) is None
    flat = np.ones((5, 40))
    s = receptive.spread(flat)
    assert s.size == (5, 38)  # 95% of a uniform 40: drop 2.5% (one pixel) at each end
    assert s.sigma[1] == pytest.approx(math.sqrt((40**2 - 1) / 12))


def test_a_dead_relu_unit_has_no_effective_field():
    exp = validate(
        preset([{"type": "Conv2d", "out_channels": 1, "kernel_size": 3, "bias": False}, {"type": "ReLU"}], [1, 9, 9], init={"type": "constant", "val": -1.0})
    )
    net = features.load_model(exp)
    x = torch.rand(1, 1, 9, 9)  # positive input, negative weights: every pre-activation is below 0
    assert receptive.spread(receptive.input_gradient(net, x, "model.layers[1]", (3, 3))) is None
    assert receptive.spread(receptive.input_gradient(net, x, "model.layers[0]", (3, 3))) is not None


def test_input_gradient_leaves_no_hooks_and_no_parameter_gradients():
    net = features.load_model(gallery.load("lenet5-mnist"))
    x = torch.randn(1, 1, 28, 28)
    g = receptive.input_gradient(net, x, "model.layers[3]", (5, 5), [0, 3, 15])
    assert g.shape == (28, 28) and (g >= 0).all()
    assert sum(len(m._forward_hooks) for m in net.modules()) == 0
    assert all(p.grad is None for p in net.parameters())
    # averaging channels equals the mean of the single-channel maps
    singles = [receptive.input_gradient(net, x, "model.layers[3]", (5, 5), c) for c in (0, 3, 15)]
    np.testing.assert_allclose(g, np.mean(singles, axis=0), rtol=1e-5, atol=1e-9)
    # the theoretical box holds every pixel with gradient
    field = {f.path: f for f in receptive.theoretical(summarize(gallery.load("lenet5-mnist"), count_flops=False))}["model.layers[3]"]
    box = receptive.unit_box(field, (5, 5), (28, 28))
    hit = np.argwhere(g > 0)
    assert tuple(hit.min(0)) >= box.lo and tuple(hit.max(0)) <= box.hi


def test_growth_rows_follow_the_theory_and_never_exceed_it():
    exp = gallery.load("lenet5-mnist")
    net = features.load_model(exp)
    summary = summarize(exp, count_flops=False)
    rows = receptive.growth(net, summary, torch.randn(1, 1, 28, 28))
    assert [r.theory[0] for r in rows] == [5, 5, 6, 14, 14, 16]
    for r in rows:
        assert r.effective is not None and all(0 < e <= t for e, t in zip(r.effective, r.theory))
        assert all(s > 0 for s in r.sigma)
