"""Share links and classroom mode in the app: a link restores the experiment, a lesson can hide pages and controls."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dlviz import gallery, share
from dlviz.errors import UserError
from dlviz.spec import validate

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_with(doc):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = share.encode(validate(doc))
    return at.run()


def test_the_sidebar_shows_a_link_that_opens_the_same_experiment():
    doc = gallery.raw("xor")
    at = open_with(doc)
    assert not at.exception
    assert at.session_state["preset"] == validate(doc).to_dict()
    link = next(c.value for c in at.code if "?preset=" in c.value)
    assert share.decode_link(link) == validate(doc)


def test_classroom_mode_hides_pages_and_controls():
    doc = gallery.raw("vanishing-sigmoid")
    doc["classroom"] = {"hide_pages": ["build", "landscape"], "hide_controls": ["optimizer", "gallery"]}
    at = open_with(doc)
    assert not at.exception
    assert not [s for s in at.sidebar.selectbox if s.label == "Gallery"]
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    labels = {e.label for e in at.expander}
    assert "Optimizer" not in labels and "Loss" in labels


def test_unknown_classroom_names_are_refused_with_a_suggestion():
    doc = gallery.raw("xor")
    doc["classroom"] = {"hide_pages": ["trian"]}
    with pytest.raises(UserError, match=r"classroom.hide_pages\[0\].*did you mean 'train'"):
        validate(doc)


def test_a_damaged_link_opens_the_default_preset_with_one_sentence():
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = share.encode(validate(gallery.raw("xor")))[:-12]
    at.run()
    assert not at.exception
    assert at.session_state["preset"] == gallery.raw(gallery.DEFAULT)
    assert any("damaged or cut short" in e.value for e in at.error)
