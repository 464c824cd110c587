"""The Playground page through Streamlit's AppTest: it opens on Playground's defaults, its controls edit the preset,
Play trains, the learning rate reaches the running training, a structural edit starts the network over.

The board's own events (clicks inside the element) are covered by test_browser_playground.py."""

import time
from pathlib import Path

import pytest
from app_util import by_label
from streamlit.testing.v1 import AppTest

from dlviz.preset import playground
from dlviz_app import runs

ROOT = Path(__file__).resolve().parent.parent
RUN = "playground_run"


@pytest.fixture
def at():
    assert runs.runner().ready.wait(180), "the training workers did not start"
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    app.switch_page("app_pages/playground.py").run()
    assert not app.exception
    yield app
    rid = app.session_state[RUN] if RUN in app.session_state else None
    if rid:
        runs.runner().stop(rid)


def keyed(at, key: str):
    """The button whose key is `key` (the top bar's icon buttons have no label)."""
    matches = [b for b in at.button if b.key == key]
    assert len(matches) == 1, [b.key for b in at.button]
    return matches[0]


def live_handle(at):
    rid = at.session_state[RUN]
    assert rid
    h = runs.runner().handle(rid)
    assert h is not None and h.alive
    return h


def wait_until(check, timeout=60, what="the condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = check()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_a_fresh_session_opens_on_the_playgrounds_defaults(at):
    doc = at.session_state["preset"]
    assert doc == playground.default_doc()
    assert by_label(at.selectbox, "Data").value == "circle"
    assert by_label(at.selectbox, "Learning rate").value == 0.03
    assert by_label(at.selectbox, "Activation").value == "Tanh"
    assert by_label(at.selectbox, "Regularization").value == "None"
    assert by_label(at.selectbox, "Problem type").value == "Classification"
    assert by_label(at.slider, "Ratio of training to test data").value == 50
    assert by_label(at.slider, "Noise").value == 0
    assert by_label(at.slider, "Batch size").value == 10
    assert playground.network(doc).hidden == ((4, "Tanh"), (2, "Tanh"))
    assert keyed(at, "pg_play").help == "Play"
    assert not at.info and not at.error and not at.exception
    assert at.get("bidi_component"), "the board is mounted"


def test_a_preset_that_is_not_a_playground_network_says_so_and_offers_the_defaults(at):
    by_label(at.sidebar.selectbox, "Gallery").set_value("lenet5-mnist")
    by_label(at.sidebar.button, "Load").click().run()
    assert not at.exception
    assert at.session_state["preset"]["data"]["name"] == "mnist"
    assert len(at.info) == 1
    text = at.info[0].value
    assert text.startswith("The preset on screen is not a network the Playground draws:") and "data.name" in text, text
    assert not [b for b in at.button if b.key == "pg_play"], "no Playground controls under the sentence"
    by_label(at.button, "Start from the Playground's defaults").click().run()
    assert not at.exception and not at.info
    assert at.session_state["preset"] == playground.default_doc()
    assert by_label(at.selectbox, "Data").value == "circle"


def test_the_data_controls_edit_the_preset(at):
    by_label(at.selectbox, "Data").set_value("spiral").run()
    assert at.session_state["preset"]["data"]["name"] == "spiral"
    by_label(at.slider, "Noise").set_value(25).run()
    assert at.session_state["preset"]["data"]["noise"] == pytest.approx(0.25)
    by_label(at.slider, "Ratio of training to test data").set_value(70).run()
    assert at.session_state["preset"]["data"]["val_fraction"] == pytest.approx(0.3)
    by_label(at.slider, "Batch size").set_value(3).run()
    data = at.session_state["preset"]["data"]
    assert (data["name"], data["noise"], data["val_fraction"], data["batch_size"]) == ("spiral", pytest.approx(0.25), pytest.approx(0.3), 3)
    # the widgets show what the preset holds after each structural edit (their keys change with it)
    assert by_label(at.selectbox, "Data").value == "spiral"
    assert by_label(at.slider, "Noise").value == 25
    assert by_label(at.slider, "Ratio of training to test data").value == 70
    assert by_label(at.slider, "Batch size").value == 3
    assert not at.exception and not at.error


def test_play_trains_and_the_learning_rate_reaches_the_running_training(at):
    keyed(at, "pg_play").click().run()
    assert not at.exception and not at.error
    h = live_handle(at)
    rid = h.run_id
    assert h.run_event.is_set(), "Play starts the run training"
    assert keyed(at, "pg_play").help == "Pause"
    store = runs.store()
    wait_until(lambda: len(store.steps(rid)) > 0, what="the first steps in the store")
    assert set(store.steps(rid)["lr"].round(6)) == {0.03}
    by_label(at.selectbox, "Learning rate").set_value(0.3).run()
    assert not at.exception and not at.error
    assert at.session_state[RUN] == rid, "a new learning rate keeps the run"
    assert live_handle(at).run_event.is_set(), "and the run keeps training"
    assert at.session_state["preset"]["optimizer"]["lr"] == 0.3
    assert by_label(at.selectbox, "Learning rate").value == 0.3
    wait_until(lambda: (store.steps(rid)["lr"].round(6) == 0.3).any(), what="steps at lr 0.3 in the store")
    steps = store.steps(rid)
    first = steps.loc[steps["lr"].round(6) == 0.3, "step"].min()
    assert (steps.loc[steps["step"] < first, "lr"].round(6) == 0.03).all() and (steps.loc[steps["step"] >= first, "lr"].round(6) == 0.3).all()
    keyed(at, "pg_play").click().run()  # Pause
    assert not at.exception
    assert not [m.value for m in at.markdown if "None" in m.value], "Pause writes nothing on the page"
    assert at.session_state[RUN] == rid and not live_handle(at).run_event.is_set()
    assert keyed(at, "pg_play").help == "Play"
    keyed(at, "pg_reset").click().run()
    assert not at.exception
    assert at.session_state[RUN] is None, "Reset forgets the run"
    wait_until(lambda: not runs.runner().handle(rid).alive, timeout=30, what="the reset run's end")
    assert keyed(at, "pg_play").help == "Play"


def test_a_structural_edit_while_playing_starts_a_new_run_that_plays(at):
    keyed(at, "pg_play").click().run()
    old = live_handle(at)
    by_label(at.selectbox, "Activation").set_value("ReLU").run()
    assert not at.exception and not at.error
    assert playground.network(at.session_state["preset"]).hidden == ((4, "ReLU"), (2, "ReLU"))
    new = live_handle(at)
    assert new.run_id != old.run_id, "a new network is a new run"
    assert new.run_event.is_set(), "which plays on, as the old one did"
    wait_until(lambda: not old.alive, timeout=30, what="the old run's end")
    assert keyed(at, "pg_play").help == "Pause"
    # while paused, a structural edit starts the network over without training it
    keyed(at, "pg_play").click().run()
    by_label(at.slider, "Noise").set_value(10).run()
    assert not at.exception
    assert at.session_state[RUN] is None and keyed(at, "pg_play").help == "Play"
    wait_until(lambda: not new.alive, timeout=30, what="the paused run's end")
