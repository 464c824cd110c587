"""The Tune page through Streamlit's AppTest: a preset it cannot tune says so; the sanity checks, the gradient check
(with its broken layer), backprop step by step, the learning-rate range test and 'use this rate', and a search whose
trials are runs of this browser session, its best trial loaded as the preset, and a bad space refused by its path.

The page in a real browser (the search's plots, the address after loading a trial) is test_browser_tune.py's."""

import copy
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dlviz.analysis.backprop import backprop_trace
from dlviz.preset import gallery, share
from dlviz.preset.schema import validate
from dlviz_app import runs

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
SEARCH_TIMEOUT_S = 120


def open_tune(doc: dict) -> AppTest:
    """The Tune page of a fresh session opened with a share link to `doc`."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params[share.PARAM] = share.encode(validate(doc))
    at.run()
    at.switch_page("app_pages/tune.py").run()
    assert not at.exception, at.exception
    return at


def keyed(widgets, key: str):
    matches = [w for w in widgets if w.key == key]
    assert len(matches) == 1, f"{len(matches)} widgets keyed {key!r}; the keys here: {[w.key for w in widgets]}"
    return matches[0]


def table_with(at, column: str):
    """The one dataframe on the page that has the column `column`."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1, f"{len(frames)} tables with a {column!r} column"
    return frames[0]


def tiny_mlp() -> dict:
    """Gallery 'xor' with a hidden layer of 3 (2-3-2): small enough for backprop step by step."""
    doc = gallery.raw("xor")
    doc["model"]["layers"][0]["out_features"] = 3
    return doc


@pytest.fixture(scope="module", autouse=True)
def workers():
    assert runs.runner().ready.wait(180), "the training workers did not start"


def test_a_preset_without_data_says_so_in_one_sentence_and_shows_nothing_else():
    doc = gallery.raw("xor")
    del doc["data"]
    at = open_tune(doc)
    assert len(at.main.info) == 1
    assert "data" in at.main.info[0].value, at.main.info[0].value
    assert not at.tabs and not at.main.button and not at.dataframe and not at.error
    assert not [w for w in at.main.number_input] and not at.main.text_area


def test_the_sanity_checks_show_five_verdicts():
    at = open_tune(gallery.raw("xor"))
    keyed(at.button, "tune_checks").click().run()
    assert not at.exception and not at.error
    table = table_with(at, "check")
    assert len(table) == 5, table
    assert set(table[""]) <= {"✓", "✗", "—"} and all(table["verdict"].str.len() > 0), table
    failed = (table[""] == "✗").sum()
    said = [m.value for m in (*at.warning, *at.success)]
    assert said == ([f"{failed} of 5 checks failed."] if failed else ["All 5 checks passed."]), said


def test_a_zero_initialized_network_fails_a_sanity_check_and_the_warning_counts_them():
    doc = gallery.raw("xor")
    doc["model"]["init"] = "zeros"
    at = open_tune(doc)
    keyed(at.button, "tune_checks").click().run()
    assert not at.exception and not at.error
    table = table_with(at, "check")
    failed = int((table[""] == "✗").sum())
    assert failed >= 1, table
    assert [w.value for w in at.warning] == [f"{failed} of 5 checks failed."]
    assert not at.success


def test_the_gradient_check_is_fine_for_xor_and_wrong_with_the_broken_layer():
    at = open_tune(gallery.raw("xor"))
    keyed(at.button, "tune_grad").click().run()
    assert not at.exception and not at.error
    table = table_with(at, "tensor")
    assert len(table) == 4, table  # two Linear layers, a weight and a bias each
    assert set(table["verdict"]) == {"fine"}, table[["tensor", "worst relative error", "verdict"]]

    keyed(at.toggle, "tune_broken").set_value(True)
    keyed(at.button, "tune_grad").click().run()
    assert not at.exception and not at.error
    table = table_with(at, "tensor")
    assert "wrong" in set(table["verdict"]), table[["tensor", "worst relative error", "verdict"]]
    assert any("broken layer" in c.value for c in at.caption)


