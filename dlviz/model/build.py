"""Preset → nn.Module, with every input size inferred by shape propagation on the meta device, and the summary."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlviz import limits as _limits
from dlviz.errors import UserError, json_path
from dlviz.model.budget import Footprint, footprint
from dlviz.preset.edit import TOP, parse_path
from dlviz.preset.registry import ALL_LAYERS, INITS, ShapeError, shape_str
from dlviz.preset.schema import Experiment, InitSpec, LayerSpec, ModelSpec, validate
from dlviz.runtime import Concat, Residual, init_module

# ---------------------------------------------------------------- containers that mirror the preset


class Stack(nn.Sequential):
    """A list of layers from the preset (model.layers, a Residual's body, one Concat branch)."""


class Network(nn.Module):
    """The model a preset describes. `json_paths` maps each submodule's name to its preset path."""

    def __init__(
        self, layers: Stack, input_shape: tuple[int, ...], input_dtype: torch.dtype, json_paths: dict[str, str], footprint: Optional[Footprint] = None
    ):
        super().__init__()
        self.layers = layers
        self.input_shape = tuple(input_shape)
        self.input_dtype = input_dtype
        self.json_paths = json_paths
        self.footprint = footprint  # what one sample's pass holds, for the memory budgets of computations on it
        # (build_model always sets it; a meta-device copy for reading names may not)

    def forward(self, x):
        return self.layers(x)

    def example_input(self, batch: int = 1, device="cpu") -> torch.Tensor:
        if self.input_dtype == torch.long:
            return torch.zeros((batch, *self.input_shape), dtype=torch.long, device=device)
        return torch.randn((batch, *self.input_shape), device=device)


def device_of(module: nn.Module) -> torch.device:
    """The device a model's weights are on (the CPU for one without weights): where its inputs must go."""
    return next((t.device for t in (*module.parameters(), *module.buffers())), torch.device("cpu"))


# ---------------------------------------------------------------- receptive fields


@dataclass(frozen=True)
class RF:
    """Per spatial dimension, the input span [start, end] seen by output unit 0, and the jump between units.

    In the Distill article's terms: size r = end − start + 1, effective stride S = jump, effective padding P = −start.
    """

    start: tuple[float, ...]
    end: tuple[float, ...]
    jump: tuple[float, ...]

    @classmethod
    def identity(cls, dims: int) -> "RF":
        return cls((0,) * dims, (0,) * dims, (1,) * dims)

    def window(self, k, s, p, d=None) -> "RF":
        d = d or (1,) * len(k)
        start = tuple(a - pi * j for a, pi, j in zip(self.start, p, self.jump))
        end = tuple(b + (di * (ki - 1) - pi) * j for b, ki, pi, di, j in zip(self.end, k, p, d, self.jump))
        return RF(start, end, tuple(j * si for j, si in zip(self.jump, s)))

    def union(self, other: "RF") -> "RF":
        return RF(tuple(map(min, self.start, other.start)), tuple(map(max, self.end, other.end)), tuple(map(max, self.jump, other.jump)))

    def as_dict(self) -> dict:
        def one(vals):
            vals = [int(v) if float(v).is_integer() else float(v) for v in vals]
            return vals[0] if len(set(vals)) == 1 else vals

        return {"size": one([e - s + 1 for s, e in zip(self.start, self.end)]), "stride": one(self.jump), "padding": one([-s for s in self.start])}


def _expand(v, dims: int) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,) * dims


