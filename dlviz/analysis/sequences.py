"""What a sequence model does over time: attention maps and their entropy, gradients through time (with truncated
BPTT's cuts), LSTM and GRU gates, token embeddings in 2-D, and next-token sampling with temperature and top-k."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from dlviz.analysis.features import HOOK_LOCK
from dlviz.errors import UserError
from dlviz.model.build import device_of
from dlviz.runtime import Recurrent, SelfAttention

# ---------------------------------------------------------------- which layers a model has


@dataclass(frozen=True)
class SequenceLayers:
    """The layers of a model the sequence views can show, by their module paths (as in net.named_modules())."""

    attention: list[str]  # SelfAttention layers (MultiheadAttention in a preset)
    recurrent: list[tuple[str, str]]  # (path, "RNN" | "LSTM" | "GRU")
    embedding: str | None  # the first nn.Embedding

    def empty(self) -> bool:
        """True when the model has neither an attention nor a recurrent layer: nothing over time to show."""
        return not self.attention and not self.recurrent


def sequence_layers(net: nn.Module) -> SequenceLayers:
    """The attention, recurrent and first embedding layers of `net`, in module order."""
    attention, recurrent, embedding = [], [], None
    for name, m in net.named_modules():
        if isinstance(m, SelfAttention):
            attention.append(name)
        elif isinstance(m, Recurrent):
            recurrent.append((name, type(m.rnn).__name__))
        elif isinstance(m, nn.Embedding) and embedding is None:
            embedding = name
    return SequenceLayers(attention, recurrent, embedding)


def why_no_sequences(layers: SequenceLayers) -> str:
    """The sentence shown instead of the views when the model has nothing to show ("" when it has)."""
    if not layers.empty():
        return ""
    return (
        "This model has no recurrent layer (RNN, LSTM, GRU) and no MultiheadAttention layer: add one to see gradients through time, "
        "gates and attention maps (a TransformerEncoderLayer keeps no attention weights; build the block from its parts instead)."
    )


def _module(net: nn.Module, path: str, kind: type, what: str) -> nn.Module:
    """The submodule at `path`, which must be of `kind`; UserError naming the ones there are otherwise."""
    modules = dict(net.named_modules())
    if not isinstance(modules.get(path), kind):
        there = [name for name, m in modules.items() if isinstance(m, kind)]
        raise UserError("path", f"the model has no {what} at '{path}'; " + (f"its {what}s are at {', '.join(there)}" if there else f"it has no {what}"))
    return modules[path]


def _one(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first sample of a batch, as a batch of one on the model's device."""
    return x[:1].to(device_of(net))


@contextmanager
def _eval(net: nn.Module):
    """The model in eval mode (no dropout) for the block, its mode restored after."""
    was = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was)


# ---------------------------------------------------------------- attention


@dataclass(frozen=True)
class AttentionMaps:
    """One attention layer's weights for one sample: a T'×T' map per head, rows the queries, each row summing to 1."""

    path: str
    weights: np.ndarray  # (heads, T', T')
    labels: list[str]  # the T' steps' labels (tokens, or positions)
    causal: bool
    stride: int  # 1, or the downsampling factor when T > max_len
    note: str | None


