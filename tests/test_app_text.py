"""Preset text on the pages through AppTest: names, descriptions, look_at, layer names and errors are shown literally,
and a value the browser cannot hold in a number box leaves only the schema's sentence."""

import re
from pathlib import Path

from app_util import by_label, panel
from streamlit.testing.v1 import AppTest

from dlviz.preset import gallery, share
from dlviz.preset.schema import validate
from dlviz_app.text import md

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
EVIL = "![x](http://elsewhere.invalid/p.png) [click](http://elsewhere.invalid) __import__"
TAG = '<a href="http://elsewhere.invalid">x</a>'
LIVE_LINK = re.compile(r"(?<!\\)\]\(|(?<!\\)<a |(?<!\\):/")  # a link Markdown would still make


def hostile_doc(tag: str = TAG) -> dict:
    """The xor lesson with Markdown images and links in its name, description and look_at, and `tag` as the name of a
    block and of its layer."""
    doc = gallery.raw("xor")
    doc["name"] = EVIL
    doc["description"] = "about " + EVIL
    doc["look_at"] = "look at " + EVIL
    first, *rest = doc["model"]["layers"]
    doc["model"]["layers"] = [{"type": "Sequential", "name": tag, "layers": [{**first, "name": tag}]}, *rest]
    return doc


def open_link(doc) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params[share.PARAM] = share.encode(validate(doc))
    return at.run()


def markdown_texts(at) -> list[str]:
    """The text of every element and label Streamlit renders as Markdown."""
    out = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success", "subheader", "title") for e in getattr(at, kind)]
    return out + [e.label for e in at.expander]


def assert_literal(at):
    texts = markdown_texts(at)
    assert not [t for t in texts if LIVE_LINK.search(t)], [t for t in texts if LIVE_LINK.search(t)]
    assert not any("__import__" in t for t in texts)  # unescaped, Markdown would make it bold "import"


def test_names_descriptions_look_at_and_layer_names_are_shown_literally():
    at = open_link(hostile_doc())
    assert not at.exception, [e.value for e in at.exception]
    assert at.sidebar.subheader[0].value == md(EVIL)
    assert "\\_\\_import\\_\\_" in at.sidebar.subheader[0].value
    assert md("about " + EVIL) in [c.value for c in at.sidebar.caption]
    assert md("look at " + EVIL) in [c.value for c in at.caption]
    assert any(md(TAG) in e.label for e in at.expander), [e.label for e in at.expander]
    graph = next(m.value for m in at.markdown if "dlviz-architecture" in m.value)  # the architecture SVG
    assert "&lt;a href" in graph and "<a href" not in graph
    assert_literal(at)
    for page in ("train", "inspect", "landscape"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert_literal(at)
    at.switch_page("app_pages/train.py").run()
    assert md("look at " + EVIL) in [i.value for i in at.info]


def test_an_error_quoting_a_users_string_keeps_it_literal():
    doc = gallery.raw("xor")
    doc["data"] = {"name": "csv", "source": "__import__![e](http://e.invalid/e).csv", "target": "y"}  # not an upload
    at = open_link(doc)
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any(md("__import__![e](http://e.invalid/e).csv") in e for e in errors), errors
    assert any("\\_\\_import\\_\\_" in e for e in errors), errors
    assert_literal(at)


def test_a_size_beyond_javascripts_integers_shows_only_the_limits_sentence():
    doc = gallery.raw("xor")
    doc["model"]["layers"][0]["out_features"] = 10**20
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["preset"] = doc
    at.session_state["rev"] = 0
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = {e.value for e in at.error}
    assert errors and all("parameters" in e and "DLVIZ_MAX_PARAMS" in e for e in errors), errors
    box = by_label(panel(at, "[0] Linear").text_input, "out_features")  # the value is shown, in a box that can hold it
    assert box.value == str(10**20)
    box.set_value("16").run()
    assert not at.exception and not at.error
    assert at.session_state["preset"]["model"]["layers"][0]["out_features"] == 16
