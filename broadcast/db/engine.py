"""Engines and transactions for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout, so a report can read while a send writes, and with
foreign keys on. pysqlite's own transaction handling is switched off and transactions are begun
explicitly: ``BEGIN`` for readers, ``BEGIN IMMEDIATE`` (``write=True``) for work that reads then
writes, so two writers queue on the lock instead of failing half-way with "database is locked".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from broadcast.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000, **kwargs: Any) -> Engine:
    """An engine for ``url``; creates the directory of a SQLite file if needed. ``busy_timeout_s``:
    how long SQLite waits for another process's write lock (``BROADCAST_BUSY_TIMEOUT_S``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"invalid BROADCAST_DATABASE_URL {url!r}: not an SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": busy_timeout_s}, **kwargs)
        _setup_sqlite(engine, round(busy_timeout_s * 1000))
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True, **kwargs)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the database driver {exc.name!r} for {parsed.drivername} is not installed",
            hint="pip install 'broadcast[postgres]'",
        ) from None


def _setup_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def transaction(engine: Engine, *, write: bool = False) -> Iterator[Connection]:
    """A Core connection inside one transaction: committed on success, rolled back on any
    exception (including KeyboardInterrupt). ``write=True`` takes SQLite's write lock up front."""
    conn = engine.connect()
    if write and engine.dialect.name == "sqlite":
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
    try:
        with conn.begin():
            yield conn
    finally:
        conn.close()


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """An ORM session in one transaction, for the simple commands."""
    with transaction(engine, write=write) as conn:
        with Session(bind=conn, expire_on_commit=False) as session:
            yield session
            session.flush()


_PLAIN = (  # SQLite's words -> what a user can act on
    ("database is locked", "the database is locked by another process (waited BROADCAST_BUSY_TIMEOUT_S)",
     "is an import, a send or a restore running? try again when it ends"),
    ("readonly database", "the database cannot be written: the file or its folder is read-only",
     "check the permissions of BROADCAST_DATABASE_URL's file and folder"),
    ("disk is full", "the disk is full: nothing was written", "free some space and run the command again"),
    ("disk i/o error", "the database could not be written (disk I/O error: a full disk or a file-size limit); "
     "nothing was written", "free some space and run the command again"),
    ("unable to open database file", "the database file cannot be opened (no such folder, or no permission)",
     "check BROADCAST_DATABASE_URL or BROADCAST_DATA_DIR"),
    ("file is not a database", "the database file is not an SQLite database",
     "check BROADCAST_DATABASE_URL; 'broadcast restore FILE' puts back a backup"),
)


def explain(exc: BaseException) -> tuple[str, str]:
    """One line and a hint for a database driver error (``sqlalchemy.exc.DBAPIError``), in words
    a user can act on; the driver's own words when nothing better is known."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    low = text.lower()
    for needle, message, hint in _PLAIN:
        if needle in low:
            return message, hint
    return f"database error: {text}", "run with BROADCAST_DEBUG=1 for details"
