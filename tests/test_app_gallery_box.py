"""The sidebar's Gallery box names the lesson on screen: after Load, a share link or New empty model it follows the preset."""

from pathlib import Path

from app_util import by_label
from streamlit.testing.v1 import AppTest

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def box(at):
    return by_label(at.sidebar.selectbox, "Gallery")


def test_the_gallery_box_names_the_lesson_of_a_share_link_and_a_dash_for_a_preset_of_no_lesson():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = share.encode(validate(gallery.raw("xor")))
    at.run()
    assert not at.exception
    assert box(at).value == "xor" and box(at).format_func(box(at).value) == gallery.raw("xor")["name"]

    by_label(at.button, "New empty model").click().run()
    assert not at.exception and at.session_state["preset"]["name"] == "Untitled model"
    assert box(at).value is None and box(at).format_func(None) == "—"
    assert by_label(at.sidebar.button, "Load").disabled

    box(at).set_value("perceptron").run()  # picking does not load: the box keeps the pick until Load
    assert box(at).value == "perceptron" and at.session_state["preset"]["name"] == "Untitled model"
    by_label(at.sidebar.button, "Load").click().run()
    assert at.session_state["preset"] == gallery.raw("perceptron") and box(at).value == "perceptron"
