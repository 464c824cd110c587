"""Memory budgets: what a computation will allocate, worked out from the model's summary before anything runs.

The server computes feature maps, effective receptive fields and loss surfaces in its own process, and every session
shares that process: one computation that outgrows the machine takes every session down with it. Each of them asks
this module first, and is refused with a sentence, or split into smaller batches, when it would not fit."""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

from dlviz import limits as _limits
from dlviz.errors import UserError

ELEMENT_BYTES = 4  # float32, the dtype of every activation and weight dlviz builds


@dataclass(frozen=True)
class Footprint:
    """Elements of one sample's pass through a model, read off its summary (per sample, batch dimension left out).

    `peak` is what a forward pass without gradients holds at its fullest: the widest layer's input and output at once,
    plus the inputs and outputs of the blocks around it (a Residual keeps its input for the shortcut, a Concat its
    finished branches). `saved` is what a pass that keeps every layer's output holds: a forward pass with hooks on every
    layer, or one that autograd records for the backward pass. `output` is the model's output."""

    peak: int
    saved: int
    output: int
    params: int


def footprint(summary) -> Footprint:
    """The Footprint of the model a build.Summary describes (rows in preset order, each block before its layers)."""
    first = math.prod(summary.input_shape)
    peak, saved, open_blocks = first, first, []  # open_blocks: (depth, elements held) of the blocks around this row
    for row in summary.rows:
        while open_blocks and open_blocks[-1][0] >= row.depth:
            open_blocks.pop()
        size_in, size_out = math.prod(row.input_shape), math.prod(row.output_shape or [0])
        if row.block:
            open_blocks.append((row.depth, size_in + size_out))
            if row.type != "Sequential":  # a sum or a concatenation is a new tensor; a group hands on its last layer's
                saved += size_out
            continue
        saved += size_out
        # twice the output: oneDNN's convolutions write into a blocked layout and copy it back (measured: a Conv2d with
        # 128 channels on a 300-sample batch peaked at its input plus two outputs)
        peak = max(peak, size_in + 2 * size_out + sum(held for _, held in open_blocks))
    return Footprint(peak, saved, math.prod(summary.output_shape), summary.total_params)


def budget_bytes() -> int:
    """The memory one computation in the server may use (DLVIZ_MAX_COMPUTE_BYTES)."""
    return _limits.current().max_compute_bytes


def size_text(n: float) -> str:
    """Bytes for a person: 1.3 GB, 240 MB, 12 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def over_budget(what: str, need: int, hint: str, path: str = "") -> UserError:
    """The one sentence for a computation that would not fit: what it is, what it needs, the limit and what to do."""
    limit = budget_bytes()
    return UserError(
        path,
        f"{what} would need about {size_text(need)} of memory, over the server's budget of "
        f"{size_text(limit)} for one computation (DLVIZ_MAX_COMPUTE_BYTES); {hint}",
    )


def check(what: str, need: int, hint: str, path: str = "") -> None:
    """Refuse `what` when it needs more than the budget."""
    if need > budget_bytes():
        raise over_budget(what, need, hint, path)


def rows_that_fit(per_row: int, fixed: int = 0) -> int:
    """How many samples (or copies) a computation can take in one pass: fixed + n × per_row bytes within the budget
    (0 when not even one fits)."""
    return max(0, (budget_bytes() - fixed) // max(per_row, 1))


SMALLER_MODEL = "make the widest layers smaller (fewer channels, a smaller input, an earlier pooling) or use fewer of them"


def feature_maps_bytes(fp: Footprint, samples: int = 1) -> int:
    """Every layer's output kept by the hooks, plus the copy of the first sample's that the page draws."""
    return ELEMENT_BYTES * fp.saved * (samples + 1)


def gradient_bytes_per_copy(fp: Footprint) -> int:
    """One input copy's pass with gradients: the outputs autograd keeps, and their gradients on the way back."""
    return ELEMENT_BYTES * 2 * fp.saved


def forward_bytes_per_sample(fp: Footprint) -> int:
    """One sample's forward pass without gradients, its output kept for the loss."""
    return ELEMENT_BYTES * (fp.peak + fp.output)


# Training keeps, per parameter: the weight, its gradient, up to two optimizer states (Adam's moments) and the two
# copies the step meter takes each step (the weights before the step, the gradients); and per sample of a batch: every
# output autograd saves for the backward pass, plus the gradient of the widest layer in flight.
PARAM_COPIES = 6


def training_bytes(fp: Footprint, batch_size: int) -> int:
    """What one training run needs for the model and one batch, dataset and program aside."""
    return ELEMENT_BYTES * (PARAM_COPIES * fp.params + batch_size * (fp.saved + fp.peak))


def check_training(fp: Footprint, batch_size: int) -> None:
    """Refuse a run whose model and batch would not fit the limit per run (DLVIZ_MAX_TRAIN_BYTES), naming a batch
    size that would."""
    limit = _limits.current().max_train_bytes
    need = training_bytes(fp, batch_size)
    if need <= limit:
        return
    per_sample = ELEMENT_BYTES * (fp.saved + fp.peak)
    fits = (limit - ELEMENT_BYTES * PARAM_COPIES * fp.params) // per_sample
    fix = f"use a batch size of {fits:,} or less, or a smaller model" if fits >= 1 else f"even one sample does not fit: {SMALLER_MODEL}"
    raise UserError(
        "data.batch_size",
        f"training would need about {size_text(need)} of memory at batch size {batch_size:,} "
        f"(weights, gradients, optimizer state and the activations kept for the backward pass), "
        f"over the limit of {size_text(limit)} per run (DLVIZ_MAX_TRAIN_BYTES); {fix}",
    )


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_freed_memory(threshold: int = 1 << 20) -> bool:
    """Have glibc give every allocation of `threshold` bytes or more its own mapping, returned to the system when freed.

    By default glibc raises that threshold each time such a block is freed, after which large tensors come from its
    heap and stay there: a surface computed in 5-sample chunks within a 64 MB budget raised the server's resident
    memory by 191 MB, and 47 MB with this set. Called once by the server process; False where the C library is not
    glibc (nothing changes then)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
