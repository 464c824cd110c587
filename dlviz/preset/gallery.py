"""The built-in presets (dlviz/preset/presets/*.json) and the one function that turns any preset reference into a preset."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources

from dlviz import limits as _limits
from dlviz.errors import UserError
from dlviz.preset.schema import Experiment, load_json, parse_text, validate

DEFAULT = "spiral-tanh"  # the preset the app opens on: small, trains in seconds


@lru_cache(maxsize=None)
def _texts() -> dict[str, str]:
    folder = resources.files("dlviz.preset") / "presets"
    return {f.name[:-5]: f.read_text("utf-8") for f in sorted(folder.iterdir(), key=lambda f: f.name) if f.name.endswith(".json")}


def names() -> list[str]:
    return list(_texts())


def load(name: str) -> Experiment:
    """A built-in preset by its id (the file name without .json)."""
    if name not in _texts():
        from dlviz.errors import did_you_mean

        raise UserError("preset", f"no built-in preset named '{name}'{did_you_mean(name, names())}; `python -m dlviz list` shows them")
    return parse_text(_texts()[name])


def raw(name: str) -> dict:
    """A built-in preset as the plain dict in its file."""
    return json.loads(_texts()[name])


def listing() -> list[dict]:
    out = []
    for name in names():
        doc = raw(name)
        out.append({"name": name, "title": doc.get("name", name), "description": (doc.get("description") or "").split("\n")[0]})
    return out


def resolve(ref: str, stdin=None) -> Experiment:
    """A preset from a path, a built-in name, a share link, or '-' (stdin)."""
    if ref == "-":
        data = (stdin.buffer if hasattr(stdin, "buffer") else stdin).read(_limits.current().max_document_bytes + 1)
        return parse_text(data)
    if os.path.isfile(ref):
        size = os.path.getsize(ref)
        lim = _limits.current().max_document_bytes
        if size > lim:
            raise UserError("preset", f"{ref} is {size:,} bytes, over the limit of {lim:,} for a preset (DLVIZ_MAX_DOCUMENT_BYTES)")
        with open(ref, "rb") as f:
            return parse_text(f.read())
    if ref in _texts():
        return load(ref)
    if ref.startswith(("http://", "https://", "preset=")) or "?preset=" in ref or (len(ref) > 40 and "/" not in ref and "." not in ref):
        from dlviz.preset.share import decode_link

        return decode_link(ref)
    if os.path.exists(ref):
        raise UserError("preset", f"{ref} is not a file")
    from dlviz.errors import did_you_mean

    raise UserError(
        "preset", f"no preset file, built-in preset or share link '{ref}'{did_you_mean(ref, names())}; `python -m dlviz list` shows the built-in presets"
    )


__all__ = ["DEFAULT", "names", "load", "raw", "listing", "resolve", "validate", "load_json"]
