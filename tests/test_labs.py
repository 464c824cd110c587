"""The convolution lab against hand-computed edges and a loop-by-loop reference, and the activation lab's curves and
deep-stack statistics against the formulas."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from dlviz.analysis import activation_lab as actlab
from dlviz.analysis import conv_lab as convlab
from dlviz.errors import UserError
from dlviz.preset.registry import ACTIVATIONS


def _reference(image, kernel, p, s, d):
    """Cross-correlation written out as loops over output positions and kernel taps."""
    padded = np.pad(image.astype(np.float64), p)
    kh, kw = kernel.shape
    oh = (padded.shape[0] - d * (kh - 1) - 1) // s + 1
    ow = (padded.shape[1] - d * (kw - 1) - 1) // s + 1
    out = np.zeros((oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        for a, b in itertools.product(range(kh), range(kw)):
            out[i, j] += kernel[a, b] * padded[i * s + a * d, j * s + b * d]
    return out


# ---------------------------------------------------------------- the convolution lab


@pytest.mark.parametrize("family, weight", [("Sobel", 4), ("Prewitt", 3), ("Scharr", 16)])
def test_edge_kernels_on_a_step_edge(family, weight):
    image = convlab.step_edge(8, 8)  # columns 0-3 are 0, columns 4-7 are 1
    gx = convlab.convolve(image, convlab.edge_kernel(family, "x"))
    # output column j is centred on input column j + 1: the step lies between centres 3 and 4, i.e. output columns 2, 3
    want = np.zeros((6, 6), dtype=np.float32)
    want[:, 2:4] = weight  # the column weights of the kernel summed: 1+2+1, 1+1+1, 3+10+3
    np.testing.assert_array_equal(gx.output, want)
    np.testing.assert_array_equal(convlab.convolve(image, convlab.edge_kernel(family, "y")).output, np.zeros((6, 6)))
    np.testing.assert_array_equal(convlab.gradient_magnitude(image, family).output, want)
    # the transposed image: the y kernel finds the edge, the x kernel nothing
    np.testing.assert_array_equal(convlab.convolve(image.T.copy(), convlab.edge_kernel(family, "y")).output, want.T)
    assert gx.predicted == gx.measured == (6, 6)


def test_sobel_with_zero_padding_sees_the_image_border():
    image = convlab.step_edge(8, 8)
    r = convlab.convolve(image, convlab.edge_kernel("Sobel", "x"), padding=1)
    assert r.measured == (8, 8)
    assert r.output[4, 3] == 4 and r.output[4, 4] == 4  # the step, as without padding
    assert r.output[0, 3] == 3  # the top row loses the kernel's row above it: 2 + 1
    assert r.output[4, 7] == -4  # the bright image ends against the zero padding: a falling edge
    assert r.output[4, 0] == 0 and r.output[4, 5] == 0
    gy = convlab.convolve(image, convlab.edge_kernel("Sobel", "y"), padding=1).output
    assert gy[0, 6] == 4 and gy[0, 4] == 3 and gy[0, 3] == 1 and gy[0, 2] == 0 and gy[7, 6] == -4


def test_the_typed_kernel_matches_a_loop_reference_and_the_formula():
    rng = random.Random(0)
    for _ in range(40):
        n, m = rng.randint(5, 14), rng.randint(5, 14)
        k = rng.randint(1, 4)
        p, s, d = rng.randint(0, 3), rng.randint(1, 3), rng.randint(1, 3)
        image = np.random.default_rng(rng.randint(0, 99)).random((n, m)).astype(np.float32)
        kernel = np.random.default_rng(rng.randint(0, 99)).standard_normal((k, k + 1)).astype(np.float32)
        if min(convlab.output_size(n, k, p, s, d), convlab.output_size(m, k + 1, p, s, d)) < 1:
            with pytest.raises(UserError, match="more than the padded"):
                convlab.convolve(image, kernel, p, s, d)
            continue
        r = convlab.convolve(image, kernel, p, s, d)
        assert r.predicted == r.measured
        np.testing.assert_allclose(r.output, _reference(image, kernel, p, s, d), rtol=1e-5, atol=1e-5)


def test_output_size_formula():
    assert convlab.output_size(32, 5) == 28
    assert convlab.output_size(28, 5, padding=2) == 28
    assert convlab.output_size(224, 11, padding=2, stride=4) == 55  # AlexNet's first layer
    assert convlab.output_size(7, 3, dilation=2) == 3
    assert convlab.output_size(8, 3, padding=1, stride=2) == 4  # ⌊(8 + 2 − 2 − 1)/2⌋ + 1


def test_kernel_parsing():
    np.testing.assert_array_equal(convlab.parse_kernel("1 2 3\n4 5 6"), [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(convlab.parse_kernel("[-1, 0, 1]; [-2, 0, 2]"), [[-1, 0, 1], [-2, 0, 2]])
    np.testing.assert_array_equal(convlab.parse_kernel(" 0.5 "), [[0.5]])
    for text, match in [
        ("", "empty"),
        ("1 2\n3", "different lengths"),
        ("1 x 3", "'x', which is not a number"),
        ("1 inf", "infinite"),
        ("\n".join(["1 " * 16] * 16), "up to 15×15"),
    ]:
        with pytest.raises(UserError, match=match):
            convlab.parse_kernel(text)


def test_pooling():
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(convlab.pool(a, "max", 2), [[5, 7], [13, 15]])
    np.testing.assert_array_equal(convlab.pool(a, "average", 2), [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(convlab.pool(a, "max", 3, 1), [[10, 11], [14, 15]])
    with pytest.raises(UserError, match="does not fit"):
        convlab.pool(a, "max", 5)


# ---------------------------------------------------------------- the activation lab


def test_every_elementwise_activation_has_a_curve_and_the_rest_are_named():
    assert set(actlab.elementwise()) | set(actlab.NOT_ELEMENTWISE) == set(ACTIVATIONS)
    names = [c.name for c in actlab.curves()]
    assert names == actlab.elementwise()


@pytest.mark.parametrize("name", actlab.elementwise())
def test_derivatives_against_finite_differences(name):
    z = np.linspace(-5, 5, 101) + 0.0123  # off the kinks at 0, ±1, ±3 and 6
    c = actlab.curve(name, z)
    h = 1e-5
    f = actlab.make_activation(name).double()
    with torch.no_grad():
        up = f(torch.tensor(z + h).reshape(-1, 1)).numpy().ravel()
        down = f(torch.tensor(z - h).reshape(-1, 1)).numpy().ravel()
    np.testing.assert_allclose(c.df, (up - down) / (2 * h), rtol=1e-5, atol=1e-7)


def test_curves_match_the_formulas():
    s = actlab.curve("Sigmoid")
    np.testing.assert_allclose(s.f, 1 / (1 + np.exp(-s.z)), rtol=1e-12)
    np.testing.assert_allclose(s.df, s.f * (1 - s.f), rtol=1e-10)
    t = actlab.curve("Tanh")
    np.testing.assert_allclose(t.df, 1 - t.f**2, atol=1e-12)
    r = actlab.curve("ReLU")
    np.testing.assert_array_equal(r.f, np.maximum(r.z, 0))


def test_flat_regions():
    # sigmoid: f′ = f(1 − f) = 0.1 where f = (1 ± √0.6)/2, i.e. |z| = ln((1 + √0.6)/(1 − √0.6))
    edge = math.log((1 + math.sqrt(0.6)) / (1 - math.sqrt(0.6)))
    (lo, hi_left, zero_l), (lo_right, hi, zero_r) = actlab.curve("Sigmoid").flat
    assert (lo, hi) == actlab.Z_RANGE and not zero_l and not zero_r
    step = (actlab.Z_RANGE[1] - actlab.Z_RANGE[0]) / 560  # the grid's spacing
    assert hi_left == pytest.approx(-edge, abs=step) and lo_right == pytest.approx(edge, abs=step)
    assert actlab.curve("ReLU").flat == [(actlab.Z_RANGE[0], 0.0, True)]
    assert actlab.curve("LeakyReLU").flat[0][2] is False  # slope 0.01: small, not zero
    assert [f[2] for f in actlab.curve("Hardtanh").flat] == [True, True]
    assert actlab.curve("PReLU").flat == []  # slope 0.25 for z < 0
    assert actlab.curve("ReLU6").flat[-1][:2] == (6.0, actlab.Z_RANGE[1])


def test_deep_stack_sigmoid_with_unit_normal_weights_saturates():
    s = actlab.deep_stack("Sigmoid", "normal", {"std": 1.0})
    assert len(s.samples) == 10 and len(s.z_std) == 10
    # z = Σ w a over 256 inputs with a in (0, 1) and w ~ N(0, 1): std about √(256 E[a²]), far beyond sigmoid's ±2
    assert all(v > 5 for v in s.z_std)
    assert all(f > 0.6 for f in s.flat_fraction)


def test_deep_stack_relu_with_he_keeps_the_spread():
    s = actlab.deep_stack("ReLU", "kaiming_normal", {})
    # He: Var(z₁) = n · 2/n · E[x²] = 2 for N(0, 1) inputs, and E[relu(z)²] = Var(z)/2 keeps it layer after layer
    assert s.z_std[0] == pytest.approx(math.sqrt(2), rel=0.05)
    assert all(0.7 < v < 2.0 for v in s.z_std)
    assert 0.5 < s.grad_std[0] / s.grad_std[-1] < 2
    assert all(0.4 < f < 0.6 for f in s.flat_fraction)  # half the units are at z < 0


def test_deep_stack_tanh_with_tiny_weights_vanishes():
    s = actlab.deep_stack("Tanh", "normal", {"std": 0.01})
    # each layer multiplies the spread by about √256 · 0.01 = 0.16, forwards and backwards
    ratios = np.array(s.z_std[1:]) / np.array(s.z_std[:-1])
    np.testing.assert_allclose(ratios, 0.16, rtol=0.1)
    assert s.grad_std[0] < 1e-6 * s.grad_std[-1]


def test_deep_stack_checks_its_init():
    with pytest.raises(UserError, match="no init"):
        actlab.deep_stack("ReLU", "nope")
    with pytest.raises(UserError) as e:
        actlab.deep_stack("ReLU", "normal", {"std": -1})
    assert e.value.path == "init.std"
