"""The board element's Python side: the map encoding the browser decodes, and the wrapper's return without an event."""

import base64
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from browser_util import ROOT, _free_port, _healthy, page  # noqa: F401
from streamlit.testing.v1 import AppTest

from dlviz.model.neurons import decode as decode_map
from dlviz.model.neurons import encode as encode_map


def test_encode_map_is_int8_row_major_scaled_by_127():
    a = np.array([[-1.0, -0.5, 0.0], [0.5, 1.0, 0.25], [2.0, -3.0, np.nan]])
    raw = np.frombuffer(base64.b64decode(encode_map(a)), dtype=np.int8)
    # row-major, v/127, clipped to [-1, 1]; a NaN cell reads as 0
    assert raw.tolist() == [-127, -64, 0, 64, 127, 32, 127, -127, 0]


def test_encode_map_round_trips_within_one_step():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (40, 40))
    back = decode_map(encode_map(a))
    assert back.shape == (40, 40)
    assert np.max(np.abs(back - a)) <= 0.5 / 127 + 1e-12


def test_encode_map_keeps_the_top_row_first():
    t = np.linspace(-6, 6, 5)
    x1, x2 = np.meshgrid(t, t[::-1])  # row 0 is x2 = +extent
    back = decode_map(encode_map(x2 / 6))
    assert back[0].tolist() == [1.0] * 5 and back[-1].tolist() == [-1.0] * 5


def _app():
    import numpy as np
    import streamlit as st

    from dlviz.model.neurons import encode as encode_map
    from dlviz_app.board import board

    m = encode_map(np.zeros((4, 4)))
    state = {
        "features": [{"name": "x1", "on": True, "map": m}, {"name": "x2", "on": False, "map": m}],
        "hidden": [{"units": 2, "activation": "Tanh"}],
        "activations": ["Tanh", "ReLU"],
        "limits": {"units": 8, "layers": 6},
        "extent": 6.0,
        "points": {"train": [[1.0, 2.0, 1]], "test": []},
        "task": "classification",
        "show_test": False,
        "discretize": False,
        "live": False,
        "frame_url": "",
        "frame": {"version": 0, "n": 4, "out_n": 4, "hidden": [[m, m]], "output": m, "weights": [[[0.1], [0.2]], [[0.3, -0.4]]], "biases": [[0, 0], [0]]},
        "height": 600,
    }
    st.session_state["event"] = board(state, key="board")


def test_board_returns_none_without_an_event():
    at = AppTest.from_function(_app).run(timeout=30)
    assert not at.exception
    assert "event" in at.session_state and at.session_state["event"] is None


_ONE_D_APP = """
import json

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
event = board(state, key="board")
if event is not None:
    st.session_state["events"].append(event)
st.code("EVENTS " + json.dumps(st.session_state["events"]))
"""


@pytest.fixture
def one_d_url(tmp_path):
    """A streamlit server on a script that mounts the board with a 1-D state."""
    script = tmp_path / "board1d.py"
    script.write_text(_ONE_D_APP)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true", "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with (tmp_path / "server.log").open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while not _healthy(url):
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


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
