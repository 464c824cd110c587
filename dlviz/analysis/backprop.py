"""Backpropagation step by step on a tiny MLP: every neuron's forward numbers, the loss, the chain rule's factors going
back, and the optimizer's update of every weight, for one training sample, as plain JSON-able data."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from dlviz.analysis.gradcheck import setup
from dlviz.errors import UserError
from dlviz.preset.registry import ACTIVATIONS, OPTIMIZERS
from dlviz.preset.schema import Experiment

MAX_UNITS, MAX_LINEAR = 4, 3  # a network small enough to read every number of: ≤ 4 units a layer, ≤ 3 Linear layers
# activations applied entry by entry without weights of their own: f'(z) is then one number a neuron
ELEMENTWISE = tuple(a for a in ACTIVATIONS if a not in ("Softmax", "LogSoftmax", "Maxout", "PReLU"))


def _leaves(model) -> list[tuple[str, nn.Module]]:
    """The model's layers in order, named groups (Sequential) opened up."""
    out = []

    def walk(mod, prefix):
        for name, child in mod.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Sequential):
                walk(child, full)
            else:
                out.append((full, child))

    walk(model.layers, "layers")
    return out


def _groups(model) -> list[tuple[str, nn.Linear, Optional[nn.Module]]]:
    """(preset path, Linear, the activation after it or None) for each Linear, or a UserError naming what does not fit."""
    groups: list = []
    for name, mod in _leaves(model):
        path = model.json_paths.get(name, name)
        kind = type(mod).__name__
        if isinstance(mod, nn.Linear):
            groups.append([path, mod, None])
        elif kind in ELEMENTWISE and groups and groups[-1][2] is None:
            groups[-1][2] = mod
        elif kind in ELEMENTWISE:
            where = "before the first Linear" if not groups else "right after another activation"
            raise UserError(path, f"backprop step by step takes one activation after each Linear; this {kind} is {where}")
        else:
            raise UserError(path, f"backprop step by step takes Linear and activation layers only, not {kind}")
    if not groups:
        raise UserError("model.layers", "backprop step by step needs at least one Linear layer")
    return [tuple(g) for g in groups]


def _check_size(model, groups, first_layers) -> None:
    if len(model.input_shape) != 1:
        raise UserError("model.input_shape", f"backprop step by step takes a flat input of at most {MAX_UNITS} numbers, not {list(model.input_shape)}")
    sizes = [model.input_shape[0], *(lin.out_features for _, lin, _ in groups)]
    if len(groups) > MAX_LINEAR or max(sizes) > MAX_UNITS:
        shape = "-".join(map(str, sizes))
        hint = " (or ask for its first Linear layers only)" if first_layers is None else ""
        raise UserError(
            "model.layers",
            f"backprop step by step shows networks of at most {MAX_LINEAR} Linear layers of at most {MAX_UNITS} units "
            f"(inputs included), like 3-4-2; this one is {shape}: make it smaller{hint}",
        )


def _slice_loss(exp, ds, objective, groups, full: int):
    """The loss of the network's output: the preset's own when the whole network is shown, or when the slice's output
    still fits it (same size as the full output); otherwise the mean squared output (MSE against a target of zeros),
    which at least gives every output a gradient. Returns (loss of a (1, n) output, its description)."""
    from dlviz.training.losses import make_objective

    if len(groups) == full:
        return objective.loss, {"type": exp.loss.type, "against": "the sample's target"}
    out_features = groups[-1][1].out_features
    try:
        sliced = make_objective(exp.loss, ds.task, ds.num_classes, ds.target_shape, (out_features,))
        return sliced.loss, {"type": exp.loss.type, "against": "the sample's target (the first layers' output taken as the network's)"}
    except UserError:
        pass
    return (lambda out, y: (out**2).mean()), {
        "type": "MSELoss",
        "against": "zeros: the first layers' output does not fit the preset's loss, so this trace uses the mean square of that output",
    }


def _floats(t: torch.Tensor) -> list:
    return t.detach().double().tolist()


