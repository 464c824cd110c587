"""Share links: the whole preset as canonical JSON, zlib-compressed and URL-safe base64 in one query parameter."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from urllib.parse import parse_qs, urlencode, urlparse

from dlviz import limits as _limits
from dlviz.errors import UserError
from dlviz.preset.schema import Experiment, load_json, validate

PARAM = "preset"
DEFAULT_BASE_URL = "http://localhost:8501/"
SAFE_LINK_CHARS = 2000  # longer links are cut by some browsers, chat tools and proxies
ID_PARAM = "p"  # a preset too long for an address is kept in the run store under this short id (dlviz.training.addresses)
# the address around the token (scheme, host, page, parameter name) gets this much of a safe link's length
ADDRESS_ROOM = 200


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
