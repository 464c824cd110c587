"""Text from a preset is text: control and bidi characters escaped, Markdown and plotly's HTML shown literally."""

from __future__ import annotations

import json
import re

import pytest
from test_cli import cli

from dlviz import __main__ as cli_main
from dlviz.preset import gallery
from dlviz.text import clean, plot_text
from dlviz_app.text import md

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
CONTROLS = "".join(map(chr, [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]))
HOSTILE = "\x1b[31mred\x1b[0m \u202eevil"


def test_clean_escapes_every_control_and_bidi_character():
    out = clean("a" + BIDI + CONTROLS + "z")
    assert out.startswith("a") and out.endswith("z")
    assert not any(c in out for c in BIDI + CONTROLS)
    assert "\\u202e" in out and "\\x1b" in out and "\\n" in out and "\\x9b" in out
    assert clean(out) == out  # cleaning twice changes nothing


def test_clean_keeps_ordinary_text_and_joiners():
    for text in ["LeNet-5 on MNIST", "a[l+2] = g(z) + a[l]", "λ₁·Σ|w|", "שלום", "کتاب\u200cها", "👩\u200d🔬", "__import__"]:
        assert clean(text) == text


def test_plot_text_escapes_html_that_plotly_renders():
    assert plot_text('<a href="http://elsewhere.invalid">x</a>') == '&lt;a href="http://elsewhere.invalid"&gt;x&lt;/a&gt;'
    assert plot_text("<b>bold</b> & <br>") == "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;br&gt;"
    assert plot_text("&lt;") == "&amp;lt;"  # an entity in a name stays the characters typed
    assert plot_text("x\u202ey") == "x\\u202ey"


def unescaped(text: str) -> str:
    """What a CommonMark renderer shows for plain text: each backslash before ASCII punctuation dropped."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text).replace("\u200b", "")  # and the zero-width spaces


def live(text: str) -> str:
    """The characters Markdown still acts on: `text` with every backslash-escaped character blanked out."""
    return re.sub(r"\\[!-/:-@\[-`{-~]", " ", text)


# what makes Markdown (CommonMark, GitHub's extensions, Streamlit's) do anything but show the characters
ACTIVE = re.compile(r"\]\(|[<>&`*~$#\\]|(?<![^\W_])_|_(?![^\W_])|://|www\.|\w@\w|:[A-Za-z]|^\s*([-+](\s|$)|\d+[.)](\s|$)|---|\[[^\]]*\]:)", re.I)


@pytest.mark.parametrize(
    "text",
    [
        "![x](http://elsewhere.invalid/p.png)",
        "[click](http://elsewhere.invalid)",
        "[ref]: http://elsewhere.invalid",
        "<http://elsewhere.invalid>",
        '<a href="http://elsewhere.invalid">x</a>',
        '<img src="http://elsewhere.invalid/p.png">',
        "see http://elsewhere.invalid/p.png",
        "www.elsewhere.invalid",
        "x@elsewhere.invalid",
        "mailto:x@elsewhere.invalid",
        "__import__ and *stars* and `code` and ~~gone~~",
        "_x_ a_ _b snake_case_",
        "__init__.py",
        ":red[alarm] :material/home: $x^2$",
        "# heading",
        "- item",
        "+ item",
        "1. item",
        "3) item",
        "> quote",
        "---",
        "a\\b \\*",
        "&lt;b&gt; &#x202E;",
        HOSTILE,
    ],
)
def test_md_leaves_nothing_for_markdown_to_act_on_and_shows_the_text(text):
    out = md(text)
    assert not ACTIVE.search(live(out)), out
    assert unescaped(out) == clean(text)


# the bare links GitHub's Markdown (remark-gfm, which Streamlit uses) finds in the text once it is unescaped
BARE_LINK = re.compile(r"(https?://|www\.)[-.\w]+|[-.\w+]+@[-\w]+(\.[-\w]+)+", re.I)


@pytest.mark.parametrize(
    "text",
    [
        "see http://elsewhere.invalid/p.png",
        "https://elsewhere.invalid",
        "HTTP://ELSEWHERE.INVALID",
        "www.elsewhere.invalid",
        "x@elsewhere.invalid",
        "mailto:x@elsewhere.invalid",
        "![x](http://elsewhere.invalid/p.png)",
    ],
)
def test_md_splits_bare_links_in_the_text_markdown_shows(text):
    shown = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", md(text))  # unescaped, zero-width spaces kept
    assert not BARE_LINK.search(shown), shown
    assert shown.replace("\u200b", "") == text


def test_md_keeps_the_underscores_of_a_dunder_name():
    assert md("__import__") == "\\_\\_import\\_\\_"


def test_md_keeps_plain_sentences_as_they_are():
    for text in [
        "model.layers[1]: the model would have over 200,000,000 parameters here",
        "[0] Conv2d 6@5×5 → [6, 28, 28]",
        "-1 is below 0 (1.5, 2)",
        "15% of the targets",
        "branches[0][1]",
        "the limit is DLVIZ_MAX_PARAMS / DLVIZ_MAX_TRAIN_PARAMS",
        "kaiming_normal init",
    ]:
        assert md(text) == text


def test_md_shows_control_and_bidi_characters_escaped():
    out = md(HOSTILE)
    assert "\x1b" not in out and "\u202e" not in out
    assert unescaped(out) == "\\x1b[31mred\\x1b[0m \\u202eevil"


# ---------------------------------------------------------------- the CLI


def _hostile_preset(tmp_path):
    doc = gallery.raw("xor")
    doc["name"] = HOSTILE
    doc["description"] = "desc " + HOSTILE
    doc["model"]["layers"][0]["name"] = HOSTILE
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def _no_raw_escapes(*outputs):
    for text in outputs:
        assert "\x1b" not in text and not any(c in text for c in BIDI), repr(text)


def test_validate_and_summary_print_no_raw_escape_or_bidi_character(tmp_path):
    path = _hostile_preset(tmp_path)
    code, out, err = cli("validate", path)
    assert code == 0, err
    _no_raw_escapes(out, err)
    assert "\\x1b[31mred" in out and "\\u202eevil" in out
    code, out, err = cli("summary", path)
    assert code == 0, err
    _no_raw_escapes(out, err)
    assert "\\x1b[31mred" in out
    code, out, err = cli("summary", path, "--json")
    assert code == 0, err
    _no_raw_escapes(out, err)


def test_errors_quoting_a_name_print_no_raw_escape(tmp_path):
    doc = gallery.raw("xor")
    doc["model"]["layers"][0]["type"] = HOSTILE
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = cli("validate", str(path))
    assert code == 2
    _no_raw_escapes(out, err)


def test_list_prints_no_raw_escape(monkeypatch, capsys):
    items = [{"name": "hostile", "title": HOSTILE, "description": "desc " + HOSTILE}]
    monkeypatch.setattr(gallery, "listing", lambda: items)
    assert cli_main.main(["list"]) == 0
    out = capsys.readouterr().out
    _no_raw_escapes(out)
    assert "\\u202eevil" in out
    assert cli_main.main(["list", "--json"]) == 0
    _no_raw_escapes(capsys.readouterr().out)
