"""The babysitting sanity checks before a long run (CS231n's list): the initial loss against chance, regularization
raising the loss, over-fitting a tiny subset, the gradient check, and the update/weight ratio, each measured on the
preset's own model and data."""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from dlviz.analysis.gradcheck import FINE, gradient_check, setup
from dlviz.loop import weight_penalty
from dlviz.preset.registry import OPTIMIZERS
from dlviz.preset.schema import Experiment
from dlviz.training.diagnose import INITIAL_TOLERANCE, LIKELIHOOD_LOSSES
from dlviz.training.losses import chance_level

OVERFIT_SAMPLES, OVERFIT_STEPS, OVERFIT_TARGET = 20, 500, 0.01  # 20 samples to below 1 % of their initial loss
GRADCHECK_OK = 1e-4  # the worst relative error (away from kinks) that passes
GRADCHECK_SAMPLES, GRADCHECK_ENTRIES, GRADCHECK_MIN_ENTRIES = 4, 200, 10
GRADCHECK_FLOPS = 2e10  # float64 work the gradient check may take (about two seconds on one core)
# ‖Δw‖/‖w‖ a step: 1e-3 is the rule of thumb for large networks trained long; the small networks of the gallery
# train well with steps up to ten times bigger (Adam at 0.01–0.02 moves each weight by about lr a step), so the band
# runs to 1e-1 above, past which the learning rate is too high (dead-relu's 0.75), and to 1e-4 below
RATIO_STEPS, RATIO_LOW, RATIO_HIGH = 10, 1e-4, 1e-1
EVAL_SAMPLES = 2048  # training samples the initial and regularized losses are measured on, at most
DEMO_L2 = 1e-3  # the L2 strength shown (×10) when a preset has no penalty


@dataclass(frozen=True)
class Check:
    """One sanity check's outcome: the measured number, what it is compared with, and the verdict in a sentence."""

    name: str
    value: float | None
    reference: str
    ok: bool | None  # None: the check does not apply to this preset
    sentence: str

    def to_json(self) -> dict:
        value = self.value if self.value is None or math.isfinite(self.value) else None
        return {"name": self.name, "value": value, "reference": self.reference, "ok": self.ok, "sentence": self.sentence}


def _optimizer(exp: Experiment, params, decay: bool = True):
    """The preset's optimizer on `params`; decay=False drops its weight_decay (a regularizer of its own)."""
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items() if decay or k != "weight_decay"}
    return OPTIMIZERS[exp.optimizer.type].cls(params, **args)


def _weights(model) -> list[torch.Tensor]:
    """The tensors penalties act on, as the trainer picks them: trainable and at least 2-D."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]


@torch.no_grad()
def _eval_loss(model, objective, x, y) -> float:
    model.eval()
    out = float(objective.loss(model(x), y))
    model.train()
    return out


def initial_loss(exp, ds, objective, model) -> Check:
    """Step 0's loss on the training set, untrained and in eval mode, against this loss's chance level, with the bands
    the run's diagnosis uses (dlviz.training.diagnose): close, above but harmless, far above."""
    name = "initial loss"
    first = _eval_loss(model, objective, ds.x_train[:EVAL_SAMPLES], ds.y_train[:EVAL_SAMPLES])
    level = chance_level(exp.loss.type, exp.loss.args, ds.task, ds.num_classes, ds.y_train)
    if level is None:
        return Check(
            name,
            first,
            "no chance level for this loss",
            None,
            f"The untrained loss is {first:.3f}; {exp.loss.type} with this reduction has no fixed chance level to compare it with.",
        )
    chance, formula = level
    regression = ds.task == "regression"
    far = chance + math.log(2) if exp.loss.type in LIKELIHOOD_LOSSES and not regression else 2 * chance
    what = "the loss of a constant prediction" if regression else "chance level"
    reference = f"{what} {formula} = {chance:.3f}"
    if not math.isfinite(first):
        return Check(name, first, reference, False, f"The untrained loss is {first}: the network's outputs overflow before any training.")
    if first <= (1 + INITIAL_TOLERANCE) * chance:
        return Check(name, first, reference, True, f"The untrained loss is {first:.3f}, close to {reference}: ok.")
    above = f"The untrained loss is {first:.3f}, {first / chance - 1:.0%} above {reference}"
    if first <= far:
        return Check(name, first, reference, True, f"{above}, but below {far:.3f} where it would hold training back: ok.")
    return Check(
        name, first, reference, False, f"{above} and past {far:.3f}: the untrained outputs are confidently wrong; use a smaller init for the last layer."
    )


