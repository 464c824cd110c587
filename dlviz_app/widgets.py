"""One Streamlit widget per registry argument (dlviz.args.Arg), shared by every page that edits arguments."""

from __future__ import annotations

import math
from typing import Any, Callable

import streamlit as st

from dlviz.errors import UserError
from dlviz.preset import edit
from dlviz.preset.args import Arg

from .session import INPUT_ERRORS
from .text import md

TEXT_KINDS = ("size", "padding", "ints", "floats", "number_or_list")
JS_SAFE_INT = 2**53 - 1  # the browser holds a number_input's value as a JavaScript number; Streamlit refuses larger


def _fits_number_input(arg: Arg, value: Any) -> bool:
    """Whether a number_input can hold `value`; a preset may carry anything (10**20, "abc", [3, 4]) for the schema to
    report, and such a value is shown in a text box instead."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if arg.kind == "int":
        return isinstance(value, int) and abs(value) <= JS_SAFE_INT
    return abs(value) <= JS_SAFE_INT if isinstance(value, int) else math.isfinite(value)


def _bounds(arg: Arg, value: Any) -> tuple[Any, Any]:
    """number_input bounds from the Arg, dropped when the current value lies outside them (the schema reports it)."""
    lo = arg.ge if arg.ge is not None else arg.gt
    hi = arg.le if arg.le is not None else arg.lt
    if arg.kind == "int":
        lo = None if lo is None else int(math.floor(lo)) + (1 if arg.ge is None else 0)
        hi = None if hi is None else int(math.ceil(hi)) - (1 if arg.le is None else 0)
        lo = None if lo is None or lo < -JS_SAFE_INT else lo
        hi = None if hi is None or hi > JS_SAFE_INT else hi
    else:
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
    if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        return None, None
    return lo, hi


def _step(arg: Arg) -> float:
    if arg.step is not None:
        return arg.step
    ref = arg.default if isinstance(arg.default, (int, float)) and arg.default else (arg.le or arg.lt or 1.0)
    return 10 ** math.floor(math.log10(abs(ref))) / 10


def _slider_ends(arg: Arg, lo: Any, hi: Any, value: Any) -> tuple[float, float] | None:
    """A float slider's ends, for an Arg drawn as a slider whose value lies in its range; else None (a number box)."""
    if arg.widget != "slider" or arg.kind != "float" or None in (lo, hi, value):
        return None
    if arg.le is None:
        hi -= _step(arg)  # a slider reaches its top, which `lt` excludes
    return (lo, hi) if lo <= value <= hi else None


def _text_help(arg: Arg) -> str:
    if arg.kind == "padding":
        example = "a number, a list like 1, 2, or same / valid"
    elif arg.kind in ("ints", "floats"):
        example = "a list like 1, 2"
    elif arg.kind in ("int", "float"):
        example = "a number"
    else:
        example = "a number or a list like 3, 5"
    empty = "; leave empty for the default" if not arg.required else ""
    return " ".join(p for p in (arg.help, f"Write {example}{empty}.") if p)


def arg_input(name: str, arg: Arg, value: Any, key: str, on_value: Callable[[Any], None]) -> None:
    """Draw the widget for one argument, labelled with the Arg's label or else `name`. When the user changes it,
    `on_value(new value)` runs as a callback.

    Text kinds (sizes and lists) are parsed and checked first; a bad entry is shown under the box and
    `on_value` is not called. An object is one widget for each of its fields, in columns."""
    label = arg.label or name
    if arg.kind == "object":
        _object_input(label, arg, value, key, on_value)
        return
    errors = st.session_state.setdefault(INPUT_ERRORS, {})
    as_text = arg.kind in TEXT_KINDS or (arg.kind in ("int", "float") and not _fits_number_input(arg, value))

    def changed() -> None:
        raw = st.session_state[key]
        if as_text:
            try:
                raw = edit.parse_value(arg, raw, name)
            except UserError as err:
                errors[key] = err.message
                return
        errors.pop(key, None)
        on_value(raw)

    common = dict(key=key, on_change=changed, help=arg.help or None)
    if as_text:
        common["help"] = _text_help(arg)
        st.text_input(label, value=edit.format_value(arg, value), placeholder="auto" if value is None else None, **common)
    elif arg.kind in ("int", "float"):
        lo, hi = _bounds(arg, value)
        ends = _slider_ends(arg, lo, hi, value)
        if ends:
            st.slider(label, *ends, float(value), _step(arg), **common)
        elif arg.kind == "int":
            st.number_input(label, min_value=lo, max_value=hi, value=value, step=int(arg.step or 1), **common)
        else:
            st.number_input(label, min_value=lo, max_value=hi, value=None if value is None else float(value), step=_step(arg), format="%g", **common)
    elif arg.kind == "bool" and arg.default is None:
        options = [None, True, False]
        st.selectbox(
            label, options, index=options.index(value) if value in options else None, format_func=lambda v: "auto" if v is None else str(v).lower(), **common
        )
    elif arg.kind == "bool":
        st.checkbox(label, value=bool(value), **common)
    elif arg.kind == "choice":
        choices = list(arg.choices)
        st.selectbox(label, choices, index=choices.index(value) if value in choices else 0, **common)
    elif arg.kind == "choices":
        chosen = [v for v in value if v in arg.choices] if isinstance(value, list) else []
        common["on_change"] = lambda: on_value(st.session_state[key] or None)  # none chosen: the default
        st.multiselect(label, list(arg.choices), default=chosen, **common)
    elif arg.kind == "text":
        common["on_change"] = lambda: on_value(st.session_state[key] or None)
        st.text_input(label, value=value or "", **common)
    elif arg.kind == "points":  # clicked onto the plane on the Playground; here they can only be counted or removed
        n = len(value or [])
        st.caption(f"{label}: {n:,}" + ("" if n else " (click points onto the plane on the Playground)"), help=arg.help or None)
        if n:
            st.button("Remove the added points", key=key, on_click=lambda: on_value([]))
    else:
        raise AssertionError(arg.kind)
    if key in errors:
        st.error(md(errors[key]))


def _object_input(label: str, arg: Arg, value: Any, key: str, on_value: Callable[[Any], None]) -> None:
    """An object Arg: a checkbox that turns it on or off (widget "toggle"), or a caption; then its fields in columns.
    A field at its default is left out of the object, and an object with nothing left is no object at all, unless it is
    a toggle that is on."""
    toggle = arg.widget == "toggle"
    given = dict(value) if isinstance(value, dict) else {}
    if toggle:
        st.checkbox(label, value is not None, key=key, help=arg.help or None, on_change=lambda: on_value({} if st.session_state[key] else None))
        if value is None:
            return
    else:
        st.caption(label, help=arg.help or None)

    def put(field: str, v: Any) -> None:
        new = {**given, field: v}
        new = {k: x for k, x in new.items() if x is not None and x != arg.fields[k].default}
        on_value(new if new or toggle else None)

    for col, (field, sub) in zip(st.columns(len(arg.fields)), arg.fields.items()):
        with col:
            arg_input(field, sub, given.get(field, sub.default), f"{key}-{field}", lambda v, field=field: put(field, v))
