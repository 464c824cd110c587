"""The sequence views against independent references: attention maps against nn.MultiheadAttention, gradients through time
and truncated BPTT against hand-written loops, gates against a hand-written LSTM cell and torch's own LSTM and GRU, the
embedding projection against scikit-learn's PCA, sampling against softmax by hand; and the layers and option they need:
positional encodings, training.tbptt (validated, trained, exported) and the bracket language."""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import preset
from torch import nn

from dlviz import export
from dlviz.analysis import sequences as seq
from dlviz.data.datasets import load_dataset
from dlviz.errors import UserError
from dlviz.model.build import build_model
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.runtime import BRACKET_DEPTH, Recurrent, bracket_tokens, set_tbptt, sinusoids
from dlviz.training.trainer import Trainer


def net_of(layers, shape, seed=0):
    return build_model(validate(preset(layers, shape)), seed=seed)


def tokens(n, t, vocab, seed=0):
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- attention

ATTENTION = [
    {"type": "Embedding", "num_embeddings": 7, "embedding_dim": 12},
    {"type": "MultiheadAttention", "num_heads": 3},
    {"type": "Residual", "body": [{"type": "MultiheadAttention", "num_heads": 2, "causal": True}]},
]


def test_attention_maps_equal_torch_multihead_attention():
    net = net_of(ATTENTION, [9])
    x = tokens(3, 9, 7)
    maps = seq.attention_maps(net, x, labels=list("abcdefghi"))
    assert [m.path for m in maps] == ["layers.1", "layers.2.body.0"] and [m.causal for m in maps] == [False, True]
    e = net.layers[0](x[:1])
    for m, layer, heads, inp in [(maps[0], net.layers[1], 3, e), (maps[1], net.layers[2].body[0], 2, net.layers[1](e))]:
        ref = nn.MultiheadAttention(12, heads, batch_first=True)
        ref.load_state_dict(layer.attn.state_dict())
        mask = torch.ones(9, 9, dtype=torch.bool).triu(1) if m.causal else None
        _, want = ref(inp, inp, inp, attn_mask=mask, need_weights=True, average_attn_weights=False)
        assert m.weights.shape == (heads, 9, 9) and m.labels == list("abcdefghi") and m.stride == 1 and m.note is None
        np.testing.assert_allclose(m.weights, want[0].detach().numpy(), rtol=1e-5, atol=1e-7)
        # and by hand: softmax(QKᵀ/√d) per head
        q, k, _ = (inp[0] @ layer.attn.in_proj_weight.T + layer.attn.in_proj_bias).chunk(3, dim=-1)
        d = 12 // heads
        scores = torch.einsum("thd,shd->hts", q.reshape(9, heads, d), k.reshape(9, heads, d)) / math.sqrt(d)
        if m.causal:
            scores = scores.masked_fill(mask, -math.inf)
        np.testing.assert_allclose(m.weights, scores.softmax(-1).detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps[0].weights.sum(-1), 1.0, rtol=1e-6)
    assert not any(layer.keep_weights or layer.last_weights is not None for layer in (net.layers[1], net.layers[2].body[0]))


def test_keeping_the_weights_leaves_the_output_as_it_was():
    net = net_of(ATTENTION, [9])
    x = tokens(4, 9, 7)
    with torch.no_grad():
        plain = net(x)
        for m in (net.layers[1], net.layers[2].body[0]):
            m.keep_weights = True
        kept = net(x)
    torch.testing.assert_close(kept, plain)
    assert net.layers[1].last_weights.shape == (4, 3, 9, 9)


def test_the_causal_triangle_is_exactly_zero_and_long_sequences_are_downsampled():
    net = net_of([{"type": "Embedding", "num_embeddings": 5, "embedding_dim": 8}, {"type": "MultiheadAttention", "num_heads": 2, "causal": True}], [100])
    x = tokens(1, 100, 5)
    (full,) = seq.attention_maps(net, x, max_len=100)
    assert full.weights.shape == (2, 100, 100) and np.all(np.triu(full.weights, 1) == 0) and np.all(np.diag(full.weights[0]) > 0)
    (small,) = seq.attention_maps(net, x, max_len=32)
    assert small.stride == 4 and small.weights.shape == (2, 25, 25) and small.labels == [str(i) for i in range(0, 100, 4)]
    assert small.note == "Downsampled: 100 steps shown as 25 (every 4th query; keys summed in blocks of 4)"
    assert np.all(np.triu(small.weights, 1) == 0)
    np.testing.assert_allclose(small.weights.sum(-1), 1.0, rtol=1e-6)
    # query 4q's weights on keys 4j … 4j+3, added up
    np.testing.assert_allclose(small.weights[:, 3, 2], full.weights[:, 12, 8:12].sum(-1))


