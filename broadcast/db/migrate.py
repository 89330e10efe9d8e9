"""Numbered schema migrations, run in order, each in its own transaction.

The version table ``broadcast_schema`` records every migration applied. A migration is a module
``broadcast/db/migrations/vNNNN_*.py`` with ``DESCRIPTION`` and ``upgrade(op)`` written with
alembic's ``Operations`` (portable DDL; ``op.batch_alter_table`` for SQLite column changes).
Migrations are frozen once released: a later change to a table is a new migration, never an
edit of an old one, so an existing database is upgraded in place and keeps its send log.
Before upgrading a SQLite database that already has data, a copy of the file is kept beside it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from broadcast.db.engine import transaction
from broadcast.db.types import UTCDateTime, utcnow
from broadcast.errors import StateError

_version_table = sa.Table(
    "broadcast_schema",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    module: str


def all_migrations() -> list[Migration]:
    from broadcast.db import migrations

    found = []
    for info in pkgutil.iter_modules(migrations.__path__):
        if info.name.startswith("v") and info.name[1:5].isdigit():
            mod = importlib.import_module(f"broadcast.db.migrations.{info.name}")
            found.append(Migration(int(info.name[1:5]), mod.DESCRIPTION, mod.__name__))
    found.sort(key=lambda m: m.version)
    assert [m.version for m in found] == list(range(1, len(found) + 1)), "migration numbers must be 1..N"
    return found


LATEST = 11  # bump with every new migration; checked against all_migrations() in the tests


def current_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("broadcast_schema"):
        return 0
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(_version_table.c.version), 0))).scalar_one())


def status(engine: Engine) -> tuple[int, list[Migration]]:
    """(current version, migrations still to apply)."""
    with engine.connect() as conn:
        version = current_version(conn)
    return version, [m for m in all_migrations() if m.version > version]


def ensure_schema(engine: Engine) -> int:
    """Bring the database to the latest schema; cheap when it already is. Returns the version."""
    with engine.connect() as conn:
        version = current_version(conn)
    if version == LATEST:
        return version
    if version > LATEST:
        raise StateError(
            f"the database schema is version {version}, newer than this broadcast knows ({LATEST})",
            hint="upgrade broadcast (pip install -U broadcast)",
        )
    return migrate(engine)


def migrate(engine: Engine, *, keep_copy: bool = True) -> int:
    """Apply every pending migration; returns the version reached. ``keep_copy=False``: no
    ``.vN.bak`` beside the file (for a copy being restored, whose original is kept anyway)."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    with engine.connect() as conn:
        before = current_version(conn)
    pending = [m for m in all_migrations() if m.version > before]
    if before > 0 and pending and keep_copy:  # a copy before upgrading, not on every open
        _backup_sqlite(engine, before)
    version = before
    for migration in all_migrations():
        if migration.version <= before:
            continue
        with transaction(engine, write=True) as conn:
            if engine.dialect.name == "postgresql":  # two processes starting at once: one migrates
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
            _version_table.create(conn, checkfirst=True)
            if current_version(conn) >= migration.version:  # another process got here first
                continue
            op = Operations(MigrationContext.configure(conn))
            importlib.import_module(migration.module).upgrade(op)
            conn.execute(
                _version_table.insert().values(
                    version=migration.version, description=migration.description, applied_at=utcnow()
                )
            )
        version = migration.version
    return version


def _backup_sqlite(engine: Engine, version: int) -> Path | None:
    """Keep ``broadcast.db.vN.bak`` (a consistent copy, WAL included) before upgrading from vN."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    src = Path(engine.url.database)
    dest = src.with_name(f"{src.name}.v{version}.bak")
    if not dest.exists():
        raw = engine.raw_connection()  # VACUUM cannot run inside the transaction SQLAlchemy opens
        try:
            raw.driver_connection.execute("VACUUM INTO ?", (str(dest),))  # type: ignore[union-attr]
        finally:
            raw.close()
    return dest
