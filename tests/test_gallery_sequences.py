"""The sequence lessons keep the promises of their notes: the plain RNN's gradient dies out over 100 steps where the LSTM's
and GRU's do not, attention entropy falls as the reversal is learned, positions make the difference, the transformer built
from its parts sorts, and the bracket model predicts as well as the language allows and writes balanced brackets."""

import math

import numpy as np
import pytest

from dlviz.analysis import sequences as seq
from dlviz.preset import gallery
from dlviz.runtime import BRACKET_DEPTH
from dlviz.training.trainer import Trainer

_cache = {}


def trained(name):
    """A lesson's trainer after its run, with what the sequence views showed before training (cached per lesson)."""
    if name not in _cache:
        tr = Trainer(gallery.load(name))
        before = views(tr)
        result = tr.run()
        _cache[name] = (tr, result, before, views(tr))
    return _cache[name]


def views(tr) -> dict:
    """‖∂L/∂h_t‖ over the first 64 validation samples, and the mean attention entropy over the first 50."""
    ds, layers, out = tr.dataset, seq.sequence_layers(tr.model), {}
    if layers.recurrent:
        path = layers.recurrent[0][0]
        out["grads"] = seq.gradients_through_time(tr.model, ds.x_val[:64], ds.y_val[:64], tr.objective.loss, path).norms
    if layers.attention:
        out["entropy"] = float(np.mean([seq.attention_entropy(seq.attention_maps(tr.model, ds.x_val[i : i + 1])[0]) for i in range(50)]))
    return out


@pytest.mark.parametrize("gated", ["lstm-long-memory", "gru-long-memory"])
def test_the_plain_rnn_s_gradient_at_step_0_is_100_times_smaller(gated):
    _, rnn_result, rnn_before, rnn_after = trained("rnn-long-memory")
    _, result, before, after = trained(gated)
    assert len(rnn_after["grads"]) == 100
    # at initialization every layer's gradient fades, the RNN's fastest; after training the gated layer keeps its own
    assert rnn_before["grads"][0] * 100 <= before["grads"][0]
    assert rnn_after["grads"][0] * 100 <= after["grads"][0]
    # the share of the last step's gradient that reaches the first: the loss, and with it every gradient, shrinks as
    # training succeeds, so the lesson is the ratio (0.016-0.018 for the LSTM on two CPUs, 8e-27 for the RNN)
    assert after["grads"][0] > 1e-3 * after["grads"][-1] and rnn_after["grads"][0] < 1e-20 * rnn_after["grads"][-1]
    assert result["val_accuracy"] >= 0.98 and rnn_result["val_accuracy"] < result["val_accuracy"]


def test_truncated_bptt_cuts_the_gradient_and_still_learns():
    tr, result, _, _ = trained("lstm-long-memory-tbptt")
    ds, path = tr.dataset, "layers.1"
    cut = seq.gradients_through_time(tr.model, ds.x_val[:64], ds.y_val[:64], tr.objective.loss, path, tr.exp.training.tbptt)
    full = seq.gradients_through_time(tr.model, ds.x_val[:64], ds.y_val[:64], tr.objective.loss, path)
    assert result["val_accuracy"] >= 0.98 and cut.cuts == [25, 50, 75]
    assert np.all(cut.norms[:75] == 0) and np.all(full.norms[:75] > 0)
    np.testing.assert_allclose(cut.norms[75:], full.norms[75:], rtol=1e-6)


def test_attention_entropy_falls_as_the_reversal_is_learned():
    _, result, before, after = trained("attention-reverse")
    assert result["val_accuracy"] >= 0.99
    assert before["entropy"] > 0.8 * math.log(8)  # near uniform over the 8 steps
    assert after["entropy"] < 0.5 < before["entropy"] - 1.0


def test_without_positions_attention_cannot_reverse():
    _, result, before, after = trained("attention-reverse-no-position")
    assert result["val_accuracy"] < 0.5 <= trained("attention-reverse")[1]["val_accuracy"]
    assert after["entropy"] > 0.8 * math.log(8)  # still spread: there is no position to look at


def test_the_transformer_built_from_its_parts_sorts():
    assert trained("transformer-from-parts")[1]["val_accuracy"] >= 0.99


def best_accuracy(x: np.ndarray, y: np.ndarray, vocab: int) -> float:
    """The accuracy of the best possible predictor of the bracket language, from a stack parser of each stream: after a
    word ends, a new bracket (1 / kinds) or '.' (1/2); inside a word, closing the innermost bracket (1/2), certain at the
    deepest nesting; at the start of a stream, one of the kinds."""
    kinds, hits = (vocab - 1) // 2, []
    for row in x:
        stack, ended = [], True
        for tok in row:
            if tok == vocab - 1:
                ended = True
            elif tok % 2 == 0:
                stack.append(tok // 2)
                ended = False
            else:
                assert stack and stack.pop() == tok // 2, "a closing bracket must match the innermost open one"
                ended = False
            hits.append((1 / kinds if ended else 0.5) if not stack else 1.0 if len(stack) == BRACKET_DEPTH else 0.5)
    return float(np.mean(hits))


def closing_matches(ids: list[int], vocab: int) -> tuple[int, int]:
    """(closing brackets that match the innermost open one, closing brackets) in a stream; the first one with nothing open
    (a sample's window may start inside a word) is not counted."""
    stack, good, total = [], 0, 0
    for tok in ids:
        if tok == vocab - 1:
            stack = []
        elif tok % 2 == 0:
            stack.append(tok // 2)
        elif stack:
            total += 1
            good += stack.pop() == tok // 2
    return good, total


def test_the_bracket_model_predicts_as_well_as_the_language_allows_and_writes_balanced_text():
    tr, result, _, _ = trained("brackets-next-token")
    ds = tr.dataset
    best = best_accuracy(ds.x_val.numpy(), ds.y_val.numpy(), 5)
    assert result["val_accuracy"] > best - 0.01 and result["val_accuracy"] < best + 0.01
    good = total = 0
    for s in range(20):
        ids = seq.sample(tr.model, [0], 31, temperature=1.0, top_k=None, seed=s)
        g, t = closing_matches(ids, 5)
        good, total = good + g, total + t
    assert total > 100 and good / total >= 0.95, (good, total)
    # greedy decoding (top-1) always takes the likeliest token: the same text whatever the seed
    assert seq.sample(tr.model, [0, 2], 10, 1.0, 1, seed=0) == seq.sample(tr.model, [0, 2], 10, 1.0, 1, seed=1)
