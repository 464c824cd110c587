"""Inspect's Sequences tab: attention maps, gradients through time, gates, token embeddings and sampling for the
model on screen, each computed only while its section is open and kept per (preset, run, checkpoint, sample)."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import streamlit as st
import torch

from dlviz.analysis import features
from dlviz.analysis import sequences as seq
from dlviz.data.datasets import describe, option
from dlviz.errors import UserError
from dlviz.figures import sequences as figs
from dlviz.figures import style
from dlviz.preset.diff import preset_hash
from dlviz.preset.schema import validate
from dlviz.text import plot_text
from dlviz.training.fit import check_fit, require_sections
from dlviz_app import shared
from dlviz_app.text import md

SECTIONS = ("Attention", "Gradients through time", "Gates", "Embeddings", "Sampling")
GATED = ("LSTM", "GRU")
NEXT_TOKEN_TASKS = ("brackets",)  # the token tasks whose target at each position is the next token


# ---------------------------------------------------------------- cached engine calls (the network is not hashed: the key names it)


@st.cache_data(max_entries=64, show_spinner=False)
def _attention(_net, key: tuple, _x: torch.Tensor, labels: list[str]) -> list[tuple[seq.AttentionMaps, float]]:
    return [(m, seq.attention_entropy(m)) for m in seq.attention_maps(_net, _x, labels)]


@st.cache_data(max_entries=64, show_spinner=False)
def _time_gradients(_net, _objective, key: tuple, _x: torch.Tensor, _y: torch.Tensor, path: str, tbptt) -> seq.TimeGradients:
    # Inspect's models are shared between sessions with their parameters frozen, so that no gradient reaches them; the
    # hidden states need a path to the parameters to have gradients at all, so the pass runs on a copy that has one
    with features.HOOK_LOCK:  # no other session's hooks on it while it is copied
        live = copy.deepcopy(_net).requires_grad_(True)
    return seq.gradients_through_time(live, _x, _y, _objective.loss, path, tbptt)


@st.cache_data(max_entries=64, show_spinner=False)
def _gates(_net, key: tuple, _x: torch.Tensor, path: str) -> seq.Gates:
    return seq.gates(_net, _x, path)


@st.cache_data(max_entries=64, show_spinner=False)
def _embeddings(_net, key: tuple, path: str, labels) -> seq.EmbeddingView:
    return seq.embedding_projection(_net, path, labels)


@st.cache_resource(max_entries=8, show_spinner=False)
def _objective(preset_text: str):
    """The preset's loss as training builds it, which gradients through time differentiate."""
    exp = validate(json.loads(preset_text))
    require_sections(exp)
    return check_fit(exp, *describe(exp.data))


# ---------------------------------------------------------------- what is on screen


def _name(net, path: str) -> str:
    """A layer as the preset names it ("layers[1]"), from its module path."""
    return net.json_paths.get(path, path).removeprefix("model.")


def _of(run_id, step, ckpts) -> str:
    """Which weights a chart is of, for its caption."""
    if run_id is None:
        return "the preset's untrained weights"
    rows = ckpts[ckpts["step"] == step] if ckpts is not None else []
    label = str(rows["label"].iloc[0]) if len(rows) else "checkpoint"
    return f"run {run_id}, checkpoint {label} (step {step:,})"


def _vocab(exp) -> list[str] | None:
    """The names of the tokens, where the model reads tokens from the preset's data."""
    if exp.data is None:
        return None
    ds = shared.dataset(exp)
    return None if ds.x_val.is_floating_point() or not ds.class_names else list(ds.class_names)


def _labels(exp, x: torch.Tensor) -> list[str]:
    """Each position of one sample as its axis shows it: its token, else its time step."""
    vocab = _vocab(exp) if not x.is_floating_point() else None
    if vocab is not None:
        return [vocab[int(i)] if 0 <= int(i) < len(vocab) else str(int(i)) for i in x[0].reshape(-1)]
    return [str(t) for t in range(x.shape[1])]


def _sample_key(x: torch.Tensor) -> str:
    return hashlib.sha1(x.numpy().tobytes() + str(tuple(x.shape)).encode()).hexdigest()


def _checkpoint_slider(run_id, step, ckpts) -> None:
    """A slider over the run's checkpoints; moving it picks that checkpoint in the page's Checkpoint box, so every
    tab and caption shows the same weights."""
    if run_id is None or ckpts is None or len(ckpts) < 2:
        return
    labels = {int(r.step): f"{r.label} (step {int(r.step):,})" for r in ckpts.itertuples()}
    key = f"seq_ckpt|{run_id}"
    st.session_state[key] = step

    def follow():
        st.session_state[f"inspect_ckpt|{run_id}"] = st.session_state[key]

    st.select_slider("Checkpoint over training", options=list(labels), format_func=labels.get, key=key, on_change=follow)


# ---------------------------------------------------------------- sections


