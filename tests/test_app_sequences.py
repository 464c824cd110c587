"""Inspect's Sequences tab through Streamlit's AppTest: a dense preset gets one sentence, the attention lesson its
per-head maps (and a trained run's checkpoints through the slider), the LSTM lesson its gradients through time (with
truncated BPTT's cuts) and gates, the bracket language its next-token distribution and samples."""

import base64
import json

import numpy as np
import pytest
import torch
from app_util import by_label
from streamlit.testing.v1 import AppTest
from test_app_inspect import open_inspect, open_tab, text

from dlviz.analysis import sequences as seq
from dlviz.analysis.features import load_model
from dlviz.paths import data_dir
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer
from dlviz_app import sequences

BROWSER = "sequences-apptest"  # its own runs, apart from the other Inspect tests


def open_sequences(doc=None) -> AppTest:
    return open_tab(open_inspect(doc, BROWSER), "Sequences")


def open_section(at, name: str) -> AppTest:
    """Open a section of the Sequences tab, as a click on it does (AppTest cannot click a tab: its key opens it)."""
    at.session_state["seq_section"] = name
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at, title_part: str) -> list[dict]:
    """The plotly figures on the page whose title contains `title_part`."""
    out = []
    for chart in at.get("plotly_chart"):
        fig = json.loads(chart.proto.spec)
        title = fig.get("layout", {}).get("title", {})
        if title_part in (title.get("text", "") if isinstance(title, dict) else str(title)):
            out.append(fig)
    return out


def values(v) -> np.ndarray:
    """A figure's data array as numbers (None → NaN), whether written out or packed as plotly's typed array."""
    if isinstance(v, dict):
        dtype = {"f8": np.float64, "f4": np.float32, "i4": np.int32, "i1": np.int8, "u1": np.uint8}[v["dtype"]]
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=dtype).astype(float)
        return arr.reshape([int(s) for s in v["shape"].split(",")]) if "shape" in v else arr
    return np.array([[np.nan if x is None else x for x in row] if isinstance(row, list) else (np.nan if row is None else row) for row in v], dtype=float)


def heat(fig: dict) -> list[np.ndarray]:
    """Each heatmap's z of a figure."""
    return [values(t["z"]) for t in fig["data"] if t["type"] == "heatmap"]


def train(doc: dict) -> str:
    exp = validate(doc)
    store = RunStore(data_dir() / "runs.sqlite")
    run_id = store.create_run(exp, session=BROWSER)
    result = Trainer(exp, callbacks=[StoreCallback(store, run_id)]).run()
    store.close()
    assert result["status"] == "finished", result
    return run_id


def test_a_dense_preset_says_what_the_tab_needs_and_nothing_else():
    at = open_sequences()  # the default preset: an MLP on the spiral
    exp = validate(at.session_state["preset"])
    sentence = seq.why_no_sequences(seq.sequence_layers(load_model(exp)))
    assert sentence in [i.value for i in at.info]
    assert "Sequences" in [t.label for t in at.tabs] and not set(sequences.SECTIONS) & {t.label for t in at.tabs}
    assert not at.select_slider and not at.error
    assert not figures(at, "attention") and not figures(at, "‖∂L/∂h_t‖")


def test_attention_lesson_shows_one_map_per_head_with_its_entropy():
    doc = gallery.raw("attention-majority")
    at = open_sequences(doc)
    assert not at.error, [e.value for e in at.error]
    assert {"Attention", "Embeddings"} <= {t.label for t in at.tabs}
    assert "Gates" not in {t.label for t in at.tabs}  # no recurrent layer, no section for it
    (fig,) = figures(at, "attention weights per head")
    maps = heat(fig)
    heads, seq_len = doc["model"]["layers"][1]["num_heads"], doc["data"]["seq_len"]
    assert len(maps) == heads and all(m.shape == (seq_len, seq_len) for m in maps)
    np.testing.assert_allclose([m.sum(1) for m in maps], 1.0, atol=1e-5)  # every query's weights sum to 1
    # the maps are the engine's for the sample on screen (validation sample 0), tokens on the axes
    exp = validate(doc)
    from dlviz.data.datasets import load_dataset

    ds = load_dataset(exp.data, exp.seed)
    x = ds.x_val[:1]
    (want,) = seq.attention_maps(load_model(exp), x)
    np.testing.assert_allclose(np.stack(maps), want.weights, atol=1e-6)
    assert fig["layout"]["xaxis"]["ticktext"] == [ds.class_names[int(i)] for i in x[0]]
    assert "Mean entropy of a query's weights" in text(at) and "the preset's untrained weights" in text(at)
    # the embeddings, opened: one labelled point a token
    open_section(at, "Embeddings")
    (emb,) = figures(at, "principal components")
    assert len(values(emb["data"][0]["x"])) == doc["data"]["vocab"]
    assert not at.error


