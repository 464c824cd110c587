"""The board element in headless Chromium, on a page of its own: a 1-D board plots the model's curve and adds points where
they are clicked, in data coordinates; its play button follows the run's frames."""

import json
import os

import pytest
from browser_util import ROOT, page, serve  # noqa: F401

_ONE_D_APP = """
import json
import os

import numpy as np
import streamlit as st

from dlviz.model.neurons import encode
from dlviz_app.board import board

n = 8
m = encode(np.tile(np.linspace(-1, 1, n), (n, 1)))
st.session_state.setdefault("events", [])
state = {
    "dims": 1, "y_extent": 1.5, "extent": 3.0,
    "features": [{"name": "x", "on": True, "map": m}],
    "hidden": [{"units": 2, "activation": "Tanh"}], "activations": ["Tanh"], "limits": {"units": 8, "layers": 6},
    "points": {"train": [[0.0, 0.5, 0.5]], "test": [[1.0, -0.5, -0.5]]}, "task": "regression",
    "show_test": True, "discretize": True, "live": False, "frame_url": "", "height": 480,
    "frame": {"version": 1, "n": n, "out_n": 5, "hidden": [[m, m]], "weights": [[[1.0], [-1.0]], [[0.5, 0.5]]],
              "biases": [[0, 0], [0]], "curve": [-1.5, -0.75, 0.0, 0.75, 1.5], "epoch": 3},
}
state.update(json.loads(os.environ.get("BOARD_STATE", "{}")))  # a test's changes to the state
event = board(state, key="board")
if event is not None:
    st.session_state["events"].append(event)
st.code("EVENTS " + json.dumps(st.session_state["events"]))
"""


def _serve(tmp_path, changes: dict):
    """A streamlit server on a script that mounts the board with a 1-D state, `changes` made to it."""
    script = tmp_path / "board1d.py"
    script.write_text(_ONE_D_APP)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BOARD_STATE": json.dumps(changes)}
    with serve(tmp_path, env, timeout=60, script=str(script)) as (url, _):
        yield url


@pytest.fixture
def one_d_url(tmp_path):
    yield from _serve(tmp_path, {})


FRAMES = "/board-test-frames/run"  # answered by the test's own route, as the server's frame route answers


@pytest.fixture
def controlled_url(tmp_path):
    """The board of a live run that plays, its frames fetched from FRAMES."""
    yield from _serve(tmp_path, {"live": True, "frame_url": FRAMES, "controls": {"playing": True, "handled": None, "reset_help": ""}})


def _events(pg) -> list:
    return json.loads(pg.locator("code").last.inner_text().split("EVENTS ", 1)[1])


@pytest.mark.browser
def test_one_d_board_plots_the_curve_and_adds_points_in_data_coordinates(one_d_url, page):  # noqa: F811
    page.goto(one_d_url)
    curve = page.locator("[data-testid=board-curve]")
    curve.wait_for(state="attached")
    # five predictions from −y_extent to +y_extent, evenly over x: a diagonal from the bottom left to the top right
    xy = [tuple(map(float, p.split(","))) for p in curve.get_attribute("points").split()]
    pw = xy[-1][0]
    assert len(xy) == 5 and pw > 200 and xy[0] == (0.0, pw) and xy[-1] == (pw, 0.0) and xy[2] == (pw / 2, pw / 2)
    # the one feature cannot be switched off: its click sends nothing
    page.locator("[data-testid=feature-x]").click()
    page.wait_for_timeout(1000)
    assert _events(page) == []
    # a click on the plot is a point at (x, y), its label y
    box = page.locator("[data-testid=board-output]").bounding_box()
    page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + 0.25 * box["height"])
    page.wait_for_function("() => [...document.querySelectorAll('code')].some(c => c.innerText.includes('point'))")
    (event,) = _events(page)
    assert event["kind"] == "point" and event["label"] == event["y"]
    assert abs(event["x"] - 1.5) < 0.05 and abs(event["y"] - 0.75) < 0.05
    # a new frame's curve replaces the line
    flat = page.evaluate(
        """() => { const b = document.querySelector('[data-testid=dlviz-board]').__board;
        b.redraw(Object.assign({}, b.frame, {version: 2, curve: [0, 0, 0]}));
        return document.querySelector('[data-testid=board-curve]').getAttribute('points'); }"""
    )
    assert [float(p.split(",")[1]) for p in flat.split()] == [pw / 2] * 3


@pytest.mark.browser
def test_the_play_button_follows_the_run_paused_by_one_step(controlled_url, page):  # noqa: F811
    """A run that pauses itself (after "one step") says so in its frames; the button shows Play without waiting for a rerun,
    and Pause again when the run's frames say it trains."""
    answer = {"frame": None}

    def frames(route):
        f = answer["frame"]
        route.fulfill(status=204) if f is None else route.fulfill(status=200, content_type="application/json", body=json.dumps(f))

    page.route("**" + FRAMES + "*", frames)
    page.goto(controlled_url)
    play = page.locator("[data-testid=board-play]")
    play.wait_for()
    page.wait_for_timeout(500)  # polled frames answer 204: nothing new
    assert play.get_attribute("title") == "Pause"
    frame = page.evaluate("() => document.querySelector('[data-testid=dlviz-board]').__board.frame")
    answer["frame"] = {**frame, "version": 2, "step": 8, "status": "paused"}
    page.wait_for_function("() => document.querySelector('[data-testid=board-play]').title === 'Play'", timeout=10_000)
    answer["frame"] = {**frame, "version": 3, "step": 9, "status": "running"}
    page.wait_for_function("() => document.querySelector('[data-testid=board-play]').title === 'Pause'", timeout=10_000)
    # a click awaits the server's answer: a frame of the state before it does not turn the button back
    play.click()
    assert play.get_attribute("title") == "Play"
    answer["frame"] = {**frame, "version": 4, "step": 10, "status": "running"}
    page.wait_for_function("() => document.querySelector('[data-testid=dlviz-board]').__board.frame.version === 4", timeout=10_000)
    page.wait_for_timeout(300)
    assert play.get_attribute("title") == "Play"