def attention_section(net, layers, x, labels, key, of) -> None:
    try:
        found = _attention(net, key, x, labels)
    except UserError as err:
        st.error(md(err))
        return
    st.caption("Row = query, column = key: row i shows how position i spreads its attention over the positions it reads (each row sums to 1).")
    for m, entropy in found:
        name = _name(net, m.path)
        fig = figs.attention_figure(m.weights, m.labels, m.causal, f"{name}: attention weights per head" + (" (causal)" if m.causal else ""))
        st.plotly_chart(fig, config=style.CONFIG, key=f"seq_attn|{m.path}")
        uniform = "" if m.causal else f" (spread evenly over all {len(m.labels)} keys: {np.log(len(m.labels)):.3f})"
        notes = [f"Mean entropy of a query's weights: **{entropy:.3f} nats**{uniform}"]
        if m.note:
            notes.append(md(m.note))
        notes.append(f"Of {md(of)}.")
        st.caption(" · ".join(notes))


def _target(exp, ds, x):
    """The sample's target, when the sample is one of the preset's validation samples."""
    index = int(st.session_state.get("inspect_index", 0) or 0)
    if 0 <= index < len(ds.x_val) and torch.equal(ds.x_val[index : index + 1], x):
        return ds.y_val[index : index + 1], f"{exp.data.name} validation sample {index}"
    return ds.y_val[:1], None


def gradients_section(exp, net, layers, x, key, of) -> None:
    if exp.data is None:
        st.info("Gradients through time need a loss on the preset's data: this preset has no data section.")
        return
    try:
        objective = _objective(json.dumps(exp.to_dict(), sort_keys=True))
        ds = shared.dataset(exp)
        y, name = _target(exp, ds, x)
        if name is None:  # a made-up input has no target: the loss is taken on the preset's first validation sample
            x, name = ds.x_val[:1], f"{exp.data.name} validation sample 0"
            key = (*key[:3], _sample_key(x))
        path = _pick_layer(net, "seq_grad_layer", layers.recurrent)
        tbptt = exp.training.tbptt
        tg = _time_gradients(net, objective, key, x, y, path, tbptt)
    except UserError as err:
        st.error(md(err))
        return
    kind = dict(layers.recurrent)[path]
    fig = figs.time_gradient_figure(tg.norms, tg.cuts, f"{_name(net, path)} {kind}: ‖∂L/∂h_t‖ over time (log scale)")
    st.plotly_chart(fig, config=style.CONFIG, key="seq_grad_fig")
    n = len(tg.norms)
    first, last = float(tg.norms[0]), float(tg.norms[-1])
    ratio = f", {first / last:.3g} times the last step's" if first > 0 and last > 0 else ""
    notes = [
        f"The loss on {md(name)} ({n} steps), differentiated with respect to each hidden state h: "
        f"‖∂L/∂h‖ is {first:.3g} at t = 0 and {last:.3g} at t = {n - 1}{ratio}."
    ]
    if tg.cuts:
        notes.append(f"Truncated BPTT every {tbptt} steps: the dashed lines are where the hidden state is detached.")
    if (tg.norms == 0).any():
        notes.append("Steps the loss's gradient does not reach at all (a norm of exactly 0) leave a gap on the log scale.")
    notes.append(f"Of {md(of)}.")
    st.caption(" ".join(notes))


def _pick_layer(net, key: str, recurrent: list[tuple[str, str]]) -> str:
    paths = [p for p, _ in recurrent]
    if len(paths) == 1:
        return paths[0]
    kinds = dict(recurrent)
    return st.selectbox("Recurrent layer", paths, key=key, format_func=lambda p: f"{_name(net, p)} ({kinds[p]})")


def gates_section(net, layers, x, key, of) -> None:
    gated = [(p, k) for p, k in layers.recurrent if k in GATED]
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    with left:
        path = _pick_layer(net, "seq_gate_layer", gated)
    mode = right.segmented_control(
        "Draw", ["heatmap", "mean"], default="heatmap", key="seq_gate_mode", format_func={"heatmap": "time × unit", "mean": "mean over units"}.get
    )
    try:
        g = _gates(net, key, x, path)
    except UserError as err:
        st.error(md(err))
        return
    title = f"{_name(net, path)} {g.kind}: gates over time for one sample"
    st.plotly_chart(figs.gates_figure(g.gates, g.cell, g.hidden, title, mode or "heatmap"), config=style.CONFIG, key="seq_gates_fig")
    what = (
        "Sigmoid gates in [0, 1] (dark: closed, bright: open); the candidate, cell and hidden states are signed (red positive, blue negative)."
        if mode != "mean"
        else "The mean over the layer's units at each step, the band from the smallest to the largest unit."
    )
    st.caption(f"{what} Of {md(of)}.")


def embeddings_section(exp, net, layers, key, of) -> None:
    try:
        view = _embeddings(net, key[:3], layers.embedding, _vocab(exp))
    except UserError as err:
        st.error(md(err))
        return
    title = f"{_name(net, layers.embedding)} Embedding: each token's vector on the first two principal components"
    st.plotly_chart(figs.embedding_figure(view.coords, view.labels, view.explained, title), config=style.CONFIG, key="seq_embed_fig")
    st.caption(f"PCA of the embedding matrix, one point a token; the two components hold {sum(view.explained):.0%} of its variance. Of {md(of)}.")


