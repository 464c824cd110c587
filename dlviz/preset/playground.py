"""The Playground's networks: a dense network on 2-D points, read from a preset and edited the way TensorFlow Playground
edits it (a neuron, a layer, an activation, an input feature, the data set), each edit giving a new preset document.

A Playground network is Linear layers, each hidden one followed by at most one activation, ending in a Linear output
layer; its inputs are the data set's `features`. Every edit is checked against the Playground's limits (8 neurons a
layer, 6 hidden layers: DLVIZ_PLAYGROUND_UNITS, DLVIZ_PLAYGROUND_LAYERS) and returns the edited document, which the
page then validates like any other preset."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from dlviz import limits
from dlviz.errors import UserError
from dlviz.preset.layers import ACTIVATIONS
from dlviz.preset.options import FEATURES
from dlviz.preset.registry import CURVES

PLAIN_ACTIVATIONS = tuple(name for name, entry in ACTIVATIONS.items() if all(not a.required for a in entry.args.values()))
LINEAR = "Linear"  # the activation picker's name for "no activation", as Playground calls it
CURVE_SETS = tuple(f"curve-{f}" for f in CURVES)  # the 1-D curves, one entry a function: y = f(x) over a line
SETS = ("circle", "xor", "gauss", "spiral", "moons", "blobs", "reg-plane", "reg-gauss", *CURVE_SETS)  # the sets it draws
REGRESSION_SETS = ("reg-plane", "reg-gauss", *CURVE_SETS)
ONE_D = ("x",)  # a curve's one input
CLASSIFICATION_LOSS = {"type": "BCEWithLogitsLoss"}  # one output unit: its sign is the class, as Playground's ±1
REGRESSION_LOSS = {"type": "MSELoss"}


@dataclass(frozen=True)
class Network:
    """The hidden layers (neurons, activation name or LINEAR) and the number of outputs of a Playground network."""

    hidden: tuple[tuple[int, str], ...]
    outputs: int
    features: tuple[str, ...]


def default_doc() -> dict:
    """A new Playground experiment with TensorFlow Playground's own defaults: the circle set, half the points for
    training, noise 0, batch 10, learning rate 0.03, tanh, hidden layers of 4 and 2 neurons."""
    return {
        "format": "dlviz-preset/1",
        "name": "Playground",
        "description": "A dense network on 2-D points, with TensorFlow Playground's defaults.",
        "look_at": "Watch each neuron's map over the plane while the output's boundary forms.",
        "seed": 0,
        "data": {"name": "circle", "noise": 0.0, "num_samples": 500, "val_fraction": 0.5, "batch_size": 10, "features": ["x1", "x2"]},
        "model": {"input_shape": [2], "init": "xavier_uniform", "layers": layers_doc(((4, "Tanh"), (2, "Tanh")), 1)},
        "loss": dict(CLASSIFICATION_LOSS),
        "optimizer": {"type": "SGD", "lr": 0.03},
        "training": {"epochs": limits.current().max_epochs},
    }


def layers_doc(hidden, outputs: int) -> list[dict]:
    """The preset's layer list of a network with these hidden layers and outputs."""
    layers: list[dict] = []
    for units, act in hidden:
        layers.append({"type": "Linear", "out_features": int(units)})
        if act != LINEAR:
            layers.append({"type": act})
    layers.append({"type": "Linear", "out_features": int(outputs)})
    return layers


def data_choice(doc: dict) -> str:
    """The Playground's name of a preset's data set: its own name, or curve-<function> for a curve."""
    data = doc.get("data") or {}
    return f"curve-{data.get('function', 'sin')}" if data.get("name") == "curve" else str(data.get("name"))


def network(doc: dict) -> Network:
    """The Playground network of a preset document, or a UserError naming the first part that is not one."""
    data = doc.get("data") or {}
    if data_choice(doc) not in SETS:
        raise UserError("data.name", "the Playground draws networks on 2-D points; pick one of its data sets, or open this preset on Build")
    layers = (doc.get("model") or {}).get("layers") or []
    hidden: list[tuple[int, str]] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        if layer.get("type") != "Linear" or set(layer) - {"type", "out_features", "name"}:
            raise UserError(
                f"model.layers[{i}]",
                f"the Playground draws plain Linear layers and activations, not {layer.get('type')!r} with these options; open this preset on Build",
            )
        act = LINEAR
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if nxt is not None and nxt.get("type") in PLAIN_ACTIVATIONS and set(nxt) <= {"type", "name"}:
            act, i = nxt["type"], i + 1
        elif nxt is not None and nxt.get("type") != "Linear":
            raise UserError(
                f"model.layers[{i + 1}]", f"the Playground draws plain Linear layers and activations, not {nxt.get('type')!r}; open this preset on Build"
            )
        hidden.append((int(layer["out_features"]), act))
        i += 1
    if not hidden or hidden[-1][1] != LINEAR:
        raise UserError("model.layers", "a Playground network ends in a Linear output layer")
    outputs = hidden.pop()[0]
    features = ONE_D if data.get("name") == "curve" else tuple(data.get("features") or ("x1", "x2"))
    return Network(tuple(hidden), outputs, features)