def test_attention_entropy_in_nats():
    uniform = seq.AttentionMaps("a", np.full((2, 4, 4), 0.25), list("abcd"), False, 1, None)
    assert seq.attention_entropy(uniform) == pytest.approx(math.log(4))
    focused = seq.AttentionMaps("a", np.tile(np.eye(4), (3, 1, 1)), list("abcd"), True, 1, None)
    assert seq.attention_entropy(focused) == 0.0
    w = np.array([[[0.5, 0.5], [0.9, 0.1]]])
    half = -(0.5 * math.log(0.5)) * 2
    mixed = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert seq.attention_entropy(seq.AttentionMaps("a", w, ["x", "y"], False, 1, None)) == pytest.approx((half + mixed) / 2)


def test_which_layers_a_model_has():
    net = net_of([*ATTENTION, {"type": "GRU", "hidden_size": 4, "output": "all"}, {"type": "LSTM", "hidden_size": 3}], [9])
    layers = seq.sequence_layers(net)
    assert layers.attention == ["layers.1", "layers.2.body.0"]
    assert layers.recurrent == [("layers.3", "GRU"), ("layers.4", "LSTM")] and layers.embedding == "layers.0"
    assert not layers.empty() and seq.why_no_sequences(layers) == ""
    dense = seq.sequence_layers(net_of([{"type": "Linear", "out_features": 3}], [4]))
    assert dense.empty() and dense.embedding is None
    sentence = seq.why_no_sequences(dense)
    assert "no recurrent layer" in sentence and "MultiheadAttention" in sentence and sentence.count(". ") == 0
    with pytest.raises(UserError, match="no recurrent layer at 'layers.1'; its recurrent layers are at layers.3, layers.4"):
        seq.gates(net, tokens(1, 9, 7), "layers.1")


# ---------------------------------------------------------------- gradients through time


def rnn_preset(kind, output="last", hidden=6, **extra):
    return net_of([{"type": kind, "hidden_size": hidden, "output": output, **extra}, {"type": "Linear", "out_features": 1}], [12, 2], seed=3)


def by_hand(net, x, y, cuts=()):
    """‖∂L/∂h_t‖ of a one-layer tanh RNN written out: h_t = tanh(W_ih x_t + b_ih + W_hh h_(t-1) + b_hh), then the head."""
    rnn, head = net.layers[0].rnn, net.layers[1]
    cell = nn.RNNCell(2, rnn.hidden_size)
    with torch.no_grad():
        for a, b in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"), ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
            getattr(cell, a).copy_(getattr(rnn, b))
    h, hs = torch.zeros(len(x), rnn.hidden_size), []
    for t in range(x.shape[1]):
        h = cell(x[:, t], h.detach() if t in cuts else h)
        h.retain_grad()
        hs.append(h)
    loss = nn.functional.mse_loss(head(h), y)
    loss.backward()
    return np.array([0.0 if v.grad is None else float(v.grad.norm(dim=1).mean()) for v in hs])


def test_gradients_through_time_equal_autograd_on_a_hand_built_rnn():
    net = rnn_preset("RNN")
    x, y = torch.randn(5, 12, 2, generator=torch.Generator().manual_seed(1)), torch.randn(5, 1)
    got = seq.gradients_through_time(net, x, y, nn.functional.mse_loss, "layers.0")
    assert got.path == "layers.0" and got.cuts == [] and got.norms.shape == (12,)
    assert all(p.grad is None for p in net.parameters())  # the model is left as it was
    np.testing.assert_allclose(got.norms, by_hand(net, x, y), rtol=1e-5)
    assert got.norms[0] < got.norms[-1]
    # truncated: the state entering steps 4 and 8 is detached, so no gradient reaches the steps before the last chunk
    cut = seq.gradients_through_time(net, x, y, nn.functional.mse_loss, "layers.0", tbptt=4)
    assert cut.cuts == [4, 8]
    np.testing.assert_allclose(cut.norms, by_hand(net, x, y, cuts={4, 8}), rtol=1e-5)
    assert np.all(cut.norms[:8] == 0) and np.all(cut.norms[8:] > 0)