def attention_maps(net: nn.Module, x: torch.Tensor, labels: list[str] | None = None, max_len: int = 64) -> list[AttentionMaps]:
    """Every attention layer's per-head weights for the first sample of `x` (a batch as the model takes it), in module
    order. A sequence longer than `max_len` is shown every stride-th query, each row's keys summed over blocks of
    stride steps, so rows still sum to 1 and a causal map stays blank above its diagonal."""
    if max_len < 1:
        raise UserError("max_len", f"a map shows at least 1 step, got {max_len}")
    paths = sequence_layers(net).attention
    layers = [_module(net, p, SelfAttention, "attention layer") for p in paths]
    kept = []
    with HOOK_LOCK, _eval(net), torch.no_grad():
        for m in layers:
            m.keep_weights = True
        try:
            net(_one(net, x))
            kept = [m.last_weights[0].double().cpu().numpy() for m in layers]
        finally:
            for m in layers:
                m.keep_weights, m.last_weights = False, None
    out = []
    for path, m, w in zip(paths, layers, kept):
        t = w.shape[-1]
        names = list(labels) if labels is not None and len(labels) == t else [str(i) for i in range(t)]
        stride = max(1, math.ceil(t / max_len))
        note = None
        if stride > 1:
            pad = -t % stride
            w = np.pad(w[:, ::stride], ((0, 0), (0, 0), (0, pad))).reshape(w.shape[0], -1, (t + pad) // stride, stride).sum(-1)
            names = names[::stride]
            note = f"Downsampled: {t} steps shown as {len(names)} (every {stride}th query; keys summed in blocks of {stride})"
        out.append(AttentionMaps(path, w, names, bool(m.causal), stride, note))
    return out


def attention_entropy(maps: AttentionMaps) -> float:
    """The mean, over heads and query rows, of each row's entropy −Σ w log w in nats: log T for uniform attention, 0 for
    attention on one step."""
    w = maps.weights
    return float(-(w * np.log(np.where(w > 0, w, 1.0))).sum(-1).mean())


# ---------------------------------------------------------------- recurrent layers step by step


def _weights(rnn: nn.RNNBase, layer: int, suffix: str = ""):
    """(W_ih, W_hh, b_ih, b_hh) of one layer (and direction) of a torch rnn; zero biases where it has none."""
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}{suffix}"), getattr(rnn, f"weight_hh_l{layer}{suffix}")
    if rnn.bias:
        return w_ih, w_hh, getattr(rnn, f"bias_ih_l{layer}{suffix}"), getattr(rnn, f"bias_hh_l{layer}{suffix}")
    return w_ih, w_hh, torch.zeros(w_ih.shape[0], device=w_ih.device), torch.zeros(w_hh.shape[0], device=w_hh.device)


