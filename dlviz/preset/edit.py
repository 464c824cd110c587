"""Edits of a preset held as a plain dict, each addressed by a JSON-path tuple such as ("model", "layers", 3, "body", 0).

Every operation returns a new dict and leaves its input untouched, so a caller can keep the old preset for undo
and never shares nested lists between two versions. A *container* path names a list of layers (the top level,
a Residual's body or shortcut, one Concat branch, a Sequential's layers); a *layer* path is a container path
plus an index.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterator, Optional

from dlviz.errors import UserError, json_path
from dlviz.preset.args import Arg, ArgError
from dlviz.preset.registry import ACTIVATIONS, ALL_LAYERS, BLOCKS, INITS

Path = tuple

TOP: Path = ("model", "layers")

# Values for required arguments when a layer is added from the picker: small, and valid for common inputs.
REQUIRED_DEFAULTS: dict[str, Any] = {
    "out_features": 16,
    "out_channels": 8,
    "kernel_size": 3,
    "output_size": 1,
    "num_groups": 1,
    "size": 5,
    "unflattened_size": [1, 28, 28],
    "num_embeddings": 100,
    "embedding_dim": 16,
    "hidden_size": 16,
}
TYPE_DEFAULTS: dict[tuple[str, str], Any] = {
    ("MaxPool1d", "kernel_size"): 2,
    ("MaxPool2d", "kernel_size"): 2,
    ("AvgPool1d", "kernel_size"): 2,
    ("AvgPool2d", "kernel_size"): 2,
}
NEW_BLOCKS: dict[str, dict] = {
    "Residual": {"type": "Residual", "body": []},
    "Concat": {"type": "Concat", "branches": [[], []]},
    "Sequential": {"type": "Sequential", "layers": []},
}


# ---------------------------------------------------------------- reading


def get(doc: dict, path: Path) -> Any:
    """The value at `path`; raises KeyError or IndexError when there is none."""
    node = doc
    for part in path:
        node = node[part]
    return node


def parse_path(text: str) -> Path:
    """'model.layers[3].body[0]' -> ('model', 'layers', 3, 'body', 0); the inverse of errors.json_path."""
    return tuple(int(i) if i else key for key, i in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", text))


def child_lists(layer: dict, path: Path) -> list[tuple[Path, str]]:
    """The layer lists inside a block as (container path, part name), in order; [] for a leaf layer."""
    t = layer.get("type")
    if t == "Residual":
        return [((*path, "body"), "body"), ((*path, "shortcut"), "shortcut")]
    if t == "Concat":
        return [((*path, "branches", i), f"branch {i + 1}") for i in range(len(layer.get("branches") or []))]
    if t == "Sequential":
        return [((*path, "layers"), "layers")]
    return []


def layer_items(doc: dict, container: Path) -> list:
    """The layers in a container; a Residual's missing shortcut reads as an empty list."""
    try:
        return get(doc, container)
    except KeyError:
        if container[-1] == "shortcut":
            return []
        raise


def walk(doc: dict, container: Path = TOP, depth: int = 0) -> Iterator[tuple[Path, dict, int]]:
    """Every layer as (path, layer dict, depth), parents before their children."""
    for i, layer in enumerate(layer_items(doc, container)):
        here = (*container, i)
        yield here, layer, depth
        for sub, _ in child_lists(layer, here):
            yield from walk(doc, sub, depth + 1)


def _size_text(v: Any) -> str:
    return "×".join(str(x) for x in v) if isinstance(v, list) else str(v)


