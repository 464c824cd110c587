"""The Sequences tab's figure builders on arrays made here: one heatmap per head with the causal triangle blank,
a log axis for gradients through time with its cuts, gates per panel, labelled embeddings and the two next-token bars."""

import numpy as np
import pytest

from dlviz.figures import sequences as figs


def _softmax_rows(z: np.ndarray, causal: bool) -> np.ndarray:
    if causal:
        z = np.where(np.triu(np.ones(z.shape[-2:], dtype=bool), 1), -np.inf, z)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_one_heatmap_per_head_with_query_rows_and_key_columns():
    rng = np.random.default_rng(0)
    w = _softmax_rows(rng.normal(size=(3, 5, 5)), causal=False)
    labels = ["a", "b", "a", "<c>", "d"]
    fig = figs.attention_figure(w, labels, causal=False, title="layer 1")
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 3
    for h, t in enumerate(heat):
        np.testing.assert_allclose(np.asarray(t.z, dtype=float), w[h])  # z[row = query][column = key]
        assert (t.zmin, t.zmax) == (0.0, 1.0)
    # tokens on both axes, repeated tokens kept apart by position, HTML escaped
    assert list(fig.layout.xaxis.ticktext) == ["a", "b", "a", "&lt;c&gt;", "d"]
    assert list(fig.layout.yaxis.ticktext) == list(fig.layout.xaxis.ticktext)
    assert list(fig.layout.xaxis.tickvals) == [0, 1, 2, 3, 4]
    assert fig.layout.yaxis.autorange == "reversed"  # query 0 on top
    assert [a.text for a in fig.layout.annotations][:3] == ["head 0", "head 1", "head 2"]


def test_the_causal_triangle_is_blank_not_zero_coloured():
    rng = np.random.default_rng(1)
    w = _softmax_rows(rng.normal(size=(2, 4, 4)), causal=True)
    assert np.all(w[:, np.triu_indices(4, 1)[0], np.triu_indices(4, 1)[1]] == 0)
    fig = figs.attention_figure(w, list("wxyz"), causal=True, title="causal")
    for t in fig.data:
        z = np.asarray(t.z, dtype=float)
        upper = np.triu(np.ones((4, 4), dtype=bool), 1)
        assert np.isnan(z[upper]).all()
        assert np.isfinite(z[~upper]).all()
        np.testing.assert_allclose(z[~upper], w[0 if t.name == "head 0" else 1][~upper])
    # the input is left as it was
    assert not np.isnan(w).any()


def test_many_heads_wrap_into_rows_and_long_sequences_thin_their_ticks():
    w = np.full((6, 40, 40), 1 / 40)
    fig = figs.attention_figure(w, [str(i) for i in range(40)], causal=False, title="six heads")
    assert len(fig.data) == 6
    assert fig.layout.height > figs.attention_figure(w[:4], [str(i) for i in range(40)], False, "four").layout.height
    assert len(fig.layout.xaxis.tickvals) <= 32 and fig.layout.xaxis.tickvals[0] == 0


def test_gradients_through_time_on_a_log_axis_with_the_cuts():
    norms = 0.5 ** np.arange(10)[::-1]
    norms[0] = 0.0  # an exact zero leaves a gap instead of breaking the log axis
    fig = figs.time_gradient_figure(norms, cuts=[3, 6], title="RNN")
    assert fig.layout.yaxis.type == "log"
    y = np.asarray(fig.data[0].y, dtype=float)
    assert np.isnan(y[0]) and np.allclose(y[1:], norms[1:])
    assert list(fig.data[0].x) == list(range(10))
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted(s.x0 for s in lines) == [2.5, 5.5]  # between the last step of one chunk and the first of the next
    assert not figs.time_gradient_figure(norms, cuts=[], title="none").layout.shapes


@pytest.mark.parametrize("mode", ["heatmap", "mean"])
def test_gates_one_panel_each_and_the_cell_state(mode):
    rng = np.random.default_rng(2)
    t, hidden = 7, 3
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    gates = {"input": sig(rng.normal(size=(t, hidden))), "forget": sig(rng.normal(size=(t, hidden))), "candidate": np.tanh(rng.normal(size=(t, hidden)))}
    cell, h = rng.normal(size=(t, hidden)), np.tanh(rng.normal(size=(t, hidden)))
    fig = figs.gates_figure(gates, cell, h, "LSTM", mode)
    if mode == "heatmap":
        assert [tr.name for tr in fig.data] == ["input", "forget", "candidate", "cell state c_t", "hidden state h_t"]
        np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), gates["input"].T)  # unit down, time across
        assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 1.0)
        assert fig.data[2].zmin < 0  # the tanh candidate is signed
    else:
        means = [tr for tr in fig.data if tr.showlegend is not False]
        assert [tr.name for tr in means] == ["input", "forget", "candidate", "cell state c_t", "hidden state h_t"]
        np.testing.assert_allclose(np.asarray(means[1].y, dtype=float), gates["forget"].mean(1))
    gru = figs.gates_figure({"reset": gates["input"], "update": gates["forget"]}, None, h, "GRU", mode)
    assert "cell state c_t" not in [tr.name for tr in gru.data]


def test_embeddings_labelled_by_token_with_the_explained_variance():
    coords = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.5]])
    fig = figs.embedding_figure(coords, ["(", ")", "&"], (0.7, 0.2), "emb")
    assert list(fig.data[0].text) == ["(", ")", "&amp;"]
    np.testing.assert_allclose(np.asarray(fig.data[0].x, dtype=float), coords[:, 0])
    assert "70%" in fig.layout.xaxis.title.text and "20%" in fig.layout.yaxis.title.text


def test_next_token_before_and_after_side_by_side():
    before = np.array([0.5, 0.3, 0.2])
    after = np.array([0.625, 0.375, 0.0])
    fig = figs.next_token_figure(before, after, ["a", "b", "c"], "next")
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2 and bars[0].xaxis == "x" and bars[1].xaxis == "x2"
    np.testing.assert_allclose(np.asarray(bars[0].y, dtype=float), before)
    np.testing.assert_allclose(np.asarray(bars[1].y, dtype=float), after)
    assert list(fig.layout.xaxis2.ticktext) == ["a", "b", "c"]
