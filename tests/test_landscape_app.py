"""The Landscape page through Streamlit's AppTest: the optimizer lab, Distill's rates on the ravine, and the loss surface
of an untrained model and of a trained run."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from app_util import by_label
from streamlit.testing.v1 import AppTest

from dlviz.analysis import optimizer_lab, surface
from dlviz.figures import landscape as lf
from dlviz.paths import data_dir
from dlviz.preset import gallery
from dlviz.preset.schema import validate
from dlviz.training.store import RunStore, StoreCallback
from dlviz.training.trainer import Trainer

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
NETWORK_TAB = "Your network's loss surface"


def open_landscape(browser: str, preset: dict | None = None) -> AppTest:
    """The Landscape page for a browser, with `preset` on screen (else the default one)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["browser_id"] = browser
    if preset is not None:
        at.session_state["preset"] = preset
    at.run()
    at.switch_page("app_pages/landscape.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_network_tab(at) -> AppTest:
    """Open the network's loss surface tab, as a click on it does."""
    # AppTest cannot click a tab: the tab's own key in session state is the only way to open it
    at.session_state["ls_tab"] = NETWORK_TAB
    return at.run()


def optimizer_rows(at) -> list:
    """The optimizer editor's rows, top to bottom: the bordered boxes that each hold one Optimizer picker."""
    return [c for c in at.container if sum(w.label == "Optimizer" for w in c.selectbox) == 1]


def array(v) -> np.ndarray:
    """A figure's data array, which Plotly may send as a typed array ({"dtype", "bdata", "shape"})."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(n) for n in str(v["shape"]).split(",")]) if "shape" in v else a
    return np.asarray(v)


def figures(at) -> list[dict]:
    """The page's Plotly figures, with every data array decoded."""
    out = []
    for c in at.get("plotly_chart"):
        fig = json.loads(c.proto.spec)
        for t in fig["data"]:
            for k in ("x", "y", "z"):
                if k in t:
                    t[k] = array(t[k])
        out.append(fig)
    return out


def paths(fig: dict) -> list[str]:
    """Names of the optimizer paths in a contour figure, in the legend's order."""
    return [t["name"] for t in sorted((t for t in fig["data"] if t.get("mode") == "lines+markers"), key=lambda t: t["legendrank"])]


def text(at) -> str:
    return " ".join(
        [m.value for m in at.markdown]
        + [c.value for c in at.caption]
        + [i.value for i in at.info]
        + [w.value for w in at.warning]
        + [e.value for e in at.error]
    )


def test_three_optimizers_race_on_rosenbrock_and_the_start_can_move():
    at = open_landscape("landscape-lab")
    contour, loss = figures(at)  # the 3-D view is drawn only while its tab is open
    assert paths(contour) == ["SGD (lr=0.001)", "SGD (lr=0.001, momentum=0.9)", "Adam (lr=0.1)"]
    first = next(t for t in contour["data"] if t["name"] == "SGD (lr=0.001)")
    assert [first["x"][0], first["y"][0]] == [-1.2, 1.0] and len(first["x"]) == 501
    assert loss["layout"]["title"]["text"] == "Loss against step"
    at.session_state["ls_lab_view"] = "Surface in 3-D"  # AppTest cannot click a tab: its key opens it
    _, surface3d = figures(at.run())
    assert sum(t["type"] == "scatter3d" for t in surface3d["data"]) == 3
    table = at.dataframe[0].value
    assert len(table) == 3 and "final distance to nearest minimum" in table
    by_label(at.number_input, "Start x").set_value(0.5).run()
    first = next(t for t in figures(at)[0]["data"] if t["name"] == "SGD (lr=0.001)")
    assert first["x"][0] == 0.5
    # the step slider cuts every path
    by_label(at.slider, "Show steps up to").set_value(10).run()
    assert all(len(t["x"]) == 11 for t in figures(at)[0]["data"] if t.get("mode") == "lines+markers")
    assert not at.exception


def test_the_start_ups_races_are_the_ones_each_function_first_shows(monkeypatch):
    """lab.warm (the server's start-up) runs each function's race as the page asks for it first: flipping through every
    function afterwards runs no optimizer, and draws each function's own suggested race."""
    from dlviz_app import lab

    lab.warm()

    def refuse(*args, **kwargs):
        raise AssertionError("a race the start-up should have run")

    monkeypatch.setattr(optimizer_lab, "run_optimizers", refuse)
    at = open_landscape("landscape-warm")
    for name in lab.SUGGESTED:
        by_label(at.selectbox, "Function").set_value(name).run()
        assert not at.exception, [e.value for e in at.exception]
        contour = figures(at)[0]
        assert name in contour["layout"]["title"]["text"]
        assert [p.removesuffix(" (diverged)") for p in paths(contour)] == [optimizer_lab.optimizer_label(t, a) for t, a in lab.SUGGESTED[name]]
    # a start the start-up did not run is computed as before
    monkeypatch.undo()
    by_label(at.number_input, "Start x").set_value(0.25).run()
    assert not at.exception and all(t["x"][0] == 0.25 for t in figures(at)[0]["data"] if t.get("mode") == "lines+markers")


def test_a_huge_learning_rate_diverges_without_breaking_the_page():
    at = open_landscape("landscape-diverge")
    by_label(at.button, "Add optimizer").click().run()
    rows = optimizer_rows(at)
    assert len(rows) == 4
    by_label(rows[3].selectbox, "Optimizer").set_value("SGD").run()
    by_label(optimizer_rows(at)[3].number_input, "lr").set_value(50.0).run()
    assert not at.exception
    assert "SGD (lr=50) diverged" in text(at)
    assert len(paths(figures(at)[0])) == 4


def test_the_lab_races_at_most_one_optimizer_per_colour():
    at = open_landscape("landscape-many")
    for _ in range(lf.MAX_PATHS - 3):
        by_label(at.button, "Add optimizer").click().run()
    assert len(optimizer_rows(at)) == lf.MAX_PATHS == len(lf.PATH_COLORS)
    add = by_label(at.button, "Add optimizer")
    assert add.disabled and str(lf.MAX_PATHS) in add.help
    assert len(paths(figures(at)[0])) == lf.MAX_PATHS
    by_label(optimizer_rows(at)[-1].button, "").click().run()  # remove one: another may be added again
    assert not by_label(at.button, "Add optimizer").disabled


def test_the_ravine_shows_measured_rates_next_to_distills():
    at = open_landscape("landscape-ravine")
    by_label(at.selectbox, "Function").set_value("Quadratic ravine").run()
    assert not at.exception
    assert "Why momentum works" in [s.value for s in at.subheader]
    rates = next(d.value for d in at.dataframe if "theory rate" in d.value)
    assert list(rates["theory rate"]) == ["0.81818", "0.51949"]  # (κ−1)/(κ+1) and (√κ−1)/(√κ+1) for κ = 10
    for measured, theory in zip(rates["measured rate"], rates["theory rate"]):
        assert abs(float(measured) / float(theory) - 1) < 0.01
    by_label(at.number_input, "κ (condition number)").set_value(100.0).run()
    rates = next(d.value for d in at.dataframe if "theory rate" in d.value)
    assert list(rates["theory rate"]) == ["0.98020", "0.81818"]
    by_label(at.button, "Race these two").click().run()
    assert paths(figures(at)[0]) == ["SGD (lr=0.019802)", "SGD (lr=0.0330579, momentum=0.669421)"]
    assert not at.exception


def test_without_a_run_the_network_tab_offers_the_untrained_plane():
    at = open_landscape("landscape-untrained")
    open_network_tab(at)
    assert not at.exception and not at.error
    assert "Train first" in text(at)
    contour, surface3d = figures(at)
    assert len(contour["data"][0]["z"]) == 31 and not any(t.get("name", "").startswith("training") for t in contour["data"])
    assert "Loss at these weights" in text(at)


TRAINED = {**gallery.raw("spiral-tanh"), "training": {"epochs": 3}}


@pytest.fixture(scope="module")
def trained_run():
    exp = validate(TRAINED)
    store = RunStore(data_dir() / "runs.sqlite")
    run_id = store.create_run(exp, session="landscape-trained")
    Trainer(exp, [StoreCallback(store, run_id)]).run()
    store.close()
    return run_id


def test_a_trained_run_shows_its_surfaces_with_its_path(trained_run):
    at = open_landscape("landscape-trained", TRAINED)
    open_network_tab(at)
    assert not at.exception and not at.error
    assert not at.get("progress") and "31×31 grid on a fixed batch" in text(at)  # done: no progress bar is left
    assert by_label(at.selectbox, "Run").value == trained_run
    ckpt = by_label(at.selectbox, "Checkpoint")
    assert "final" in ckpt.format_func(ckpt.value)
    contour, surface3d = figures(at)
    path = next(t for t in contour["data"] if t["name"] == "training path (projected)")
    assert path["x"][-1] == 0 and path["y"][-1] == 0 and len(path["x"]) == 9  # 75 steps: every 10th, and the last
    assert any(t["type"] == "scatter3d" and t["name"] == "training path" for t in surface3d["data"])
    by_label(at.segmented_control, "Surface").set_value("pca").run()
    contour, _ = figures(at)
    assert "% of the path's variance" in contour["layout"]["xaxis"]["title"]["text"]
    assert "% of the path's variance" in text(at)
    by_label(at.segmented_control, "Surface").set_value("line").run()
    (line,) = figures(at)
    assert line["data"][0]["name"] == "loss on the line" and 0 in line["data"][0]["x"] and 1 in line["data"][0]["x"]
    by_label(at.segmented_control, "Surface").set_value("random").run()
    by_label(at.select_slider, "Resolution").set_value(101).run()
    assert not at.exception
    assert len(figures(at)[0]["data"][0]["z"]) == 101


def test_a_surface_seen_before_is_drawn_at_once_in_another_tab(trained_run, monkeypatch):
    at = open_network_tab(open_landscape("landscape-trained", TRAINED))
    drawn = figures(at)

    def again(*args, **kwargs):
        raise AssertionError("the surface was computed again")

    monkeypatch.setattr(surface, "network_surface", again)
    other = open_network_tab(open_landscape("landscape-trained", TRAINED))
    assert not other.exception and not other.error
    assert np.array_equal(array(figures(other)[0]["data"][0]["z"]), array(drawn[0]["data"][0]["z"]))


def test_a_grid_over_the_limit_is_refused_on_the_page(trained_run, monkeypatch):
    monkeypatch.setenv("DLVIZ_MAX_GRID_POINTS", "500")
    at = open_landscape("landscape-trained", TRAINED)
    open_network_tab(at)
    assert any("961 grid points is over the limit of 500" in e.value for e in at.error)
    assert not at.exception


def test_a_run_without_checkpoints_offers_its_untrained_plane():
    store = RunStore(data_dir() / "runs.sqlite")
    run_id = store.create_run(gallery.load("xor"), session="landscape-queued")
    store.close()
    at = open_landscape("landscape-queued", gallery.raw("xor"))
    open_network_tab(at)
    assert not at.exception and not at.error
    assert by_label(at.selectbox, "Run").value == run_id
    assert "no checkpoint yet" in text(at)
    assert len(figures(at)) == 2


def test_a_run_of_another_preset_is_shown_only_when_picked_and_says_so(trained_run):
    """With another preset on screen the page opens on that preset, untrained; the older run is a choice, labelled."""
    at = open_landscape("landscape-trained", gallery.raw("xor"))
    open_network_tab(at)
    run = by_label(at.selectbox, "Run")
    assert run.value == "" and run.format_func("") == "The preset on screen, untrained"
    assert "another preset" in run.format_func(trained_run) and "another preset" not in text(at)
    contour, _ = figures(at)
    assert not any(t.get("name", "").startswith("training") for t in contour["data"])  # no run's path on the untrained plane
    run.set_value(trained_run).run()
    assert not at.exception and "A run of another preset" in text(at)
    contour, _ = figures(at)
    assert any(t.get("name") == "training path (projected)" for t in contour["data"])
