"""The session's one preset dict, its revision counter, the shared sidebar and the cached preview of the preset."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import streamlit as st

from dlviz.errors import UserError
from dlviz.model import build
from dlviz.preset import edit, gallery, share
from dlviz.preset import schema as spec
from dlviz.training import addresses

from .text import md

PRESET = "preset"
REV = "rev"  # bumped by every structural edit; widget keys carry it, so no widget keeps a moved layer's value
NOTICE = "notice"  # one sentence for the next run to show: a damaged share link or a failed edit
UPLOAD_ERROR = "upload_error"
GALLERY_SEEN = "gallery_seen"  # the preset's JSON when the Gallery box last followed it
INPUT_ERRORS = "input_errors"  # widget key -> why its text could not be read; the preset keeps its old value
UNDO, REDO = "undo", "redo"  # presets an edit replaced, and presets Undo replaced, newest last
HISTORY = 50  # edits a session can undo
ADDRESS = "address"  # (preset JSON, query parameter, value) last put in the browser's address


def start() -> None:
    """Set up the session on its first run: the preset from a ?preset= share link or a ?p= id kept on this server,
    else the default preset."""
    if PRESET in st.session_state:
        return
    st.session_state[REV] = 0
    doc = gallery.raw(gallery.DEFAULT)
    token, pid = st.query_params.get(share.PARAM), st.query_params.get(share.ID_PARAM)
    if token or pid:
        try:
            doc = (share.decode(token) if token else addresses.kept(pid)).to_dict()
        except UserError as err:
            st.session_state[NOTICE] = str(err)
    st.session_state[PRESET] = doc


def keep_in_address() -> None:
    """Put the current preset in the browser's address, so that a reload or a bookmark opens what is on screen.

    Streamlit drops the query string when the page changes, so this runs on every rerun; the address is written only
    when it differs. A preset that does not validate leaves the last valid one there."""
    text = json.dumps(preset(), sort_keys=True)
    known = st.session_state.get(ADDRESS)
    if known is None or known[0] != text:
        try:
            known = (text, *addresses.address_state(spec.validate(preset())))
        except UserError:
            known = (text, *(known[1:] if known else (None, None)))
        st.session_state[ADDRESS] = known
    _, param, value = known
    if param is None:
        return
    stale = [p for p in (share.PARAM, share.ID_PARAM) if p != param and p in st.query_params]
    if st.query_params.get(param) != value or stale:
        for p in stale:
            del st.query_params[p]
        st.query_params[param] = value


def preset() -> dict:
    return st.session_state[PRESET]


def rev() -> int:
    return st.session_state[REV]


def set_preset(doc: dict, structural: bool = True) -> None:
    """Make `doc` the session's preset; the one it replaces can be brought back by Undo."""
    old = st.session_state.get(PRESET)
    if old is not None and doc != old:
        _push(UNDO, old)
        st.session_state[REDO] = []
    st.session_state[PRESET] = doc
    if structural:
        st.session_state[REV] += 1
        st.session_state.pop(INPUT_ERRORS, None)


def _push(stack: str, doc: dict) -> None:
    items = st.session_state.setdefault(stack, [])
    items.append(doc)
    del items[:-HISTORY]


def _step(source: str, target: str) -> None:
    items = st.session_state.get(source)
    if not items:
        return
    _push(target, preset())
    st.session_state[PRESET] = items.pop()
    st.session_state[REV] += 1  # every widget shows the restored values
    st.session_state.pop(INPUT_ERRORS, None)


def undo() -> None:
    _step(UNDO, REDO)


def redo() -> None:
    _step(REDO, UNDO)


def apply(fn: Callable[..., dict], *args: Any, structural: bool = True) -> None:
    """Run one edit.* operation on the preset (from a widget callback); a UserError becomes the next notice."""
    try:
        set_preset(fn(preset(), *args), structural)
    except UserError as err:
        report(err)


def report(err: UserError) -> None:
    """Leave a problem with the current preset for the next run to show, its layers named as the Build page shows them."""
    st.session_state[NOTICE] = edit.name_layers(preset(), str(err))


def show_notice() -> None:
    """Show, once, the sentence a callback or the share link left."""
    text = st.session_state.pop(NOTICE, None)
    if text:
        st.error(md(text))


@st.cache_resource(max_entries=64, show_spinner=False)
def _preview(text: str) -> edit.Preview:
    return build.preview(json.loads(text))


def preview(doc: dict) -> edit.Preview:
    """build.preview, cached on the preset's JSON text so that a rerun without an edit costs nothing.

    The result is shared between sessions and must not be changed."""
    return _preview(json.dumps(doc, sort_keys=True))


@st.cache_resource(max_entries=32, show_spinner=False)
def _architecture(text: str):
    from dlviz.figures import build as figures

    shown = _preview(text)
    return figures.architecture_svg(shown.summary, shown.model)


