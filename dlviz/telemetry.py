"""What the training loop measures: per-step gradient norms and update ratios, and periodic unit health and histograms."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .registry import RELU_FAMILY, SATURATING

# Where f′ is small enough that learning through a unit stalls: sigmoid f′ < 0.05, tanh f′ < 0.1.
SATURATION = {"Sigmoid": (0.05, 0.95), "Tanh": (-0.95, 0.95), "Hardtanh": None, "Softsign": (-0.9, 0.9)}
HIST_BINS = 30


class StepMeter:
    """Per-step gradient norms, update/weight ratios and parameter snapshots for every parameter tensor, batched.

    A step costs two fused copies: the gradients into a row of one preallocated matrix, and the updated parameters
    into a row of another. Norms and ratios are computed for all buffered steps at once (a few large operations)
    when the rows are flushed; the parameter rows double as the trajectory snapshots."""

    def __init__(self, params: list[nn.Parameter], max_elements: int = 4_000_000, max_rows: int = 64):
        self.params = params
        self.values = [p.detach() for p in params]  # views that follow the in-place updates, made once
        sizes = [p.numel() for p in params]
        n = sum(sizes)
        self.rows = max(1, min(max_rows, max_elements // max(n, 1)))
        self.G = torch.zeros(self.rows, n)
        self.P = torch.zeros(self.rows + 1, n)
        self.lengths = torch.tensor(sizes, dtype=torch.long).expand(max(self.rows, 2), len(sizes)).contiguous()
        self.segment = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))

        def views(m: torch.Tensor) -> list[list[torch.Tensor]]:
            out = []
            for r in range(m.shape[0]):
                row, off = [], 0
                for p, size in zip(params, sizes):
                    row.append(m[r, off:off + size].view(p.shape))
                    off += size
                out.append(row)
            return out

        self.g_rows, self.p_rows = views(self.G), views(self.P)
        self.zeros = [torch.zeros_like(v) for v in self.values]
        self.used = 0
        torch._foreach_copy_(self.p_rows[0], self.values)

    def reset(self) -> None:
        """Forget buffered steps and start from the parameters as they are now (after loading a checkpoint)."""
        self.used = 0
        torch._foreach_copy_(self.p_rows[0], self.values)

    @property
    def full(self) -> bool:
        return self.used == self.rows

    def grads(self) -> torch.Tensor:
        """Copy this step's gradients into the next row and return that row (one flat vector)."""
        grads = [p.grad if p.grad is not None else z for p, z in zip(self.params, self.zeros)]
        torch._foreach_copy_(self.g_rows[self.used], grads)
        return self.G[self.used]

    def stepped(self) -> None:
        """Copy the parameters just updated by the optimizer into the next parameter row."""
        self.used += 1
        torch._foreach_copy_(self.p_rows[self.used], self.values)

    def tensor_norms(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-tensor L2 norms of flat rows (m × n) -> (m × tensors)."""
        m = flat.shape[0]
        return torch.segment_reduce(flat.square(), "sum", lengths=self.lengths[:m], axis=1).sqrt()

    def flush(self) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """(grad_norms, update_ratios) for the steps since the last flush, each steps × tensors, and the parameter rows
        after each of those steps (a view, valid until the next step)."""
        m = self.used
        k = len(self.params)
        if m == 0:
            return np.zeros((0, k)), np.zeros((0, k)), self.P[1:1]
        with torch.no_grad():
            gn = self.tensor_norms(self.G[:m])
            dn = self.tensor_norms(self.P[1:m + 1] - self.P[:m])
            pn = self.tensor_norms(self.P[1:m + 1])
            ratio = dn / pn.clamp_min(1e-12)
        after = self.P[1:m + 1].clone()
        self.P[0].copy_(self.P[m])
        self.used = 0
        return gn.numpy().astype(np.float64), ratio.numpy().astype(np.float64), after

    def histograms(self, bins: int = HIST_BINS) -> tuple[list[list[float]], list[list[list[int]]]]:
        """Histograms of every tensor's weights and gradients at the last step, all in a handful of operations.

        Each tensor gets `bins` equal bins over [−m, m], m = max |x| (as torch.histc with min=−m, max=m).
        Returns (ranges, counts): ranges[0][i], counts[0][i] for the weights of tensor i, [1] for its gradients."""
        r = self.used
        x = torch.stack([self.P[r], self.G[r - 1]])
        k = len(self.params)
        m = torch.segment_reduce(x.abs(), "max", lengths=self.lengths[:2], axis=1).clamp_min(1e-12)
        pos = ((x / m[:, self.segment] + 1) * (bins / 2)).floor().clamp_(0, bins - 1).long()
        flat = (torch.arange(2)[:, None] * k + self.segment[None, :]) * bins + pos
        counts = torch.bincount(flat.reshape(-1), minlength=2 * k * bins).reshape(2, k, bins)
        return m.tolist(), counts.tolist()

    def first_bad(self, row: torch.Tensor) -> list[int]:
        """Indices of the tensors whose gradient in `row` holds a NaN or an infinity."""
        bad, off = [], 0
        for i, p in enumerate(self.params):
            if not bool(torch.isfinite(row[off:off + p.numel()]).all()):
                bad.append(i)
            off += p.numel()
        return bad


def _unit_axis_reduce(y: torch.Tensor) -> torch.Tensor:
    """Per unit (dim 1: a feature or a channel), the maximum over the batch and any positions."""
    if y.dim() == 2:
        return y.amax(0)
    return y.transpose(0, 1).reshape(y.shape[1], -1).amax(1)


def unit_health(kind: str, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean, std, and the dead or saturated fraction of one activation layer's output, as 0-d tensors (no host sync)."""
    y = y.detach().float()
    std, mean = torch.std_mean(y) if y.numel() > 1 else (torch.zeros(()), y.mean())
    out = {"mean": mean, "std": std}
    if kind in RELU_FAMILY and y.dim() >= 2:
        # a unit is dead when it is not positive for any sample (and position) of the batch: f′ = 0 everywhere
        out["dead"] = (_unit_axis_reduce(y) <= 0).float().mean()
    if kind in SATURATING:
        if kind == "Hardtanh":
            sat = (y <= y.min()) | (y >= y.max())
        else:
            lo, hi = SATURATION[kind]
            sat = (y <= lo) | (y >= hi)
        out["saturated"] = sat.float().mean()
    return out


def histogram(t: torch.Tensor, bins: int = HIST_BINS) -> dict:
    """Counts over a symmetric range [−m, m], m = max |t|, so histograms of one tensor line up over time."""
    t = t.detach().float().flatten()
    m = float(t.abs().max()) if t.numel() else 0.0
    m = m if m > 0 else 1e-12
    return {"range": m, "counts": torch.histc(t, bins=bins, min=-m, max=m).to(torch.int64).tolist()}


@contextmanager
def capture_outputs(modules: dict[str, nn.Module]):
    """Record the output of each named module during one forward pass; the hooks are removed on exit."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in modules.items():
        handles.append(mod.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.detach() if torch.is_tensor(o) else o)))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()
