"""``broadcast backup FILE``: a consistent copy of the whole database in one SQLite file, taken
while a send may be running, and the checks every backup file passes before it is restored.

On SQLite the copy is SQLite's online backup API in one step: one read transaction, so the file
is the database as it stood at one moment (a send keeps writing meanwhile: WAL readers do not
block writers). On PostgreSQL it is ``db copy`` into a new SQLite file, read in one
``REPEATABLE READ`` transaction (one snapshot as well). Either way the copy is written under a
hidden temporary name beside FILE and renamed into place only once it is complete and checked,
so a backup killed half-way leaves no FILE behind (at most a ``.FILE.*.partial`` to delete).
The backup is recorded in the audit trail of the database it copied: file, size, SHA-256,
schema version, rows per table, deliveries per state and the audit head it contains.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from broadcast.db.engine import make_engine, transaction
from broadcast.db.migrate import LATEST, ensure_schema
from broadcast.errors import ConflictError, InputError, NotFoundError, StateError

MAGIC = b"SQLite format 3\x00"
SIDECARS = ("-wal", "-shm", "-journal")


@dataclass
class Contents:
    """What a broadcast database file holds (read from the file itself)."""

    schema_version: int
    rows: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)  # per state
    audit_entries: int = 0
    audit_head: str | None = None  # hash of the newest entry
    audit_ok: bool = True
    audit_problem: str | None = None


@dataclass
class BackupResult:
    file: str
    bytes: int
    sha256: str
    source: str  # the database copied (URL, password masked)
    method: str  # "sqlite backup API" or "db copy"
    contents: Contents

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("contents"))
        return data


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise InputError("the database is in memory (BROADCAST_DATABASE_URL): there is no file to back up or restore")
    return Path(parsed.database).expanduser()


def same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return path.stat().st_size, h.hexdigest()


def partial_path(dest: Path) -> Path:
    """A new, empty, hidden file beside ``dest`` to build it in (renamed onto ``dest`` when done)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    return Path(tmp)


def remove_with_sidecars(path: Path) -> None:
    for p in (path, *(path.with_name(path.name + s) for s in SIDECARS)):
        p.unlink(missing_ok=True)


def sqlite_copy(src: Path | str, dest: Path, *, uri: bool = False) -> None:
    """Copy the SQLite database ``src`` into ``dest`` with the online backup API, in one step
    (one read transaction on the source: a consistent snapshot), then make ``dest`` one
    self-contained file (rollback journal, not WAL) written to disk."""
    backup_pages(src, dest, uri=uri)
    single_file(dest)


def backup_pages(src: Path | str, dest: Path | str, *, uri: bool = False) -> None:
    """SQLite's online backup API from ``src`` into ``dest``, in one step: one read transaction on
    the source and one write transaction on the target (both wait up to 30 s for a lock)."""
    source = sqlite3.connect(str(src), uri=uri, timeout=30)
    try:
        target = sqlite3.connect(str(dest), timeout=30)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def single_file(path: Path) -> None:
    """Fold a WAL into the file and switch it to a rollback journal, so the database is this one
    file with nothing beside it, then flush it to disk."""
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_only_uri(path: Path) -> str:
    """A URI opening ``path`` without writing anything, not even beside it: a file marked WAL
    with no WAL beside it (a copied file, or one of our backups) is opened immutable, so SQLite
    creates no ``-wal``/``-shm`` next to the user's file."""
    with path.open("rb") as fh:
        header = fh.read(20)
    wal = len(header) == 20 and header[18] == 2
    mode = "immutable=1" if wal and not path.with_name(path.name + "-wal").exists() else "mode=ro"
    return f"file:{quote(str(path.resolve()))}?{mode}"