def regularization(exp, ds, objective, model) -> Check:
    """The loss with the preset's penalty ×10 against ×0, on the untrained model: the total must rise."""
    name = "regularization"
    weights = _weights(model)
    if not weights:
        return Check(name, None, "no weight matrices or filters", None, "The model has no weight matrices or filters for L1 or L2 to act on.")
    l1, l2 = exp.training.l1, exp.training.l2
    demo = l1 == 0 and l2 == 0
    if demo:
        l2 = DEMO_L2
    data = _eval_loss(model, objective, ds.x_train[:EVAL_SAMPLES], ds.y_train[:EVAL_SAMPLES])
    with torch.no_grad():
        penalty = float(weight_penalty(weights, 10 * l1, 10 * l2))
    total = data + penalty
    terms = " and ".join(t for t, v in ((f"L1 λ = {10 * l1:g}", l1), (f"L2 λ = {10 * l2:g}", l2)) if v > 0)
    source = f"the preset has no penalty, so L2 λ = {DEMO_L2:g} ×10 shows the effect" if demo else "the preset's penalty ×10"
    reference = f"data loss {data:.4f} with no penalty ({source})"
    head = f"With {terms} the loss is {total:.4f} (data {data:.4f} + penalty {penalty:.4g}) against {data:.4f} without"
    if total > data:
        return Check(name, total, reference, True, f"{head}: the penalty raises it, ok.")
    return Check(name, total, reference, False, f"{head}: the penalty adds nothing, because every weight is 0; the init leaves nothing to regularize.")


def overfit(exp, ds, objective, model) -> Check:
    """Full-batch training on OVERFIT_SAMPLES training samples with the preset's optimizer and learning rate, without
    regularization (no L1/L2 penalty, no weight_decay) but dropout as in the model, until the training loss is below OVERFIT_TARGET of the samples' initial (eval-mode) loss."""
    name = "overfit a tiny subset"
    x, y = ds.x_train[:OVERFIT_SAMPLES], ds.y_train[:OVERFIT_SAMPLES]
    net = copy.deepcopy(model).train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = _optimizer(exp, params, decay=False)
    start = _eval_loss(net, objective, x, y)
    reference = f"below {OVERFIT_TARGET:.0%} of the initial {start:.4f} within {OVERFIT_STEPS} full-batch steps of {exp.optimizer.type}"
    ratio, steps = math.inf, 0
    with torch.random.fork_rng():
        torch.manual_seed(exp.seed)  # dropout's masks
        for steps in range(1, OVERFIT_STEPS + 1):
            loss = objective.loss(net(x), y)
            ratio = float(loss.detach()) / start if start > 0 else 0.0
            if ratio < OVERFIT_TARGET or not math.isfinite(ratio):
                steps -= 1  # the loss measured before this step's update
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                ratio = float(objective.loss(net(x), y)) / start if start > 0 else 0.0
    n = len(x)
    if ratio < OVERFIT_TARGET:
        return Check(name, ratio, reference, True, f"{n} samples trained to {ratio:.2%} of their initial loss in {steps} steps: the network can learn, ok.")
    if not math.isfinite(ratio):
        return Check(name, ratio, reference, False, f"The loss on {n} samples became {ratio * start} after {steps} steps: lower the learning rate.")
    why = "with dropout in the model, " if any(type(m).__name__.startswith("Dropout") for m in net.modules()) else ""
    return Check(
        name,
        ratio,
        reference,
        False,
        f"After {steps} steps {n} samples are still at {ratio:.1%} of their initial loss: {why}the network cannot memorize them; "
        "check the learning rate, the init and the architecture before a long run.",
    )


def _entries_per_tensor(exp, model) -> int:
    """Entries a tensor the gradient check perturbs: GRADCHECK_ENTRIES, fewer for a model whose two passes an entry
    would take the check past GRADCHECK_FLOPS (a deep CNN gets a few dozen a tensor, the gallery's MLPs every entry)."""
    from dlviz.model.build import summarize

    s = summarize(exp)
    tensors = max(1, sum(1 for p in model.parameters() if p.requires_grad))
    affordable = GRADCHECK_FLOPS / (2 * GRADCHECK_SAMPLES * max(s.flops, 1) * tensors)
    return int(min(GRADCHECK_ENTRIES, max(GRADCHECK_MIN_ENTRIES, affordable)))