def layer_label(layer: dict) -> str:
    """A short label for a layer in the style of the literature: "Conv2d 6@5×5", "Linear 120", "MaxPool2d 2×2"."""
    t = layer.get("type", "?")
    a = layer
    if t in ("Conv1d", "Conv2d", "ConvTranspose2d"):
        k = a.get("kernel_size", "?")
        dims = 1 if t == "Conv1d" else 2
        k_text = _size_text(k if isinstance(k, list) else [k] * dims)
        stride = a.get("stride", 1)
        return f"{t} {a.get('out_channels', '?')}@{k_text}" + (f" /{_size_text(stride)}" if stride != 1 else "")
    if t in ("Linear", "Bilinear"):
        return f"{t} {a.get('out_features', '?')}"
    if "Pool" in t and not t.startswith("Adaptive"):
        k = a.get("kernel_size", "?")
        text = f"{t} {_size_text(k if isinstance(k, list) or t.endswith('1d') else [k, k])}"
        stride = a.get("stride")
        return text + (f" /{_size_text(stride)}" if stride is not None and stride != k else "")
    if t.startswith("Adaptive"):
        return f"{t} → {_size_text(a.get('output_size', '?'))}"
    if t in ("Dropout", "Dropout2d", "AlphaDropout"):
        return f"{t} p={a.get('p', ALL_LAYERS[t].args['p'].default):g}"
    if t in ("RNN", "LSTM", "GRU"):
        return f"{t} {a.get('hidden_size', '?')}"
    if t == "Embedding":
        return f"Embedding {a.get('num_embeddings', '?')}×{a.get('embedding_dim', '?')}"
    if t == "MultiheadAttention":
        return f"MultiheadAttention ×{a.get('num_heads', 1)}"
    if t in BLOCKS and a.get("name"):
        return f"{t} “{a['name']}”"
    return t


def containers(doc: dict) -> list[tuple[Path, str]]:
    """Every list a layer can be inserted into, as (container path, human label), the top level first."""
    out = [(TOP, "Top level")]
    for path, layer, _ in walk(doc):
        for sub, part in child_lists(layer, path):
            out.append((sub, f"{json_path(path[1:])} {layer_label(layer)} › {part}"))
    return out


# ---------------------------------------------------------------- making layers


def default_value(type_name: str, key: str, arg: Arg) -> Any:
    """The value a newly added layer gets for a required argument."""
    if (type_name, key) in TYPE_DEFAULTS:
        return TYPE_DEFAULTS[(type_name, key)]
    if key in REQUIRED_DEFAULTS:
        return REQUIRED_DEFAULTS[key]
    low = arg.ge if arg.ge is not None else (arg.gt + 1 if arg.gt is not None else 1)
    return {
        "int": int(low),
        "float": float(low),
        "size": int(low),
        "padding": 0,
        "ints": [int(low)],
        "floats": [float(low)] * (arg.dims or 1),
        "number_or_list": float(low),
        "bool": False,
        "choice": arg.choices[0] if arg.choices else None,
    }[arg.kind]


def new_layer(type_name: str) -> dict:
    """A layer of `type_name` with every required argument filled in and the optional ones left to their defaults."""
    if type_name in NEW_BLOCKS:
        return copy.deepcopy(NEW_BLOCKS[type_name])
    if type_name not in ALL_LAYERS:
        raise UserError("type", f"unknown layer type '{type_name}'")
    layer = {"type": type_name}
    for key, arg in ALL_LAYERS[type_name].args.items():
        if arg.required:
            layer[key] = default_value(type_name, key, arg)
    return layer


def layer_types(group: str) -> list[str]:
    """The layer types the picker offers under one registry group ("blocks" gives the composite blocks)."""
    if group == "blocks":
        return list(BLOCKS)
    return [name for name, entry in ALL_LAYERS.items() if entry.group == group]


# ---------------------------------------------------------------- structural edits


def _container_for_write(doc: dict, container: Path) -> list:
    parent = get(doc, container[:-1])
    if container[-1] == "shortcut" and "shortcut" not in parent:
        parent["shortcut"] = []
    items = parent[container[-1]]
    if not isinstance(items, list):
        raise UserError(json_path(container), "is not a list of layers")
    return items