def architecture(doc: dict):
    """The Build page's architecture graph of a preset, drawn once per preset and shared between sessions (read-only).
    Here rather than on the page, so that the server's start-up (dlviz_app.startup) fills the same cache."""
    return _architecture(json.dumps(doc, sort_keys=True))


# ---------------------------------------------------------------- sidebar


def _load_gallery() -> None:
    if st.session_state.get("gallery_pick") is not None:
        set_preset(gallery.raw(st.session_state["gallery_pick"]))


def _load_upload() -> None:
    file = st.session_state.get("upload")
    st.session_state.pop(UPLOAD_ERROR, None)
    if file is None:
        return
    try:
        doc = spec.parse_text(file.getvalue()).to_dict()
    except UserError as err:
        st.session_state[UPLOAD_ERROR] = str(err)
        return
    set_preset(doc)


def _file_name(doc: dict) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(doc.get("name") or "preset").lower()).strip("-")
    return (slug or "preset") + ".json"


def hidden(kind: str) -> list[str]:
    """The pages or controls the preset's classroom section hides ("pages" or "controls")."""
    classroom = preset().get("classroom") or {}
    names = classroom.get(f"hide_{kind}") or []
    return [n for n in names if isinstance(n, str)]


def _page_url() -> str:
    """This page's address without its query string, for share links."""
    try:
        url = st.context.url
    except Exception:  # no browser request (AppTest)
        url = None
    return url.split("?", 1)[0] if isinstance(url, str) and url else share.DEFAULT_BASE_URL


SHARE_OPEN = "share_open"  # the share popover's key: whether it is open


def _share_box(doc: dict) -> None:
    try:
        exp = spec.validate(doc)
        link = share.share_link(exp, _page_url())
    except UserError as err:
        st.caption(f"Fix the preset first: {md(err)}")
        return
    if len(link) > share.SAFE_LINK_CHARS:
        st.warning(
            f"This link is {len(link):,} characters long; some browsers, chat tools and proxies cut links over "
            f"{share.SAFE_LINK_CHARS:,}. Share the preset file instead (Download preset JSON)."
        )
        try:
            param, pid = addresses.address_state(exp)
        except UserError as err:  # a run store that can't be written: the long link still works
            st.caption(md(err))
        else:
            if param == share.ID_PARAM:
                st.caption("This short address opens it on this server, and on every server that shares its run store:")
                st.code(f"{_page_url()}?{share.ID_PARAM}={pid}", language=None, wrap_lines=True)
    st.caption("Anyone who opens this link gets exactly this experiment.")
    st.code(link, language=None, wrap_lines=True)


def sidebar() -> None:
    """The current preset's name, the gallery, opening a preset file, downloading and sharing the current one."""
    doc = preset()
    titles = {item["name"]: item["title"] for item in gallery.listing()}
    with st.sidebar:
        st.subheader(md(doc.get("name") or "Untitled"), anchor=False)
        if doc.get("description"):
            st.caption(md(doc["description"]))
        with st.container(horizontal=True):
            st.button(
                "Undo",
                icon=":material/undo:",
                on_click=undo,
                disabled=not st.session_state.get(UNDO),
                help=f"Bring back the preset as it was before the last change (up to {HISTORY} changes)",
            )
            st.button("Redo", icon=":material/redo:", on_click=redo, disabled=not st.session_state.get(REDO), help="Make again the change Undo took back")
        if "gallery" not in hidden("controls"):
            text = json.dumps(doc, sort_keys=True)
            if st.session_state.get(GALLERY_SEEN) != text:
                # the preset changed (Load, a share link, a file, New empty model, an edit): the box names its lesson, or
                # "—" for a preset that is none of them; between changes it keeps what the person picks
                st.session_state[GALLERY_SEEN] = text
                st.session_state["gallery_pick"] = next((n for n, t in titles.items() if t == doc.get("name")), None)
            st.selectbox("Gallery", [None, *titles], format_func=lambda n: "—" if n is None else titles[n], key="gallery_pick")
            st.button("Load", on_click=_load_gallery, icon=":material/download_for_offline:", disabled=st.session_state.get("gallery_pick") is None)
            st.file_uploader("Open a preset file", type=["json"], key="upload", on_change=_load_upload)
            if st.session_state.get(UPLOAD_ERROR):
                st.error(md(st.session_state[UPLOAD_ERROR]))
        # filled only while open: its code box would have every page load the code highlighter's scripts up front
        with st.popover("Copy share link", icon=":material/link:", key=SHARE_OPEN, on_change="rerun") as box:
            if box.open:
                _share_box(doc)
        st.download_button(
            "Download preset JSON",
            json.dumps(doc, indent=1, ensure_ascii=False),
            file_name=_file_name(doc),
            mime="application/json",
            on_click="ignore",
            icon=":material/file_download:",
        )
