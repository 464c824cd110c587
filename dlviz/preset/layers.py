"""The layer catalog: every layer type a preset can name, how it is built from the input shape of one sample and its
checked arguments, and how its input sizes are inferred. Adding a layer is one line (or one small function for a layer
whose input size is inferred); a constructor raises ShapeError when the input cannot fit."""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from torch import nn

from dlviz import limits as _limits
from dlviz.preset.args import Arg
from dlviz.runtime import Maxout, PositionalEncoding, Recurrent, SelfAttention, SelfBilinear

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An input shape a layer cannot take; the message says what would fix it."""


def shape_str(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


# ---------------------------------------------------------------- constructor calls


class _Calls(threading.local):
    """The constructor calls noted while `noting_calls()` is on, per thread: {id(module): (module, class, args, kwargs)}."""

    log = None


_CALLS = _Calls()


def _new(cls, *args, **kwargs):
    """cls(*args, **kwargs), noted while `noting_calls()` is on, so that an exported script makes the layer with the same call."""
    module = cls(*args, **kwargs)
    if _CALLS.log is not None:
        _CALLS.log[id(module)] = (module, cls, args, kwargs)
    return module


@contextmanager
def noting_calls():
    """Note the constructor calls the layer makers make inside the block, in a dict by id of the module made."""
    _CALLS.log = log = {}
    try:
        yield log
    finally:
        _CALLS.log = None


# ---------------------------------------------------------------- shape helpers


def _rank(shape: Shape, ranks: tuple[int, ...], layer: str, hint: str) -> None:
    if len(shape) not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(f"input is {shape_str(shape)} but {layer} needs {want} input; {hint}")


def _channels(shape: Shape) -> int:
    return int(shape[0])


def _per_dim(v, dims: int) -> list:
    """A size argument (one number or a list) as one value per spatial dimension."""
    return list(v) if isinstance(v, list) else [v] * dims


def _one_per_dim(a: dict, dims: int) -> None:
    """List-valued sizes (kernel_size=[3, 5]) need one entry per spatial dimension."""
    for key, v in a.items():
        if isinstance(v, list) and len(v) != dims:
            raise ShapeError(f"{key}={v} has {len(v)} entries but the layer slides over {dims} dimension{'s' if dims > 1 else ''}; give one number or {dims}")


CONV_ARGS = {
    "out_channels": Arg("int", ge=1, help="number of filters"),
    "kernel_size": Arg("size", ge=1),
    "stride": Arg("size", 1, ge=1),
    "padding": Arg("padding", 0, ge=0),
    "dilation": Arg("size", 1, ge=1),
    "groups": Arg("int", 1, ge=1),
    "bias": Arg("bool", True),
    "padding_mode": Arg("choice", "zeros", choices=("zeros", "reflect", "replicate", "circular")),
}


def _conv(dims: int):
    cls = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    hint = "set input_shape to [channels, length]" if dims == 1 else "set input_shape to [channels, height, width] or add an Unflatten before it"

    def make(shape, **a):
        _rank(shape, (dims + 1,), cls.__name__, hint)
        _one_per_dim(a, dims)
        c = _channels(shape)
        if c % a["groups"] or a["out_channels"] % a["groups"]:
            raise ShapeError(f"groups={a['groups']} must divide both the {c} input channels and the {a['out_channels']} output channels")
        return _new(cls, c, **a)

    return make


def _conv_transpose(shape, **a):
    _rank(shape, (3,), "ConvTranspose2d", "set input_shape to [channels, height, width]")
    _one_per_dim(a, 2)
    c = _channels(shape)
    if c % a["groups"] or a["out_channels"] % a["groups"]:
        raise ShapeError(f"groups={a['groups']} must divide both the {c} input channels and the {a['out_channels']} output channels")
    op, st, dl = (_per_dim(a[key], 2) for key in ("output_padding", "stride", "dilation"))
    if any(o >= max(s, d) for o, s, d in zip(op, st, dl)):
        raise ShapeError(f"output_padding={a['output_padding']} must be smaller than the stride or the dilation; use output_padding < stride")
    return _new(nn.ConvTranspose2d, c, **a)


def _pool(cls, dims: int):
    def make(shape, **a):
        _rank(shape, (dims + 1,), cls.__name__, f"it pools over {dims} spatial dimension{'s' if dims > 1 else ''}")
        _one_per_dim(a, dims)
        if "padding" in a:
            k, p, d = (_per_dim(a.get(key, 1), dims) for key in ("kernel_size", "padding", "dilation"))
            if any(2 * pi > di * (ki - 1) + 1 for ki, pi, di in zip(k, p, d)):
                raise ShapeError(f"padding={a['padding']} is more than half of kernel_size={a['kernel_size']}; use a padding of at most half the kernel")
        return _new(cls, **a)

    return make


def _linear(shape, **a):
    if len(shape) > 2:
        raise ShapeError(f"input is {shape_str(shape)}; add a Flatten before it")
    return _new(nn.Linear, int(shape[-1]), **a)


def _bilinear(shape, **a):
    if len(shape) != 1:
        raise ShapeError(f"input is {shape_str(shape)} but Bilinear needs 1-D features; add a Flatten before it")
    return _new(SelfBilinear, _new(nn.Bilinear, int(shape[0]), int(shape[0]), **a))


def _batchnorm(cls, ranks):
    def make(shape, **a):
        _rank(shape, ranks, cls.__name__, "use BatchNorm1d for [features] or [channels, length], BatchNorm2d for [channels, height, width]")
        return _new(cls, _channels(shape), **a)

    return make


def _layernorm(shape, normalized_shape=None, **a):
    if normalized_shape is None:
        normalized_shape = [int(shape[-1])]
    n = len(normalized_shape)
    if list(shape[-n:]) != list(normalized_shape) or n > len(shape):
        raise ShapeError(
            f"normalized_shape {normalized_shape} does not match the end of the input {shape_str(shape)}; leave it out to normalize over the last dimension"
        )
    return _new(nn.LayerNorm, normalized_shape, **a)


def _groupnorm(shape, num_groups, **a):
    _rank(shape, (1, 2, 3, 4), "GroupNorm", "it needs [channels, ...] input")
    c = _channels(shape)
    if c % num_groups:
        raise ShapeError(f"num_groups={num_groups} does not divide the {c} channels; pick a divisor of {c}")
    return _new(nn.GroupNorm, num_groups, c, **a)


def _instancenorm(shape, **a):
    _rank(shape, (3,), "InstanceNorm2d", "it needs [channels, height, width] input")
    return _new(nn.InstanceNorm2d, _channels(shape), **a)


def _spatial_dropout(shape, **a):
    _rank(shape, (3,), "Dropout2d", "use Dropout for features, Dropout2d for [channels, height, width]")
    return _new(nn.Dropout2d, **a)


def _flatten(shape, start_dim, end_dim):
    full = len(shape) + 1  # dims counted with the batch, as in torch.nn.Flatten
    for name, d in (("start_dim", start_dim), ("end_dim", end_dim)):
        if not -full <= d < full:
            raise ShapeError(f"{name}={d} is outside the {full} dimensions of a batch of {shape_str(shape)}")
    if start_dim % full == 0:
        raise ShapeError("start_dim=0 would flatten the batch dimension; use start_dim=1")
    return _new(nn.Flatten, start_dim, end_dim)


def _unflatten(shape, dim, unflattened_size):
    full = len(shape) + 1
    if not -full <= dim < full or dim % full == 0:
        raise ShapeError(f"dim={dim} must name a non-batch dimension of a batch of {shape_str(shape)} (1 to {full - 1})")
    n = shape[dim % full - 1]
    if math.prod(unflattened_size) != n:
        raise ShapeError(f"unflattened_size {unflattened_size} holds {math.prod(unflattened_size)} elements but dimension {dim} has {n}")
    return _new(nn.Unflatten, dim, unflattened_size)


def _upsample(shape, size, scale_factor, mode, align_corners):
    spatial = len(shape) - 1
    want = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}.get(mode)
    if spatial not in (1, 2, 3) or (want and spatial != want):
        raise ShapeError(f"input is {shape_str(shape)}; mode '{mode}' needs {want or '1 to 3'} spatial dimension(s) after the channels")
    if (size is None) == (scale_factor is None):
        raise ShapeError("give exactly one of size and scale_factor")
    if mode == "nearest":
        align_corners = None
    if isinstance(scale_factor, list):
        scale_factor = tuple(scale_factor)  # nn.Upsample takes one number or a tuple
    return _new(nn.Upsample, size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners)


def _embedding(shape, **a):
    _rank(shape, (1,), "Embedding", "it takes a sequence of token ids: set input_shape to [sequence_length]")
    n, pad = a["num_embeddings"], a["padding_idx"]
    if pad is not None and not -n <= pad < n:
        raise ShapeError(f"padding_idx={pad} is not a token id of a vocabulary of {n}; use 0 to {n - 1}, or leave it out")
    return _new(nn.Embedding, **a)


def _recurrent(cls):
    def make(shape, output, **a):
        _rank(shape, (2,), cls.__name__, "it takes [time, features]: set input_shape to [steps, features] or add an Embedding before it")
        if a["num_layers"] == 1:
            a["dropout"] = 0.0  # torch warns that dropout between layers needs num_layers > 1
        return _new(Recurrent, _new(cls, int(shape[-1]), batch_first=True, **a), output)

    return make


def _attention(shape, num_heads, causal, **a):
    _rank(shape, (2,), "MultiheadAttention", "it takes [time, features]: set input_shape to [steps, features] or add an Embedding before it")
    e = int(shape[-1])
    if e % num_heads:
        raise ShapeError(f"num_heads={num_heads} does not divide the embedding size {e}; pick a divisor of {e}")
    return _new(SelfAttention, _new(nn.MultiheadAttention, e, num_heads, batch_first=True, **a), causal)


def _positional(shape, kind, max_len):
    _rank(shape, (2,), "PositionalEncoding", "it takes [time, features]: put it after an Embedding")
    steps, dim, lim = int(shape[0]), int(shape[-1]), _limits.current().max_activation_elements
    if max_len is not None and max_len < steps:
        raise ShapeError(f"max_len={max_len} is shorter than the {steps} steps of the input; use at least {steps}, or leave it out")
    if (max_len or steps) * dim > lim:
        raise ShapeError(f"its table of {max_len or steps} × {dim} values is over the limit of {lim:,} (DLVIZ_MAX_ACTIVATION_ELEMENTS); use a smaller max_len")
    return _new(PositionalEncoding, dim, kind, max_len or steps)


def _transformer(shape, nhead, **a):
    _rank(shape, (2,), "TransformerEncoderLayer", "it takes [time, features]: set input_shape to [steps, features] or add an Embedding before it")
    e = int(shape[-1])
    if e % nhead:
        raise ShapeError(f"nhead={nhead} does not divide d_model={e}; pick a divisor of {e}")
    return _new(nn.TransformerEncoderLayer, e, nhead, batch_first=True, **a)


def _per_feature(cls):
    """Activations whose parameters are per channel (PReLU) or that split channels (Maxout)."""

    def make(shape, **a):
        if cls is nn.PReLU and a["num_parameters"] not in (1, int(shape[0])):
            raise ShapeError(f"num_parameters={a['num_parameters']} must be 1 or the {shape[0]} channels of the input")
        if cls is Maxout:
            if len(shape) < 1 or shape[0] % a["pieces"]:
                raise ShapeError(
                    f"{shape[0] if shape else 0} features do not split into groups of {a['pieces']}; make the previous layer's output a multiple of {a['pieces']}"
                )
        return _new(cls, **a)

    return make


def _plain(cls):
    return lambda shape, **a: _new(cls, **a)


def _along_dim(cls):
    """Softmax and LogSoftmax: `dim` counts the batch, as in torch, and must name one of the input's dimensions."""

    def make(shape, dim):
        full = len(shape) + 1
        if not -full <= dim < full:
            raise ShapeError(
                f"dim={dim} is outside the {full} dimensions of a batch of {shape_str(shape)}; use 1 for the features or channels, -1 for the last dimension"
            )
        return _new(cls, dim=dim)

    return make