def gradients(exp, ds, model) -> Check:
    """The worst relative error of the gradient check (dlviz.analysis.gradcheck), kinks set apart."""
    name = "gradient check"
    checks = gradient_check(exp, samples=GRADCHECK_SAMPLES, max_entries=_entries_per_tensor(exp, model), dataset=ds)
    reference = f"< {GRADCHECK_OK:g} in float64 (< {FINE:g} fine, up to 1e-2 doubtful or kinks, above wrong)"
    if not checks:
        return Check(name, None, reference, None, "The model has no trainable parameters to check.")
    worst = max(checks, key=lambda c: c.max_rel_error)
    smooth = max(checks, key=lambda c: c.max_smooth_error)
    entries = sum(c.checked for c in checks)
    kinks = f"; {worst.max_rel_error:.1e} at {worst.name} is a kink ({worst.note})" if worst.note and worst.max_rel_error >= GRADCHECK_OK else ""
    ok = smooth.max_smooth_error < GRADCHECK_OK
    verdict = "autograd agrees with finite differences, ok" if ok else "backprop disagrees with finite differences: a gradient is wrong"
    return Check(
        name,
        smooth.max_smooth_error,
        reference,
        ok,
        f"Worst relative error {smooth.max_smooth_error:.1e} at {smooth.name} over {entries} entries{kinks}: {verdict}.",
    )


def update_ratio(exp, ds, objective, model) -> Check:
    """The median over weight tensors of ‖Δw‖/‖w‖ a step, averaged over the first RATIO_STEPS steps of the preset's
    optimizer on its batches (with its penalty, dropout as in the model)."""
    name = "update/weight ratio"
    net = copy.deepcopy(model).train()
    params = [p for p in net.parameters() if p.requires_grad]
    weights = _weights(net)
    if not weights:
        return Check(name, None, "no weight matrices or filters", None, "The model has no weight matrices or filters to measure.")
    opt = _optimizer(exp, params)
    b = exp.data.batch_size
    per_step = []
    with torch.random.fork_rng():
        torch.manual_seed(exp.seed)
        order = torch.randperm(len(ds.x_train), generator=torch.Generator().manual_seed(exp.seed))
        for k in range(RATIO_STEPS):
            idx = order[(k * b) % len(order) :][:b]
            before = [w.detach().clone() for w in weights]
            loss = objective.loss(net(ds.x_train[idx]), ds.y_train[idx])
            if exp.training.l1 > 0 or exp.training.l2 > 0:
                loss = loss + weight_penalty(weights, exp.training.l1, exp.training.l2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                rows = []
                for w0, w in zip(before, weights):
                    step, norm = float((w - w0).norm()), float(w0.norm())
                    rows.append(step / norm if norm > 0 else (0.0 if step == 0 else math.inf))
            per_step.append(rows)
    per_tensor = [statistics.fmean(col) for col in zip(*per_step)]
    ratio = statistics.median(per_tensor)
    band = f"{RATIO_LOW:.0e} to {RATIO_HIGH:.0e}".replace("e-0", "e-")
    reference = f"the 1e-3 rule of thumb (ok within {band} for networks this small)"
    head = f"‖Δw‖/‖w‖ is {ratio:.1e} a step (median over {len(per_tensor)} weight tensors, first {RATIO_STEPS} steps)"
    if RATIO_LOW <= ratio <= RATIO_HIGH:
        return Check(name, ratio, reference, True, f"{head}, within {band} around the 1e-3 rule of thumb: ok.")
    if ratio < RATIO_LOW:
        with torch.no_grad():
            zero = all(float(w.abs().max()) == 0 for w in _weights(model))
        if zero:
            return Check(name, ratio, reference, False, f"{head}: every weight starts at 0 and gets no gradient (the symmetry problem); use a random init.")
        return Check(name, ratio, reference, False, f"{head}: too low, training would crawl; raise the learning rate.")
    return Check(name, ratio, reference, False, f"{head}: too high, each step changes the weights too much; lower the learning rate.")


def sanity_checks(exp: Experiment, csv_bytes: Optional[bytes] = None, on_check: Optional[Callable[[Check], None]] = None) -> list[Check]:
    """Run the five checks in order, calling `on_check(check)` as each finishes; seeded, so the same every time."""
    ds, objective, model = setup(exp, csv_bytes)
    out = []
    steps = (
        lambda: initial_loss(exp, ds, objective, model),
        lambda: regularization(exp, ds, objective, model),
        lambda: overfit(exp, ds, objective, model),
        lambda: gradients(exp, ds, model),
        lambda: update_ratio(exp, ds, objective, model),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 4 to 20 samples: threads cost more than they give (6 s against 0.2 s here)
    try:
        for step in steps:
            check = step()
            out.append(check)
            if on_check is not None:
                on_check(check)
    finally:
        torch.set_num_threads(threads)
    return out