def check(net: Network) -> None:
    """Refuse a network beyond the Playground's limits, with the setting that raises them."""
    lim = limits.current()
    if len(net.hidden) > lim.playground_layers:
        raise UserError("model.layers", f"at most {lim.playground_layers} hidden layers on the Playground (DLVIZ_PLAYGROUND_LAYERS)")
    for n, (units, _) in enumerate(net.hidden):
        if not 1 <= units <= lim.playground_units:
            raise UserError("model.layers", f"hidden layer {n + 1}: 1 to {lim.playground_units} neurons on the Playground (DLVIZ_PLAYGROUND_UNITS)")


def _with_network(doc: dict, net: Network) -> dict:
    check(net)
    out = copy.deepcopy(doc)
    out["model"]["layers"] = layers_doc(net.hidden, net.outputs)
    out["model"]["input_shape"] = [len(net.features)]
    if net.features != ONE_D:
        out["data"]["features"] = list(net.features)
    return out


def edit(doc: dict, event: dict) -> dict:
    """The document after one of the board's structural edits:
    {"kind": "layers", "delta": ±1}, {"kind": "units", "layer": i, "delta": ±1},
    {"kind": "activation", "layer": i, "value": name}, {"kind": "feature", "name": f, "on": bool}."""
    net = network(doc)
    hidden = list(net.hidden)
    kind = event.get("kind")
    if kind == "layers":
        if event.get("delta", 0) > 0:
            hidden.append((hidden[-1][0] if hidden else 2, hidden[-1][1] if hidden else "Tanh"))
        elif hidden:
            hidden.pop()
    elif kind in ("units", "activation"):
        i = event.get("layer")
        if not isinstance(i, int) or not 0 <= i < len(hidden):
            raise UserError("model.layers", f"there is no hidden layer {i}")
        units, act = hidden[i]
        if kind == "units":
            hidden[i] = (units + (1 if event.get("delta", 0) > 0 else -1), act)
        else:
            value = event.get("value")
            if value != LINEAR and value not in PLAIN_ACTIVATIONS:
                raise UserError("model.layers", f"{value!r} is not an activation the Playground offers")
            hidden[i] = (units, value)
    elif kind == "feature":
        name = event.get("name")
        if net.features == ONE_D:
            raise UserError("data.features", "a curve's network has one input, x")
        if name not in FEATURES:
            raise UserError("data.features", f"{name!r} is not one of the input features {', '.join(FEATURES)}")
        on = set(net.features) | {name} if event.get("on") else set(net.features) - {name}
        if not on:
            raise UserError("data.features", "the network needs at least one input feature")
        return _with_network(doc, Network(net.hidden, net.outputs, tuple(f for f in FEATURES if f in on)))
    else:
        raise UserError("", f"unknown Playground edit {kind!r}")
    return _with_network(doc, Network(tuple(hidden), net.outputs, net.features))


def with_data(doc: dict, name: str) -> dict:
    """The document on another data set: its loss and output layer follow the task (one output unit either way)."""
    if name not in SETS:
        raise UserError("data.name", f"{name!r} is not one of the Playground's data sets: {', '.join(SETS)}")
    out = copy.deepcopy(doc)
    kept = ("val_fraction", "batch_size", "noise", "num_samples", *(() if name in CURVE_SETS else ("features",)))
    out["data"] = {k: v for k, v in out["data"].items() if k in kept}
    if name in CURVE_SETS:
        out["data"].update(name="curve", function=name.removeprefix("curve-"))
        out["model"]["input_shape"] = [1]
    else:
        out["data"]["name"] = name
        out["model"]["input_shape"] = [len(out["data"].get("features") or ("x1", "x2"))]
    if name == "blobs":
        out["data"]["classes"] = 2  # the board colours two classes, as Playground's ±1
    out["loss"] = dict(REGRESSION_LOSS if name in REGRESSION_SETS else CLASSIFICATION_LOSS)
    return out


def playground_doc(doc: dict) -> dict:
    """The document as the Playground page takes it: the session's own when it is a Playground network on 2-D points
    with one output unit, else Playground's defaults (the page says which)."""
    try:
        net = network(doc)
        check(net)
    except UserError:
        return default_doc()
    if net.outputs != 1:
        return default_doc()
    return doc