def cell_step(kind: str, weights, x, h, c=None, nonlinearity: str = "tanh") -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    """One step of a torch RNN, LSTM or GRU cell from its weights (W_ih, W_hh, b_ih, b_hh), in torch's gate order
    (LSTM i, f, g, o; GRU r, z, n): the new hidden state, the new cell state (LSTM) and the gates."""
    w_ih, w_hh, b_ih, b_hh = weights
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    if kind == "RNN":
        return (torch.tanh if nonlinearity == "tanh" else torch.relu)(gi + gh), None, {}
    if kind == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        return o * torch.tanh(c), c, {"input": i, "forget": f, "cell candidate": g, "output": o}
    (ir, iz, in_), (hr, hz, hn) = gi.chunk(3, dim=-1), gh.chunk(3, dim=-1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(in_ + r * hn)
    return (1 - z) * n + z * h, None, {"reset": r, "update": z, "candidate": n}


def _steps(rnn: nn.RNNBase, x: torch.Tensor, cuts=(), keep=None):
    """The top layer's output at each step of a one-directional torch rnn (batch_first input), step by step; the state
    entering each step in `cuts` is detached (truncated BPTT). `keep(t, h)` sees each top-layer h_t as it is made."""
    kind, n, hidden = type(rnn).__name__, x.shape[0], rnn.hidden_size
    weights = [_weights(rnn, layer) for layer in range(rnn.num_layers)]
    h = [x.new_zeros(n, hidden) for _ in weights]
    c = [x.new_zeros(n, hidden) for _ in weights] if kind == "LSTM" else [None] * len(weights)
    outs = []
    for t in range(x.shape[1]):
        if t in cuts:
            h = [s.detach() for s in h]
            c = [s if s is None else s.detach() for s in c]
        inp = x[:, t]
        for layer, w in enumerate(weights):
            h[layer], c[layer], _ = cell_step(kind, w, inp, h[layer], c[layer], getattr(rnn, "nonlinearity", "tanh"))
            inp = h[layer]
        if keep is not None:
            keep(t, inp)
        outs.append(inp)
    return torch.stack(outs, dim=1)


@dataclass(frozen=True)
class TimeGradients:
    """How much of the loss's gradient reaches each step of a recurrent layer."""

    path: str
    norms: np.ndarray  # (T,) ‖∂L/∂h_t‖ for t = 0..T-1, the mean over the batch of each sample's norm
    cuts: list[int]  # the steps whose incoming hidden state truncated BPTT detaches (empty for full BPTT)


def gradients_through_time(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, path: str, tbptt: int | None = None) -> TimeGradients:
    """‖∂L/∂h_t‖ for every step t of the recurrent layer at `path`, where h_t is the layer's output at step t (its top
    layer's hidden state) and L = loss_fn(net(x), y), in eval mode (no dropout). The layer is run step by step from its
    own weights, so the gradient at h_t counts every way h_t reaches the loss: through the later steps as well as through
    the layers after it. With `tbptt` = k the state entering steps k, 2k, … is detached, as training with that option
    does; None is full backpropagation through time (whatever the layer itself is set to)."""
    m = _module(net, path, Recurrent, "recurrent layer")
    if m.rnn.bidirectional:
        raise UserError("path", f"the layer at '{path}' is bidirectional: gradients through time follow a layer that reads forward only")
    if tbptt is not None and tbptt < 1:
        raise UserError("tbptt", f"truncated BPTT needs at least 1 step, got {tbptt}")
    dev = device_of(net)
    x, y = x.to(dev), y.to(dev)
    kept: dict[int, torch.Tensor] = {}
    cuts: list[int] = []

    def keep(t, h):
        h.retain_grad()
        kept[t] = h

    def replace(module, inputs, output):
        nonlocal cuts
        seq = inputs[0]
        cuts = list(range(tbptt, seq.shape[1], tbptt)) if tbptt else []
        out = _steps(module.rnn, seq, set(cuts), keep)
        return out if module.output == "all" else out[:, -1]

    with HOOK_LOCK, _eval(net), torch.enable_grad():
        handle = m.register_forward_hook(replace)
        try:
            loss = loss_fn(net(x), y)
        finally:
            handle.remove()
        loss.backward()
    norms = [np.zeros(len(x)) if kept[t].grad is None else kept[t].grad.detach().double().norm(dim=-1).cpu().numpy() for t in sorted(kept)]
    net.zero_grad(set_to_none=True)
    return TimeGradients(path, np.array([float(v.mean()) for v in norms]), cuts)


@dataclass(frozen=True)
class Gates:
    """An LSTM's or GRU's gate activations over time for one sample, with its cell state (LSTM) and hidden state."""

    path: str
    kind: str  # "LSTM" | "GRU"
    gates: dict[str, np.ndarray]  # name -> (T, hidden): LSTM input, forget, cell candidate, output; GRU reset, update, candidate
    cell: np.ndarray | None  # (T, hidden) LSTM cell state c_t; None for a GRU
    hidden: np.ndarray  # (T, hidden) h_t


def gates(net: nn.Module, x: torch.Tensor, path: str) -> Gates:
    """The gates, computed from the layer's own weights in torch's order, at every step of the first sample of `x`: of
    the first layer (and its forward direction) of the LSTM or GRU at `path`, fed the input that layer gets."""
    m = _module(net, path, Recurrent, "recurrent layer")
    kind = type(m.rnn).__name__
    if kind not in ("LSTM", "GRU"):
        raise UserError("path", f"the layer at '{path}' is a plain {kind}, which has no gates; pick an LSTM or GRU layer")
    seen = []
    with HOOK_LOCK, _eval(net), torch.no_grad():
        handle = m.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
        try:
            net(_one(net, x))
        finally:
            handle.remove()
        seq, w = seen[0], _weights(m.rnn, 0)
        h = seq.new_zeros(1, m.rnn.hidden_size)
        c = h.clone() if kind == "LSTM" else None
        rows: dict[str, list] = {"hidden": [], "cell": []}
        for t in range(seq.shape[1]):
            h, c, g = cell_step(kind, w, seq[:, t], h, c)
            for name, v in [*g.items(), ("hidden", h), ("cell", c)]:
                if v is not None:
                    rows.setdefault(name, []).append(v[0].double().cpu().numpy())
    stack = {name: np.stack(v) for name, v in rows.items() if v}
    hidden, cell = stack.pop("hidden"), stack.pop("cell", None)
    return Gates(path, kind, stack, cell, hidden)


# ---------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class EmbeddingView:
    """Token embedding vectors projected on their first two principal components."""

    coords: np.ndarray  # (vocab, 2)
    explained: tuple[float, float]  # the explained variance ratios of the two components
    labels: list[str]


def embedding_projection(net: nn.Module, path: str, labels: list[str] | None = None) -> EmbeddingView:
    """PCA of the embedding table at `path`: each token's vector, centred, on the two directions of largest variance
    (each direction's sign chosen so that its largest loading is positive)."""
    m = _module(net, path, nn.Embedding, "embedding layer")
    w = m.weight.detach().double().cpu().numpy()
    coords, explained = principal_plane(w)
    names = list(labels) if labels is not None and len(labels) == len(w) else [str(i) for i in range(len(w))]
    return EmbeddingView(coords, explained, names)


def principal_plane(w: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The rows of `w` (N, D), centred, on their two directions of largest variance (each direction's sign chosen so that
    its largest loading is positive; zeros past D), and the explained variance ratios of the two."""
    centred = w - w.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    coords = np.zeros((len(w), 2))
    k = min(2, len(s))
    coords[:, :k] = (u[:, :k] * s[:k]) * signs[:k]
    var = s**2
    ratios = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    return coords, tuple(float(ratios[i]) if i < len(ratios) else 0.0 for i in range(2))


# ---------------------------------------------------------------- next-token sampling


@dataclass(frozen=True)
class NextToken:
    """The model's next-token distribution after a prefix, before and after temperature and top-k."""

    logits: np.ndarray  # (vocab,)
    before: np.ndarray  # softmax(logits)
    after: np.ndarray  # softmax(logits / temperature), all but the top-k set to 0 and the rest renormalized


def _check_sampling(prefix: list[int], temperature: float, top_k: int | None) -> None:
    if not len(prefix):
        raise UserError("prefix", "the prefix is empty; give at least one token to continue")
    if not temperature > 0:
        raise UserError("temperature", f"the temperature must be above 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise UserError("top_k", f"top-k must keep at least 1 token, got {top_k}")


def _logits(net: nn.Module, prefix: list[int]) -> np.ndarray:
    """The logits the model gives the token after `prefix`. The model reads a fixed number of steps T (its input
    shape): a longer prefix is cut to its last T tokens; a shorter one is padded on the right with token 0 and the
    logits are read at its last token, which is exact for a model that reads forward only (causal attention, RNNs)."""
    t = int(net.input_shape[0]) if hasattr(net, "input_shape") else len(prefix)
    vocab = next((m.num_embeddings for m in net.modules() if isinstance(m, nn.Embedding)), None)
    if vocab is None:
        raise UserError("model", "the model reads numbers, not token ids; sampling needs a model that starts with an Embedding")
    bad = [i for i in prefix if not isinstance(i, (int, np.integer)) or not 0 <= i < vocab]
    if bad:
        raise UserError("prefix", f"token {bad[0]!r} is not a token id of this model (0 to {vocab - 1})")
    ids = list(prefix)[-t:]
    last = len(ids) - 1
    x = torch.tensor([ids + [0] * (t - len(ids))], dtype=torch.long, device=device_of(net))
    with _eval(net), torch.no_grad():
        out = net(x)
    if out.dim() != 3:
        raise UserError("model", "the model predicts one class per sequence, not a token per step; sampling needs an output of [steps, vocabulary]")
    return out[0, last].double().cpu().numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def next_token(net: nn.Module, prefix: list[int], temperature: float, top_k: int | None) -> NextToken:
    """The next-token distribution after `prefix` (token ids): softmax of the logits, and softmax(logits / temperature)
    with all but the top_k most likely tokens set to 0 (None keeps every token). See _logits for prefixes that are
    longer or shorter than the model's input."""
    _check_sampling(prefix, temperature, top_k)
    logits = _logits(net, prefix)
    after = _softmax(logits / temperature)
    if top_k is not None and top_k < len(after):
        after[np.argsort(-logits, kind="stable")[top_k:]] = 0.0
        after /= after.sum()
    return NextToken(logits, _softmax(logits), after)


def sample(net: nn.Module, prefix: list[int], length: int, temperature: float, top_k: int | None, seed: int) -> list[int]:
    """The prefix followed by `length` tokens drawn one at a time from next_token's `after` distribution, with a numpy
    generator seeded by `seed` (the same arguments give the same tokens)."""
    _check_sampling(prefix, temperature, top_k)
    if length < 0:
        raise UserError("length", f"the number of tokens to draw cannot be negative, got {length}")
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in prefix]
    for _ in range(length):
        p = next_token(net, ids, temperature, top_k).after
        ids.append(int(rng.choice(len(p), p=p)))
    return ids


def decode(ids: list[int], vocab_names: list[str]) -> str:
    """Token ids as text: their names joined, without spaces when every name is one character."""
    names = [vocab_names[i] if 0 <= i < len(vocab_names) else f"<{i}>" for i in ids]
    return ("" if all(len(n) == 1 for n in names) else " ").join(names)
