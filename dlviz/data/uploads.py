"""Uploaded tables on this server: stored by content in the uploads folder, counted against each session's quota, aged
out, and found again by bare name only there (a local path is the CLI's, which opts in)."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from dlviz import limits as _limits
from dlviz import paths
from dlviz.errors import UserError, clip

SUFFIXES = (".csv", ".tsv", ".txt")
# a name this module wrote, or one a person could have given it: no folder, no leading dot, a table's suffix
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(?:csv|tsv|txt)", re.IGNORECASE)
_OWNERS = ".owners"  # one folder per session, holding an empty marker per upload it made (hidden: never a valid name)

# Whether data.source may also be a path on this machine. Only the CLI turns it on, for its own run: in the app, a
# preset is anyone's, and a path in it would make the server read its own files. A context variable, so the app's
# script threads (which start with a fresh context) never see a CLI call's setting made in the same process.
_LOCAL_PATHS: contextvars.ContextVar[bool] = contextvars.ContextVar("dlviz_local_paths", default=False)
_WRITE_LOCK = threading.Lock()  # the quota check and the write it allows happen as one step


@contextlib.contextmanager
def local_paths() -> Iterator[None]:
    """Within this block (the CLI's commands), data.source may name a CSV file anywhere on this machine."""
    token = _LOCAL_PATHS.set(True)
    try:
        yield
    finally:
        _LOCAL_PATHS.reset(token)


def _source_error(message: str) -> UserError:
    return UserError("data.source", message)


def _not_here(source: str) -> UserError:
    # one sentence whatever the reason (not a bare name, missing, a link leading out), so that it tells nobody
    # whether a file exists anywhere on the server
    return _source_error(f"'{clip(source)}' is not a table uploaded to this server; upload the CSV on the Train page")


def resolve(source: Optional[str]) -> Path:
    """The file `data.source` names: an upload of this server, by its bare name, and nothing outside the uploads folder
    (links leading out included). Under `local_paths()`, also a CSV file given by its path on this machine."""
    if not source:
        raise _source_error("no CSV file given: upload one on the Train page")
    if _LOCAL_PATHS.get():
        given = Path(source).expanduser()
        if given.suffix.lower() not in SUFFIXES:
            raise _source_error(f"'{clip(source)}' is not a CSV file; give a path ending in {', '.join(SUFFIXES)}")
        if given.is_file():
            return given.resolve()
        if not _NAME.fullmatch(source):
            # the person's own path on their own machine, at most the schema's 200 characters: quoted whole, so
            # that they can see which file is missing
            raise _source_error(f"no file '{source}' here or among the uploads")
    if not _NAME.fullmatch(source):
        raise _not_here(source)
    folder = paths.uploads_dir().resolve()
    path = (folder / source).resolve()
    if path.parent != folder or not path.is_file():
        raise _not_here(source)
    return path


def read(source: Optional[str]) -> bytes:
    """The bytes of the table `data.source` names (see `resolve`), within the upload size limit."""
    path = resolve(source)
    check_size(path.stat().st_size)
    return path.read_bytes()


def check_size(size: int) -> None:
    limit = _limits.current().max_upload_bytes
    if size > limit:
        raise _source_error(f"the file is {size / 1e6:.1f} MB, over the upload limit of {limit / 1e6:g} MB (DLVIZ_MAX_UPLOAD_BYTES)")


def name_for(data: bytes, filename: str) -> str:
    """The name an upload is kept under: its own name made safe and short, and a hash of its content."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", str(filename).rsplit(".", 1)[0])[:40].strip("-") or "table"
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}.csv"


def shown_name(source: str) -> str:
    """The file name a person uploaded, from the name it is kept under (name_for adds the content's hash)."""
    return re.sub(r"-[0-9a-f]{12}(\.csv)$", r"\1", Path(source).name)


def _owner_dir(owner: str) -> Path:
    # the session id is hashed: the folder name then says nothing about the cookie it came from
    return paths.uploads_dir() / _OWNERS / hashlib.sha256(owner.encode()).hexdigest()[:32]


def used_bytes(owner: str) -> int:
    """Bytes of the uploads this session made that are still kept."""
    folder, total = _owner_dir(owner), 0
    if folder.is_dir():
        for marker in folder.iterdir():
            with contextlib.suppress(OSError):
                total += (paths.uploads_dir() / marker.name).stat().st_size
    return total


def store(data: bytes, filename: str, owner: str, now: Optional[float] = None) -> str:
    """Keep an upload (already checked by the caller) for session `owner` and return its name for data.source.

    Old uploads are swept first; a new file must fit the session's quota (the same content again costs nothing)."""
    now = time.time() if now is None else now
    check_size(len(data))
    sweep(now)
    name = name_for(data, filename)
    path = paths.uploads_dir() / name
    marker = _owner_dir(owner) / name
    with _WRITE_LOCK:
        if not marker.exists():
            quota = _limits.current().upload_quota_bytes
            used = used_bytes(owner)
            if used + len(data) > quota:
                raise _source_error(
                    f"this upload would bring your tables on this server to {(used + len(data)) / 1e6:.1f} MB, "
                    f"over the limit of {quota / 1e6:g} MB a session (DLVIZ_UPLOAD_QUOTA_BYTES); "
                    "reuse a table already uploaded or wait for old ones to expire"
                )
        if not path.exists():
            tmp = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.part")
            tmp.write_bytes(data)
            tmp.replace(path)  # a reader never sees half a file
        os.utime(path, (now, now))  # an upload in use again starts a new age
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return name


def sweep(now: Optional[float] = None) -> int:
    """Delete uploads older than DLVIZ_UPLOAD_MAX_AGE_S (by their last write) and the markers of deleted ones; returns
    how many uploads went. Runs when an upload is written and when the server starts."""
    now = time.time() if now is None else now
    cutoff = now - _limits.current().upload_max_age_s
    folder = paths.uploads_dir()
    removed = 0
    with _WRITE_LOCK:
        for path in folder.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += not path.name.startswith(".")
        owners = folder / _OWNERS
        if owners.is_dir():
            for session in owners.iterdir():
                with contextlib.suppress(OSError):
                    for marker in session.iterdir():
                        if not (folder / marker.name).exists():
                            marker.unlink()
                    if not any(session.iterdir()):
                        session.rmdir()
    return removed


def upload_name(data: bytes, filename: str, owner: str, now: Optional[float] = None) -> str:
    """Check an uploaded CSV and keep it for session `owner` (see uploads.store); returns the name for data.source.
    A table that cannot be read is refused before anything is written, so rejected files take no space."""
    from dlviz.data.datasets import read_csv_table  # datasets reads uploads: imported when called

    check_size(len(data))
    read_csv_table(data)
    return store(data, filename, owner, now)