def insert(doc: dict, container: Path, layer: dict, index: Optional[int] = None) -> dict:
    """Insert `layer` into the list at `container` (at the end unless `index` is given)."""
    out = copy.deepcopy(doc)
    items = _container_for_write(out, container)
    items.insert(len(items) if index is None else max(0, min(index, len(items))), copy.deepcopy(layer))
    return out


def add_layer(doc: dict, container: Path, type_name: str, index: Optional[int] = None) -> dict:
    """Insert a new layer of `type_name`, with default arguments, into a container."""
    return insert(doc, container, new_layer(type_name), index)


def add_branch(doc: dict, concat_path: Path) -> dict:
    """Give a Concat one more (empty) branch."""
    out = copy.deepcopy(doc)
    get(out, concat_path)["branches"].append([])
    return out


def remove_branch(doc: dict, concat_path: Path, index: int) -> dict:
    """Remove one branch of a Concat; the last branch cannot go, since a Concat needs one."""
    out = copy.deepcopy(doc)
    branches = get(out, concat_path)["branches"]
    if len(branches) <= 1:
        raise UserError(json_path((*concat_path, "branches")), "a Concat needs at least one branch; delete the Concat instead")
    del branches[index]
    return out


def move(doc: dict, path: Path, delta: int) -> dict:
    """Move the layer at `path` by `delta` places within its list; a move past either end leaves it at that end."""
    out = copy.deepcopy(doc)
    items = get(out, path[:-1])
    i = path[-1]
    j = max(0, min(len(items) - 1, i + delta))
    items.insert(j, items.pop(i))
    return out


def delete(doc: dict, path: Path) -> dict:
    """Remove the layer at `path` (with everything inside it)."""
    out = copy.deepcopy(doc)
    del get(out, path[:-1])[path[-1]]
    return out


def empty_model(doc: dict) -> dict:
    """The preset with no layers, a fresh name and no inits; the input shape, data, loss and optimizer stay."""
    out = copy.deepcopy(doc)
    out["name"] = "Untitled model"
    for key in ("description", "look_at"):
        out.pop(key, None)
    out["model"] = {"input_shape": list(out.get("model", {}).get("input_shape") or [2]), "layers": []}
    return out


# ---------------------------------------------------------------- values


def set_arg(doc: dict, path: Path, key: str, value: Any) -> dict:
    """Set one argument of the layer at `path`; a value equal to the argument's default is removed instead."""
    out = copy.deepcopy(doc)
    layer = get(out, path)
    arg = ALL_LAYERS[layer["type"]].args.get(key)
    if arg is None:
        raise UserError(json_path((*path, key)), f"{layer['type']} has no argument '{key}'")
    if not arg.required and value == arg.default and type(value) is type(arg.default):
        layer.pop(key, None)
    else:
        layer[key] = value
    return out


def arg_value(layer: dict, key: str) -> Any:
    """The value an argument has in this layer: the one written, else the registry default."""
    if key in layer:
        return layer[key]
    return ALL_LAYERS[layer["type"]].args[key].default


def set_name(doc: dict, path: Path, name: str) -> dict:
    """Name a layer (shown in the UI); an empty name removes it."""
    out = copy.deepcopy(doc)
    layer = get(out, path)
    if name.strip():
        layer["name"] = name.strip()
    else:
        layer.pop("name", None)
    return out


def set_trainable(doc: dict, path: Path, on: bool) -> dict:
    """Let a layer (or a block's layers) train, or freeze it: "trainable": false, left out when true."""
    out = copy.deepcopy(doc)
    layer = get(out, path)
    if on:
        layer.pop("trainable", None)
    else:
        layer["trainable"] = False
    return out


def _split(text: str) -> list[str]:
    """'3, 5', '3 5', '[3, 5]' and '3×5' (or '3x5') -> ['3', '5']."""
    text = re.sub(r"(?<=\d)\s*[x×]\s*(?=\d)", ",", text.strip().strip("[]()"))
    return [p for p in re.split(r"[\s,;]+", text) if p]


