"""The board element's Python side: the map encoding the browser decodes, and the wrapper's return without an event."""

import base64

import numpy as np
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
