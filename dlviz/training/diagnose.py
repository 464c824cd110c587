"""Diagnoses of a run in plain words, each citing the number it rests on (the babysitting checklist)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from dlviz.loop import METRIC_LABELS

VANISHING = 1e-5  # a gradient norm this small moves nothing at any usual learning rate
EXPLODING = 1e3
# Last weight layer's gradient norm over the first's. The ReLU + He lesson calls ten times healthy; the sigmoid lesson
# teaches that a first layer learning a hundred times more slowly than the last is the vanishing problem.
VANISHING_SPREAD = 100
RATIO_LOW, RATIO_HIGH = 1e-4, 1e-2  # update/weight ratios of the weights around 1e-3 are healthy (CS231n)
INITIAL_TOLERANCE = 0.2  # of the chance level: a first loss within it starts out (nearly) uniform
DEAD, SATURATED = 0.5, 0.5  # the red band of the dead and saturated units chart
OVERFIT_WINDOW = 3  # epochs averaged before a rise of the validation loss counts (a fifth of the run when longer)
RELU_FAMILY = ("ReLU", "ReLU6", "LeakyReLU", "PReLU")
HE_INITS = ("kaiming_normal", "kaiming_uniform")


@dataclass(frozen=True)
class Diagnosis:
    level: str  # "ok" | "warning" | "problem"
    title: str
    text: str
    lr: Optional[str] = None  # "lower" | "raise": the learning-rate advice it gives, so two never disagree


def run_context(trainer) -> dict:
    """What the diagnoses need to know of a run besides its curves: the loss's chance level, the activations and init,
    which parameter tensors are weights (≥ 2-D, as CS231n's update ratio and the penalties count them)."""
    from dlviz.training.losses import chance_level

    exp, ds, obj = trainer.exp, trainer.dataset, trainer.objective
    level = chance_level(exp.loss.type, dict(exp.loss.args), obj.task, obj.num_classes, ds.y_train)
    init = exp.model.init.type if exp.model.init is not None else "default"
    return {
        "loss": exp.loss.type,
        "chance": level[0] if level else None,
        "chance_formula": level[1] if level else "",
        "activations": sorted({type(m).__name__ for m in trainer.activation_modules.values()}),
        "init": init,
        "weights": [i for i, p in enumerate(trainer.params) if p.dim() >= 2],
        "lr": trainer.lr,
        "optimizer": exp.optimizer.type,
        "num_classes": obj.num_classes,
    }


def _layer_list(layers: list[tuple[str, str, float]]) -> str:
    """'model.layers[3] (ReLU, 62%) and model.layers[5] (ReLU, 81%)': every layer the diagnosis is about, in one box."""
    parts = [f"{path} ({kind}, {frac:.0%})" for path, kind, frac in layers]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _learned(epochs: list[dict], chance: Optional[float]) -> bool:
    """The task is being learned: accuracy (or R²) of 90 %, or a training loss well below where it started."""
    if not epochs:
        return False
    last = epochs[-1]
    if last.get("train_accuracy", 0) >= 0.9 or last.get("train_r2", -math.inf) >= 0.9:
        return True
    ref = chance if chance else epochs[0]["train_loss"]
    return last["train_loss"] <= 0.5 * ref


# losses that are −mean log p(true class): a first loss ln 2 above chance means the network gives the true class half
# the probability a uniform guess would, on (geometric) average
LIKELIHOOD_LOSSES = ("CrossEntropyLoss", "NLLLoss", "KLDivLoss", "BCEWithLogitsLoss", "SoftMarginLoss")


def _initial_loss(first: float, chance: float, formula: str, loss: Optional[str], snap: dict) -> Diagnosis:
    """Step 0's loss against the loss's own chance level: close (within INITIAL_TOLERANCE), above it but harmless, or
    far above it (the true class half as likely as a uniform guess would make it, or twice a constant prediction's
    loss), where the init is what is wrong."""
    regression = snap.get("task") == "regression"
    likelihood = loss is None or loss in LIKELIHOOD_LOSSES
    far = chance + math.log(2) if likelihood and not regression else 2 * chance
    cont = snap.get("continued") or {}
    whose = (
        f"The run's first step (run {cont['run']}, which this one continues from step {cont['step']:,}) had the loss"
        if cont.get("run")
        else "The first step's loss"
    )
    level = f"the loss of a constant prediction, {formula} = {chance:.3f}" if regression else f"the chance level {formula} = {chance:.3f}"
    if first <= (1 + INITIAL_TOLERANCE) * chance:
        after = (
            "the network starts out predicting about the targets' centre, as it should."
            if regression
            else "the network starts out guessing every class equally, as it should."
        )
        return Diagnosis("ok", "Initial loss", f"{whose} {first:.3f}, close to {level}: {after}")
    above = f"{whose} {first:.3f}, {first / chance - 1:.0%} above {level}"
    if first <= far:
        lean = "the untrained outputs are not constant" if regression else "the untrained outputs already lean towards some classes"
        return Diagnosis(
            "ok",
            "Initial loss",
            f"{above}: {lean} (a default init gives outputs of order 1), not enough to hold "
            "training back. A smaller init for the last layer would start it at the level exactly.",
        )
    fix = (
        "the untrained predictions are far from the targets' scale; standardize the targets or use a smaller init for the last layer."
        if regression
        else "the initial outputs are confidently wrong; use a smaller init for the last layer."
    )
    return Diagnosis("warning", "Initial loss", f"{above}: {fix}")


def diagnose(snap: dict, num_classes: int | None = None) -> list[Diagnosis]:
    """Read a LiveFeed snapshot (or the same keys rebuilt from the store) and say what it shows."""
    out: list[Diagnosis] = []
    ctx = snap.get("context") or {}
    epochs = snap.get("epochs") or []
    names = snap.get("param_names") or []
    acts = set(ctx.get("activations") or [])
    relu_he = bool(acts) and acts <= set(RELU_FAMILY) and ctx.get("init") in HE_INITS
    zero_init = ctx.get("init") in ("zeros", "constant")
    chance = ctx.get("chance")
    if chance is None and num_classes and snap.get("task") == "classification" and not ctx:
        chance = math.log(num_classes)  # a snapshot without context: a cross-entropy run
    formula = ctx.get("chance_formula") or (f"−ln(1/{num_classes})" if num_classes else "")
    learned = _learned(epochs, chance)
    # the loss is coming down: the last fifth of the steps well under the first step (also within the first epoch)
    steps_loss = np.asarray(snap.get("loss", []), dtype=float)
    start = snap.get("first_loss") if snap.get("first_loss") is not None else (steps_loss[0] if len(steps_loss) else math.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        falling = len(steps_loss) >= 5 and bool(np.nanmean(steps_loss[-max(1, len(steps_loss) // 5) :]) < 0.8 * start)
    progress = learned or falling
    tel = snap.get("telemetry") or []
    last_tel = tel[-1]["layers"] if tel else {}
    dead_layers = [(p, s) for p, s in last_tel.items() if s.get("dead", 0) > DEAD]

    # -- the initial loss: step 0's own loss, not the first point of the downsampled curve
    first = snap.get("first_loss")
    if first is not None and chance and snap.get("task") in ("classification", "regression"):
        out.append(_initial_loss(first, chance, formula, ctx.get("loss"), snap))

    # -- gradients, per weight tensor
    weights = ctx.get("weights")
    if weights is None:
        weights = [i for i, n in enumerate(names) if n.endswith("weight") or "weight_" in n] or list(range(len(names)))
    weights = [i for i in weights if i < len(names)]
    g = np.asarray(snap.get("log_grad_norm", np.zeros((0, 0))), dtype=float)
    vanishing = False
    if g.size and weights:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a tensor whose every norm is 0 or NaN
            recent = np.nanmedian(g[-max(1, len(g) // 5) :], axis=0)
            whole = np.nanmedian(g, axis=0)
            first_w, last_w = weights[0], weights[-1]
            spread = whole[last_w] - whole[first_w]
        # a norm of exactly 0 (log −inf) is the most vanished of all; NaN (no data) is left out
        lo = min(weights, key=lambda i: math.inf if math.isnan(recent[i]) else recent[i])
        hi = max(weights, key=lambda i: recent[i] if math.isfinite(recent[i]) else -math.inf)
        if zero_init:
            cause = (
                "Every weight started at zero, so the units of a layer are identical and pass back identical (here vanishing) "
                "gradients: start from a random init (xavier or kaiming)."
            )
        elif dead_layers:
            cause = "The ReLUs behind it are dead (see Dead ReLUs) and pass back no gradient: lower the learning rate."
        elif relu_he:
            cause = "The network already has ReLUs and He init, the usual cure; residual connections or BatchNorm give the gradient a path through the depth."
        else:
            cause = (
                "Saturating activations (sigmoid, tanh) with large weights cause this, their slopes multiplying layer by "
                "layer; try ReLU with He init, or BatchNorm."
            )
        if not math.isnan(recent[lo]) and 10 ** recent[lo] < VANISHING:
            vanishing = True
            out.append(
                Diagnosis(
                    "problem",
                    "Vanishing gradients",
                    f"The gradient norm of {names[lo]} is {10 ** recent[lo]:.1e}, below {VANISHING:.0e}: that layer has stopped learning. {cause}",
                    "lower" if dead_layers and not zero_init else None,
                )
            )
        elif len(weights) > 2 and math.isfinite(spread) and spread >= math.log10(VANISHING_SPREAD):
            vanishing = True
            out.append(
                Diagnosis(
                    "warning",
                    "Vanishing gradients",
                    f"Over the run, the gradient norm of the first layer {names[first_w]} ({10 ** whole[first_w]:.1e}) is "
                    f"{10**spread:.0f}× smaller than that of the last, {names[last_w]} ({10 ** whole[last_w]:.1e}): "
                    f"the early layers learn that much more slowly. {cause}",
                )
            )
        if math.isfinite(recent[hi]) and 10 ** recent[hi] > EXPLODING:
            out.append(
                Diagnosis(
                    "problem",
                    "Exploding gradients",
                    f"The gradient norm of {names[hi]} is {10 ** recent[hi]:.1e}, above {EXPLODING:.0e}; lower the learning "
                    "rate, clip gradients, or shrink the init.",
                    "lower",
                )
            )

    # -- update/weight ratio of the weights, ‖ΔW‖/‖W‖ before the step (CS231n), its typical value over the run
    u = np.asarray(snap.get("log_update_ratio", np.zeros((0, 0))), dtype=float)
    if u.size and weights:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero-initialized weights have no ratio (NaN)
            typical = float(np.nanmedian(u[:, weights]))
        if math.isfinite(typical):
            r = 10**typical
            said = f"Updates change the weights by {r:.1e} of their size per step (median over the run and the weight tensors)"
            if r > RATIO_HIGH:
                if progress:
                    out.append(Diagnosis("ok", "Update ratio", f"{said}, above the usual 1e-3, yet the loss falls: these big steps work for this network."))
                else:
                    out.append(
                        Diagnosis(
                            "warning", "Update ratio", f"{said}, above {RATIO_HIGH:.0e} (about 1e-3 is healthy): the learning rate looks too high.", "lower"
                        )
                    )
            elif r < RATIO_LOW and not progress and vanishing:
                out.append(
                    Diagnosis(
                        "warning",
                        "Update ratio",
                        f"{said}, below {RATIO_LOW:.0e} (about 1e-3 is healthy): the "
                        "vanishing gradients leave little to update, so a larger learning "
                        "rate would not fix it.",
                    )
                )
            elif r < RATIO_LOW and not progress and not zero_init:
                out.append(
                    Diagnosis("warning", "Update ratio", f"{said}, below {RATIO_LOW:.0e} (about 1e-3 is healthy): the learning rate looks too low.", "raise")
                )

    # -- unit health on the fixed probe set
    if tel:
        n = tel[-1].get("probe_samples")
        on = f"on a fixed probe set of {n} training samples" if n else "on the probe samples"
        if dead_layers:
            which = _layer_list([(p, st["type"], st["dead"]) for p, st in dead_layers])
            deep = (
                " In a deep stack without shortcuts the signal fades layer by layer and the deep units die first; residual connections keep it alive."
                if len(dead_layers) >= 3
                else ""
            )
            if progress and not vanishing:
                # the network learns with the units it has left: lost capacity, not a failing run, and no reason to
                # change a learning rate that works
                out.append(
                    Diagnosis(
                        "warning",
                        "Dead ReLUs",
                        f"More than half the units of {which} output zero for every sample "
                        f"{on}, so they get no gradient and never recover. The loss still "
                        "falls: the network learns with the units it has left, a smaller "
                        f"network than the one built. LeakyReLU keeps such units alive.{deep}",
                    )
                )
            else:
                out.append(
                    Diagnosis(
                        "problem",
                        "Dead ReLUs",
                        f"More than half the units of {which} output zero for every sample {on}, "
                        "so they get no gradient and never recover; lower the learning rate, or "
                        f"use LeakyReLU.{deep}",
                        "lower",
                    )
                )
        saturated = [(p, st["type"], st["saturated"]) for p, st in last_tel.items() if st.get("saturated", 0) > SATURATED]
        if saturated:
            which = _layer_list(saturated)
            if learned:
                text = (
                    f"More than half the outputs of {which} {on} sit in the activation's flat ends, where the slope is near zero "
                    "and those units barely learn. The task is learned, so these are confident units; smaller weights (L2) "
                    "keep them responsive."
                )
            else:
                text = (
                    f"More than half the outputs of {which} {on} sit where the activation's slope is near zero; smaller "
                    "initial weights or BatchNorm keep them in range."
                )
            out.append(Diagnosis("warning", "Saturated units", text))

    # -- curves over epochs
    scale = chance or 1.0
    if len(epochs) >= 3:
        tl = [e["train_loss"] for e in epochs]
        vl = [e["val_loss"] for e in epochs if e.get("val_loss") is not None and math.isfinite(e["val_loss"])]
        if tl[-1] > tl[0] * 1.05:
            out.append(
                Diagnosis(
                    "problem", "Loss rising", f"The training loss rose from {tl[0]:.3f} in epoch 1 to {tl[-1]:.3f}: the learning rate is too high.", "lower"
                )
            )
        elif abs(tl[-1] - tl[0]) < 0.01 * abs(tl[0]) and tl[-1] > 0.05:
            if zero_init:
                why = "every unit of a layer started identical (zero init) and stays so: start from a random init."
            elif vanishing:
                why = "the gradient vanishes before the early layers (see Vanishing gradients)."
            elif dead_layers:
                why = "its ReLUs are dead (see Dead ReLUs)."
            else:
                why = "the learning rate is too low, or the network cannot learn this."
            out.append(Diagnosis("warning", "Loss flat", f"The training loss moved from {tl[0]:.3f} to {tl[-1]:.3f} in {len(tl)} epochs, less than 1%: {why}"))
        if len(vl) >= OVERFIT_WINDOW and len(vl) == len(tl):
            # means over a window of epochs: one noisy validation epoch (BatchNorm's running statistics, a high learning
            # rate) is not a trend
            k = max(OVERFIT_WINDOW, len(vl) // 5)
            kernel = np.ones(k) / k
            v_mean, t_mean = np.convolve(vl, kernel, "valid"), np.convolve(tl, kernel, "valid")
            best_i = int(np.argmin(v_mean))
            best, now = float(v_mean[best_i]), float(v_mean[-1])
            # a rise that matters: a twentieth of the chance level and a quarter of the best, with validation above
            # training and training still falling
            if now - best >= 0.05 * scale and now >= 1.25 * best and now - t_mean[-1] >= 0.05 * scale and t_mean[-1] < t_mean[best_i]:
                span = f"epochs {best_i + 1}–{best_i + k}" if k > 1 else f"epoch {best_i + 1}"
                out.append(
                    Diagnosis(
                        "warning",
                        "Over-fitting",
                        f"The validation loss, averaged over {k} epochs, rose from its best "
                        f"{best:.3f} ({span}) to {now:.3f} in the last {k} while the training "
                        f"loss kept falling to {t_mean[-1]:.3f}: the model is memorising the "
                        "training set (variance). Try dropout, L2, more data or early stopping.",
                    )
                )
        if "train_accuracy" in epochs[-1]:
            acc, val_acc = epochs[-1]["train_accuracy"], epochs[-1].get("val_accuracy", math.nan)
            gap = acc - val_acc
            explained = any(d.level == "problem" or d.title in ("Vanishing gradients", "Saturated units") for d in out) or zero_init
            if gap > 0.1 and acc >= 0.8:
                out.append(
                    Diagnosis(
                        "warning", "Train/validation gap", f"Training accuracy {acc:.1%} is {gap:.1%} above validation accuracy {val_acc:.1%}: high variance."
                    )
                )
            elif acc < 0.6 and num_classes and num_classes <= 3 and not explained:
                out.append(
                    Diagnosis(
                        "warning",
                        "Under-fitting",
                        f"Training accuracy is only {acc:.1%}: high bias. A bigger network, a nonlinearity, or more epochs should help.",
                    )
                )
    # one direction for the learning rate: damage seen (dead units, exploding or rising loss) outweighs a small ratio
    if any(d.lr == "lower" for d in out):
        out = [d for d in out if d.lr != "raise"]
    return out


def score_lines(snap: dict) -> list[str]:
    """The numbers beside the curves: the last epoch's data loss, penalty and their total (when the preset has a
    penalty), a detector's mAP@0.5 on the validation canvases, and the test split's score once the run has one."""
    lines = []
    epochs = snap.get("epochs") or []
    last = epochs[-1] if epochs else {}
    if last.get("train_penalty") is not None and last.get("train_loss") is not None:
        lines.append(
            f"Epoch {last.get('epoch', len(epochs))}: data loss {last['train_loss']:.4g} + penalty {last['train_penalty']:.4g} "
            f"= total {last.get('train_total', last['train_loss'] + last['train_penalty']):.4g}, the total being what the "
            "optimizer minimises; the loss curves show the data loss."
        )
    if last.get("val_map") is not None:
        lines.append(
            f"Epoch {last.get('epoch', len(epochs))}: mAP@0.5 {last['val_map']:.3f} on the validation canvases (NMS within each digit at "
            "IoU 0.5, then PASCAL VOC's all-point average precision), scored at each epoch's end; a batch's boxes are not scored."
        )
    result = snap.get("result") or {}
    if result.get("test_loss") is not None:
        key = next((k for k in METRIC_LABELS if result.get(f"test_{k}") is not None), None)
        value = result.get(f"test_{key}")
        score = "" if key is None else f"accuracy {value:.1%}" if key == "accuracy" else f"{METRIC_LABELS[key]} {value:.3f}"
        lines.append(f"Test split, scored once at the end: {score + ', ' if score else ''}loss {result['test_loss']:.4g}.")
    return lines
