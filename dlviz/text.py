"""Text from a user's document made safe to show: control and bidi characters escaped, HTML escaped for plot labels."""

from __future__ import annotations

# Zero-width joiners direct nothing; they hold together emoji sequences and Persian or Indic words.
_JOINERS = frozenset("\u200c\u200d")


def clean(text) -> str:
    """`text` on one line, with every character Python deems unprintable (C0 and C1 controls such as the terminal's
    escape, bidi marks, embeddings, overrides and isolates, line separators) written as its Python escape.

    A name can then neither recolour a terminal nor reverse the order of the words around it on a page."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in _JOINERS else repr(c)[1:-1] for c in text)


_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def plot_text(text) -> str:
    """`text` for a plotly title, label, legend or hover text: plotly renders a subset of HTML there (links among
    it), so `&`, `<` and `>` become entities that it shows as the characters themselves."""
    return clean(text).translate(_HTML)