# ---------------------------------------------------------------- the layer table


@dataclass(frozen=True)
class LayerEntry:
    """A layer type: its picker group, its arguments, and how to make it for an input shape."""

    group: str
    args: dict[str, Arg]
    make: Callable[..., nn.Module]
    doc: str = ""
    spatial: int = 0  # 1 or 2 for layers that slide a window (receptive field bookkeeping)


P = Arg("float", 0.5, ge=0, lt=1, help="probability of zeroing an element")
POOL_ARGS = {"kernel_size": Arg("size", ge=1), "stride": Arg("size", None, ge=1), "padding": Arg("size", 0, ge=0)}
NORM_ARGS = {"eps": Arg("float", 1e-5, gt=0), "momentum": Arg("float", 0.1, ge=0, le=1), "affine": Arg("bool", True), "track_running_stats": Arg("bool", True)}
RNN_ARGS = {
    "hidden_size": Arg("int", ge=1),
    "num_layers": Arg("int", 1, ge=1, le=8),
    "bias": Arg("bool", True),
    "dropout": Arg("float", 0.0, ge=0, lt=1),
    "bidirectional": Arg("bool", False),
    "output": Arg("choice", "last", choices=("last", "all"), help="return the last time step or all steps"),
}

LAYERS: dict[str, LayerEntry] = {
    "Linear": LayerEntry("dense", {"out_features": Arg("int", ge=1), "bias": Arg("bool", True)}, _linear, "y = xWᵀ + b on the last dimension"),
    "Bilinear": LayerEntry(
        "dense", {"out_features": Arg("int", ge=1), "bias": Arg("bool", True)}, _bilinear, "quadratic layer y = xᵀAx + b (the input paired with itself)"
    ),
    "Conv1d": LayerEntry("convolution", CONV_ARGS, _conv(1), "1-D convolution over [channels, length]", spatial=1),
    "Conv2d": LayerEntry("convolution", CONV_ARGS, _conv(2), "2-D convolution over [channels, height, width]", spatial=2),
    "ConvTranspose2d": LayerEntry(
        "convolution",
        {
            "out_channels": Arg("int", ge=1),
            "kernel_size": Arg("size", ge=1),
            "stride": Arg("size", 1, ge=1),
            "padding": Arg("size", 0, ge=0),
            "output_padding": Arg("size", 0, ge=0),
            "groups": Arg("int", 1, ge=1),
            "bias": Arg("bool", True),
            "dilation": Arg("size", 1, ge=1),
        },
        _conv_transpose,
        "transposed convolution: upsamples, as in FCN decoders",
        spatial=2,
    ),
    "MaxPool1d": LayerEntry(
        "pooling",
        {**POOL_ARGS, "dilation": Arg("size", 1, ge=1), "ceil_mode": Arg("bool", False)},
        _pool(nn.MaxPool1d, 1),
        "maximum over a sliding window",
        spatial=1,
    ),
    "MaxPool2d": LayerEntry(
        "pooling",
        {**POOL_ARGS, "dilation": Arg("size", 1, ge=1), "ceil_mode": Arg("bool", False)},
        _pool(nn.MaxPool2d, 2),
        "maximum over a sliding window",
        spatial=2,
    ),
    "AvgPool1d": LayerEntry(
        "pooling",
        {**POOL_ARGS, "ceil_mode": Arg("bool", False), "count_include_pad": Arg("bool", True)},
        _pool(nn.AvgPool1d, 1),
        "mean over a sliding window",
        spatial=1,
    ),
    "AvgPool2d": LayerEntry(
        "pooling",
        {**POOL_ARGS, "ceil_mode": Arg("bool", False), "count_include_pad": Arg("bool", True)},
        _pool(nn.AvgPool2d, 2),
        "mean over a sliding window",
        spatial=2,
    ),
    "AdaptiveAvgPool2d": LayerEntry(
        "pooling",
        {"output_size": Arg("size", ge=1)},
        _pool(nn.AdaptiveAvgPool2d, 2),
        "mean pooling to a fixed output size (1 = global average pooling)",
        spatial=2,
    ),
    "AdaptiveMaxPool2d": LayerEntry(
        "pooling", {"output_size": Arg("size", ge=1)}, _pool(nn.AdaptiveMaxPool2d, 2), "max pooling to a fixed output size", spatial=2
    ),
    "BatchNorm1d": LayerEntry("normalization", NORM_ARGS, _batchnorm(nn.BatchNorm1d, (1, 2)), "normalize each feature over the batch, then scale and shift"),
    "BatchNorm2d": LayerEntry(
        "normalization", NORM_ARGS, _batchnorm(nn.BatchNorm2d, (3,)), "normalize each channel over the batch and space, then scale and shift"
    ),
    "LayerNorm": LayerEntry(
        "normalization",
        {"normalized_shape": Arg("ints", None, ge=1), "eps": Arg("float", 1e-5, gt=0), "elementwise_affine": Arg("bool", True), "bias": Arg("bool", True)},
        _layernorm,
        "normalize each sample over its last dimension(s)",
    ),
    "GroupNorm": LayerEntry(
        "normalization",
        {"num_groups": Arg("int", ge=1), "eps": Arg("float", 1e-5, gt=0), "affine": Arg("bool", True)},
        _groupnorm,
        "normalize groups of channels within each sample",
    ),
    "InstanceNorm2d": LayerEntry(
        "normalization",
        {**NORM_ARGS, "affine": Arg("bool", False), "track_running_stats": Arg("bool", False)},
        _instancenorm,
        "normalize each channel of each sample over space",
    ),
    "LocalResponseNorm": LayerEntry(
        "normalization",
        {"size": Arg("int", ge=1), "alpha": Arg("float", 1e-4, ge=0), "beta": Arg("float", 0.75, ge=0), "k": Arg("float", 1.0, ge=0)},
        _plain(nn.LocalResponseNorm),
        "AlexNet's normalization across neighbouring channels",
    ),
    "Dropout": LayerEntry("regularization", {"p": P}, _plain(nn.Dropout), "zero elements with probability p at train time, scale the rest by 1/(1-p)"),
    "Dropout2d": LayerEntry("regularization", {"p": P}, _spatial_dropout, "zero whole channels with probability p"),
    "AlphaDropout": LayerEntry("regularization", {"p": P}, _plain(nn.AlphaDropout), "dropout that keeps SELU's self-normalization"),
    "Flatten": LayerEntry("shape", {"start_dim": Arg("int", 1), "end_dim": Arg("int", -1)}, _flatten, "reshape [C, H, W] to [C·H·W]"),
    "Unflatten": LayerEntry(
        "shape", {"dim": Arg("int", 1), "unflattened_size": Arg("ints", ge=1)}, _unflatten, "reshape one dimension into several, e.g. [784] to [1, 28, 28]"
    ),
    "Upsample": LayerEntry(
        "shape",
        {
            "size": Arg("size", None, ge=1),
            "scale_factor": Arg("number_or_list", None, gt=0),
            "mode": Arg("choice", "nearest", choices=("nearest", "linear", "bilinear", "bicubic", "trilinear")),
            "align_corners": Arg("bool", None),
        },
        _upsample,
        "enlarge feature maps by interpolation",
    ),
    "Identity": LayerEntry("shape", {}, _plain(nn.Identity), "passes its input through unchanged"),
    "Embedding": LayerEntry(
        "recurrent",
        {
            "num_embeddings": Arg("int", ge=1, help="vocabulary size"),
            "embedding_dim": Arg("int", ge=1),
            "padding_idx": Arg("int", None),
            "max_norm": Arg("float", None, gt=0),
        },
        _embedding,
        "a learned vector for each token id; the model input becomes token ids",
    ),
    "RNN": LayerEntry(
        "recurrent", {**RNN_ARGS, "nonlinearity": Arg("choice", "tanh", choices=("tanh", "relu"))}, _recurrent(nn.RNN), "h_t = tanh(W_x x_t + W_h h_(t-1) + b)"
    ),
    "LSTM": LayerEntry("recurrent", RNN_ARGS, _recurrent(nn.LSTM), "long short-term memory"),
    "GRU": LayerEntry("recurrent", RNN_ARGS, _recurrent(nn.GRU), "gated recurrent unit"),
    "MultiheadAttention": LayerEntry(
        "attention",
        {
            "num_heads": Arg("int", 1, ge=1),
            "dropout": Arg("float", 0.0, ge=0, lt=1),
            "bias": Arg("bool", True),
            "causal": Arg("bool", False, help="mask future steps (a −∞ above the diagonal)"),
        },
        _attention,
        "self-attention softmax(QKᵀ/√d)V over [time, features]",
    ),
    "PositionalEncoding": LayerEntry(
        "attention",
        {
            "kind": Arg(
                "choice", "sinusoidal", choices=("sinusoidal", "learned"), help="fixed sines and cosines (Vaswani et al.), or a learned vector per position"
            ),
            "max_len": Arg("int", None, ge=1, le=4096, help="the most steps it can encode (empty: the input's steps)"),
        },
        _positional,
        "adds a vector per position to [time, features], so attention can tell the order",
    ),
    "TransformerEncoderLayer": LayerEntry(
        "attention",
        {
            "nhead": Arg("int", 1, ge=1),
            "dim_feedforward": Arg("int", 2048, ge=1),
            "dropout": Arg("float", 0.1, ge=0, lt=1),
            "activation": Arg("choice", "relu", choices=("relu", "gelu")),
            "layer_norm_eps": Arg("float", 1e-5, gt=0),
            "norm_first": Arg("bool", False),
            "bias": Arg("bool", True),
        },
        _transformer,
        "self-attention plus a feed-forward block, each with a residual connection and LayerNorm",
    ),
}