def test_gradients_through_time_of_an_lstm_with_all_steps_out_equal_torch_s_lstm_cell():
    net = rnn_preset("LSTM", output="all")
    x = torch.randn(4, 12, 2, generator=torch.Generator().manual_seed(2))
    y = torch.randn(4, 12, 1)
    got = seq.gradients_through_time(net, x, y, nn.functional.mse_loss, "layers.0")
    rnn, head = net.layers[0].rnn, net.layers[1]
    cell = nn.LSTMCell(2, 6)
    cell.load_state_dict({k[:-3]: v for k, v in rnn.state_dict().items()})
    h, c, hs = torch.zeros(4, 6), torch.zeros(4, 6), []
    for t in range(12):
        h, c = cell(x[:, t], (h, c))
        h.retain_grad()
        hs.append(h)
    nn.functional.mse_loss(head(torch.stack(hs, 1)), y).backward()
    np.testing.assert_allclose(got.norms, [float(v.grad.norm(dim=1).mean()) for v in hs], rtol=1e-5)
    with pytest.raises(UserError, match="bidirectional"):
        seq.gradients_through_time(rnn_preset("GRU", bidirectional=True), x, y, nn.functional.mse_loss, "layers.0")


# ---------------------------------------------------------------- truncated BPTT


def test_truncated_bptt_equals_a_hand_written_loop_that_detaches_every_k_steps():
    for kind, cell_cls in (("LSTM", nn.LSTMCell), ("GRU", nn.GRUCell), ("RNN", nn.RNNCell)):
        net = rnn_preset(kind, output="all")
        set_tbptt(net, 5)
        assert net.layers[0].tbptt == 5
        x, y = torch.randn(3, 12, 2, generator=torch.Generator().manual_seed(4)), torch.randn(3, 12, 1)
        out = net(x)
        nn.functional.mse_loss(out, y).backward()
        got = {n: p.grad.clone() for n, p in net.named_parameters()}
        cell = cell_cls(2, 6)
        cell.load_state_dict({k[:-3]: v for k, v in net.layers[0].rnn.state_dict().items()})
        head = copy.deepcopy(net.layers[1])
        h = torch.zeros(3, 6)
        state, hs = ((h, h.clone()) if kind == "LSTM" else h), []
        for t in range(12):
            if t % 5 == 0:
                state = tuple(s.detach() for s in state) if kind == "LSTM" else state.detach()
            state = cell(x[:, t], state)
            hs.append(state[0] if kind == "LSTM" else state)
        ref = head(torch.stack(hs, 1))
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        nn.functional.mse_loss(ref, y).backward()
        names = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0", "bias_ih": "bias_ih_l0", "bias_hh": "bias_hh_l0"}
        for a, b in names.items():
            torch.testing.assert_close(got[f"layers.0.rnn.{b}"], getattr(cell, a).grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got["layers.1.weight"], head.weight.grad, rtol=1e-4, atol=1e-6)
        # a full pass differs: the gradient reaches back past the cuts
        full = rnn_preset(kind, output="all")
        nn.functional.mse_loss(full(x), y).backward()
        assert not torch.allclose(full.layers[0].rnn.weight_hh_l0.grad, got["layers.0.rnn.weight_hh_l0"])


TBPTT = {
    "format": "dlviz-preset/1",
    "name": "tbptt",
    "seed": 2,
    "data": {"name": "tokens", "task": "brackets", "num_samples": 120, "seq_len": 12, "vocab": 5, "batch_size": 16},
    "model": {
        "input_shape": [12],
        "layers": [
            {"type": "Embedding", "num_embeddings": 5, "embedding_dim": 6},
            {"type": "LSTM", "hidden_size": 8, "num_layers": 2, "output": "all"},
            {"type": "Linear", "out_features": 5},
        ],
    },
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.02},
    "training": {"epochs": 2, "tbptt": 3},
}