def check_backup_file(path: Path) -> int:
    """Check that ``path`` is a whole, undamaged broadcast database at a schema version this
    broadcast can open, writing nothing; returns its schema version. Every problem is one line
    (InputError) naming the file."""
    name = str(path)
    if not path.exists():
        raise NotFoundError(f"no file {name}")
    if not path.is_file():
        raise InputError(f"{name} is not a file")
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(MAGIC):
        raise InputError(f"{name} is not a broadcast backup: not an SQLite database file")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid_for, changes = header[92:96], header[24:28]
    if pages and valid_for == changes and size < pages * page_size:
        raise InputError(f"{name} is truncated: {size:,} bytes of the {pages * page_size:,} its header declares "
                         "(an interrupted copy?)")
    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise InputError(f"{name} is damaged: {check}")
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "broadcast_schema" not in names or "messages" not in names:
                raise InputError(f"{name} is an SQLite database but not a broadcast database (no broadcast_schema table)")
            version = int(conn.execute("SELECT coalesce(max(version), 0) FROM broadcast_schema").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{name} is damaged or not a database: {exc}") from None
    if version > LATEST:
        raise InputError(f"{name} is a broadcast database at schema version {version}, newer than this broadcast "
                         f"knows ({LATEST}): upgrade broadcast to restore it")
    if version < 1:
        raise InputError(f"{name} is not a broadcast database: it has no schema version")
    return version


def contents(engine: Engine) -> Contents:
    """Schema version, rows per table, deliveries per state and the audit chain of a database."""
    from broadcast.db.audit_chain import verify
    from broadcast.db.copy import tables
    from broadcast.db.migrate import current_version

    with engine.connect() as conn:
        out = Contents(current_version(conn))
        present = set(sa.inspect(conn).get_table_names())
        for name, table in tables().items():
            if name in present:
                out.rows[name] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        if "deliveries" in present:
            d = tables()["deliveries"]
            out.deliveries = {s: n for s, n in conn.execute(
                sa.select(d.c.status, sa.func.count()).group_by(d.c.status).order_by(d.c.status))}
    if "audit_log" in present:
        check = verify(engine)
        out.audit_entries, out.audit_head = check.entries, check.head_hash
        out.audit_ok, out.audit_problem = check.ok, check.problem
    return out


def file_engine(path: Path) -> Engine:
    """An engine on a database file of our own making (a backup being built or staged)."""
    return make_engine(f"sqlite:///{path}")


def _check_destination(dest: Path, force: bool) -> None:
    if dest.is_dir():
        raise InputError(f"{dest} is a directory: give the backup file's name, e.g. {dest / 'broadcast-backup.db'}")
    if not dest.parent.is_dir():
        raise NotFoundError(f"no directory {dest.parent} to write the backup in")
    if dest.exists() and not force:
        raise ConflictError(f"{dest} already exists: give another name, or --force to replace it")


def backup(settings: Any, dest: Path, *, force: bool = False) -> BackupResult:
    """Copy the configured database into the SQLite file ``dest`` (see the module docstring)."""
    try:
        return _backup(settings, dest, force)
    except (sqlite3.Error, OSError) as exc:  # disk full, no permission, I/O error: FILE was not written
        raise StateError(f"the backup failed, {dest} was not written: {exc}") from None


def _backup(settings: Any, dest: Path, force: bool) -> BackupResult:
    from broadcast.config import mask_url
    from broadcast.db.audit_chain import note
    from broadcast.db.copy import copy_database

    url = settings.effective_database_url
    dest = dest.expanduser()
    live = sqlite_file(url)
    if live is not None:
        if not live.exists():
            raise NotFoundError(f"no database at {live}: nothing to back up "
                                "(check BROADCAST_DATABASE_URL / BROADCAST_DATA_DIR)")
        if same_file(dest, live) or any(same_file(dest, live.with_name(live.name + s)) for s in SIDECARS):
            raise ConflictError(f"{dest} is the database in use: back up to another file")
    _check_destination(dest, force)
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        tmp = partial_path(dest)
        try:
            if live is not None:
                sqlite_copy(live, tmp)
            else:
                copy_database(engine, f"sqlite:///{tmp}")
                single_file(tmp)
            copy = file_engine(tmp)
            try:
                found = contents(copy)
            finally:
                copy.dispose()
            single_file(tmp)
            os.replace(tmp, dest)
        except BaseException:
            remove_with_sidecars(tmp)
            raise
        _fsync_dir(dest.parent)
        size, digest = file_digest(dest)
        result = BackupResult(str(dest.resolve()), size, digest, mask_url(url),
                              "sqlite backup API" if live is not None else "db copy", found)
        with transaction(engine, write=True) as conn:
            note(conn, settings.effective_operator, "db.backup", f"file:{dest.name}", path=result.file, bytes=size,
                 sha256=digest, schema_version=found.schema_version, rows=found.rows, deliveries=found.deliveries,
                 audit_entries=found.audit_entries, audit_head=found.audit_head, audit_ok=found.audit_ok)
        return result
    finally:
        engine.dispose()
