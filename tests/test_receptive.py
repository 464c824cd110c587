"""The summary's receptive fields against a gradient probe: backprop from one output unit of a random model built with
positive weights, and the input pixels that receive gradient span exactly that unit's theoretical field."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from conftest import preset
from torch import nn

from dlviz.errors import UserError
from dlviz.model.build import build_model, summarize
from dlviz.preset.schema import validate


class DilatedMean(nn.Module):
    """A max pool's window geometry with every tap weighted equally.

    A max pool sends gradient only to each window's maximum, so its gradient region is sparse; the receptive field is
    a property of the windows, which this module keeps (kernel, stride, padding, dilation, ceil_mode output size)."""

    def __init__(self, pool: nn.Module, dims: int):
        super().__init__()
        self.pool, self.dims = pool, dims

    def forward(self, x):
        def per_dim(v):
            return tuple(v) if isinstance(v, (list, tuple)) else (v,) * self.dims

        k, s, p, d = (per_dim(getattr(self.pool, a)) for a in ("kernel_size", "stride", "padding", "dilation"))
        out = self.pool(x).shape[2:]
        pads = []
        for ki, si, pi, di in reversed(list(zip(k, s, p, d))):
            pads += [pi, pi + si * di * ki]  # zeros on the right leave room for ceil_mode's last window
        w = torch.ones(x.shape[1], 1, *k, dtype=x.dtype) / torch.tensor(k).prod()
        conv = F.conv1d if self.dims == 1 else F.conv2d
        y = conv(F.pad(x, pads), w, stride=s, dilation=d, groups=x.shape[1])
        return y[(..., *(slice(0, n) for n in out))]


def _positive(net: nn.Module, dims: int) -> nn.Module:
    """Weights 1/fan_in, biases 0, max pools swapped for DilatedMean: every path from input to output is positive."""
    net = net.double().eval()
    for name, mod in list(net.named_modules()):
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            with torch.no_grad():
                mod.weight.fill_(1.0 / mod.weight[0].numel())
                if mod.bias is not None:
                    mod.bias.zero_()
        if isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d)):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent), child, DilatedMean(mod, dims))
    return net


# ---------------------------------------------------------------- random models


def _size(rng, dims, lo, hi):
    vals = [rng.randint(lo, hi) for _ in range(dims)]
    return vals[0] if dims == 1 or rng.random() < 0.6 else vals


def _conv(rng, dims, stride=None, same_size=False):
    t = "Conv1d" if dims == 1 else "Conv2d"
    out = rng.randint(1, 3)
    if same_size:  # odd kernels padded by d·(k−1)/2: every branch of the same stride gives the same size
        k, d = rng.choice([1, 3, 5]), rng.randint(1, 2)
        return {"type": t, "out_channels": out, "kernel_size": k, "dilation": d, "padding": d * (k - 1) // 2, "stride": stride or 1}
    k = _size(rng, dims, 1, 5)
    layer = {"type": t, "out_channels": out, "kernel_size": k, "dilation": _size(rng, dims, 1, 3)}
    if rng.random() < 0.2:
        layer["padding"] = "same"
        return layer
    layer["stride"] = stride or _size(rng, dims, 1, 3)
    layer["padding"] = rng.randint(0, min(k) if isinstance(k, list) else k)
    return layer


def _pool(rng, dims, stride=None, same_size=False):
    kind = rng.choice(["Max", "Avg"])
    t = f"{kind}Pool{dims}d"
    if same_size:
        k = rng.choice([1, 3])
        return {"type": t, "kernel_size": k, "stride": stride or 1, "padding": (k - 1) // 2}
    k = rng.randint(1, 4)
    layer = {"type": t, "kernel_size": k, "padding": rng.randint(0, k // 2), "ceil_mode": rng.random() < 0.4}
    if rng.random() < 0.7:
        layer["stride"] = rng.randint(1, 3)
    if kind == "Max":
        layer["dilation"] = rng.randint(1, 2)
    else:
        layer["count_include_pad"] = rng.random() < 0.5
    return layer


def _residual(rng, dims):
    s = rng.choice([1, 1, 2])
    body = [_conv(rng, dims, s, same_size=True) for _ in range(rng.randint(1, 2))]
    for later in body[1:]:
        later["stride"] = 1
    width = body[-1]["out_channels"]
    if s == 1 and rng.random() < 0.5:
        for c in body:
            c["out_channels"] = 2  # the input of every block has 2 channels (see _model): identity shortcut
        return {"type": "Residual", "body": body}
    shortcut = [_conv(rng, dims, s, same_size=True)]
    shortcut[0]["out_channels"] = width
    return {"type": "Residual", "body": body, "shortcut": shortcut}


def _concat(rng, dims):
    s = rng.choice([1, 2])
    branches = []
    for _ in range(rng.randint(2, 3)):
        branch = [rng.choice([_conv, _pool])(rng, dims, s, same_size=True)]
        if rng.random() < 0.5:
            branch.append(_conv(rng, dims, 1, same_size=True))
        branches.append(branch)
    if s == 1 and rng.random() < 0.3:
        branches.append([])
    return {"type": "Concat", "branches": branches}


def _model(seed: int, dims: int):
    """A random stack that fits its input, grown one layer at a time; blocks get a 2-channel input."""
    rng = random.Random(seed)
    shape = [2] + [rng.randint(20, 36) for _ in range(dims)]
    layers = []
    for _ in range(rng.randint(2, 7)):
        for _try in range(20):
            make = rng.choice([_conv, _conv, _pool, _pool, _residual, _concat])
            new = [make(rng, dims)]
            if make in (_residual, _concat):
                new.insert(0, _conv(rng, dims, 1, same_size=True))
                new[0]["out_channels"] = 2
            try:
                out = summarize(validate(preset(layers + new, shape)), count_flops=False).output_shape
            except UserError:
                continue
            if min(out[1:]) >= 2:
                layers += new
                break
        if min(out[1:]) <= 4:
            break
    return layers, shape


def _per_dim(v, dims):
    return list(v) if isinstance(v, list) else [v] * dims


def _field(rf, dims):
    return [_per_dim(rf[k], dims) for k in ("size", "stride", "padding")]


def _check(layers, shape, enlarge=True):
    """Probe the model's output units.

    A unit whose theoretical field lies inside the image must receive gradient on exactly that span. A field that
    sticks out of the image is cut by the image edge and, in strided layers, by positions of intermediate maps that
    fall in padding or past the last window; there the gradient must stay inside the clipped span."""
    dims = len(shape) - 1
    summary = summarize(validate(preset(layers, shape)))
    rows = {r.path: r for r in summary.rows}
    rf = rows[f"model.layers[{len(layers) - 1}]"].receptive_field
    assert rf is not None
    if min(summary.output_shape[1:]) > 1:
        assert summary.receptive_field == rf
    size, stride, padding = _field(rf, dims)
    if enlarge:  # room for whole fields: first one unit that starts at or after pixel 0, then one more stride
        shape = [shape[0]] + [max(n, -(-p // s) * s - p + r + s) for n, r, s, p in zip(shape[1:], size, stride, padding)]
    exp = validate(preset(layers, shape))
    summary = summarize(exp)
    rows = {r.path: r for r in summary.rows}
    assert _field(rows[f"model.layers[{len(layers) - 1}]"].receptive_field, dims) == [size, stride, padding]
    net = _positive(build_model(exp, seed=0), dims)
    x = torch.rand(1, *shape, dtype=torch.float64, requires_grad=True)
    y = net(x)
    assert list(y.shape[1:]) == summary.output_shape
    out = summary.output_shape[1:]

    def span(axis, i):  # the Distill convention: unit i sees [iS − P, iS − P + r − 1]
        first = i * stride[axis] - padding[axis]
        return first, first + size[axis] - 1

    inside = [[i for i in range(n) if span(a, i)[0] >= 0 and span(a, i)[1] <= shape[a + 1] - 1] for a, n in enumerate(out)]
    assert all(inside), "no unit's field fits in the probe image"
    exact = {tuple(axis[j] for axis in inside) for j in (0, -1)} | {tuple(axis[len(axis) // 2] for axis in inside)}
    edges = {(0,) * dims, tuple(n // 2 for n in out), tuple(n - 1 for n in out)}
    for unit in sorted(exact | edges):
        (g,) = torch.autograd.grad(y[(0, slice(None), *unit)].sum(), x, retain_graph=True)
        hit = g[0].abs().sum(0).nonzero()
        for axis in range(dims):
            first, last = span(axis, unit[axis])
            if unit in exact:
                assert (hit[:, axis].min().item(), hit[:, axis].max().item()) == (first, last), (unit, axis, rf)
            elif len(hit):
                assert max(first, 0) <= hit[:, axis].min().item() <= hit[:, axis].max().item() <= last, (unit, axis, rf)


@pytest.mark.parametrize("seed", range(30))
def test_random_2d_models(seed):
    _check(*_model(seed, 2))


@pytest.mark.parametrize("seed", range(10))
def test_random_1d_models(seed):
    _check(*_model(1000 + seed, 1))


def test_the_random_models_cover_every_kind_of_window():
    kinds = set()

    def walk(layers):
        for layer in layers:
            kinds.add(layer["type"])
            if layer.get("padding") == "same":
                kinds.add("same")
            if layer.get("ceil_mode"):
                kinds.add("ceil_mode")
            if layer.get("shortcut"):
                kinds.add("projection shortcut")
            for key in ("body", "shortcut"):
                walk(layer.get(key, []))
            for b in layer.get("branches", []):
                walk(b)

    for seed in range(30):
        walk(_model(seed, 2)[0])
    assert {"Conv2d", "MaxPool2d", "AvgPool2d", "Residual", "Concat", "same", "ceil_mode", "projection shortcut"} <= kinds


def test_dilation_stride_and_padding_by_hand():
    # conv k3 d2 (r 5) -> pool k2 s2 (r 5 + 1·1 = 6, S 2) -> conv k3 s1 p1 (r 6 + 2·2 = 10, P 0 + 0 + 1·2 = 2)
    layers = [
        {"type": "Conv2d", "out_channels": 1, "kernel_size": 3, "dilation": 2},
        {"type": "AvgPool2d", "kernel_size": 2},
        {"type": "Conv2d", "out_channels": 1, "kernel_size": 3, "padding": 1},
    ]
    assert summarize(validate(preset(layers, [1, 32, 32]))).receptive_field == {"size": 10, "stride": 2, "padding": 2}
    _check(layers, [1, 32, 32])


def test_adaptive_pool_that_divides_its_input():
    layers = [{"type": "Conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}, {"type": "AdaptiveAvgPool2d", "output_size": [4, 3]}]
    _check(layers, [1, 16, 12], enlarge=False)


def _adaptive_windows(n: int, o: int) -> list[tuple[int, int]]:
    """PyTorch's windows for an adaptive pool from n to o positions, as its documentation writes them."""
    return [(i * n // o, -(-(i + 1) * n // o) - 1) for i in range(o)]


@pytest.mark.parametrize("size_in, size_out", [([10, 12], [4, 3]), ([7, 11], [3, 4]), ([13, 9], [5, 9]), ([3, 6], [5, 4])])
@pytest.mark.parametrize("pool", ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d"])
def test_adaptive_pool_fields_hold_every_window_autograd_finds(size_in, size_out, pool):
    """Where the output size does not divide the input's, the windows start irregularly (10 → 4: at 0, 2, 5, 7). The
    reported field must hold the inputs each output unit depends on, as autograd finds them, and be no wider than that
    asks: the first unit's field starts where its window starts, and some unit's field ends where its window ends."""
    layers = [{"type": "Conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}, {"type": pool, "output_size": size_out}]
    exp = validate(preset(layers, [1, *size_in]))
    rf = summarize(exp).rows[-1].receptive_field
    size, stride, padding = _field(rf, 2)
    net = build_model(exp, seed=0).double().eval()
    with torch.no_grad():
        net.get_submodule("layers.0").weight.fill_(1.0)
    x = torch.rand(1, 1, *size_in, dtype=torch.float64, requires_grad=True)
    y = net(x)
    for axis in range(2):
        windows = _adaptive_windows(size_in[axis], size_out[axis])
        tight_start = tight_end = False
        for i, (a, b) in enumerate(windows):
            unit = [0, 0]
            unit[axis] = i
            (g,) = torch.autograd.grad(y[0, 0, unit[0], unit[1]], x, retain_graph=True)
            hit = g[0, 0].abs().sum(1 - axis).nonzero()[:, 0]
            lo, hi = hit.min().item(), hit.max().item()
            if pool == "AdaptiveAvgPool2d":  # every tap counts: the 3-wide convolution widens the window by one a side
                assert (lo, hi) == (max(a - 1, 0), min(b + 1, size_in[axis] - 1))
            first = i * stride[axis] - padding[axis]
            last = first + size[axis] - 1
            assert first <= lo and hi <= last, (axis, i, (lo, hi), rf)
            tight_start |= first == a - 1
            tight_end |= last == b + 1
        assert tight_start and tight_end, ("wider than every window", axis, rf)


def test_an_adaptive_pool_from_10_to_4_by_hand():
    layers = [{"type": "AdaptiveAvgPool2d", "output_size": 4}]
    rf = summarize(validate(preset(layers, [1, 10, 10]))).receptive_field
    assert rf == {"size": 4, "stride": 2, "padding": 0}  # windows 0–2, 2–4, 5–7, 7–9: stride 2 and kernel 4 hold each
