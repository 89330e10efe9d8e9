"""``broadcast restore FILE``: put a backup back as the database, never silently destroying the
one it replaces.

1. FILE is checked without writing anything (not even beside it): an SQLite file, whole (not
   truncated), undamaged, a broadcast database at a schema version this broadcast knows.
2. An existing SQLite database is replaced only with ``--force``, and never while a
   ``broadcast send``/``run``/``worker`` is alive on it. It is first kept, as a consistent copy,
   in ``<db>.before-restore-<UTC time>`` beside it. On PostgreSQL a restore only fills an empty
   database (``pg_dump`` first to keep one that holds data).
3. FILE is copied into a staging file beside the database, migrated there if older, and its
   audit chain verified (a backup whose chain does not verify is refused). Messages that could
   have gone out between the backup and now — ``sending`` in it, or ``approved`` and already
   due — are paused there with the reason, so nobody gets them twice because a backup was
   restored: an operator checks and resumes them (``broadcast message resume``).
4. The restore is recorded in the staged database's audit trail (from which file, its SHA-256,
   the schema versions, the copy kept aside and the audit head of the database replaced), then
   the staged database is installed in one step: SQLite's backup API into the existing file
   (one transaction: a crash leaves the old database or the new one, nothing between), a rename
   where there was none, ``db copy`` into PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast.db.backup import (
    Contents,
    backup_pages,
    check_backup_file,
    contents,
    file_digest,
    file_engine,
    partial_path,
    read_only_uri,
    remove_with_sidecars,
    same_file,
    single_file,
    sqlite_copy,
    sqlite_file,
)
from broadcast.db.engine import make_engine, transaction
from broadcast.db.migrate import LATEST, migrate
from broadcast.errors import ConflictError, StateError


@dataclass
class RestoreResult:
    file: str
    sha256: str
    database: str  # the database restored into (URL, password masked)
    schema_version: int  # of the backup (migrated to LATEST when older)
    kept_aside: str | None  # where the database it replaced was kept (None: there was none)
    held: list[int] = field(default_factory=list)  # messages paused because they may have gone out since
    contents: Contents | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        found = data.pop("contents") or {}
        data["migrated_to"] = found.pop("schema_version", LATEST)  # the version it has now
        data.update(found)
        return data


def restore(settings: Any, source: Path, *, force: bool = False) -> RestoreResult:
    """Make the backup ``source`` the configured database (see the module docstring)."""
    try:
        return _restore(settings, source, force)
    except (sqlite3.Error, OSError) as exc:  # disk full, no permission, I/O error, a page size refused
        raise StateError(f"the restore of {source} failed, the database is as it was: {exc}") from None


def _restore(settings: Any, source: Path, force: bool) -> RestoreResult:
    from broadcast.config import mask_url

    url = settings.effective_database_url
    source = source.expanduser()
    version = check_backup_file(source)
    live = sqlite_file(url)
    made_dir: Path | None = None  # the database's directory, when this restore created it
    if live is not None:
        if live.exists() and same_file(source, live):
            raise ConflictError(f"{source} is the database in use: restore another file")
        if live.exists() and not force:
            raise ConflictError(f"a database already exists at {live}: 'broadcast restore --force' keeps it as "
                                f"{live.name}.before-restore-<time> beside it and puts {source.name} in its place")
        if live.exists():
            _refuse_if_in_use(live, settings.lease_s)
        if not live.parent.exists():
            made_dir = live.parent
            made_dir.mkdir(parents=True)
        staging_dir = live.parent
    else:
        _refuse_unless_empty(url)
        staging_dir = Path(tempfile.mkdtemp(prefix="broadcast-restore-"))
    _, digest = file_digest(source)
    result = RestoreResult(str(source.resolve()), digest, mask_url(url), version, None)
    tmp = partial_path(staging_dir / "restore.db" if live is None else live)
    aside: Path | None = None
    replaced: dict[str, Any] | None = None  # the database replaced, when there was a readable one
    installed = False
    try:
        sqlite_copy(read_only_uri(source), tmp, uri=True)
        staged = file_engine(tmp)
        try:
            _prepare(staged, settings, source, result)
            if live is not None and live.exists():
                aside, replaced = _keep_aside(live)
                result.kept_aside = str(aside)
            _record(staged, settings.effective_operator, source, result, replaced)
            result.contents = contents(staged)
        finally:
            staged.dispose()
        single_file(tmp)
        if live is None:
            _copy_into(tmp, url)
        else:
            _install(tmp, live, replaced is not None)
        installed = True
    finally:
        remove_with_sidecars(tmp)
        if aside is not None and not installed:  # the database was not replaced: its copy is not needed
            remove_with_sidecars(aside)
        if live is None:
            shutil.rmtree(staging_dir, ignore_errors=True)
        elif made_dir is not None and not installed:
            with contextlib.suppress(OSError):  # only if empty again: nothing of anyone else's goes
                made_dir.rmdir()
    return result


def _prepare(staged: Engine, settings: Any, source: Path, result: RestoreResult) -> None:
    """Migrate the staged copy if older, check its audit chain, hold what may have gone out."""
    from broadcast.db.audit_chain import verify

    if result.schema_version < LATEST:
        migrate(staged, keep_copy=False)
    check = verify(staged)
    if not check.ok:
        raise StateError(f"the audit trail of {source} does not verify ({check.problem}): nothing restored")
    result.held = _hold_what_may_have_gone(staged, settings.effective_operator, source)


def _hold_what_may_have_gone(engine: Engine, operator: str, source: Path) -> list[int]:
    """Pause every message of the backup that may have been (partly) sent after it was taken:
    ``sending``, or ``approved`` and due by now. Returns their ids."""
    from broadcast.clock import now as clock_now
    from broadcast.db.audit_chain import note
    from broadcast.db.models import Message
    from broadcast.db.types import table
    from broadcast.messages.states import transition

    m = table(Message)
    now = clock_now()
    with transaction(engine, write=True) as conn:
        ids = list(conn.execute(sa.select(m.c.id).where(sa.or_(
            m.c.status == "sending",
            sa.and_(m.c.status == "approved", sa.or_(m.c.send_after.is_(None), m.c.send_after <= now)),
        )).order_by(m.c.id)).scalars())
        for mid in ids:
            reason = (f"held by the restore of {source.name}: it may have been sent after that backup was taken; "
                      f"check, then 'broadcast message resume {mid}' or 'broadcast message cancel {mid}'")
            before = transition(conn, mid, "paused", reason=reason)
            note(conn, operator, "message.pause", f"message:{mid}", reason=reason, was=before, by="restore")
    return ids


def _record(staged: Engine, operator: str, source: Path, result: RestoreResult,
            replaced: dict[str, Any] | None) -> None:
    from broadcast.db.audit_chain import note

    with transaction(staged, write=True) as conn:
        note(conn, operator, "db.restore", f"file:{source.name}", path=result.file, sha256=result.sha256,
             schema_version=result.schema_version, migrated_to=LATEST, database=result.database,
             kept_aside=result.kept_aside, replaced=replaced, held_messages=result.held)


def _keep_aside(live: Path) -> tuple[Path, dict[str, Any] | None]:
    """Keep the database about to be replaced as ``<db>.before-restore-<UTC time>`` beside it:
    a consistent copy (backup API), or, if it cannot even be read as a database, its files as
    they are. Returns (the copy, what it was: its audit head, or None when unreadable)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = live.with_name(f"{live.name}.before-restore-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = live.with_name(f"{live.name}.before-restore-{stamp}-{n}")
    tmp = partial_path(aside)
    try:
        try:
            sqlite_copy(live, tmp)
        except sqlite3.DatabaseError:  # damaged (perhaps why it is being restored): keep its bytes
            shutil.copyfile(live, tmp)
            wal = live.with_name(live.name + "-wal")
            if wal.exists():
                shutil.copyfile(wal, aside.with_name(aside.name + "-wal"))
            os.replace(tmp, aside)
            return aside, None
        os.replace(tmp, aside)
    except BaseException:
        remove_with_sidecars(tmp)
        raise
    conn = sqlite3.connect(read_only_uri(aside), uri=True)
    try:
        row = conn.execute("SELECT last_id, last_hash FROM audit_head WHERE name = 'main'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    finally:
        conn.close()
    return aside, {"audit_entries": row[0] if row else 0, "audit_head": row[1] if row else None}


def _install(staged: Path, live: Path, readable: bool) -> None:
    """Make the staged file the database: into an existing one with the backup API (one write
    transaction under SQLite's lock; whoever has it open sees the new content), else a rename."""
    if readable:
        backup_pages(staged, live)
        return
    for s in ("-wal", "-shm"):  # the damaged database's own (its copy was kept aside)
        live.with_name(live.name + s).unlink(missing_ok=True)
    os.replace(staged, live)


def _copy_into(staged: Path, url: str) -> None:
    from broadcast.db.copy import copy_database

    engine = file_engine(staged)
    try:
        copy_database(engine, url)
    finally:
        engine.dispose()


def _refuse_if_in_use(live: Path, lease_s: float) -> None:
    """A send, run or worker alive on the database: restoring under it would pull the deliveries
    it is sending from under its feet."""
    from broadcast.dispatch.runs import HOST, is_alive

    try:
        conn = sqlite3.connect(read_only_uri(live), uri=True, timeout=30)
        try:
            rows = conn.execute("SELECT kind, host, pid, pid_start, heartbeat_at FROM runs "
                                "WHERE finished_at IS NULL").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:  # unreadable, or from before runs existed: nothing can be using it
        return
    now = datetime.now(UTC)
    for kind, host, pid, pid_start, heartbeat_at in rows:
        if host == HOST:
            alive = pid != os.getpid() and is_alive(pid, pid_start or "")
        else:
            beat = datetime.fromisoformat(str(heartbeat_at)).replace(tzinfo=UTC)
            alive = beat + timedelta(seconds=lease_s) > now
        if alive:
            raise ConflictError(f"the database is in use by a running 'broadcast {kind}' (pid {pid} on {host}): "
                                "stop it (and any 'broadcast receipts serve') before restoring")


def _refuse_unless_empty(url: str) -> None:
    from broadcast.db.copy import tables

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
            for name, table in tables().items():
                if name in present and conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one():
                    raise ConflictError(
                        f"the PostgreSQL database already holds data (table {name}): a restore only fills an empty "
                        "database; keep this one with pg_dump, then restore into a new, empty database")
    finally:
        engine.dispose()