def backprop_trace(exp: Experiment, sample: int = 0, first_layers: Optional[int] = None, csv_bytes: Optional[bytes] = None, dataset=None) -> dict:
    """One training sample through the untrained network and back, neuron by neuron, then one optimizer step.

    Stages: "forward" (per layer and neuron: inputs, weights, bias, z = w·x + b, a = f(z)), "loss" (value, the output
    and dL/d output), "backward" (last layer first; per neuron f'(z), dL/da, dL/dz = f'(z)·dL/da, dL/dw = dL/dz·a_prev,
    dL/db = dL/dz) and "update" (per weight: old, gradient, new as the preset's torch.optim optimizer leaves it after
    one step). The loss is the data loss only: the preset's L1/L2 penalty is left out (an optimizer's own weight_decay
    is in). `first_layers=k` shows the network up to its k-th Linear layer's output (the activation after it left out),
    for a model over the size limits."""
    ds, objective, model = setup(exp, csv_bytes, dataset)
    groups = _groups(model)
    full = len(groups)
    if first_layers is not None:
        if first_layers < 1:
            raise UserError("first_layers", f"must be at least 1, got {first_layers}")
        groups = groups[:first_layers]
        if first_layers < full:
            last = groups[-1]
            groups[-1] = (last[0], last[1], None)
    _check_size(model, groups, first_layers)
    if not 0 <= sample < len(ds.x_train):
        raise UserError("sample", f"the training set has samples 0 to {len(ds.x_train) - 1}, not {sample}")
    loss_of, loss_info = _slice_loss(exp, ds, objective, groups, full)
    x, y = ds.x_train[sample].float(), ds.y_train[sample : sample + 1]

    forward, zs, acts = [], [], [x]
    with torch.no_grad():
        for path, lin, act in groups:
            a_prev = acts[-1]
            z = lin.weight @ a_prev + lin.bias if lin.bias is not None else lin.weight @ a_prev
            a = act(z) if act is not None else z
            zs.append(z)
            acts.append(a)
            neurons = [
                {
                    "inputs": _floats(a_prev),
                    "weights": _floats(lin.weight[i]),
                    "bias": float(lin.bias[i]) if lin.bias is not None else None,
                    "z": float(z[i]),
                    "a": float(a[i]),
                }
                for i in range(lin.out_features)
            ]
            forward.append({"layer": path, "activation": type(act).__name__ if act is not None else None, "neurons": neurons})

    out = acts[-1].clone().requires_grad_(True)
    loss = loss_of(out[None], y)
    (d_out,) = torch.autograd.grad(loss, out)  # the loss's own derivative: where the chain rule starts
    loss_stage = {**loss_info, "value": float(loss.detach()), "output": _floats(out), "target": _floats(y.reshape(-1)), "dL_doutput": _floats(d_out)}

    backward, grads = [], {}
    upstream = d_out
    for k in range(len(groups) - 1, -1, -1):
        path, lin, act = groups[k]
        z, a_prev = zs[k], acts[k]
        if act is None:
            local = torch.ones_like(z)
        else:
            zz = z.clone().requires_grad_(True)
            (local,) = torch.autograd.grad(act(zz).sum(), zz)  # f'(z) entry by entry: the activation is elementwise
        dz = local * upstream
        dw = torch.outer(dz, a_prev)
        grads[k] = (dw, dz)
        backward.append(
            {
                "layer": path,
                "neurons": [
                    {
                        "f_prime": float(local[i]),
                        "dL_da": float(upstream[i]),
                        "dL_dz": float(dz[i]),
                        "dL_dw": _floats(dw[i]),
                        "dL_db": float(dz[i]) if lin.bias is not None else None,
                    }
                    for i in range(lin.out_features)
                ],
            }
        )
        upstream = lin.weight.detach().T @ dz  # dL/da of the layer before

    # the real optimizer on a copy, given the gradients above: what one step of the preset's training does to them
    copies = [copy.deepcopy(lin) for _, lin, _ in groups]
    params = []
    for k, lin in enumerate(copies):
        lin.weight.grad = grads[k][0].clone()
        params.append(lin.weight)
        if lin.bias is not None:
            lin.bias.grad = grads[k][1].clone()
            params.append(lin.bias)
    opt_args = {k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()}
    OPTIMIZERS[exp.optimizer.type].cls(params, **opt_args).step()
    return _result(exp, sample, x, groups, full, forward, loss_stage, backward, grads, copies)


