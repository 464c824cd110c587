"""The run store's database: its tables in SQLAlchemy Core (one schema for SQLite and PostgreSQL), the engine for a URL
or a path, migrations that replicas starting at once can run together, and one sentence for a database that fails."""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Optional

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from dlviz.errors import UserError
from dlviz.paths import data_dir

URL_VARIABLE = "DLVIZ_DATABASE_URL"
# what a store that cannot be opened, read or written raises: the database's errors as SQLAlchemy wraps them, SQLite's
# own (raised by a connection's set-up), and the file system's around an SQLite file
DATABASE_ERRORS = (SQLAlchemyError, sqlite3.Error)
STORE_ERRORS = (*DATABASE_ERRORS, OSError)
# 1: the tables as SQLite files held them before PostgreSQL; 2: runs carry a heartbeat and an owner; 3: and when another
# server's page last showed them, and what it asked; 4: presets too long for an address are kept here, for every replica
SCHEMA_VERSION = 4
MIGRATION_LOCK = 0x646C76697A  # the PostgreSQL advisory lock a migration holds ("dlviz" in ASCII)

metadata = MetaData()


def _key(name: str) -> Column:
    return Column(name, Integer, primary_key=True, autoincrement=False)


runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("session", Text),
    Column("name", Text),
    Column("preset", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("created", Float),
    Column("updated", Float),
    Column("epochs_done", Integer, server_default="0"),
    Column("steps_done", Integer, server_default="0"),
    Column("result", Text),
    Column("param_names", Text),
    Column("task", Text),
    Column("preset_hash", Text),
    Column("parent", Text),
    Column("parent_step", Integer),
    Column("heartbeat", Float),  # time.time() when the server training it last said it was alive
    Column("owner", Text),  # the server that started it
    Column("seen", Float),  # time.time() when a page of another server last showed it (its browser moved there)
    Column("request", Text),  # "stop": asked by a page of another server, for the server training it to carry out
)
epochs = Table("epochs", metadata, Column("run_id", Text, primary_key=True), _key("epoch"), Column("record", Text))
steps = Table(
    "steps",
    metadata,
    Column("run_id", Text, primary_key=True),
    _key("step"),
    Column("epoch", Integer),
    Column("loss", Float),
    Column("metric", Float),
    Column("lr", Float),
    Column("grad_norm", LargeBinary),
    Column("update_ratio", LargeBinary),
)
telemetry = Table("telemetry", metadata, Column("run_id", Text, primary_key=True), _key("step"), Column("snapshot", Text))
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("run_id", Text, primary_key=True),
    _key("step"),
    Column("epoch", Integer),
    Column("label", Text),
    Column("state", LargeBinary),
    Column("created", Float),
)
trajectory = Table("trajectory", metadata, Column("run_id", Text, primary_key=True), _key("step"), Column("params", LargeBinary))
# presets too long for a browser's address, which carries their id (?p=) instead: the hash of their canonical JSON
kept_presets = Table(
    "kept_presets",
    metadata,
    Column("id", Text, primary_key=True),
    Column("preset", Text, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("used", Float, nullable=False),  # time.time() when it was last kept or opened: the least recently used go first
)
schema_version = Table("dlviz_schema", metadata, _key("id"), Column("version", Integer, nullable=False))


def database_url(where: Optional[Path | str | URL] = None) -> URL:
    """The run store's URL: `where` (a URL, or the path of an SQLite file), else DLVIZ_DATABASE_URL, else the SQLite file
    runs.sqlite in the data directory. A PostgreSQL URL without a driver (postgresql://, postgres://) uses psycopg."""
    named = where is None and os.environ.get(URL_VARIABLE)
    if where is None:
        where = named or data_dir() / "runs.sqlite"
    if isinstance(where, Path) or (isinstance(where, str) and "://" not in where and not named):
        return URL.create("sqlite", database=str(Path(where).absolute()))
    try:
        url = make_url(where)
    except ArgumentError:
        raise UserError("", f"{URL_VARIABLE} is not a database URL; write it as postgresql://user:password@host:port/database") from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg", "psycopg2"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return url
    raise UserError("", f"{URL_VARIABLE} names {url.drivername}; dlviz keeps its runs in PostgreSQL through psycopg (postgresql://…) or in SQLite")


def where_it_is(url: URL) -> str:
    """The URL as a person may read it: the password hidden, and nothing of an SQLite file's path."""
    return "an SQLite file" if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)