def test_the_checkpoint_slider_redraws_the_maps_of_a_trained_run():
    doc = {**gallery.raw("attention-majority"), "training": {"epochs": 2}}
    run_id = train(doc)
    at = open_sequences(doc)
    assert by_label(at.radio, "Model").value == "A training run"
    slider = by_label(at.select_slider, "Checkpoint over training")
    store = RunStore(data_dir() / "runs.sqlite")
    steps = [int(s) for s in store.checkpoints(run_id)["step"]]
    store.close()
    assert (
        len(steps) >= 2 and list(slider.options) == [f"{label} (step {s:,})" for label, s in zip(["initial"] + [""] * 99, steps)][:1] + list(slider.options)[1:]
    )
    assert slider.value == steps[-1]
    last = heat(figures(at, "attention weights per head")[0])
    assert "final" in text(at) and f"run {run_id}" in text(at)
    slider.set_value(steps[0]).run()
    assert not at.exception and not at.error
    # the page's own Checkpoint box follows the slider, so every tab shows the same weights
    assert by_label(at.selectbox, "Checkpoint").value == steps[0]
    first = heat(figures(at, "attention weights per head")[0])
    assert "initial" in text(at)
    assert max(float(np.abs(a - b).max()) for a, b in zip(first, last)) > 1e-3  # training moved the maps
    # and back to the last through the page's box: the slider follows it
    by_label(at.selectbox, "Checkpoint").set_value(steps[-1]).run()
    assert by_label(at.select_slider, "Checkpoint over training").value == steps[-1]
    np.testing.assert_allclose(np.stack(heat(figures(at, "attention weights per head")[0])), np.stack(last), atol=1e-9)


@pytest.fixture(scope="module")
def lstm_at():
    return open_sequences(gallery.raw("lstm-sine"))


def test_lstm_lesson_shows_gradients_through_time_on_a_log_axis(lstm_at):
    at = lstm_at
    shown = {t.label for t in at.tabs}
    assert {"Gradients through time", "Gates"} <= shown and not {"Attention", "Embeddings", "Sampling"} & shown
    (fig,) = figures(at, "‖∂L/∂h_t‖")
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert len(values(fig["data"][0]["y"])) == gallery.raw("lstm-sine")["data"]["seq_len"]
    assert "at t = 0 and" in text(at) and "sine validation sample 0" in text(at)
    assert not at.error


def test_lstm_lesson_shows_its_gates_and_cell_state(lstm_at):
    at = open_section(lstm_at, "Gates")
    (fig,) = figures(at, "gates over time")
    maps = heat(fig)
    hidden = gallery.raw("lstm-sine")["model"]["layers"][0]["hidden_size"]
    assert len(maps) == 6  # four gates, the cell state and the hidden state
    assert all(m.shape == (hidden, gallery.raw("lstm-sine")["data"]["seq_len"]) for m in maps)
    names = [t["name"] for t in fig["data"]]
    assert "cell state c_t" in names
    by_label(at.segmented_control, "Draw").set_value("mean").run()
    assert not at.exception and not at.error
    (fig,) = figures(at, "gates over time")
    assert [t["name"] for t in fig["data"] if t.get("showlegend") is not False] == names


BRACKETS = gallery.raw("brackets-next-token")
STEPS = BRACKETS["model"]["input_shape"][0]