def test_tbptt_is_validated_trained_with_and_exported():
    for value, words in [(0, "at least 1"), (2.5, "integer"), ("3", "integer")]:
        with pytest.raises(UserError, match=words) as e:
            validate({**TBPTT, "training": {"tbptt": value}})
        assert e.value.path == "training.tbptt"
    bidirectional = copy.deepcopy(TBPTT)
    bidirectional["model"]["layers"][1]["bidirectional"] = True
    with pytest.raises(UserError, match="bidirectional") as e:
        validate(bidirectional)
    assert e.value.path == "training.tbptt"
    tr = Trainer(validate(TBPTT))
    assert [m.tbptt for m in tr.model.modules() if isinstance(m, Recurrent)] == [3]
    cut = tr.run()
    full = Trainer(validate({**TBPTT, "training": {"epochs": 2}})).run()
    assert cut["status"] == full["status"] == "finished" and cut["train_loss"] != full["train_loss"]
    text = export.script(validate(TBPTT))
    assert "TBPTT = 3" in text and "set_tbptt(model, TBPTT)" in text and "def set_tbptt(" in text
    assert "TBPTT" not in export.script(validate({**TBPTT, "training": {"epochs": 2}}))


def test_the_exported_script_reproduces_a_tbptt_run(tmp_path):
    """The script, imported as a module, trains to the trainer's own numbers (test_export runs it as its own program too)."""
    import contextlib
    import importlib.util
    import io
    import json

    path = tmp_path / "run.py"
    path.write_text(export.script(validate(TBPTT)))
    spec = importlib.util.spec_from_file_location("exported_tbptt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert mod.main() == 0
    torch.set_num_threads(1)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    want = Trainer(validate(TBPTT)).run()
    assert lines[-1]["train_loss"] == want["train_loss"] and lines[-1]["val_accuracy"] == want["val_accuracy"]


# ---------------------------------------------------------------- gates


def test_gates_equal_a_hand_written_lstm_cell_and_torch_s_lstm():
    net = net_of([{"type": "LSTM", "hidden_size": 5, "num_layers": 2, "output": "all"}, {"type": "Linear", "out_features": 1}], [10, 3], seed=5)
    x = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(6))
    g = seq.gates(net, x, "layers.0")
    assert g.kind == "LSTM" and list(g.gates) == ["input", "forget", "cell candidate", "output"]
    rnn = net.layers[0].rnn
    w_ih, w_hh, b = rnn.weight_ih_l0.detach(), rnn.weight_hh_l0.detach(), (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach()
    h, c = torch.zeros(5), torch.zeros(5)
    sig = lambda v: 1 / (1 + torch.exp(-v))  # noqa: E731
    for t in range(10):
        z = w_ih @ x[0, t] + w_hh @ h + b
        i, f, cand, o = sig(z[:5]), sig(z[5:10]), torch.tanh(z[10:15]), sig(z[15:])
        c = f * c + i * cand
        h = o * torch.tanh(c)
        for name, v in zip(g.gates, (i, f, cand, o)):
            np.testing.assert_allclose(g.gates[name][t], v.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.cell[t], c.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.hidden[t], h.numpy(), rtol=1e-5, atol=1e-6)
    # h_t is the first layer's output of torch's own LSTM, and c_T its last cell state
    one = nn.LSTM(3, 5, batch_first=True)
    one.load_state_dict({k: v for k, v in rnn.state_dict().items() if k.endswith("l0")})
    y, (_, c_n) = one(x[:1])
    np.testing.assert_allclose(g.hidden, y[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.cell[-1], c_n[0, 0].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_gru_gates_and_their_refusals():
    net = net_of([{"type": "GRU", "hidden_size": 4, "output": "all"}], [7, 2], seed=7)
    x = torch.randn(1, 7, 2)
    g = seq.gates(net, x, "layers.0")
    assert g.kind == "GRU" and list(g.gates) == ["reset", "update", "candidate"] and g.cell is None
    np.testing.assert_allclose(g.hidden, net(x)[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    # h_t = (1 − z) ⊙ n + z ⊙ h_(t−1), torch's GRU update
    np.testing.assert_allclose(g.hidden[1], (1 - g.gates["update"][1]) * g.gates["candidate"][1] + g.gates["update"][1] * g.hidden[0], rtol=1e-5)
    with pytest.raises(UserError, match="plain RNN, which has no gates"):
        seq.gates(net_of([{"type": "RNN", "hidden_size": 4}], [7, 2]), x, "layers.0")


# ---------------------------------------------------------------- embeddings and sampling


def test_embedding_projection_is_scikit_learn_s_pca():
    from sklearn.decomposition import PCA

    net = net_of([{"type": "Embedding", "num_embeddings": 9, "embedding_dim": 6}], [3])
    view = seq.embedding_projection(net, "layers.0", labels=list("abcdefghi"))
    pca = PCA(2).fit(net.layers[0].weight.detach().double().numpy())
    want = pca.transform(net.layers[0].weight.detach().double().numpy())
    np.testing.assert_allclose(np.abs(view.coords), np.abs(want), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(view.explained, pca.explained_variance_ratio_, rtol=1e-6)
    assert view.labels == list("abcdefghi")
    with pytest.raises(UserError, match="no embedding layer"):
        seq.embedding_projection(net_of([{"type": "Linear", "out_features": 2}], [3]), "layers.0")


NEXT = [
    {"type": "Embedding", "num_embeddings": 5, "embedding_dim": 8},
    {"type": "PositionalEncoding"},
    {"type": "MultiheadAttention", "num_heads": 2, "causal": True},
    {"type": "Linear", "out_features": 5},
]


def test_next_token_before_and_after_temperature_and_top_k():
    net = net_of(NEXT, [6])
    with torch.no_grad():
        logits = net(torch.tensor([[3, 1, 4, 1, 0, 0]]))[0, 3].double()
    nt = seq.next_token(net, [3, 1, 4, 1], temperature=0.5, top_k=2)
    np.testing.assert_allclose(nt.logits, logits.numpy(), rtol=1e-5, atol=1e-6)
    logits = torch.from_numpy(nt.logits)
    np.testing.assert_allclose(nt.before, torch.softmax(logits, 0).numpy(), rtol=1e-9)
    top = torch.topk(logits, 2).indices
    want = torch.zeros(5, dtype=torch.float64)
    want[top] = torch.softmax(logits[top] / 0.5, 0)
    np.testing.assert_allclose(nt.after, want.numpy(), rtol=1e-9, atol=1e-15)
    # a causal model reads forward only: the padding after the prefix changes nothing
    with torch.no_grad():
        other = net(torch.tensor([[3, 1, 4, 1, 2, 3]]))[0, 3].double()
    np.testing.assert_allclose(nt.logits, other.numpy(), rtol=1e-5, atol=1e-6)
    # a prefix longer than the model's 6 steps is cut to its last 6
    np.testing.assert_allclose(seq.next_token(net, [4, 4, 3, 1, 4, 1, 2, 3], 1.0, None).logits, seq.next_token(net, [3, 1, 4, 1, 2, 3], 1.0, None).logits)


def test_sampling_is_seeded_and_greedy_at_top_1():
    net = net_of(NEXT, [6])
    a = seq.sample(net, [2], 8, 1.5, None, seed=3)
    assert a == seq.sample(net, [2], 8, 1.5, None, seed=3) and len(a) == 9 and a[0] == 2
    greedy, ids = seq.sample(net, [2, 0], 5, 1.0, 1, seed=0), [2, 0]
    for _ in range(5):
        ids.append(int(np.argmax(seq.next_token(net, ids, 1.0, None).logits)))
    assert greedy == ids
    assert seq.decode([0, 2, 4], ["(", "[", ")", "]", "."]) == "()." and seq.decode([0, 1], ["ab", "c"]) == "ab c"


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda net: seq.next_token(net, [], 1.0, None), "prefix is empty"),
        (lambda net: seq.next_token(net, [1], 0.0, None), "above 0"),
        (lambda net: seq.next_token(net, [1], 1.0, 0), "at least 1"),
        (lambda net: seq.next_token(net, [7], 1.0, None), "not a token id"),
        (lambda net: seq.sample(net, [1], -1, 1.0, None, 0), "cannot be negative"),
        (lambda net: seq.attention_maps(net, torch.zeros(1, 6, dtype=torch.long), max_len=0), "at least 1 step"),
        (
            lambda net: seq.gradients_through_time(net, torch.zeros(1, 6, dtype=torch.long), torch.zeros(1, 6), nn.functional.mse_loss, "layers.9"),
            "no recurrent",
        ),
    ],
)
def test_bad_input_is_one_sentence(call, words):
    with pytest.raises(UserError, match=words) as e:
        call(net_of(NEXT, [6]))
    assert "\n" not in str(e.value)


def test_sampling_needs_a_token_a_step():
    net = net_of([{"type": "Embedding", "num_embeddings": 5, "embedding_dim": 4}, {"type": "Flatten"}, {"type": "Linear", "out_features": 5}], [6])
    with pytest.raises(UserError, match="one class per sequence"):
        seq.next_token(net, [1, 2], 1.0, None)
    with pytest.raises(UserError, match="starts with an Embedding"):
        seq.next_token(rnn_preset("LSTM", output="all"), [1, 2], 1.0, None)


# ---------------------------------------------------------------- positional encodings and the transformer from its parts


def test_positional_encodings():
    net = net_of([{"type": "Embedding", "num_embeddings": 3, "embedding_dim": 6}, {"type": "PositionalEncoding", "max_len": 20}], [10])
    pe = net.layers[1]
    want = [[math.sin(p / 10000 ** (i / 6)) if i % 2 == 0 else math.cos(p / 10000 ** ((i - 1) / 6)) for i in range(6)] for p in range(20)]
    np.testing.assert_allclose(pe.table.numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sinusoids(4, 5)[:, 4].numpy(), [math.sin(p / 10000 ** (4 / 5)) for p in range(4)], rtol=1e-5, atol=1e-6)
    x = tokens(2, 10, 3)
    torch.testing.assert_close(net(x), net.layers[0](x) + pe.table[:10])
    assert sum(p.numel() for p in pe.parameters()) == 0 and not pe.state_dict()
    learned = net_of([{"type": "Embedding", "num_embeddings": 3, "embedding_dim": 6}, {"type": "PositionalEncoding", "kind": "learned"}], [10]).layers[1]
    assert learned.weight.shape == (10, 6) and learned.weight.requires_grad
    with pytest.raises(UserError, match="max_len=8 is shorter than the 10 steps") as e:
        net_of([{"type": "Embedding", "num_embeddings": 3, "embedding_dim": 6}, {"type": "PositionalEncoding", "max_len": 8}], [10])
    assert e.value.path == "model.layers[1]"


def test_the_transformer_from_its_parts_is_nn_transformer_encoder_layer():
    exp = gallery.load("transformer-from-parts")
    net = build_model(exp, seed=0)
    block = net.layers[2:6]
    ref = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True)
    assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in ref.parameters()) == 2224
    attn, norm1, ff, norm2 = block[0].body[0].attn, block[1], block[2].body, block[3]
    ref.self_attn.load_state_dict(attn.state_dict())
    ref.linear1.load_state_dict(ff[0].state_dict()), ref.linear2.load_state_dict(ff[2].state_dict())
    ref.norm1.load_state_dict(norm1.state_dict()), ref.norm2.load_state_dict(norm2.state_dict())
    net.eval(), ref.eval()
    x = torch.randn(3, 8, 16)
    with torch.no_grad():
        ours, theirs = block(x), ref(x)
    assert ours.shape == theirs.shape == (3, 8, 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the bracket language


def test_the_bracket_language():
    x, y = bracket_tokens(50, 40, 7, np.random.default_rng(0))
    assert x.shape == y.shape == (50, 40) and np.array_equal(x[:, 1:], y[:, :-1])
    assert set(np.unique(x)) == set(range(7))
    for row in np.concatenate([x, y[:, -1:]], axis=1):
        stack = []
        for prev, tok in zip([6, *row[:-1]], row):
            if tok == 6:
                assert not stack and prev != 6  # a word ends at depth 0, and never twice in a row
            elif tok % 2 == 0:
                stack.append(tok // 2)
                assert len(stack) <= BRACKET_DEPTH
            else:
                assert stack.pop() == tok // 2
    exp = validate({**TBPTT, "data": {**TBPTT["data"], "vocab": 7}})
    ds = load_dataset(exp.data, 0)
    assert ds.class_names == ["(", ")", "[", "]", "{", "}", "."] and ds.target_shape == (12,) and "balanced brackets" in ds.note
    with pytest.raises(UserError, match="an odd vocabulary; use 5 or 7") as e:
        load_dataset(validate({**TBPTT, "data": {**TBPTT["data"], "vocab": 6}}).data, 0)
    assert e.value.path == "data.vocab"
