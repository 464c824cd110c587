"""Translation equivariance: a convolution with circular padding shifts its output exactly as its input is shifted
(checked against torch.roll on the module itself); a stride that does not divide the shift, and a vector after
Flatten, give correlations below 1."""

import numpy as np
import pytest
import torch
from conftest import preset

from dlviz.analysis import equivariance as eq
from dlviz.model.build import build_model, summarize
from dlviz.preset.schema import validate

LAYERS = [
    {"type": "Conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1, "padding_mode": "circular"},
    {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel_size": 2},
    {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "padding_mode": "circular"},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 5},
]


@pytest.fixture(scope="module")
def model():
    exp = validate(preset(LAYERS, [1, 12, 12]))
    return build_model(exp, seed=0), summarize(exp)


def test_a_circular_convolution_shifts_its_output_exactly():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    x = torch.randn(1, 2, 9, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for dy, dx in [(0, 1), (2, 3), (-4, 5), (9, 11)]:
            moved = conv(torch.roll(x, (dy, dx), dims=(2, 3)))
            torch.testing.assert_close(moved, torch.roll(conv(x), (dy, dx), dims=(2, 3)), rtol=0, atol=1e-6)


def test_the_engine_finds_the_convolution_equivariant_and_the_rest_less(model):
    net, summary = model
    x = torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    layers = {r.path: r for r in eq.equivariance(net, x, 2, 4, eq.layer_strides(summary))}
    conv = layers["model.layers[0]"]
    with torch.no_grad():
        reference = torch.roll(net.layers[0](x), (2, 4), dims=(2, 3))[0].numpy()
    np.testing.assert_allclose(conv.shifted, reference, rtol=0, atol=1e-6)  # f(shift x) is shift f(x)
    assert conv.correlation == pytest.approx(1.0, abs=1e-9) and conv.stride == (1, 1) and conv.exact_shift
    pooled = layers["model.layers[2]"]
    assert pooled.stride == (2, 2) and pooled.moved == (1.0, 2.0) and pooled.correlation == pytest.approx(1.0, abs=1e-9)
    # a shift of 3 pixels moves a stride-2 map by 1.5 positions: no whole shift matches it
    odd = {r.path: r for r in eq.equivariance(net, x, 3, 0, eq.layer_strides(summary))}
    assert odd["model.layers[0]"].correlation == pytest.approx(1.0, abs=1e-9)
    assert not odd["model.layers[2]"].exact_shift and odd["model.layers[2]"].correlation < 0.99
    vector = odd["model.layers[5]"]
    assert vector.kind == "vector" and vector.moved is None and vector.correlation < 0.999


def test_zero_padding_breaks_equivariance_only_at_the_borders():
    layers = [{"type": "Conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}]
    exp = validate(preset(layers, [1, 16, 16]))
    net = build_model(exp, seed=0)
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    (r,) = eq.equivariance(net, x, 1, 1, eq.layer_strides(summarize(exp)))
    assert 0.8 < r.correlation < 1.0
    # away from the wrapped rows and columns, the maps agree exactly
    np.testing.assert_allclose(r.shifted[:, 2:-1, 2:-1], r.expected[:, 2:-1, 2:-1], rtol=0, atol=1e-6)


def test_correlation_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert eq.correlation(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    assert eq.correlation(np.ones(4), np.ones(4)) == 1.0 and eq.correlation(np.ones(4), np.arange(4)) == 0.0