def test_backprop_step_by_step_shows_the_traces_numbers():
    doc = tiny_mlp()
    at = open_tune(doc)
    assert not at.error
    trace = backprop_trace(validate(doc), sample=0)
    assert keyed(at.radio, "tune_stage").value == "forward"
    tables = [d.value for d in at.dataframe]
    assert len(tables) == 2, "a table per Linear layer"
    first = trace["forward"][0]["neurons"]
    assert list(tables[0]["z = w·x + b"]) == pytest.approx([n["z"] for n in first])
    assert list(tables[0]["a = f(z)"]) == pytest.approx([n["a"] for n in first])

    keyed(at.radio, "tune_stage").set_value("update").run()
    assert not at.exception
    tables = [d.value for d in at.dataframe]
    last = trace["update"]["layers"][-1]
    w01 = last["weights"][0][1]
    row = tables[-1].set_index("parameter").loc["w[0,1]"]
    assert (row["old"], row["gradient"], row["new"]) == pytest.approx((w01["old"], w01["grad"], w01["new"]))
    assert tables[-1].set_index("parameter").loc["b[1]", "new"] == pytest.approx(last["bias"][1]["new"])

    keyed(at.number_input, "tune_sample").set_value(3).run()
    trace3 = backprop_trace(validate(doc), sample=3)
    assert not at.exception
    assert list(at.dataframe[0].value["new"]) == pytest.approx(
        [w["new"] for row in trace3["update"]["layers"][0]["weights"] for w in row] + [b["new"] for b in trace3["update"]["layers"][0]["bias"]]
    )


def test_backprop_step_by_step_says_when_the_network_is_too_large():
    at = open_tune(gallery.raw("spiral-tanh"))
    infos = [i.value for i in at.main.info]
    assert len(infos) == 1 and "2-16-16-2" in infos[0] and "make it smaller" in infos[0], infos
    assert not at.dataframe


def test_the_range_test_suggests_a_rate_that_use_writes_into_the_preset():
    at = open_tune(gallery.raw("xor"))
    keyed(at.button, "tune_lr").click().run()
    assert not at.exception and not at.error
    found = at.session_state["tune_results"]["lr"][1]
    assert [m.value for m in at.markdown if m.value.startswith(f"Suggested rate **{found.suggested:.3g}**")]
    use = keyed(at.button, "tune_use_lr")
    assert use.label == f"Use {found.suggested:.3g} as the learning rate"
    use.click().run()
    assert not at.exception and not at.error
    assert at.session_state["preset"]["optimizer"]["lr"] == pytest.approx(found.suggested)


def study_line(at):
    return next((m.value for m in at.markdown if m.value.startswith("**Study ")), None)


def test_a_search_runs_its_trials_as_this_sessions_runs_and_loads_the_best():
    at = open_tune(gallery.raw("xor"))
    keyed(at.number_input, "tune_trials").set_value(4)
    keyed(at.button, "tune_search_go").click().run()
    assert not at.exception and not at.error
    t0 = time.time()
    while not (study_line(at) or "").endswith("4 of 4 trials finished"):
        assert time.time() - t0 < SEARCH_TIMEOUT_S, f"the search did not finish: {study_line(at)}"
        time.sleep(1)
        at.run()
        assert not at.exception, at.exception
    table = table_with(at, "run")
    assert len(table) == 4 and set(table["state"]) <= {"complete", "pruned"}, table
    mine = runs.store().runs()
    mine = mine[mine["id"].isin(table["run"])]
    assert len(mine) == 4, "every trial is a run in the store"
    assert set(mine["session"]) == {at.session_state["browser_id"]}, "of this browser session"

    complete = table[table["state"] == "complete"]
    best = complete.loc[complete["validation loss"].idxmin()]
    load = keyed(at.button, "tune_load_best")
    assert load.label.startswith(f"Load trial {best['trial']} ") and not load.disabled
    assert len([c for c in at.get("plotly_chart")]) >= 2, "Optuna's plots"
    before = copy.deepcopy(at.session_state["preset"])
    load.click().run()
    assert not at.exception and not at.error
    doc = at.session_state["preset"]
    assert doc["optimizer"]["lr"] == pytest.approx(best["optimizer.lr"])
    assert doc["training"]["l2"] == pytest.approx(best["training.l2"])
    assert {k: v for k, v in doc.items() if k not in ("optimizer", "training")} == {k: v for k, v in before.items() if k not in ("optimizer", "training")}


def test_a_space_with_a_wrong_path_is_refused_with_one_error_naming_it():
    at = open_tune(gallery.raw("xor"))
    area = next(a for a in at.text_area if a.key.startswith("tune_space_"))
    space = json.loads(area.value)
    space["params"]["optimizer.lrr"] = space["params"].pop("optimizer.lr")
    area.set_value(json.dumps(space))
    keyed(at.button, "tune_search_go").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "space.params['optimizer.lrr']" in errors[0], errors
    assert study_line(at) is None, "no search started"
