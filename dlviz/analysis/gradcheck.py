"""The gradient check: autograd's gradients of a preset's loss against central finite differences, in float64, for every
parameter tensor, with the kinks (ReLU at 0, max-pool ties) that make a correct gradient look wrong named as such."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from dlviz.model.build import build_model
from dlviz.preset.schema import Experiment

FINE, DOUBTFUL = 1e-7, 1e-2  # relative errors: below FINE all is well, above DOUBTFUL the gradient is wrong
# The absolute error central differences reach in float64 at best (ε near ∛u): about u^(2/3)·|L|, u = 2⁻⁵²
RESOLUTION = 2.0 ** (-52 * 2 / 3)
MAX_KINK_LOOKS = 50  # entries a tensor examined for kinks, worst first
# Piecewise-linear activations: their derivative jumps where the input is 0 (Hardtanh and ReLU6 also at their ends).
KINKED = ("ReLU", "LeakyReLU", "PReLU", "RReLU", "ReLU6", "Hardtanh", "Hardshrink", "Softshrink", "Threshold")


@dataclass(frozen=True)
class ParamCheck:
    """One parameter tensor's check: its worst entry's relative error and the two gradients there."""

    name: str
    shape: tuple[int, ...]
    checked: int  # entries checked
    max_rel_error: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    verdict: str  # "fine" (< 1e-7), "doubtful" (< 1e-2), "wrong"
    note: str  # why the worst entry may look wrong when it is not (a kink), or ""
    max_smooth_error: float  # the worst over the entries whose perturbation crosses no kink


def verdict(error: float) -> str:
    return "fine" if error < FINE else "doubtful" if error < DOUBTFUL else "wrong"


class _BrokenTanhFn(torch.autograd.Function):
    """tanh with a deliberately wrong backward: grad·(1 − y) where the derivative is grad·(1 − y²)."""

    generate_vmap_rule = True  # so that the vectorized finite differences can run through it

    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y)


class BrokenTanh(nn.Module):
    """A tanh layer whose backward pass is wrong, for showing what the gradient check catches."""

    def forward(self, x):
        return _BrokenTanhFn.apply(x)


def break_model(model: nn.Module) -> str:
    """Make the first activation a BrokenTanh (or put one after the first Linear/Conv when there is none); returns the
    name of the module it acts at. Done with a forward hook, so parameter names and the structure stay as they were."""
    from dlviz.preset.registry import ACTIVATIONS

    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    act = next(((n, m) for n, m in leaves if type(m).__name__ in ACTIVATIONS), None)
    if act is not None:
        act[1].register_forward_hook(lambda mod, inp, out: _BrokenTanhFn.apply(inp[0]))
        return act[0]
    first = next(((n, m) for n, m in leaves if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    if first is None:
        raise ValueError("the model has no activation, Linear or Conv layer to break")
    first[1].register_forward_hook(lambda mod, inp, out: _BrokenTanhFn.apply(out))
    return first[0]


def setup(exp: Experiment, csv_bytes: Optional[bytes] = None, dataset=None):
    """(dataset, objective, untrained model) of a trainable preset, checked as the trainer checks it."""
    from dlviz.data.datasets import load_dataset
    from dlviz.training.fit import check_fit, require_sections

    require_sections(exp)
    ds = dataset if dataset is not None else load_dataset(exp.data, exp.seed, csv_bytes)
    objective = check_fit(exp, ds.input_shape, ds.task, ds.num_classes, ds.target_shape)
    return ds, objective, build_model(exp, seed=exp.seed)


MAX_POOLS = {nn.MaxPool1d: nn.functional.max_pool1d, nn.MaxPool2d: nn.functional.max_pool2d, nn.MaxPool3d: nn.functional.max_pool3d}


def _kink_state(model: nn.Module, x) -> list[tuple[str, torch.Tensor]]:
    """Which side of every kink each unit is on, layer by layer in the order the forward pass meets them: the sign
    pattern of the kinked activations' inputs and the argmax of every max-pool window. Two perturbations with
    different states lie on two sides of a kink."""
    states: list[tuple[str, torch.Tensor]] = []

    def kinked(mod, inp, out):
        z = inp[0]
        if isinstance(mod, nn.Hardtanh):  # ReLU6 included
            side = torch.stack([z > mod.min_val, z > mod.max_val])
        elif isinstance(mod, (nn.Hardshrink, nn.Softshrink)):
            side = torch.stack([z > mod.lambd, z < -mod.lambd])
        elif isinstance(mod, nn.Threshold):
            side = z > mod.threshold
        else:
            side = z > 0
        states.append((type(mod).__name__, side))

    def pooled(mod, inp, out):
        _, idx = MAX_POOLS[type(mod)](inp[0], mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode, return_indices=True)
        states.append((type(mod).__name__, idx))

    hooks = [m.register_forward_hook(pooled if type(m) in MAX_POOLS else kinked) for m in model.modules() if type(m).__name__ in KINKED or type(m) in MAX_POOLS]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return states


def _kink_note(model, x, p, flat_index, eps) -> str:
    """What a perturbation of ±eps of one entry crosses, in words ("" when no kink)."""
    flat = p.view(-1)
    old = float(flat[flat_index])
    flat[flat_index] = old + eps
    plus = _kink_state(model, x)
    flat[flat_index] = old - eps
    minus = _kink_state(model, x)
    flat[flat_index] = old
    crossed = [kind for (kind, a), (_, b) in zip(plus, minus) if not torch.equal(a, b)]
    if not crossed:
        return ""
    if any(k.startswith("MaxPool") for k in crossed):
        return f"a max-pool window's two largest inputs are within ε = {eps:g} of each other here (a tie): the kink, not a bug"
    return f"a {crossed[0]} input is within ε = {eps:g} of its kink at this entry: the finite difference straddles it, not a bug"


def _central_differences(model, loss_with, name, p, idx, eps, loop, chunk: int = 256) -> torch.Tensor:
    """(L(w + ε·e_i) − L(w − ε·e_i)) / 2ε for each entry i of `idx`: the perturbed copies of the tensor go through the
    model together (torch.func.vmap), chunk by chunk; a model vmap cannot batch is perturbed in place, one pass each."""
    from torch.func import vmap

    flat = p.view(-1)
    out = torch.empty(len(idx), dtype=torch.float64)
    with warnings.catch_warnings():
        # a layer without a batching rule still runs under vmap, one perturbation at a time: slower, not wrong
        warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
        try:
            batched = vmap(lambda t: loss_with(name, t))
            for s in range(0, len(idx), chunk):
                part = idx[s : s + chunk]
                k = len(part)
                w = flat.detach().expand(2 * k, -1).clone()
                rows = torch.arange(k)
                w[rows, part] += eps
                w[rows + k, part] -= eps
                vals = batched(w.view(2 * k, *p.shape))
                out[s : s + k] = (vals[:k] - vals[k:]) / (2 * eps)
            return out
        except (RuntimeError, NotImplementedError, ValueError):
            pass
    for j, i in enumerate(idx.tolist()):
        old = float(flat[i])
        flat[i] = old + eps
        up = loop()
        flat[i] = old - eps
        down = loop()
        flat[i] = old
        out[j] = (up - down) / (2 * eps)
    return out


@torch.no_grad()
def gradient_check(
    exp: Experiment,
    samples: int = 4,
    eps: float = 1e-5,
    max_entries: int = 2000,
    broken: bool = False,
    seed: int = 0,
    csv_bytes: Optional[bytes] = None,
    dataset=None,
) -> list[ParamCheck]:
    """Check autograd's gradient of the loss on the first `samples` training samples against central differences
    (L(w+ε) − L(w−ε)) / 2ε, entry by entry, on a float64 copy of the untrained model in eval mode (dropout off, so the
    loss is a deterministic function of the weights; BatchNorm uses its running statistics).

    Up to `max_entries` entries a tensor, drawn with `seed`. The relative error is |a − n| / max(|a|, |n|, floor) with
    floor = RESOLUTION·max(|L|, 1) / 1e-7: two zeros compare as 0, and an entry too small for a relative error of 1e-7
    to be resolved in float64 (that would be an absolute error below what central differences reach, ≈ u^(2/3)·|L|)
    is judged by its absolute error. ε = 1e-5 is near the step ∛u that balances rounding and truncation. `broken=True` puts a BrokenTanh in
    the model (see break_model), whose wrong backward shows as "wrong" for the parameters before it."""
    from dlviz.training.trainer import param_label

    ds, objective, model = setup(exp, csv_bytes, dataset)
    model = copy.deepcopy(model).double().eval()
    if broken:
        break_model(model)
    x = ds.x_train[:samples]
    x = x.double() if x.is_floating_point() else x
    y = ds.y_train[:samples]
    y = y.double() if y.is_floating_point() else y
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    from torch.func import functional_call

    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}

    def loss_with(name: str, value: torch.Tensor) -> torch.Tensor:
        return objective.loss(functional_call(model, {**state, name: value}, (x,)), y)

    def loop() -> float:
        return float(objective.loss(model(x), y))

    with torch.enable_grad():
        value = objective.loss(model(x), y)
        grads = torch.autograd.grad(value, [p for _, p in params], allow_unused=True)
    floor = RESOLUTION * max(abs(float(value)), 1.0) / FINE
    gen = torch.Generator().manual_seed(seed)
    out = []
    for (name, p), g in zip(params, grads):
        g = torch.zeros_like(p) if g is None else g
        n = p.numel()
        idx = torch.arange(n) if n <= max_entries else torch.randperm(n, generator=gen)[:max_entries].sort().values
        numeric = _central_differences(model, loss_with, name, p, idx, eps, loop)
        analytic = g.reshape(-1)[idx]
        err = (analytic - numeric).abs() / torch.maximum(torch.maximum(analytic.abs(), numeric.abs()), torch.tensor(floor, dtype=torch.float64))
        worst = int(err.argmax())
        # kinks are looked for only where the error is not already fine, worst first: each look costs two more passes
        smooth, note = 0.0, ""
        for k, j in enumerate(err.argsort(descending=True).tolist()):
            if float(err[j]) < FINE or k == MAX_KINK_LOOKS:
                smooth = float(err[j])
                break
            kink = _kink_note(model, x, p, int(idx[j]), eps)
            if j == worst:
                note = kink
            if not kink:
                smooth = float(err[j])
                break
        wi = int(idx[worst])
        out.append(
            ParamCheck(
                name=param_label(model, name),
                shape=tuple(p.shape),
                checked=len(idx),
                max_rel_error=float(err[worst]),
                worst_index=tuple(int(v) for v in torch.unravel_index(torch.tensor(wi), p.shape)) if p.dim() else (),
                analytic=float(analytic[worst]),
                numeric=float(numeric[worst]),
                verdict=verdict(float(err[worst])),
                note=note,
                max_smooth_error=smooth,
            )
        )
    return out