def sampling_section(exp, net, x, of) -> None:
    vocab = _vocab(exp) or [str(i) for i in range(_vocab_size(net))]
    default = seq.decode([int(i) for i in x[0][: max(1, x.shape[1] // 2)]], vocab)
    a, b, c = st.columns([4, 2, 1], vertical_alignment="bottom")
    text = a.text_input("Prefix (tokens separated by spaces)", default, key="seq_prefix")
    temperature = b.slider(
        "Temperature", 0.1, 3.0, 1.0, step=0.1, key="seq_temperature", help="Logits are divided by it: below 1 sharpens the distribution, above 1 flattens it."
    )
    top_k = c.number_input("Top-k (0: all)", 0, len(vocab), 0, key="seq_top_k", help="Keep only the k most likely tokens, then renormalize.")
    try:
        prefix = _parse_prefix(text, vocab)
        nt = seq.next_token(net, prefix, float(temperature), int(top_k) or None)
    except UserError as err:
        st.error(md(err))
        return
    fig = figs.next_token_figure(nt.before, nt.after, vocab, f"The next token after “{plot_text(seq.decode(prefix[-24:], vocab))}”")
    st.plotly_chart(fig, config=style.CONFIG, key="seq_next_fig")
    st.caption(f"Temperature {temperature:g}, top-k {int(top_k) or 'off'}. Of {md(of)}.")
    d, e = st.columns([1, 1], vertical_alignment="bottom")
    length = d.number_input("Tokens to generate", 1, 200, 20, key="seq_length")
    seed = e.number_input("Sampling seed", 0, 10_000, 0, key="seq_seed")
    if st.button("Generate", key="seq_generate"):
        try:
            ids = seq.sample(net, prefix, int(length), float(temperature), int(top_k) or None, int(seed))
        except UserError as err:
            st.error(md(err))
            return
        st.session_state["seq_generated"] = (seq.decode(prefix, vocab), seq.decode(ids[len(prefix) :], vocab), of)
    shown = st.session_state.get("seq_generated")
    if shown is not None:
        start, generated, made_of = shown
        st.markdown(f"**{md(start)}** {md(generated)}")
        st.caption(f"Generated from {md(made_of)}: the prefix in bold, then the sampled tokens.")


def _vocab_size(net) -> int:
    return next(m.num_embeddings for m in net.modules() if isinstance(m, torch.nn.Embedding))


def _parse_prefix(text: str, vocab: list[str]) -> list[int]:
    """Token ids of a typed prefix: tokens separated by spaces, each one of the vocabulary's names (one-character names
    may also be typed together, "(()")."""
    index = {name: i for i, name in enumerate(vocab)}
    words = [part for w in text.split() for part in (w if w not in index and all(ch in index for ch in w) else [w])]
    if not words:
        raise UserError("sequences.prefix", "the prefix is empty; type at least one token")
    unknown = [w for w in words if w not in index]
    if unknown:
        shown = ", ".join(vocab[:20]) + (", …" if len(vocab) > 20 else "")
        raise UserError("sequences.prefix", f"{unknown[0]!r} is not a token of the vocabulary ({shown})")
    return [index[w] for w in words]


# ---------------------------------------------------------------- the tab


def sections(exp, layers) -> list[str]:
    """The tab's sections this model has."""
    have = {
        "Attention": bool(layers.attention),
        "Gradients through time": bool(layers.recurrent),
        "Gates": any(k in GATED for _, k in layers.recurrent),
        "Embeddings": layers.embedding is not None,
        "Sampling": predicts_next_token(exp),
    }
    return [s for s in SECTIONS if have[s]]


def predicts_next_token(exp) -> bool:
    """Whether the preset's data asks the model for the next token of its input over a vocabulary."""
    return exp.data is not None and exp.data.name == "tokens" and option(exp.data, "task") in NEXT_TOKEN_TASKS


def sequences_tab(exp, net, run_id, step, ckpts, x: torch.Tensor) -> None:
    """The Sequences tab for one model and one sample `x` (a batch of one): the open section alone is computed."""
    layers = seq.sequence_layers(net)
    if layers.empty():
        st.info(md(seq.why_no_sequences(layers)))
        return
    _checkpoint_slider(run_id, step, ckpts)
    of = _of(run_id, step, ckpts)
    key = (preset_hash(exp), run_id, step, _sample_key(x))
    labels = _labels(exp, x)
    names = sections(exp, layers)
    draw = {
        "Attention": lambda: attention_section(net, layers, x, labels, key, of),
        "Gradients through time": lambda: gradients_section(exp, net, layers, x, key, of),
        "Gates": lambda: gates_section(net, layers, x, key, of),
        "Embeddings": lambda: embeddings_section(exp, net, layers, key, of),
        "Sampling": lambda: sampling_section(exp, net, x, of),
    }
    for name, tab in zip(names, st.tabs(names, key="seq_section", on_change="rerun")):
        with tab:
            if tab.open:
                draw[name]()