# Activations: the same table shape, group "activation"; `saturating` marks where f′ vanishes (telemetry).
ACTIVATIONS: dict[str, LayerEntry] = {
    "ReLU": LayerEntry("activation", {}, _plain(nn.ReLU), "max(0, z)"),
    "LeakyReLU": LayerEntry("activation", {"negative_slope": Arg("float", 0.01, ge=0)}, _plain(nn.LeakyReLU), "max(αz, z)"),
    "PReLU": LayerEntry("activation", {"num_parameters": Arg("int", 1, ge=1), "init": Arg("float", 0.25)}, _per_feature(nn.PReLU), "max(αz, z) with α learned"),
    "ELU": LayerEntry("activation", {"alpha": Arg("float", 1.0, gt=0)}, _plain(nn.ELU), "z if z > 0 else α(eᶻ − 1)"),
    "SELU": LayerEntry("activation", {}, _plain(nn.SELU), "scaled ELU; self-normalizing with lecun_normal init"),
    # torch divides by alpha in float32, so a vanishing alpha overflows
    "CELU": LayerEntry("activation", {"alpha": Arg("float", 1.0, ge=1e-6)}, _plain(nn.CELU), "continuously differentiable ELU"),
    "GELU": LayerEntry("activation", {"approximate": Arg("choice", "none", choices=("none", "tanh"))}, _plain(nn.GELU), "z·Φ(z)"),
    "SiLU": LayerEntry("activation", {}, _plain(nn.SiLU), "z·σ(z) (swish)"),
    "Mish": LayerEntry("activation", {}, _plain(nn.Mish), "z·tanh(softplus(z))"),
    "Sigmoid": LayerEntry("activation", {}, _plain(nn.Sigmoid), "1/(1+e⁻ᶻ); saturates at both ends"),
    "Tanh": LayerEntry("activation", {}, _plain(nn.Tanh), "tanh z; saturates at ±1"),
    "Softplus": LayerEntry(
        "activation", {"beta": Arg("float", 1.0, gt=0), "threshold": Arg("float", 20.0, gt=0)}, _plain(nn.Softplus), "log(1+eᶻ), a smooth ReLU"
    ),
    "Softsign": LayerEntry("activation", {}, _plain(nn.Softsign), "z/(1+|z|)"),
    "Hardtanh": LayerEntry("activation", {"min_val": Arg("float", -1.0), "max_val": Arg("float", 1.0)}, _plain(nn.Hardtanh), "clip z to [min_val, max_val]"),
    "Hardswish": LayerEntry("activation", {}, _plain(nn.Hardswish), "z·ReLU6(z+3)/6"),
    "ReLU6": LayerEntry("activation", {}, _plain(nn.ReLU6), "min(max(0, z), 6)"),
    "Softmax": LayerEntry("activation", {"dim": Arg("int", 1)}, _along_dim(nn.Softmax), "eᶻⁱ/Σeᶻʲ; losses take logits, so do not end a classifier with it"),
    "LogSoftmax": LayerEntry("activation", {"dim": Arg("int", 1)}, _along_dim(nn.LogSoftmax), "log of softmax; pair it with NLLLoss"),
    "Maxout": LayerEntry(
        "activation",
        {"pieces": Arg("int", 2, ge=2, help="k: features compared in each group")},
        _per_feature(Maxout),
        "max over groups of k features; put a Linear with k× the units before it",
    ),
}

ALL_LAYERS: dict[str, LayerEntry] = {**LAYERS, **ACTIVATIONS}

# Composite blocks: the only non-torch.nn types. Their keys hold lists of layers, not arguments.
BLOCKS: dict[str, dict[str, str]] = {
    "Residual": {"body": "layers", "shortcut": "layers"},
    "Concat": {"branches": "branches"},
    "Sequential": {"layers": "layers"},
}
BLOCK_DOCS = {
    "Residual": "output = body(x) + shortcut(x); an empty shortcut is the identity",
    "Concat": "runs each branch on the input and concatenates the outputs on the channel dimension",
    "Sequential": "a named group of layers",
}

GROUPS = ("dense", "convolution", "pooling", "normalization", "regularization", "shape", "recurrent", "attention", "activation", "blocks")

RELU_FAMILY = ("ReLU", "ReLU6", "LeakyReLU", "PReLU")  # units can be dead (f′ = 0 on the whole batch)
SATURATING = ("Sigmoid", "Tanh", "Hardtanh", "Softsign")  # units can saturate (f′ ≈ 0 at the ends)


def lookup_layer(name: str) -> LayerEntry:
    return ALL_LAYERS[name]
