"""Share links: the whole preset as canonical JSON, zlib-compressed and URL-safe base64 in one query parameter."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import time
import zlib
from urllib.parse import parse_qs, urlencode, urlparse

from dlviz import limits as _limits
from dlviz import paths as _paths
from dlviz.errors import UserError
from dlviz.preset.schema import Experiment, load_json, validate

PARAM = "preset"
DEFAULT_BASE_URL = "http://localhost:8501/"
SAFE_LINK_CHARS = 2000  # longer links are cut by some browsers, chat tools and proxies
ID_PARAM = "p"  # a preset too long for an address is kept in the run store under this short id
_ID = re.compile(r"[0-9a-f]{20}")
MISSING = "this address names a saved experiment this server does not have; ask for the preset file"
# the address around the token (scheme, host, page, parameter name) gets this much of a safe link's length
_ADDRESS_ROOM = 200


def canonical_json(exp: Experiment) -> str:
    """The preset as canonical JSON: defaults dropped, keys sorted, no spaces."""
    return json.dumps(exp.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode(exp: Experiment) -> str:
    raw = zlib.compress(canonical_json(exp).encode("utf-8"), 9)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def share_link(exp: Experiment, base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{base_url}{'&' if '?' in base_url else '?'}{urlencode({PARAM: encode(exp)})}"


def token_from_link(link: str) -> str:
    """The encoded preset from a full link, a query string or the bare token."""
    link = link.strip()
    if "?" in link or link.startswith(("http://", "https://")):
        values = parse_qs(urlparse(link).query).get(PARAM)
        if not values:
            raise UserError("share.link", f"the link has no '{PARAM}=' parameter; copy the whole share link")
        return values[0]
    return link[len(PARAM) + 1 :] if link.startswith(PARAM + "=") else link


def decode(token: str) -> Experiment:
    """A share token back to a validated preset; a damaged token gets one clear sentence."""
    lim = _limits.current()
    if not isinstance(token, str) or not token or len(token) > 2 * lim.max_document_bytes:
        raise UserError("share.link", "the share link is empty or far too long; ask for the preset file instead")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        d = zlib.decompressobj()
        text = d.decompress(raw, lim.max_document_bytes + 1)
        if len(text) > lim.max_document_bytes or d.unconsumed_tail:
            raise UserError("share.link", f"the share link unpacks to more than {lim.max_document_bytes:,} bytes (DLVIZ_MAX_DOCUMENT_BYTES)")
        if not d.eof:
            raise zlib.error("truncated")
    except UserError:
        raise
    except (binascii.Error, zlib.error, ValueError):
        raise UserError("share.link", "the share link is damaged or cut short; copy it again in full") from None
    return validate(load_json(text))


def decode_link(link: str) -> Experiment:
    return decode(token_from_link(link))


@functools.lru_cache(maxsize=4)
def _store_at(url: str):
    from dlviz.training.store import RunStore  # the trainer and torch come with it: only a long preset needs them

    return RunStore(url)


def _store():
    """The run store, where presets for short addresses are kept: DLVIZ_DATABASE_URL's database, shared by every
    replica, so that an address made on one opens on all; else the SQLite file in the data directory."""
    from dlviz.training.database import database_url

    return _store_at(database_url().render_as_string(hide_password=False))


def _failed(err: BaseException) -> UserError:
    from dlviz.training.database import unwritable

    return UserError("share.saved", unwritable(err, "The preset could not be kept or read for its short address"))


def keep(exp: Experiment) -> str:
    """Keep a preset in the run store and return its id: the hash of its canonical JSON, so one preset is kept once.
    Beyond DLVIZ_KEPT_PRESETS_BYTES in all, the least recently used go."""
    from dlviz.training.database import STORE_ERRORS

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
    from dlviz.training.database import STORE_ERRORS

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
    if len(token) <= SAFE_LINK_CHARS - _ADDRESS_ROOM:
        return PARAM, token
    return ID_PARAM, keep(exp)