def test_sampling_shows_the_next_token_distribution_before_and_after_temperature_and_top_k():
    at = open_section(open_sequences(BRACKETS), "Sampling")
    assert not at.error, [e.value for e in at.error]
    names = ["(", ")", "[", "]", "."]
    by_label(at.text_input, "Prefix (tokens separated by spaces)").set_value("( [ ]").run()
    by_label(at.slider, "Temperature").set_value(2.0).run()
    by_label(at.number_input, "Top-k (0: all)").set_value(2).run()
    assert not at.exception and not at.error
    (fig,) = figures(at, "The next token after")
    before, after = (values(t["y"]) for t in fig["data"] if t["type"] == "bar")
    # the reference: the untrained model's logits at the prefix's last token, softmaxed by hand
    net = load_model(validate(BRACKETS))
    with torch.no_grad():
        logits = net(torch.tensor([[0, 2, 3] + [0] * (STEPS - 3)]))[0, 2].double()
    np.testing.assert_allclose(before, torch.softmax(logits, 0).numpy(), atol=1e-6)
    hot = torch.softmax(logits / 2.0, 0)
    keep = torch.topk(logits, 2).indices
    want = torch.zeros(5, dtype=torch.float64)
    want[keep] = hot[keep] / hot[keep].sum()
    np.testing.assert_allclose(after, want.numpy(), atol=1e-6)
    assert fig["layout"]["xaxis"]["ticktext"] == names
    # one-character tokens may be typed together; Generate writes the prefix and the drawn tokens
    by_label(at.text_input, "Prefix (tokens separated by spaces)").set_value("([").run()
    by_label(at.number_input, "Tokens to generate").set_value(5).run()
    at.button(key="seq_generate").click().run()
    assert not at.exception and not at.error
    shown = [m.value for m in at.markdown if m.value.startswith("**")]
    assert len(shown) == 1 and shown[0].startswith("**([** ")
    drawn = shown[0].removeprefix("**([** ").replace("\\", "")  # Markdown escapes taken off
    assert len(drawn) == 5 and set(drawn) <= set(names)
    assert "Generated from the preset's untrained weights" in text(at)
    # a token the language does not have: one sentence, no traceback
    by_label(at.text_input, "Prefix (tokens separated by spaces)").set_value("( x").run()
    assert not at.exception
    assert len(at.error) == 1 and "'x' is not a token of the vocabulary" in at.error[0].value


def test_truncated_bptt_cuts_are_drawn_where_training_detaches_the_state():
    doc = gallery.raw("lstm-sine")
    doc = {**doc, "training": {**doc["training"], "tbptt": 6}}
    at = open_sequences(doc)
    assert not at.error, [e.value for e in at.error]
    (fig,) = figures(at, "‖∂L/∂h_t‖")
    cuts = sorted(s["x0"] for s in fig["layout"]["shapes"])
    assert cuts == [5.5, 11.5, 17.5]  # the state entering steps 6, 12 and 18 of 20 is detached
    assert "Truncated BPTT every 6 steps" in text(at)
    # the gradient does not cross a cut: the steps before the last cut get nothing from the loss on the last step
    norms = values(fig["data"][0]["y"])
    assert np.isnan(norms[:18]).all() and np.isfinite(norms[18:]).all()


def test_a_long_causal_sequence_is_downsampled_with_a_note_and_its_future_left_blank():
    doc = {
        "format": "dlviz-preset/1",
        "name": "long causal attention",
        "seed": 0,
        "data": {"name": "tokens", "task": "majority", "num_samples": 100, "seq_len": 100, "vocab": 4, "batch_size": 16},
        "model": {
            "input_shape": [100],
            "layers": [
                {"type": "Embedding", "num_embeddings": 4, "embedding_dim": 8},
                {"type": "MultiheadAttention", "num_heads": 2, "causal": True},
                {"type": "Flatten"},
                {"type": "Linear", "out_features": 4},
            ],
        },
        "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01},
    }
    at = open_sequences(doc)
    assert not at.error, [e.value for e in at.error]
    (fig,) = figures(at, "attention weights per head (causal)")
    maps = heat(fig)
    assert len(maps) == 2 and all(m.shape == (50, 50) for m in maps)  # 100 steps shown every 2nd
    upper = np.triu(np.ones((50, 50), dtype=bool), 1)
    assert all(np.isnan(m[upper]).all() and np.isfinite(m[~upper]).all() for m in maps)  # blank, not coloured as 0
    assert "Downsampled: 100 steps shown as 50" in text(at)


def test_an_engine_refusal_is_one_sentence_and_the_other_sections_still_draw():
    doc = gallery.raw("lstm-sine")
    layers = [{**doc["model"]["layers"][0], "bidirectional": True}, *doc["model"]["layers"][1:]]
    at = open_sequences({**doc, "model": {**doc["model"], "layers": layers}})
    assert not at.exception
    assert len(at.error) == 1 and "bidirectional" in at.error[0].value and "Traceback" not in at.error[0].value
    assert not figures(at, "‖∂L/∂h_t‖")
    open_section(at, "Gates")
    assert not at.error and len(figures(at, "gates over time")) == 1