@torch.no_grad()
def _result(exp, sample, x, groups, full, forward, loss_stage, backward, grads, copies) -> dict:
    update = []
    for k, ((path, lin, _), new) in enumerate(zip(groups, copies)):
        dw, db = grads[k]
        update.append(
            {
                "layer": path,
                "weights": [
                    [{"old": float(lin.weight[i, j]), "grad": float(dw[i, j]), "new": float(new.weight[i, j])} for j in range(lin.in_features)]
                    for i in range(lin.out_features)
                ],
                "bias": [{"old": float(lin.bias[i]), "grad": float(db[i]), "new": float(new.bias[i])} for i in range(lin.out_features)]
                if lin.bias is not None
                else None,
            }
        )
    return {
        "sample": sample,
        "input": _floats(x),
        "layers_shown": len(groups),
        "layers_total": full,
        "forward": forward,
        "loss": loss_stage,
        "backward": backward,
        "update": {"optimizer": exp.optimizer.type, "args": dict(exp.optimizer.args), "layers": update},
    }


STAGES = ("forward", "loss", "backward", "update")


def _vector(values) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def stage_tables(trace: dict, stage: str) -> list[tuple[str, list[dict]]]:
    """One stage of a trace as (title, rows) tables, a row a neuron (a weight for the update), for a page to show."""
    if stage == "forward":
        return [
            (
                f"{layer['layer']}: {layer['activation'] or 'no activation (the output is z)'}",
                [
                    {
                        "neuron": i,
                        "inputs": _vector(n["inputs"]),
                        "weights": _vector(n["weights"]),
                        "bias": n["bias"],
                        "z = w·x + b": n["z"],
                        "a = f(z)": n["a"],
                    }
                    for i, n in enumerate(layer["neurons"])
                ],
            )
            for layer in trace["forward"]
        ]
    if stage == "loss":
        loss = trace["loss"]
        title = f"{loss['type']} against {loss['against']}: L = {loss['value']:.6g}"
        target = loss["target"] if len(loss["target"]) == len(loss["output"]) else [None] * len(loss["output"])
        if target[0] is None and loss["target"]:
            title += f" (target {_vector(loss['target'])})"
        return [
            (title, [{"output": i, "value": v, "target": t, "dL/d output": d} for i, (v, t, d) in enumerate(zip(loss["output"], target, loss["dL_doutput"]))])
        ]
    if stage == "backward":
        return [
            (
                f"{layer['layer']}",
                [
                    {
                        "neuron": i,
                        "f′(z)": n["f_prime"],
                        "∂L/∂a": n["dL_da"],
                        "∂L/∂z = f′(z)·∂L/∂a": n["dL_dz"],
                        "∂L/∂w = ∂L/∂z·a_prev": _vector(n["dL_dw"]),
                        "∂L/∂b": n["dL_db"],
                    }
                    for i, n in enumerate(layer["neurons"])
                ],
            )
            for layer in trace["backward"]
        ]
    if stage == "update":
        update = trace["update"]
        args = ", ".join(f"{k}={v}" for k, v in update["args"].items())
        out = []
        for layer in update["layers"]:
            rows = [
                {"parameter": f"w[{i},{j}]", "old": w["old"], "gradient": w["grad"], "new": w["new"]}
                for i, row in enumerate(layer["weights"])
                for j, w in enumerate(row)
            ]
            rows += [{"parameter": f"b[{i}]", "old": b["old"], "gradient": b["grad"], "new": b["new"]} for i, b in enumerate(layer["bias"] or [])]
            out.append((f"{layer['layer']}: one {update['optimizer']} step ({args})", rows))
        return out
    raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
