"""Presets too long for a browser's address, kept in the run store under a short id (`?p=`): the address of every page
carries the preset on screen, and the run store is what every replica behind a proxy shares, so such an address opens
on each of them."""

from __future__ import annotations

import functools
import hashlib
import re
import time

from dlviz import limits as _limits
from dlviz import paths as _paths
from dlviz.errors import UserError
from dlviz.preset.schema import Experiment, load_json, validate
from dlviz.preset.share import ADDRESS_ROOM, ID_PARAM, PARAM, SAFE_LINK_CHARS, canonical_json, encode
from dlviz.training.database import STORE_ERRORS, database_url, unwritable
from dlviz.training.store import RunStore

_ID = re.compile(r"[0-9a-f]{20}")
MISSING = "this address names a saved experiment this server does not have; ask for the preset file"


@functools.lru_cache(maxsize=4)
def _store_at(url: str) -> RunStore:
    return RunStore(url)


def _store():
    """The run store, where presets for short addresses are kept: DLVIZ_DATABASE_URL's database, shared by every
    replica, so that an address made on one opens on all; else the SQLite file in the data directory."""
    return _store_at(database_url().render_as_string(hide_password=False))


def _failed(err: BaseException) -> UserError:
    return UserError("share.saved", unwritable(err, "The preset could not be kept or read for its short address"))


def keep(exp: Experiment) -> str:
    """Keep a preset in the run store and return its id: the hash of its canonical JSON, so one preset is kept once.
    Beyond DLVIZ_KEPT_PRESETS_BYTES in all, the least recently used go."""
    text = canonical_json(exp)
    data = text.encode("utf-8")
    if len(data) > _limits.current().max_document_bytes:
        raise UserError("preset", f"the preset is more than {_limits.current().max_document_bytes:,} bytes (DLVIZ_MAX_DOCUMENT_BYTES)")
    pid = hashlib.sha256(data).hexdigest()[:20]
    try:
        _store().keep_preset(pid, text, _limits.current().kept_presets_bytes, time.time())
    except STORE_ERRORS as err:
        raise _failed(err) from None
    return pid


def kept(pid: str) -> Experiment:
    """A preset kept by `keep`, validated like any other; an id the store does not hold gets one sentence. A preset an
    older dlviz kept as a file in the data directory (presets/ID.json) moves into the store when its address is opened."""
    lim = _limits.current()
    if not (isinstance(pid, str) and _ID.fullmatch(pid)):
        raise UserError("share.saved", MISSING)
    try:
        text = _store().kept_preset(pid, time.time())
    except STORE_ERRORS as err:
        raise _failed(err) from None
    legacy = _paths.data_dir() / "presets" / f"{pid}.json"  # as an older dlviz kept it
    if text is None and not legacy.is_file():
        raise UserError("share.saved", MISSING)
    size = len(text.encode("utf-8")) if text is not None else legacy.stat().st_size
    if size > lim.max_document_bytes:
        raise UserError("share.saved", f"the saved experiment is more than {lim.max_document_bytes:,} bytes (DLVIZ_MAX_DOCUMENT_BYTES)")
    exp = validate(load_json(text if text is not None else legacy.read_text(encoding="utf-8")))
    if text is None:
        keep(exp)
        legacy.unlink(missing_ok=True)
    return exp


def address_state(exp: Experiment) -> tuple[str, str]:
    """The query parameter and value that carry a preset in the browser's address: the share token when it makes a
    safe link, else the id of a copy kept in the run store."""
    token = encode(exp)
    if len(token) <= SAFE_LINK_CHARS - ADDRESS_ROOM:
        return PARAM, token
    return ID_PARAM, keep(exp)
