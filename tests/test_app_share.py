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


def test_a_link_in_an_older_format_opens_migrated(monkeypatch):
    """A link made by an older dlviz (its own format name and key) opens as the current preset, in the app too.

    dlviz has one format so far; this registers a previous one as a future format change would, and checks the
    whole path a link takes: decode, migrate, validate, open."""
    import base64
    import json
    import zlib

    from dlviz import spec

    def from_v0(doc):  # the shape of a migration: rename, then restamp
        doc = dict(doc)
        doc["optimizer"] = doc.pop("optimiser")
        return {**doc, "format": spec.FORMAT}

    monkeypatch.setitem(spec.MIGRATIONS, "dlviz-preset/0", from_v0)
    doc0 = {**gallery.raw("xor"), "format": "dlviz-preset/0"}
    doc0["optimiser"] = doc0.pop("optimizer")
    token = base64.urlsafe_b64encode(zlib.compress(json.dumps(doc0).encode())).decode().rstrip("=")
    assert share.decode(token) == validate(gallery.raw("xor"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = token
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["preset"] == validate(gallery.raw("xor")).to_dict()
    # without the migration, the same link is refused with one sentence naming the format
    monkeypatch.delitem(spec.MIGRATIONS, "dlviz-preset/0")
    with pytest.raises(UserError, match=r"unknown (format|key)"):
        share.decode(token)