def parse_ints(text: str, what: str = "value") -> list[int]:
    """'1, 28, 28' or '1 28 28' or '[1, 28, 28]' or '1×28×28' -> [1, 28, 28]."""
    parts = _split(text)
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise UserError(what, f"write whole numbers separated by commas, like 1, 28, 28; got '{text.strip()}'") from None


def set_input_shape(doc: dict, shape: list[int]) -> dict:
    out = copy.deepcopy(doc)
    out.setdefault("model", {"layers": []})["input_shape"] = list(shape)
    return out


def format_value(arg: Arg, value: Any) -> str:
    """How a list-like or optional argument is written in a text box: 3, '3, 5', 'same', or '' for None."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_value(arg: Arg, text: str, where: str = "value") -> Any:
    """Text from a box back to an argument value: '3' -> 3, '3, 5' -> [3, 5], '' -> None where allowed.

    The result is checked against the argument (bounds, list length), so the preset only ever holds values
    its schema accepts; a bad entry raises UserError naming `where`."""
    text = text.strip()
    if not text:
        if arg.nullable or arg.default is None:
            return None
        if not arg.required:
            return arg.default
        raise UserError(where, "needs a value")
    if arg.kind == "padding" and text in ("same", "valid"):
        value: Any = text
    else:
        parts = _split(text)
        floaty = arg.kind in ("floats", "number_or_list", "float")
        try:
            nums = [float(p) if floaty else int(p) for p in parts]
        except ValueError:
            want = "numbers" if floaty else "whole numbers"
            extra = ", or 'same' / 'valid'" if arg.kind == "padding" else ""
            raise UserError(where, f"write {want} separated by commas, like 3 or 3, 5{extra}; got '{text}'") from None
        single = len(nums) == 1 and arg.kind in ("size", "padding", "number_or_list", "int", "float")
        value = nums[0] if single else nums
    try:
        return arg.validate(value)
    except ArgError as e:
        raise UserError(where, str(e)) from None


# ---------------------------------------------------------------- whole-model edits


def _map_layers(layers: list, fn) -> list:
    out = []
    for layer in layers:
        layer = fn(layer)
        if layer.get("type") == "Residual":
            layer = {**layer, "body": _map_layers(layer.get("body") or [], fn)}
            if "shortcut" in layer:
                layer["shortcut"] = _map_layers(layer["shortcut"] or [], fn)
        elif layer.get("type") == "Concat":
            layer = {**layer, "branches": [_map_layers(b, fn) for b in layer.get("branches") or []]}
        elif layer.get("type") == "Sequential":
            layer = {**layer, "layers": _map_layers(layer.get("layers") or [], fn)}
        out.append(layer)
    return out


def set_all_activations(doc: dict, type_name: str) -> dict:
    """Replace every activation layer, at any depth, by `type_name` with default arguments; names are kept."""
    if type_name not in ACTIVATIONS:
        raise UserError("type", f"'{type_name}' is not an activation; choose one of {', '.join(ACTIVATIONS)}")

    def swap(layer: dict) -> dict:
        if layer.get("type") not in ACTIVATIONS:
            return layer
        new = new_layer(type_name)
        if layer.get("name"):
            new["name"] = layer["name"]
        return new

    out = copy.deepcopy(doc)
    out["model"]["layers"] = _map_layers(out["model"].get("layers") or [], swap)
    return out


def set_all_inits(doc: dict, init: Any) -> dict:
    """Make `init` (a name or {"type": ..., ...}) the model's init and drop every per-layer override."""
    name = init if isinstance(init, str) else init.get("type") if isinstance(init, dict) else None
    if name not in INITS:
        raise UserError("model.init", f"unknown init {init!r}; choose one of {', '.join(INITS)}")

    def clear(layer: dict) -> dict:
        # PReLU's `init` is its starting slope, an argument rather than an override
        if "init" in layer and not _has_arg(layer.get("type"), "init"):
            return {k: v for k, v in layer.items() if k != "init"}
        return layer

    out = copy.deepcopy(doc)
    out["model"]["layers"] = _map_layers(out["model"].get("layers") or [], clear)
    if name == "default" and isinstance(init, str):
        out["model"].pop("init", None)  # no init is PyTorch's own initialization
    else:
        out["model"]["init"] = copy.deepcopy(init)
    return out


