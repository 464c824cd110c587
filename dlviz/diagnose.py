"""Diagnoses of a run in plain words, each citing the number it rests on (the babysitting checklist)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VANISHING = 1e-5  # a gradient norm this small moves nothing at any usual learning rate
EXPLODING = 1e3
RATIO_LOW, RATIO_HIGH = 1e-4, 1e-2  # update/weight ratios around 1e-3 are healthy


@dataclass(frozen=True)
class Diagnosis:
    level: str  # "ok" | "warning" | "problem"
    title: str
    text: str


def diagnose(snap: dict, num_classes: int | None) -> list[Diagnosis]:
    """Read a LiveFeed snapshot (or the same keys rebuilt from the store) and say what it shows."""
    out: list[Diagnosis] = []
    loss = np.asarray(snap.get("loss", []), dtype=float)
    epochs = snap.get("epochs") or []
    names = snap.get("param_names") or []
    if len(loss) and num_classes and snap.get("task") == "classification":
        expected = math.log(num_classes)
        first = float(loss[0])
        if abs(first - expected) <= 0.25 * expected + 0.1:
            out.append(Diagnosis("ok", "Initial loss", f"The first loss {first:.3f} is close to −ln(1/{num_classes}) = {expected:.3f}: "
                                                       "the network starts out guessing every class equally, as it should."))
        else:
            out.append(Diagnosis("warning", "Initial loss", f"The first loss {first:.3f} is far from −ln(1/{num_classes}) = {expected:.3f}: "
                                                            "the initial outputs are confidently wrong; use a smaller init for the last layer."))
    g = np.asarray(snap.get("log_grad_norm", np.zeros((0, 0))), dtype=float)
    if g.size and names:
        recent = g[-max(1, len(g) // 5):]
        with np.errstate(all="ignore"):
            med = np.nanmedian(recent, axis=0)
        weights = [i for i, n in enumerate(names) if n.endswith("weight") or "weight_" in n]
        idx = weights or list(range(len(names)))
        lo = min(idx, key=lambda i: med[i])
        hi = max(idx, key=lambda i: med[i])
        if 10 ** med[lo] < VANISHING:
            out.append(Diagnosis("problem", "Vanishing gradients",
                                 f"The gradient norm of {names[lo]} is {10 ** med[lo]:.1e}, below {VANISHING:.0e}: that layer has stopped "
                                 "learning. Saturating activations (sigmoid, tanh) with large weights cause this; try ReLU with He init, or BatchNorm."))
        elif len(idx) > 2 and med[hi] - med[lo] > 3 and lo < hi:
            out.append(Diagnosis("warning", "Vanishing gradients",
                                 f"The gradient norm of {names[lo]} ({10 ** med[lo]:.1e}) is {10 ** (med[hi] - med[lo]):.0f}× smaller than "
                                 f"that of {names[hi]} ({10 ** med[hi]:.1e}): the early layers learn far more slowly."))
        if 10 ** med[hi] > EXPLODING:
            out.append(Diagnosis("problem", "Exploding gradients",
                                 f"The gradient norm of {names[hi]} is {10 ** med[hi]:.1e}, above {EXPLODING:.0e}; lower the learning rate, "
                                 "clip gradients, or shrink the init."))
    u = np.asarray(snap.get("log_update_ratio", np.zeros((0, 0))), dtype=float)
    if u.size and names:
        with np.errstate(all="ignore"):
            med_u = np.nanmedian(u[-max(1, len(u) // 5):], axis=0)
        typical = float(np.nanmedian(med_u))
        if math.isfinite(typical):
            if 10 ** typical > RATIO_HIGH:
                out.append(Diagnosis("warning", "Update ratio", f"Updates change the weights by {10 ** typical:.1e} of their size per step, "
                                                                f"above {RATIO_HIGH:.0e} (about 1e-3 is healthy): the learning rate looks too high."))
            elif 10 ** typical < RATIO_LOW:
                out.append(Diagnosis("warning", "Update ratio", f"Updates change the weights by {10 ** typical:.1e} of their size per step, "
                                                                f"below {RATIO_LOW:.0e} (about 1e-3 is healthy): the learning rate looks too low."))
    tel = snap.get("telemetry") or []
    if tel:
        for path, st in tel[-1]["layers"].items():
            if st.get("dead", 0) > 0.5:
                out.append(Diagnosis("problem", "Dead ReLUs", f"{st['dead']:.0%} of the units of {path} ({st['type']}) output zero for every sample "
                                                              "in the batch, so they get no gradient; lower the learning rate, or use LeakyReLU."))
            struggling = not epochs or epochs[-1].get("train_accuracy", 0) < 0.9
            if st.get("saturated", 0) > 0.5 and struggling:  # saturated units are harmless once the task is learned
                out.append(Diagnosis("warning", "Saturated units", f"{st['saturated']:.0%} of the outputs of {path} ({st['type']}) sit where the "
                                                                   "slope is near zero; smaller initial weights or BatchNorm keep them in range."))
    if len(epochs) >= 3:
        tl = [e["train_loss"] for e in epochs]
        vl = [e["val_loss"] for e in epochs if e.get("val_loss") is not None and math.isfinite(e["val_loss"])]
        if tl[-1] > tl[0] * 1.05:
            out.append(Diagnosis("problem", "Loss rising", f"The training loss rose from {tl[0]:.3f} in epoch 1 to {tl[-1]:.3f}: "
                                                           "the learning rate is too high."))
        elif abs(tl[-1] - tl[0]) < 0.01 * abs(tl[0]) and tl[-1] > 0.05:
            out.append(Diagnosis("warning", "Loss flat", f"The training loss moved from {tl[0]:.3f} to {tl[-1]:.3f} in {len(tl)} epochs, "
                                                         "less than 1%: the learning rate is too low, or the network cannot learn this."))
        if len(vl) >= 3:
            best = min(vl)
            if vl[-1] > best * 1.1 and tl[-1] < tl[int(np.argmin(vl))]:
                out.append(Diagnosis("warning", "Over-fitting", f"The validation loss rose from its best {best:.3f} to {vl[-1]:.3f} while the "
                                                                f"training loss kept falling to {tl[-1]:.3f}: the model is memorising the "
                                                                "training set (variance). Try dropout, L2, more data or early stopping."))
        key = "accuracy" if "train_accuracy" in epochs[-1] else None
        if key:
            gap = epochs[-1]["train_accuracy"] - epochs[-1]["val_accuracy"]
            if gap > 0.1:
                out.append(Diagnosis("warning", "Train/validation gap", f"Training accuracy {epochs[-1]['train_accuracy']:.1%} is "
                                                                        f"{gap:.1%} above validation accuracy {epochs[-1]['val_accuracy']:.1%}: high variance."))
            elif epochs[-1]["train_accuracy"] < 0.6 and num_classes and num_classes <= 3:
                out.append(Diagnosis("warning", "Under-fitting", f"Training accuracy is only {epochs[-1]['train_accuracy']:.1%}: high bias. "
                                                                 "A bigger network, a nonlinearity, or more epochs should help."))
    return out