def _adaptive_cover(n: int, o: int) -> tuple[int, int, int]:
    """Kernel, stride and padding of the smallest regular window that holds every window of an adaptive pool from `n`
    to `o` positions.

    PyTorch gives output i the inputs floor(i·n/o) to ceil((i+1)·n/o) − 1. One stride fits those windows only when o
    divides n: 10 → 4 starts them at 0, 2, 5, 7, each 3 wide, which no kernel-3 window of any stride follows. The field
    reported then holds each unit's true field (10 → 4: kernel 4, stride 2), never cuts one short."""
    starts = [i * n // o for i in range(o)]
    ends = [-(-(i + 1) * n // o) - 1 for i in range(o)]
    best = None
    for s in sorted({max(1, n // o), max(1, -(-n // o))}):
        p = max(i * s - a for i, a in enumerate(starts))
        k = max(b - i * s for i, b in enumerate(ends)) + p + 1
        if best is None or k < best[0]:
            best = (k, s, p)
    return best


def _rf_step(rf: Optional[RF], layer: LayerSpec, in_shape, out_shape) -> Optional[RF]:
    """The receptive field after one leaf layer, or None once the output is no longer a spatial map."""
    t, a = layer.type, layer.args
    spatial_in, spatial_out = len(in_shape) - 1, len(out_shape) - 1
    if rf is None or t in (
        "Flatten",
        "Unflatten",
        "Linear",
        "Bilinear",
        "Embedding",
        "RNN",
        "LSTM",
        "GRU",
        "MultiheadAttention",
        "TransformerEncoderLayer",
        "ConvTranspose2d",
        "Upsample",
    ):
        return None  # no longer a spatial map, or a fractional stride the Distill convention does not cover
    if spatial_out != spatial_in or spatial_out < 1:
        return None
    dims = spatial_in
    entry = ALL_LAYERS[t]
    if t.startswith("Adaptive"):
        k, s, p = zip(*(_adaptive_cover(n, o) for n, o in zip(in_shape[1:], out_shape[1:])))
        return rf.window(k, s, p)
    if not entry.spatial:
        return rf  # elementwise or normalization: statistics are not counted, as in the Distill convention
    k = _expand(a["kernel_size"], dims)
    s = _expand(a.get("stride") if a.get("stride") is not None else a["kernel_size"], dims)
    d = _expand(a.get("dilation", 1), dims)
    p = a.get("padding", 0)
    if p == "valid":
        p = 0
    if p == "same":
        p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
    return rf.window(k, s, _expand(p, dims), d)


# ---------------------------------------------------------------- shape propagation


@dataclass
class Row:
    """One summary row: a leaf layer or a block, with its place in the preset."""

    path: str
    type: str
    name: Optional[str]
    depth: int
    input_shape: list[int]
    output_shape: list[int]
    trainable_params: int = 0
    non_trainable_params: int = 0
    buffers: int = 0
    flops: int = 0
    receptive_field: Optional[dict] = None
    block: bool = False


@dataclass
class Summary:
    input_shape: list[int]
    output_shape: list[int]
    rows: list[Row] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    buffers: int = 0
    flops: int = 0
    receptive_field: Optional[dict] = None

    def to_json(self) -> dict:
        return {
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "buffers": self.buffers,
            "flops": self.flops,
            "input_shape": self.input_shape,
            "output_shape": self.output_shape,
            "receptive_field": self.receptive_field,
            "layers": [asdict(r) for r in self.rows],
        }


class _Builder:
    """Walks the spec once, making modules on `device`, tracking shapes, parameters, FLOPs and receptive fields."""

    def __init__(self, spec: ModelSpec, device: str, max_params: int, count_flops: bool, known_shapes=None):
        self.spec = spec
        self.known_shapes = known_shapes
        self.device = torch.device(device)
        self.max_params = max_params
        self.count_flops = count_flops
        self.limits = _limits.current()
        self.rows: list[Row] = []
        self.params = 0
        self.layers_seen = 0
        self.paths: dict[str, str] = {}
        self.last_spatial_rf: Optional[dict] = None
        self.shape_memo: dict[tuple, tuple] = {}
        self.frozen = 0  # how many enclosing blocks say trainable: false (their layers' parameters are frozen)
        first = spec.layers[0] if spec.layers else None
        self.input_dtype = torch.long if first is not None and first.type == "Embedding" else torch.float32

    def stack(self, layers: list[LayerSpec], in_shape, loc: tuple, mod_name: str, depth: int, rf: Optional[RF]) -> tuple[Stack, tuple, Optional[RF]]:
        mods = []
        shape = in_shape
        for i, layer in enumerate(layers):
            m, shape, rf = self.layer(layer, shape, (*loc, i), f"{mod_name}.{i}", depth, rf)
            mods.append(m)
        return Stack(*mods), shape, rf

    def layer(self, layer: LayerSpec, in_shape, loc: tuple, mod_name: str, depth: int, rf: Optional[RF]):
        path = json_path(loc)
        self.paths[mod_name] = path
        self.layers_seen += 1
        if self.layers_seen > self.limits.max_layers:
            raise UserError(path, f"the model has more than {self.limits.max_layers:,} layers (DLVIZ_MAX_LAYERS)")
        if layer.type == "Embedding" and loc != ("model", "layers", 0):
            raise UserError(path, "Embedding takes token ids, so it must be the model's first layer")
        if layer.type in ALL_LAYERS:
            return self.leaf(layer, in_shape, path, depth, rf)
        row = Row(path, layer.type, layer.name, depth, list(in_shape), [], block=True)
        self.rows.append(row)
        start_params, start_rows = self.params, len(self.rows)
        self.frozen += not layer.trainable
        if layer.type == "Sequential":
            # a Sequential block is itself a Stack, so its children are named mod_name.0, mod_name.1, ...
            mod, out, rf_out = self.stack(layer.layers, in_shape, (*loc, "layers"), mod_name, depth + 1, rf)
        elif layer.type == "Residual":
            body, b_shape, b_rf = self.stack(layer.body, in_shape, (*loc, "body"), f"{mod_name}.body", depth + 1, rf)
            short, s_shape, s_rf = self.stack(layer.shortcut or [], in_shape, (*loc, "shortcut"), f"{mod_name}.shortcut", depth + 1, rf)
            if tuple(b_shape) != tuple(s_shape):
                hint = self._unpadded(layer.body, (*loc, "body"), b_shape, s_shape)
                if hint is None:
                    hint = (
                        "give the shortcut a Conv2d with kernel_size 1 and the body's stride to match it"
                        if len(b_shape) == 3
                        else "give the shortcut a Linear to match it"
                    )
                raise UserError(path, f"Residual: the body gives {shape_str(b_shape)} but the shortcut gives {shape_str(s_shape)}; {hint}")
            mod, out = Residual(body, short), b_shape
            rf_out = b_rf.union(s_rf) if b_rf is not None and s_rf is not None else None
        else:  # Concat
            branches, shapes, rfs = [], [], []
            for i, branch in enumerate(layer.branches):
                m, s, r = self.stack(branch, in_shape, (*loc, "branches", i), f"{mod_name}.branches.{i}", depth + 1, rf)
                branches.append(m), shapes.append(s), rfs.append(r)
            if any(len(s) != len(shapes[0]) or tuple(s[1:]) != tuple(shapes[0][1:]) for s in shapes):
                shown = ", ".join(shape_str(s) for s in shapes)
                raise UserError(
                    path, f"Concat joins on channels, so the branches must agree on every other dimension; they give {shown}: match their strides and padding"
                )
            mod = Concat(branches)
            out = (sum(s[0] for s in shapes), *shapes[0][1:])
            rf_out = None
            if all(r is not None for r in rfs):
                rf_out = rfs[0]
                for r in rfs[1:]:
                    rf_out = rf_out.union(r)
        self.frozen -= not layer.trainable
        row.output_shape = list(out)
        children = self.rows[start_rows:]
        row.trainable_params = sum(r.trainable_params for r in children if not r.block)
        row.non_trainable_params = sum(r.non_trainable_params for r in children if not r.block)
        row.buffers = sum(r.buffers for r in children if not r.block)
        row.flops = sum(r.flops for r in children if not r.block)
        row.receptive_field = rf_out.as_dict() if rf_out is not None else None
        self._note_rf(out, rf_out)
        assert self.params - start_params == row.trainable_params + row.non_trainable_params
        return mod, tuple(out), rf_out

    def _unpadded(self, body: list[LayerSpec], loc: tuple, b_shape, s_shape) -> Optional[str]:
        """When a Residual's sides differ only because the body's stride-1 convolutions lose their borders, the
        sentence that says which one and the padding that keeps the size: a 1×1 shortcut cannot grow a map back."""
        if len(b_shape) != len(s_shape) or len(b_shape) < 2 or list(b_shape[1:]) == list(s_shape[1:]):
            return None
        rows = {r.path: r for r in self.rows}
        causes = []
        for i, layer in enumerate(body):
            row = rows.get(json_path((*loc, i)))
            if row is None or not layer.type.startswith("Conv") or layer.type.startswith("ConvTranspose"):
                continue
            dims = len(row.input_shape) - 1
            k, s, p, d = (
                _expand(layer.args.get(name, default), dims) for name, default in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1))
            )
            if isinstance(layer.args.get("padding"), str) or any(x != 1 for x in s):
                continue
            need = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d))
            if row.output_shape[1:] != row.input_shape[1:] and any(pi < ni for pi, ni in zip(p, need)):
                padding = need[0] if len(set(need)) == 1 else list(need)
                has = "without padding" if not any(p) else f"with padding {p[0] if len(set(p)) == 1 else list(p)}"
                causes.append(
                    f"the body's {'×'.join(map(str, k))} convolution {has} ({json_path((*loc, i))}) shrinks "
                    f"{'×'.join(map(str, row.input_shape[1:]))} to {'×'.join(map(str, row.output_shape[1:]))}; "
                    f"give it padding {padding}"
                )
        if causes and b_shape[0] != s_shape[0]:
            causes.append(f"and a Conv2d with kernel_size 1 in the shortcut takes {s_shape[0]} channels to {b_shape[0]}")
        return "; ".join(causes) or None

    def leaf(self, layer: LayerSpec, in_shape, path: str, depth: int, rf: Optional[RF]):
        entry = ALL_LAYERS[layer.type]
        try:
            with self.device:
                mod = entry.make(tuple(in_shape), **layer.args)
        except ShapeError as e:
            raise UserError(path, f"{layer.type}: {e}") from None
        except (ValueError, TypeError, RuntimeError, AssertionError) as e:  # torch checks some arguments with assert
            if _largest_int(layer.args) > self.max_params:  # a size torch cannot even count (its tensors overflow first)
                raise UserError(path, self._too_many("")) from None
            raise UserError(path, f"{layer.type}: {_first_line(e)}") from None
        if self.frozen or not layer.trainable:
            mod.requires_grad_(False)
        n_train = sum(p.numel() for p in mod.parameters() if p.requires_grad)
        n_frozen = sum(p.numel() for p in mod.parameters() if not p.requires_grad)
        self.params += n_train + n_frozen
        if self.params > self.max_params:
            raise UserError(path, self._too_many(f" ({self.params:,} so far)"))
        out_shape = self._forward_shape(mod, layer, in_shape, path)
        flops = 0
        if self.count_flops:
            flops_key = ("flops", layer.type, repr(sorted(layer.args.items())), tuple(in_shape))
            if flops_key not in self.shape_memo:
                self.shape_memo[flops_key] = self._flops(mod, in_shape)
            flops = self.shape_memo[flops_key]
        new_rf = _rf_step(rf, layer, in_shape, out_shape)
        self._note_rf(out_shape, new_rf)
        self.rows.append(
            Row(
                path,
                layer.type,
                layer.name,
                depth,
                list(in_shape),
                list(out_shape),
                n_train,
                n_frozen,
                sum(b.numel() for b in mod.buffers()),
                flops,
                new_rf.as_dict() if new_rf is not None else None,
            )
        )
        return mod, tuple(out_shape), new_rf

    def _too_many(self, so_far: str) -> str:
        return (
            f"the model would have over {self.max_params:,} parameters here{so_far}; "
            "make the layers smaller (the limit is DLVIZ_MAX_PARAMS / DLVIZ_MAX_TRAIN_PARAMS)"
        )

    @staticmethod
    def _probe(mod: nn.Module, in_shape) -> torch.Tensor:

        dtype = torch.long if isinstance(mod, nn.Embedding) else torch.float32
        return torch.zeros((1, *in_shape), dtype=dtype, device="meta")

    def _forward_shape(self, mod: nn.Module, layer: LayerSpec, in_shape, path: str):
        if self.known_shapes is not None:  # shapes are always computed on meta, never with real memory
            return self.known_shapes[path]
        # a layer's output shape depends only on its type, arguments and input shape: a deep stack of repeated layers
        # runs one meta pass per distinct layer (a meta ReLU costs about a millisecond)
        memo_key = (layer.type, repr(sorted(layer.args.items())), tuple(in_shape))
        if memo_key not in self.shape_memo:
            self.shape_memo[memo_key] = self._meta_forward(mod, layer, in_shape, path)
        return self.shape_memo[memo_key]

    def _meta_forward(self, mod: nn.Module, layer: LayerSpec, in_shape, path: str):
        mod.eval()
        try:
            with torch.no_grad():
                y = mod(self._probe(mod, in_shape))
        except Exception as e:  # torch reports impossible shapes as RuntimeError, ValueError or IndexError
            # a sliding window fails here only when it does not fit the input
            hint = "; use a smaller kernel or stride, add padding, or a larger input" if "kernel_size" in layer.args else ""
            raise UserError(path, f"{layer.type}: input is {shape_str(in_shape)}: {_first_line(e)}{hint}") from None
        out = tuple(y.shape[1:])
        if any(n < 1 for n in out):
            raise UserError(
                path,
                f"{layer.type}: input {shape_str(in_shape)} gives an empty output {shape_str(out)}; "
                "use a smaller kernel or stride, add padding, or a larger input",
            )
        elements = math.prod(out)
        if elements > self.limits.max_activation_elements:
            raise UserError(
                path,
                f"{layer.type}: the output {shape_str(out)} has {elements:,} elements per sample, over the limit of "
                f"{self.limits.max_activation_elements:,} (DLVIZ_MAX_ACTIVATION_ELEMENTS)",
            )
        return out

    def _flops(self, mod: nn.Module, in_shape) -> int:
        if not any(True for _ in mod.parameters()):
            return 0  # the counter only sees matmuls and convolutions, which all carry weights
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            mod(self._probe(mod, in_shape))
        return int(counter.get_total_flops())

    def _note_rf(self, out_shape, rf: Optional[RF]) -> None:
        if rf is not None and len(out_shape) >= 2 and math.prod(out_shape[1:]) > 1:
            self.last_spatial_rf = rf.as_dict()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _largest_int(value) -> int:
    """The largest magnitude among the integers in a layer's arguments (lists included), 0 when none."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return abs(value)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    return max((_largest_int(v) for v in items), default=0)


def _check_spec(spec) -> ModelSpec:
    if isinstance(spec, Experiment):
        return spec.model
    if isinstance(spec, ModelSpec):
        return spec
    raise TypeError(f"expected an Experiment or ModelSpec, got {type(spec).__name__}")


def summarize(spec, count_flops: bool = True) -> Summary:
    """The per-layer summary of a model, computed on the meta device: no weights are allocated."""
    model = _check_spec(spec)
    return _meta_summary(model, _limits.current().max_params, count_flops)


def _meta_summary(model: ModelSpec, max_params: int, count_flops: bool) -> Summary:
    b = _Builder(model, "meta", max_params, count_flops)
    _, out, _ = b.stack(
        model.layers,
        tuple(model.input_shape),
        ("model", "layers"),
        "layers",
        0,
        RF.identity(len(model.input_shape) - 1) if len(model.input_shape) >= 2 else None,
    )
    leaves = [r for r in b.rows if not r.block]
    return Summary(
        list(model.input_shape),
        list(out),
        b.rows,
        total_params=sum(r.trainable_params + r.non_trainable_params for r in leaves),
        trainable_params=sum(r.trainable_params for r in leaves),
        buffers=sum(r.buffers for r in leaves),
        flops=sum(r.flops for r in leaves),
        receptive_field=b.last_spatial_rf,
    )


def build_model(spec, seed: Optional[int] = None, device: str = "cpu", max_params: Optional[int] = None) -> Network:
    """Make the real model. Shapes and limits are checked on the meta device first, so nothing over a limit is allocated.

    With `seed`, torch's global generator is seeded first so that the same preset gives the same weights."""
    model = _check_spec(spec)
    lim = _limits.current()
    max_params = lim.max_train_params if max_params is None else max_params
    meta = _meta_summary(model, max_params, count_flops=False)
    shapes = {r.path: tuple(r.output_shape) for r in meta.rows}
    if seed is not None:
        torch.manual_seed(seed)
    real = _Builder(model, device, max_params, count_flops=False, known_shapes=shapes)
    layers, _, _ = real.stack(model.layers, tuple(model.input_shape), ("model", "layers"), "layers", 0, None)
    net = Network(layers, tuple(model.input_shape), real.input_dtype, real.paths, footprint(meta))
    apply_inits(net, model)
    return net


# ---------------------------------------------------------------- initialization


def init_plan(model: ModelSpec) -> list[tuple[str, InitSpec]]:
    """The layers an init fills, as (preset path, InitSpec) in preset order, the order they draw random numbers in: the
    model-wide init and per-layer overrides, a block's init passed on to its layers."""
    plan = []

    def walk(layers: list[LayerSpec], loc: tuple, inherited: Optional[InitSpec]):
        for i, layer in enumerate(layers):
            here = (*loc, i)
            init = layer.init if layer.init is not None else inherited
            # Embeddings keep PyTorch's N(0, 1) unless given an init of their own: a table, not a linear map
            if layer.type in ALL_LAYERS and init is not None and init.type != "default" and (layer.type != "Embedding" or layer.init is not None):
                plan.append((json_path(here), init))
            for rel, children in layer.children():
                walk(children, (*here, *rel), init)

    walk(model.layers, ("model", "layers"), model.init)
    return plan


def apply_inits(net: Network, model: ModelSpec) -> None:
    """Apply the model's init plan; biases are zeroed unless the init says "bias": "default"."""
    by_path = {path: name for name, path in net.json_paths.items()}
    for path, init in init_plan(model):
        fill = INITS[init.type].fill
        init_module(net.get_submodule(by_path[path]), lambda w: fill(w, **init.args), init.bias == "zeros")


# ---------------------------------------------------------------- checking while editing


@dataclass
class Preview:
    """What can be shown for a preset being edited: its summary, or the first problem and a summary of the layers before it.

    `model` is the model section the summary describes (the layers before the problem when `partial`)."""

    summary: Optional[Summary]
    model: Optional[dict]
    error: Optional[UserError] = None
    partial: bool = False


def preview(doc: dict) -> Preview:
    """Validate and summarise a preset; on a problem in layer k of the top level, summarise layers 0..k-1 instead."""
    try:
        exp = validate(doc)
        return Preview(summarize(exp), exp.to_dict()["model"])
    except UserError as err:
        first = err
    loc = parse_path(first.path)
    if loc[:2] != TOP or len(loc) < 3 or not isinstance(loc[2], int):
        return Preview(None, None, first)
    cut = copy.deepcopy(doc)
    cut["model"]["layers"] = cut["model"]["layers"][: loc[2]]
    try:
        exp = validate(cut)
        return Preview(summarize(exp), exp.to_dict()["model"], first, partial=True)
    except UserError:
        return Preview(None, None, first)
