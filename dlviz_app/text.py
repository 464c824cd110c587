"""Text from a preset or a user's file, escaped so that Streamlit's Markdown shows it as written."""

from __future__ import annotations

import re

from dlviz.text import clean

# A backslash before ASCII punctuation makes it literal in CommonMark. Only what can start Markdown is escaped, so
# that sentences keep their commas, dots and brackets as they are in the page's own tests and in copied text:
#   \ ` * ~          escapes, code, emphasis and strike-through
#   _ but between letters or digits   emphasis (the underscores of __import__ stay; DLVIZ_MAX_PARAMS needs none)
#   < > &            raw HTML, <http://…> autolinks, block quotes, and entities such as &#x202E;
#   $ #              Streamlit's maths and headings
#   ] before (       inline links and images
#   [ opening "[x]:"   a link reference definition; without one, [x] and [x][y] link nowhere
#   : before a letter or /   bare http://… links, mailto:, Streamlit's :red[…] directives and :material/…: icons
#   - + or "1." opening the text   list items and rules
_MARKDOWN = re.compile(r"[\\`*~<>&$#]|(?<![^\W_])_|_(?![^\W_])|\](?=\()|:(?=[A-Za-z/])", re.IGNORECASE)
_OPENING = re.compile(r"^(\s*)(?:([-+](?=[\s-]|$)|\[(?=[^\]]*\]:))|(\d+)([.)])(?=\s|$))")


# Streamlit's Markdown also turns bare addresses into links in the text it has already unescaped ("http://", "www.",
# "name@host.domain"), so escapes cannot stop those: a zero-width space splits each one where it is recognised.
_BARE_LINK = re.compile(r"(?<=http)(?=s?://)|(?<=www)(?=\.)|(?<=@)(?=[\w-]+\.)", re.IGNORECASE)
ZERO_WIDTH_SPACE = "\u200b"


def md(text) -> str:
    """`text` (anything str() takes) for st.markdown, st.caption, st.error and the like, widget and expander labels
    included: shown literally, on one line, without control or bidi characters."""
    escaped = _MARKDOWN.sub(lambda m: "\\" + m.group(0), _BARE_LINK.sub(ZERO_WIDTH_SPACE, clean(text)))
    return _OPENING.sub(lambda m: m.group(1) + ("\\" + m.group(2) if m.group(2) else m.group(3) + "\\" + m.group(4)), escaped, count=1)