def open_engine(url: URL) -> Engine:
    """An engine on the store's database, its tables made or brought up to date."""
    if url.get_backend_name() == "sqlite":
        if url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        # pre_ping: a connection the database dropped (a restart) is replaced, not handed out to fail
        engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _sqlite_connect(dbapi_connection, record) -> None:
    # SQLAlchemy's recipe for SQLite: the driver's own transaction handling off, a BEGIN of ours on each transaction
    # (_sqlite_begin), so that a transaction is one (DDL included)
    dbapi_connection.isolation_level = None
    # WAL: readers never wait for the worker writing a run. A new file's first connections race to switch it, and
    # the switch does not wait for a lock as statements do: the losers try again.
    for wait in itertools.chain(itertools.repeat(0.01, 100), itertools.repeat(0.1, 290), [None]):
        try:
            if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as err:
            if wait is None or "locked" not in str(err):
                raise
            time.sleep(wait)
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _sqlite_begin(conn) -> None:
    # a migration reads the schema and then changes it: IMMEDIATE takes the write lock first, so two of them queue
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")


def migrate(engine: Engine) -> None:
    """Make the tables, and the columns an older store lacks. Two servers starting at once against an empty database
    both get there: PostgreSQL runs one migration at a time under an advisory lock (two CREATE TABLE of one name at
    once fail on its catalog), SQLite under its write lock."""
    with engine.connect() as conn:
        if inspect(conn).has_table(schema_version.name) and (conn.scalar(select(schema_version.c.version)) or 0) >= SCHEMA_VERSION:
            return
    with engine.connect() as conn:
        conn.execution_options(immediate=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            metadata.create_all(conn)
            for table in metadata.sorted_tables:
                have = {c["name"] for c in inspect(conn).get_columns(table.name)}
                for column in table.columns:
                    if column.name not in have:  # a store written before the column was added
                        conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(conn.dialect)}"))
                    if isinstance(column.type, LargeBinary) and conn.dialect.name == "postgresql":
                        # PostgreSQL compresses a long value before it stores it: weights hardly compress, and trying
                        # made a checkpoint's write 4 times slower (bench/checkpoints.py)
                        conn.execute(text(f"ALTER TABLE {table.name} ALTER COLUMN {column.name} SET STORAGE EXTERNAL"))
            conn.execute(schema_version.delete())
            conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION))


# ---------------------------------------------------------------- a database that fails, in one sentence

_SECRET = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _reason(err: BaseException) -> str:
    """What went wrong, in a few words: the database's own first line, without a password or a server path."""
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__  # an OSError's text holds its file name; its strerror does not
    orig = err.orig if isinstance(err, DBAPIError) else err
    line = (str(orig).strip().splitlines() or [type(orig).__name__])[0].split(" (Background on this error")[0]
    line = re.sub(r'^connection failed: |connection to server (at "[^"]*"(, port \d+)?|on socket "[^"]*") failed: |^FATAL:\s+', "", line)
    line = _SECRET.sub(r"\1***@", line)
    url = os.environ.get(URL_VARIABLE, "")
    password = _password(url)
    return (line.replace(password, "***") if password else line).strip() or type(orig).__name__


def _password(url: str) -> str:
    if not url:
        return ""
    try:
        return make_url(url).password or ""
    except ArgumentError:
        return ""


def _on_server(err: BaseException) -> bool:
    """Whether the error came from a database server rather than from an SQLite file on this one."""
    if isinstance(err, (OSError, sqlite3.Error)):
        return False
    return not (isinstance(err, DBAPIError) and isinstance(err.orig, sqlite3.Error))


def unwritable(err: BaseException, lead: str = "The run store can't be written") -> str:
    """One sentence for the page about a store that failed: its reason, never the server's paths or a password."""
    if _on_server(err):
        advice = f"ask whoever runs this server to check the database that {URL_VARIABLE} names."
    else:
        advice = "ask whoever runs this server to free disk space and let the server write its data directory (DLVIZ_DATA_DIR)."
    return f"{lead}: {_reason(err)}; {advice}"


def check(where: Optional[Path | str] = None) -> str:
    """Open the run store and bring its tables up to date, as a server does before it serves anyone; returns where the
    store is (a password hidden). A store that can't be opened raises UserError: one sentence, which the server prints
    before it exits rather than fall back to another store."""
    url = database_url(where)
    named = f"{URL_VARIABLE} ({where_it_is(url)})" if where is None and os.environ.get(URL_VARIABLE) else where_it_is(url)
    try:
        open_engine(url).dispose()
    except STORE_ERRORS as err:
        fix = "check the URL, its user and password, and that the database server runs" if _on_server(err) else "check DLVIZ_DATA_DIR"
        raise UserError("", f"The run store at {named} can't be opened: {_reason(err)}; {fix}.") from None
    return named
