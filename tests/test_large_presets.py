"""A preset near the limits costs the server about what a small one does: the Build page pages through a long layer list
and draws a layer's editor only when it is opened, and the architecture graph draws a run of identical layers as one node."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from dlviz.figures import build as figures
from dlviz.model import build

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"


def deep(n: int = 999, bad_at: int | None = None) -> dict:
    layers = [{"type": "Linear", "out_features": 4}] + [{"type": "ReLU"} for _ in range(n - 1)]
    if bad_at is not None:
        layers[bad_at] = {"type": "Conv2d", "out_channels": 2, "kernel_size": 3}  # a 2-D convolution cannot take [4]
    return {"format": "dlviz-preset/1", "name": "deep", "seed": 0, "model": {"input_shape": [2], "layers": layers}}


def test_a_thousand_layer_preset_draws_one_page_of_closed_layers():
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["preset"] = deep()
    at.session_state["rev"] = 0
    at.run()
    assert not at.exception
    assert len(at.expander) == 25  # one page of the 999
    assert [e.label for e in at.expander][:2] == ["[0] Linear 4 → [4]", "[1] ReLU → [4]"]
    assert len(at.text_input) == 1  # the input shape only: no layer's name box is drawn while it is closed
    pager = next(s for s in at.selectbox if s.label.startswith("Layers (999"))
    pager.set_value(39).run()
    assert [e.label for e in at.expander][0] == "[975] ReLU → [4]" and len(at.expander) == 24
    assert not at.exception


def test_the_page_with_the_problem_opens_first_and_shows_its_editor():
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["preset"] = deep(bad_at=600)
    at.session_state["rev"] = 0
    at.run()
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert labels[0] == "[600] Conv2d 2@3×3" and len(labels) == 25  # layers 600 to 624
    troubled = at.expander[0]
    assert troubled.error and "Conv2d" in troubled.error[0].value  # drawn, open, with the sentence


def test_a_small_preset_still_draws_every_editor():
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["preset"] = deep(40)
    at.session_state["rev"] = 0
    at.run()
    assert len(at.expander) == 25 and len(at.text_input) == 1 + 25  # paged, but each layer's name box is there


def test_the_graph_of_a_deep_model_collapses_runs_of_identical_layers():
    doc = deep()
    view = build.preview(doc)
    g, _ = figures.model_graph(view.summary, view.model)
    assert [d["label"] for _, d in g.nodes(data=True)] == ["input [2]", "Linear 4", "ReLU ×998", "output [4]"]
    assert len(figures.architecture_svg(view.summary, view.model)) < 20_000  # a thousand nodes took 220 kB
    short = build.preview(deep(10))
    g, _ = figures.model_graph(short.summary, short.model)
    assert len(g.nodes) == 12  # a model of ordinary size keeps a node per layer
