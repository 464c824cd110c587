"""Evaluating a network's loss at points of a line or plane through its weights: the problem (a fixed batch, the
model and its loss), the reference loop over points, and the batched method that evaluates many points at once."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from dlviz import limits as _limits
from dlviz.data.datasets import load_dataset
from dlviz.errors import UserError
from dlviz.model import budget as _budget
from dlviz.model.build import Concat, Residual, build_model, summarize
from dlviz.preset.registry import shape_str
from dlviz.preset.schema import Experiment
from dlviz.training.losses import Objective, make_objective

EVAL_SAMPLES = 1000  # size of the fixed evaluation batch
COARSE = 11  # points per side of the first, quick picture
FOLD_BUDGET = 1 << 19  # activation elements (grid points × samples × features) per pass of the batched method: 2 MB,
# the best of 2^16 to 2^21 measured for both the playground MLP and LeNet-5 (a pass stays in cache)
FILTER_EPS = 1e-10  # as in Li et al.'s code: a zero random filter stays zero instead of dividing by zero

Direction = list[torch.Tensor]  # one tensor per trainable parameter, in model.parameters() order


@dataclass
class Problem:
    """A model in eval mode, its objective and one fixed evaluation batch: the loss as a function of the weights."""

    model: nn.Module
    objective: Objective
    x: torch.Tensor
    y: torch.Tensor
    flops: int = 0  # of one sample's forward pass (0: not known)

    def __post_init__(self):
        self.model.eval()
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def weights(self) -> Direction:
        return [p.detach().clone() for p in self.params]

    def set_weights(self, values: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.params], list(values))

    @torch.no_grad()
    def outputs(self) -> torch.Tensor:
        """The model's outputs for the whole batch at its current weights, computed as many samples at a time as the
        memory budget allows (eval mode: each sample's output does not depend on the others)."""
        fp = getattr(self.model, "footprint", None)
        rows = _budget.rows_that_fit(_budget.forward_bytes_per_sample(fp)) if fp is not None else len(self.x)
        if rows >= len(self.x):
            return self.model(self.x)
        return torch.cat([self.model(self.x[i : i + rows]) for i in range(0, len(self.x), max(rows, 1))])

    def loss(self) -> float:
        """The loss at the model's current weights: one plain forward pass."""
        return float(self.objective.loss(self.outputs(), self.y))


def evaluation_batch(x: torch.Tensor, y: torch.Tensor, size: int = EVAL_SAMPLES, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded sample of `size` training examples (all of them when there are fewer)."""
    if len(x) <= size:
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size]
    return x[idx], y[idx]


def make_problem(exp: Experiment, state: Optional[dict] = None, dataset=None, samples: int = EVAL_SAMPLES, device: Optional[str] = None) -> Problem:
    """The preset's model (at the weights and buffers of the state dict `state`, else at its initialization) on a
    fixed batch of its training data, both on `device` (by default DLVIZ_DEVICE's)."""
    for key, what in (("data", "a data section"), ("loss", "a loss")):
        if getattr(exp, key) is None:
            raise UserError(key, f"this preset has no {key} section; a loss surface needs {what}")
    ds = dataset if dataset is not None else load_dataset(exp.data, exp.seed)
    if tuple(exp.model.input_shape) != tuple(ds.input_shape):
        raise UserError(
            "model.input_shape",
            f"the {exp.data.name} data gives {shape_str(ds.input_shape)} per sample but the "
            f"model's input_shape is {shape_str(exp.model.input_shape)}; set it to {list(ds.input_shape)}",
        )
    summary = summarize(exp)
    objective = make_objective(exp.loss, ds.task, ds.num_classes, ds.target_shape, summary.output_shape)
    model = build_model(exp, seed=exp.seed)
    one = _budget.forward_bytes_per_sample(model.footprint)
    _budget.check("The loss surface of this model", one, _budget.SMALLER_MODEL)  # its batches shrink to fit, down to one sample
    if state is not None:
        model.load_state_dict(state)
    device = device or _limits.device()
    x, y = evaluation_batch(ds.x_train, ds.y_train, samples, exp.seed)
    return Problem(model.to(device), objective, x.to(device), y.to(device), summary.flops)


def within_flops(problem: Problem, points: int) -> Problem:
    """The problem on as many of its samples as `points` evaluations can take within the server's budget of floating-point
    operations for one surface (DLVIZ_MAX_SURFACE_FLOPS): the evaluation batch is already a seeded random sample, so its
    first k samples are one too. Refused with a sentence when not even one sample fits."""
    limit = _limits.current().max_surface_flops
    per_sample = points * max(problem.flops, 1)
    if per_sample * len(problem.x) <= limit:
        return problem
    keep = limit // per_sample
    if keep < 1:
        raise UserError(
            "resolution",
            f"{points:,} points of this model's loss surface would take about {per_sample:.3g} "
            f"floating-point operations even on one sample, over the server's budget of {limit:.3g} "
            "(DLVIZ_MAX_SURFACE_FLOPS); lower the resolution or use a smaller model",
        )
    return Problem(problem.model, problem.objective, problem.x[:keep], problem.y[:keep], problem.flops)


# ---------------------------------------------------------------- evaluation: the reference loop


@torch.no_grad()
def evaluate_loop(problem: Problem, origin: Sequence[torch.Tensor], directions: Sequence[Direction], coords: np.ndarray) -> np.ndarray:
    """The method of the public libraries (loss-landscape, loss-landscapes): set the weights in place, one forward per
    point. The loss at origin + Σⱼ coords[i, j]·directions[j] for each row i; the model's weights are put back after."""
    coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)
    before = problem.weights()
    out = np.empty(len(coords))
    for i, c in enumerate(coords):
        for j, p in enumerate(problem.params):
            w = origin[j]
            for cj, d in zip(c, directions):
                w = w + float(cj) * d[j]
            p.data = w
        out[i] = float(problem.objective.loss(problem.outputs(), problem.y))
    problem.set_weights(before)
    return out


# ---------------------------------------------------------------- evaluation: many points at once


LINEAR_IN_WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
CACHE_BUDGET = 1 << 26  # elements of shared activations kept between chunks of grid points
LOSS_BUDGET = 1 << 20  # output elements gathered before one vmapped loss call (4 MB)


class _Batched:
    """Grid points evaluated a chunk at a time. An activation is either shared by every point (no moved weight has
    been met yet) or folded: the chunk's points stacked on the batch dimension, point-major, (G·n, ...).

    Folding is exact in eval mode because every layer then treats samples independently, and for the same reason
    the samples may go through in blocks that stay in cache. A layer whose weights do not move runs once on the whole
    fold. The first moved layer, when it is a Linear or a convolution fed by a shared input, is computed once per
    direction and block: f(x, W0 + aD1 + bD2) = f(x, W0) + a·f(x, D1) + b·f(x, D2), so each point then costs one
    small combination. A later moved Linear is one batched matrix product; any other moved layer runs once per
    point with that point's weights. Shared results are kept between chunks, each point's weights between blocks."""

    def __init__(self, stacks: dict):
        self.stacks = stacks  # parameter -> (1 + k, numel): the origin and the directions, flattened
        self.cache: dict = {}
        self.cached = 0
        self.moves: dict[int, list] = {}  # id(module) -> its moved (name, parameter) pairs
        self.point_weights: dict = {}

    def forward(self, mod: nn.Module, x: torch.Tensor, coeffs: torch.Tensor, block: int) -> tuple[torch.Tensor, bool]:
        """The output for the chunk's points (rows of `coeffs`: 1 then the coordinates) on one block of samples."""
        if block == 0:
            self.point_weights = {}
        self.coeffs, self.g, self.block = coeffs, coeffs.shape[0], block
        return self.run(mod, x, False)

    def moved(self, mod: nn.Module) -> list:
        key = id(mod)
        if key not in self.moves:
            self.moves[key] = [(name, p) for name, p in mod.named_parameters() if p in self.stacks]
        return self.moves[key]

    def weights(self, p: torch.Tensor) -> torch.Tensor:
        """The parameter at every point of the chunk: (G, *p.shape)."""
        key = id(p)
        if key not in self.point_weights:
            self.point_weights[key] = self.mix(self.stacks[p]).reshape(self.g, *p.shape)
        return self.point_weights[key]

    def mix(self, flat: torch.Tensor) -> torch.Tensor:
        """Σⱼ cⱼ·flat[j] for every point (c₀ = 1): (1 + k, M) -> (G, M)."""
        # addcmul measured 2-4x faster here than the equivalent (G × k) @ (k × M) matrix product
        out = torch.addcmul(flat[0], self.coeffs[:, 1:2], flat[1])
        for j in range(2, flat.shape[0]):
            out.addcmul_(self.coeffs[:, j : j + 1], flat[j])
        return out

    def run(self, mod: nn.Module, h: torch.Tensor, folded: bool) -> tuple[torch.Tensor, bool]:
        if isinstance(mod, nn.Sequential):
            children = list(mod)
            i = 0
            while i < len(children):
                if folded and type(children[i]) is nn.Tanh and i + 1 < len(children) and type(children[i + 1]) is nn.Linear:
                    h, i = self.tanh_linear(h, children[i + 1]), i + 2
                    continue
                h, folded = self.run(children[i], h, folded)
                i += 1
            return h, folded
        if isinstance(mod, Residual):
            a, fa = self.run(mod.body, h, folded)
            b, fb = self.run(mod.shortcut, h, folded)
            return self.join([a, b], [fa, fb], lambda xs: xs[0] + xs[1])
        if isinstance(mod, Concat):
            outs = [self.run(br, h, folded) for br in mod.branches]
            return self.join([o for o, _ in outs], [f for _, f in outs], lambda xs: torch.cat(xs, dim=1))
        if folded:
            return self.leaf(mod, h), True
        key = (id(mod), self.block)
        value = self.cache.get(key)
        if value is None:
            value = self.shared_leaf(mod, h)
            if self.cached + value.numel() <= CACHE_BUDGET:
                self.cache[key] = value
                self.cached += value.numel()
        if not self.moved(mod):
            return value, False
        if isinstance(mod, LINEAR_IN_WEIGHTS):
            return self.combine(value), True
        return self.leaf(mod, self.fold(value)), True

    def shared_leaf(self, mod: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """A leaf on a shared input: its output, or, for a moved Linear or convolution, its output at the origin
        and along each direction, stacked (1 + k, ...), or, for another moved layer, its input."""
        if not self.moved(mod):
            return _apply(mod, h)
        if isinstance(mod, LINEAR_IN_WEIGHTS):
            parts = [mod(h)]
            for j in range(1, self.coeffs.shape[1]):
                parts.append(
                    functional_call(
                        mod, {name: self.stacks[p][j].view_as(p) if p in self.stacks else torch.zeros_like(p) for name, p in mod.named_parameters()}, (h,)
                    )
                )
            # a convolution may answer in channels-last layout; the combination needs plain rows
            return torch.stack([q.contiguous() for q in parts])
        return h

    def combine(self, parts: torch.Tensor) -> torch.Tensor:
        """The outputs of a layer linear in its weights at every point, folded: (1 + k, n, ...) -> (G·n, ...)."""
        return self.mix(parts.reshape(parts.shape[0], -1)).reshape(self.g * parts.shape[1], *parts.shape[2:])

    def join(self, xs: list, flags: list, op) -> tuple[torch.Tensor, bool]:
        if not any(flags):
            return op(xs), False
        return op([x if f else self.fold(x) for x, f in zip(xs, flags)]), True

    def fold(self, h: torch.Tensor) -> torch.Tensor:
        return h.unsqueeze(0).expand(self.g, *h.shape).reshape(self.g * h.shape[0], *h.shape[1:])

    def point_linear(self, lin: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """A Linear's weight (G, out, in) and bias (G, out) at every point of the chunk."""
        w = self.weights(lin.weight) if lin.weight in self.stacks else lin.weight.expand(self.g, -1, -1)
        if lin.bias is None:
            return w, torch.zeros(self.g, lin.out_features, dtype=w.dtype, device=w.device)
        return w, self.weights(lin.bias) if lin.bias in self.stacks else lin.bias.expand(self.g, -1)

    def tanh_linear(self, h: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        """Tanh then a Linear on a folded input. tanh(z) = 2σ(2z) − 1, and the affine part folds into the Linear:
        W·(2s − 1) + b = (2W)·s + (b − W·1). That spares two of the four passes of the tanh over the activations."""
        key = ("tanh", id(lin))
        if key not in self.point_weights:
            w, b = self.point_linear(lin)
            self.point_weights[key] = ((2 * w).transpose(1, 2).contiguous(), (b - w.sum(dim=2)).unsqueeze(1))
        wt, b = self.point_weights[key]
        s = h.mul(2).sigmoid_()
        y = torch.baddbmm(b, s.reshape(self.g, -1, lin.in_features), wt)
        return y.reshape(*h.shape[:-1], lin.out_features)

    def leaf(self, mod: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """A leaf on a folded input."""
        moved = self.moved(mod)
        if not moved:
            return _apply(mod, h)
        if isinstance(mod, nn.Linear):
            key = ("linear", id(mod))
            if key not in self.point_weights:
                w, b = self.point_linear(mod)
                # bmm measured ~30% faster with the (in, out) matrices laid out in memory than with a transposed view
                self.point_weights[key] = (w.transpose(1, 2).contiguous(), b.unsqueeze(1))
            wt, b = self.point_weights[key]
            y = torch.baddbmm(b, h.reshape(self.g, -1, mod.in_features), wt)
            return y.reshape(*h.shape[:-1], mod.out_features)
        hv = h.reshape(self.g, -1, *h.shape[1:])
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            w = self.weights(mod.weight) if mod.weight in self.stacks else None
            b = self.weights(mod.bias) if mod.bias is not None and mod.bias in self.stacks else None
            outs = [mod._conv_forward(hv[i], mod.weight if w is None else w[i], mod.bias if b is None else b[i]) for i in range(self.g)]
        else:
            per_point = {name: self.weights(p) for name, p in moved}
            outs = [functional_call(mod, {name: w[i] for name, w in per_point.items()}, (hv[i],)) for i in range(self.g)]
        return outs[0] if self.g == 1 else torch.cat(outs)


def _tanh(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # torch's CPU tanh kernel measured 6 ns per element against 0.5 for sigmoid; 2σ(2x) − 1 is within 2e-7 of it
    y = x.mul(2)
    return y.sigmoid_().mul_(2).sub_(1)


def _avg_pool2d(mod: nn.AvgPool2d, x: torch.Tensor) -> torch.Tensor:
    # non-overlapping windows as sums of strided slices, rows then columns: measured 7x faster than the kernel here
    kh, kw = _pair(mod.kernel_size)
    ho, wo = x.shape[-2] // kh, x.shape[-1] // kw
    rows = x[..., 0 : kh * ho : kh, : kw * wo]
    for i in range(1, kh):
        rows = rows + x[..., i : kh * ho : kh, : kw * wo]
    out = rows[..., 0::kw]
    for j in range(1, kw):
        out = out + rows[..., j::kw]
    if kh * kw == 1:  # a 1×1 window: `out` is still a view of the input
        return out.clone()
    return out.mul_(1.0 / (kh * kw))


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _plain_pool(mod: nn.AvgPool2d) -> bool:
    stride = mod.stride if mod.stride is not None else mod.kernel_size
    return _pair(stride) == _pair(mod.kernel_size) and _pair(mod.padding) == (0, 0) and not mod.ceil_mode and mod.divisor_override is None


FAST_FORMS = {nn.Tanh: (lambda m: True, _tanh), nn.AvgPool2d: (_plain_pool, _avg_pool2d)}


def _apply(mod: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A layer at its current weights, through a faster equal form where one applies."""
    form = FAST_FORMS.get(type(mod))
    if form is not None and form[0](mod):
        return form[1](mod, h)
    return mod(h)


@torch.no_grad()
def evaluate_batched(
    problem: Problem, origin: Sequence[torch.Tensor], directions: Sequence[Direction], coords: np.ndarray, budget: int = FOLD_BUDGET
) -> np.ndarray:
    """The same losses as evaluate_loop, with many points per pass (see _Batched)."""
    coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)
    model, x, y = problem.model, problem.x, problem.y
    n = len(x)
    before = problem.weights()
    problem.set_weights(origin)
    stacks = {
        p: torch.stack([origin[j].reshape(-1)] + [d[j].reshape(-1) for d in directions])
        for j, p in enumerate(problem.params)
        if any(bool(d[j].any()) for d in directions)
    }
    width = _widest(model, x)  # elements per sample of the largest activation
    if width * n <= budget:
        chunk, block = budget // (width * n), n
    else:
        chunk, block = 1, max(1, budget // width)
    # each point of a chunk has its own copy of the moved weights: a large model takes fewer points at a time
    moved = sum(t.shape[1] for t in stacks.values())
    chunk = max(1, min(chunk, _budget.rows_that_fit(_budget.ELEMENT_BYTES * moved) // 4))
    dtype = problem.params[0].dtype if problem.params else torch.float32
    loss = problem.objective.loss
    body = model.layers if isinstance(getattr(model, "layers", None), nn.Sequential) else model
    batched = _Batched(stacks)
    out = np.empty(len(coords))
    pending: list[torch.Tensor] = []  # outputs (G, n, ...) waiting for their losses, from `done` on

    def losses() -> None:
        # one vmap over many chunks: its set-up measured ~3x the loss itself for a chunk of the playground MLP
        nonlocal done
        if pending:
            h = torch.cat(pending) if len(pending) > 1 else pending[0]
            with warnings.catch_warnings():  # losses without a batching rule fall back to a loop inside vmap: still right
                warnings.simplefilter("ignore", UserWarning)
                out[done : done + len(h)] = vmap(lambda o: loss(o, y))(h).double().cpu().numpy()
            done += len(h)
            pending.clear()

    done = 0
    for start in range(0, len(coords), chunk):
        c = torch.as_tensor(coords[start : start + chunk], dtype=dtype, device=x.device)
        coeffs = torch.cat([torch.ones(len(c), 1, dtype=dtype, device=x.device), c], dim=1)
        parts, folded = [], False
        for b in range(0, n, block):
            h, folded = batched.forward(body, x[b : b + block], coeffs, b)
            parts.append(h.reshape(len(c), -1, *h.shape[1:]) if folded else h)
        h = torch.cat(parts, dim=1 if folded else 0) if len(parts) > 1 else parts[0]
        if not folded:  # nothing moved: every point has the origin's loss
            losses()
            out[start : start + len(c)] = float(loss(h, y))
            done = start + len(c)
            continue
        pending.append(h)
        if sum(t.numel() for t in pending) >= LOSS_BUDGET:
            losses()
    losses()
    problem.set_weights(before)
    return out


def _widest(model: nn.Module, x: torch.Tensor) -> int:
    """The largest activation of any layer for one sample (elements): what folding one point costs per sample."""
    sizes = [x[:1].numel()]

    def note(m, i, o):
        sizes.append(sum(t.numel() for t in (o if isinstance(o, (tuple, list)) else (o,)) if torch.is_tensor(t)))

    hooks = [m.register_forward_hook(note) for m in model.modules()]
    try:
        model(x[:1])
    finally:
        for hk in hooks:
            hk.remove()
    return max(sizes)


METHODS = {"loop": evaluate_loop, "batched": evaluate_batched}
