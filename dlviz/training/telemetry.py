"""What the training loop measures: per-step gradient norms and update ratios, and periodic unit health and histograms."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from dlviz.preset.registry import RELU_FAMILY, SATURATING

# Where f′ is small enough that learning through a unit stalls: sigmoid f′ < 0.05, tanh f′ < 0.1.
SATURATION = {"Sigmoid": (0.05, 0.95), "Tanh": (-0.95, 0.95), "Hardtanh": None, "Softsign": (-0.9, 0.9)}
HIST_BINS = 30
PROBE_SAMPLES = 256  # the most training samples a unit-health probe runs on
# fewer where one sample's layer outputs are large (a probe holds at most PROBE_ELEMENTS of them), never under 64: a
# dense unit is still judged on 64 samples, a channel on 64 × its positions ("dead" on a few samples is only missed)
MIN_PROBE_SAMPLES, PROBE_ELEMENTS = 64, 2_000_000
PROBES_PER_RUN, MAX_PROBE_INTERVAL = 30, 50
PROBE_SHARE = 0.05  # the most of a run's training work that the default probes may take
# A probe's work per element of layer output (forward, unit health, histograms) against a training step's 3 (forward,
# backward, update), and a step's fixed work (a call per layer and tensor) counted in elements; fitted to the probe and
# step times of the gallery's lessons on a CPU, which the estimate matches within a factor of 2.6, mostly from above
# (it leaves out a probe's own calls: about a third of a step on the 2-D lessons, which are probed as often as before).
PROBE_WORK, STEP_FIXED = 2.0, 250_000


class StepMeter:
    """Per-step gradient norms, update/weight ratios, losses and parameter snapshots for every parameter tensor, batched.

    A step costs one fused copy, made between backward and the optimizer step: the parameters (as they are before the
    step) into a row of one preallocated matrix, the gradients and the loss into a row of another. Norms and ratios
    are computed for all buffered steps at once when the rows are flushed, in NumPy on views of the same memory (its
    small operations cost a fraction of torch's per-call dispatch); the parameter rows double as the trajectory.

    The matrices live on the parameters' device. On a GPU a step's copy stays on the GPU, and the rows a flush reads
    come to the CPU in one copy each."""

    def __init__(self, params: list[nn.Parameter], max_elements: int = 4_000_000, max_rows: int = 64):
        self.params = params
        self.values = [p.detach() for p in params]  # views that follow the in-place updates, made once
        sizes = [p.numel() for p in params]
        n = self.n = sum(sizes)
        self.rows = max(1, min(max_rows, max_elements // max(n, 1)))
        device = params[0].device if params else torch.device("cpu")
        self.G = torch.zeros(self.rows, n + 1, device=device)  # gradients, then the step's loss in the last column
        self.P = torch.zeros(self.rows + 1, n, device=device)  # row j: the parameters before buffered step j (row m: after the last)
        self.host = device.type == "cpu"
        if self.host:
            self.Gn, self.Pn = self.G.numpy(), self.P.numpy()
        self.offsets = np.cumsum([0] + sizes[:-1])  # where each tensor starts in a row
        self.segment = np.repeat(np.arange(len(sizes)), sizes)  # which tensor each element of a row belongs to
        self.hist_slot = np.arange(2)[:, None] * len(sizes) + self.segment[None, :]  # (weights|grads, tensor) of each element

        def views(m: torch.Tensor) -> list[list[torch.Tensor]]:
            out = []
            for r in range(m.shape[0]):
                row, off = [], 0
                for p, size in zip(params, sizes):
                    row.append(m[r, off : off + size].view(p.shape))
                    off += size
                out.append(row)
            return out

        self.p_rows = views(self.P)
        # per row, every destination of a step's copy: parameters, gradients, loss
        self.targets = [p + g + [self.G[r, n]] for r, (p, g) in enumerate(zip(self.p_rows, views(self.G)))]
        self.g_flat = list(self.G)  # row r as one vector, indexed without a torch call per step
        self.zeros = [torch.zeros_like(v) for v in self.values]
        self.used = 0

    def reset(self) -> None:
        """Forget buffered steps (after loading a checkpoint: the next step records the parameters as they are)."""
        self.used = 0

    @property
    def full(self) -> bool:
        return self.used == self.rows

    def record(self, loss: torch.Tensor) -> torch.Tensor:
        """Copy this step's parameters, gradients and loss into the next rows; return the gradient row with the loss
        last (its sum is finite only when every gradient and the loss are)."""
        try:
            torch._foreach_copy_(self.targets[self.used], self.values + [p.grad for p in self.params] + [loss])
        except TypeError:  # a parameter the loss does not reach has no gradient: it counts as zero
            grads = [p.grad if p.grad is not None else z for p, z in zip(self.params, self.zeros)]
            torch._foreach_copy_(self.targets[self.used], self.values + grads + [loss])
        return self.g_flat[self.used]

    def stepped(self) -> None:
        """The optimizer has stepped: the recorded row is complete."""
        self.used += 1

    def _current(self, row: int) -> None:
        torch._foreach_copy_(self.p_rows[row], self.values)

    def _g(self, rows: slice, cols: slice | int) -> np.ndarray:
        """Part of the gradient matrix as NumPy: a view on the CPU, a copy from a GPU."""
        return self.Gn[rows, cols] if self.host else self.G[rows, cols].cpu().numpy()

    def _p(self, rows: slice | int) -> np.ndarray:
        """Rows of the parameter matrix as NumPy: a view on the CPU, a copy from a GPU."""
        return self.Pn[rows] if self.host else self.P[rows].cpu().numpy()

    def segment_sums(self, rows: np.ndarray) -> np.ndarray:
        """Per-tensor sums of flat rows (m × n) -> (m × tensors)."""
        return np.add.reduceat(rows, self.offsets, axis=1)

    def loss_rows(self, start: int, stop: int) -> np.ndarray:
        """The losses of buffered steps start..stop-1, as float64."""
        return self._g(slice(start, stop), self.n).astype(np.float64)

    def flush(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(grad_norms, update_ratios) for the steps since the last flush, each steps × tensors, and the parameter rows
        after each of those steps (a view, valid until the next step)."""
        m = self.used
        k = len(self.params)
        if m == 0:
            return np.zeros((0, k)), np.zeros((0, k)), self._p(slice(1, 1))
        self._current(m)
        p = self._p(slice(0, m + 1))
        before, after = p[:m], p[1 : m + 1]
        g = self._g(slice(0, m), slice(0, self.n))
        d = after - before
        gn = np.sqrt(self.segment_sums(g * g), dtype=np.float64)
        # ‖ΔW‖ / ‖W‖ before the step, as CS231n defines the update/weight ratio; undefined (NaN) for a tensor that was 0
        size = self.segment_sums(before * before)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(size > 0, np.sqrt(self.segment_sums(d * d) / size, dtype=np.float64), np.nan)
        self.used = 0
        return gn, ratio, after

    def histograms(self, bins: int = HIST_BINS) -> tuple[list[list[float]], list[list[list[int]]]]:
        """Histograms of every tensor's weights and gradients at the last step, all in a handful of operations.

        Each tensor gets `bins` equal bins over [−m, m], m = max |x| (as torch.histc with min=−m, max=m).
        Returns (ranges, counts): ranges[0][i], counts[0][i] for the weights of tensor i, [1] for its gradients."""
        r = self.used
        self._current(r)
        x = np.stack([self._p(r), self._g(r - 1, slice(0, self.n))])
        k = len(self.params)
        m = np.maximum(np.maximum.reduceat(np.abs(x), self.offsets, axis=1), np.float32(1e-12))
        # bin = floor((x / m + 1) · bins / 2), clamped to the last bin for x = m
        pos = np.minimum(np.floor((x / m[:, self.segment] + 1) * np.float32(bins / 2)), bins - 1).astype(np.int64)  # ≥ 0
        flat = self.hist_slot * bins + pos
        counts = np.bincount(flat.reshape(-1), minlength=2 * k * bins).reshape(2, k, bins)
        return m.tolist(), counts.tolist()

    def first_bad(self, row: torch.Tensor) -> list[int]:
        """Indices of the tensors whose gradient in `row` holds a NaN or an infinity."""
        bad, off = [], 0
        for i, p in enumerate(self.params):
            if not bool(torch.isfinite(row[off : off + p.numel()]).all()):
                bad.append(i)
            off += p.numel()
        return bad


def probe_interval(total_steps: int, cost: float = 0.0) -> int:
    """Steps between probes when the preset leaves it open: about PROBES_PER_RUN a run (every step in a run of under 60
    steps, so a 48-step lesson still draws its units over time), at most MAX_PROBE_INTERVAL apart, and never so close
    that probes costing `cost` training steps each take more than PROBE_SHARE of the training."""
    return max(1, min(MAX_PROBE_INTERVAL, total_steps // PROBES_PER_RUN), math.ceil(cost / PROBE_SHARE))


def probe_plan(saved: int, batch_size: int, total_steps: int, available: int) -> tuple[int, int, float]:
    """(samples, interval, cost) of the default unit-health probes of a model whose one-sample pass holds `saved`
    elements of layer outputs (Footprint.saved), trained on batches of `batch_size` out of `available` samples for
    `total_steps`; cost is a probe's work in training steps. The same preset gives the same plan on any machine."""
    samples = min(available, PROBE_SAMPLES, max(MIN_PROBE_SAMPLES, PROBE_ELEMENTS // max(saved, 1)))
    cost = samples * saved * PROBE_WORK / (3 * min(batch_size, available) * saved + STEP_FIXED)
    return samples, probe_interval(total_steps, cost), cost


def _unit_max(y: torch.Tensor) -> torch.Tensor:
    """Per unit (dim 1: a feature or a channel), the maximum over the batch and any positions, read in place."""
    return y.amax(dim=(0, *range(2, y.dim())))


def unit_health(kind: str, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean, std, and the dead or saturated fraction of one activation layer's output, as 0-d tensors (no host sync)."""
    y = y.detach().float()
    # std and mean apart: torch.std_mean's one pass (Welford's) takes four times their two on a large map
    std, mean = (torch.std(y), torch.mean(y)) if y.numel() > 1 else (torch.zeros((), device=y.device), y.mean())
    out = {"mean": mean, "std": std}
    if kind in RELU_FAMILY and y.dim() >= 2:
        # a unit is dead when it is not positive for any sample (and position) of the batch: f′ = 0 everywhere
        out["dead"] = torch.mean(_unit_max(y) <= 0, dtype=torch.float32)
    if kind in SATURATING:
        if kind == "Hardtanh":
            lo, hi = torch.aminmax(y)
            sat = (y <= lo) | (y >= hi)
        else:
            # every range is symmetric about its centre c: y ≤ lo or y ≥ hi is |y − c| ≥ (hi − lo) / 2
            lo, hi = SATURATION[kind]
            c = (lo + hi) / 2
            sat = (y - c if c else y).abs() >= (hi - lo) / 2
        out["saturated"] = torch.count_nonzero(sat).float() / sat.numel()
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