def _has_arg(type_name: Any, key: str) -> bool:
    return type_name in ALL_LAYERS and key in ALL_LAYERS[type_name].args


# ---------------------------------------------------------------- checking while editing


def error_layer(error: Optional[UserError]) -> Optional[Path]:
    """The path of the innermost layer a problem lies in ('model.layers[4].body[1].kernel_size' -> (..., 4, 'body', 1)),
    or None when the problem is not inside a layer."""
    if error is None:
        return None
    loc = parse_path(error.path)
    if loc[:2] != TOP:
        return None
    found, i = None, 2
    while i < len(loc) and isinstance(loc[i], int):
        found = loc[: i + 1]
        if i + 1 < len(loc) and loc[i + 1] in ("body", "shortcut", "layers"):
            i += 2
        elif i + 2 < len(loc) and loc[i + 1] == "branches" and isinstance(loc[i + 2], int):
            i += 3
        else:
            break
    return found


def error_at(error: Optional[UserError], path: Path) -> bool:
    """Whether a problem lies in the layer at `path` (the layer itself, one of its arguments or anything inside it)."""
    if error is None:
        return False
    here = json_path(path)
    return error.path == here or error.path.startswith(here + ".") or error.path.startswith(here + "[")


def layer_place(doc: dict, path: Path) -> str:
    """A layer named as the Build page shows it: "layer 7, Linear 120", "layer 2 of layer 3's body, Conv2d 8@3×3"."""
    layer = get(doc, path)
    steps, i = [], len(path) - 1
    while i >= 2 and isinstance(path[i], int):
        part = path[i - 1]
        if part == "layers" and i == 2:
            steps.append(f"layer {path[i]}")
            break
        if isinstance(part, int):  # a Concat branch: (..., "branches", k, i)
            steps.append(f"layer {path[i]} of branch {part}")
            i -= 3
        else:
            steps.append(f"layer {path[i]}" + ("" if part == "layers" else f" of the {part}"))
            i -= 2
    return f"{' of '.join(steps)}, {layer_label(layer) if isinstance(layer, dict) else '?'}"


# a preset path ("model.layers[7].out_features") or a parameter's ("layers[7].weight", as telemetry names them), and
# the "(Tanh, 73%)" a diagnosis may put after it
_LAYER_PATH = re.compile(r"(?<![\w.])(?:model\.)?layers\[[\w.\[\]]*(?: \((?P<kind>\w+), (?P<rest>[^()]*)\))?")


def name_layers(doc: dict, text: str) -> str:
    """A sentence a student reads, each layer path in it named as the Build page shows the layer and followed by the
    path for the CLI: "model.layers[7].out_features: ..." -> "layer 7, Linear 120 (model.layers[7].out_features): ..."."""

    def name(match: re.Match) -> str:
        whole = match.group(0)
        said = whole[: match.start("kind") - match.start() - 2] if match.group("kind") else whole  # the path and what trails it
        path = said.rstrip(".")
        layer = error_layer(UserError(path if path.startswith("model.") else f"model.{path}", ""))
        try:
            place = layer_place(doc, layer) if layer else None
            kind = get(doc, layer).get("type") if layer else None
        except (KeyError, IndexError, TypeError, AttributeError):
            place = kind = None
        if not place:
            return whole
        if match.group("kind") == kind:  # "(Tanh, 73%)" after a Tanh: the name already says Tanh
            return f"{place} ({path}, {match.group('rest')})" + said[len(path) :]
        return f"{place} ({path})" + whole[len(path) :]

    return _LAYER_PATH.sub(name, text)
