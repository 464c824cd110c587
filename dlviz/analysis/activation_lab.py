"""The activation lab: f and f′ of every registry activation with the regions where f′ nearly vanishes, and pre-activation and gradient statistics through a deep stack at initialization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlviz.errors import UserError
from dlviz.preset.args import ArgError, check_args
from dlviz.preset.registry import ACTIVATIONS, INITS

# Activations that are not a function of one number, with the reason the lab leaves them out
NOT_ELEMENTWISE = {
    "Softmax": "normalizes a whole vector",
    "LogSoftmax": "normalizes a whole vector",
    "Maxout": "takes the largest of several features",
}
SLOPE_FLOOR = 0.1  # |f′| below this passes on less than a tenth of the gradient: learning through the unit stalls
Z_RANGE = (-7.0, 7.0)


def elementwise() -> list[str]:
    return [name for name in ACTIVATIONS if name not in NOT_ELEMENTWISE]


def make_activation(name: str) -> nn.Module:
    """An activation module with its registry defaults."""
    if name not in ACTIVATIONS:
        raise UserError("actlab.activation", f"no activation named '{name}'")
    entry = ACTIVATIONS[name]
    return entry.make((1,), **{k: a.default for k, a in entry.args.items()})


@dataclass
class Curve:
    """f and f′ of one activation on a grid of z, and the z intervals where |f′| < SLOPE_FLOOR, each marked
    `zero` when f′ is exactly 0 there (a dead region) rather than merely small (saturation, or a leak)."""

    name: str
    z: np.ndarray
    f: np.ndarray
    df: np.ndarray
    flat: list[tuple[float, float, bool]]


def _intervals(z: np.ndarray, df: np.ndarray) -> list[tuple[float, float, bool]]:
    mask = np.abs(df) < SLOPE_FLOOR
    out, start = [], None
    for i in range(len(z) + 1):
        m = i < len(z) and mask[i]
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - 1 > start:  # a lone grid point is a kink (ReLU6 at 6), not a region
                out.append((float(z[start]), float(z[i - 1]), bool(np.all(df[start:i] == 0))))
            start = None
    return out


def curve(name: str, z: np.ndarray | None = None) -> Curve:
    """f(z) and f′(z) by autograd, for one elementwise activation."""
    if name in NOT_ELEMENTWISE:
        raise UserError("actlab.activation", f"{name} {NOT_ELEMENTWISE[name]}, so it has no curve f(z) of one number")
    z = np.linspace(*Z_RANGE, 561) if z is None else np.asarray(z, dtype=np.float64)
    t = torch.tensor(z, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    mod = make_activation(name).double()
    y = mod(t)
    (g,) = torch.autograd.grad(y.sum(), t)
    df = g.detach().numpy().ravel()
    return Curve(name, z, y.detach().numpy().ravel(), df, _intervals(z, df))


def curves(z: np.ndarray | None = None) -> list[Curve]:
    return [curve(name, z) for name in elementwise()]


@dataclass
class DeepStack:
    """Pre-activations z_l = W_l a_(l−1) and the loss gradients ∂L/∂z_l of a stack of Linear + activation layers at
    initialization, for a batch of N(0, 1) inputs. `samples[l]` holds a subsample of layer l's pre-activations."""

    activation: str
    init: str
    width: int
    samples: list[np.ndarray]
    z_std: list[float]
    grad_std: list[float]
    flat_fraction: list[float]  # share of units with |f′(z)| < SLOPE_FLOOR


def deep_stack(
    activation: str, init: str, init_args: dict | None = None, depth: int = 10, width: int = 256, batch: int = 512, seed: int = 0, keep: int = 4096
) -> DeepStack:
    """Push a batch through `depth` Linear(width, width) layers with zero biases, each followed by `activation`, then
    backpropagate a random unit-variance gradient from the top: how the spread of z and of ∂L/∂z change with depth."""
    if init not in INITS:
        raise UserError("init", f"no init named '{init}'")
    try:
        args = check_args(INITS[init].args, init_args or {})
    except ArgError as e:
        raise e.user_error("init") from None
    torch.manual_seed(seed)  # the init functions draw from the global generator
    # the inputs get a stream of their own: one seeded alike would repeat the weights' draws and correlate them
    g = torch.Generator().manual_seed((seed + 1_000_003) % 2**32)
    act = make_activation(activation)
    layers = []
    for _ in range(depth):
        lin = nn.Linear(width, width)
        with torch.no_grad():
            INITS[init].fill(lin.weight, **args)
            lin.bias.zero_()
        layers.append(lin)
    a = torch.randn(batch, width, generator=g)
    zs = []
    for lin in layers:
        z = lin(a)
        z.retain_grad()
        zs.append(z)
        a = act(z)
    top = torch.randn(a.shape, generator=g)
    (a * top).sum().backward()
    pick = torch.randperm(batch * width, generator=g)[:keep]
    samples, z_std, grad_std, flat = [], [], [], []
    for z in zs:
        zd = z.detach()
        samples.append(zd.reshape(-1)[pick].numpy())
        z_std.append(float(zd.std()))
        grad_std.append(float(z.grad.std()))
        t = zd.reshape(-1)[pick].double().requires_grad_(True)
        (d,) = torch.autograd.grad(act.double()(t).sum(), t)
        act.float()
        flat.append(float((d.abs() < SLOPE_FLOOR).double().mean()))
    return DeepStack(activation, init, width, samples, z_std, grad_std, flat)
