"""``broadcast db status`` and ``broadcast db migrate`` on a database left at an older schema, on
SQLite and on PostgreSQL (``store``): status reports the version and what is pending without
changing anything; migrate brings it to the latest version, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from broadcast.db.engine import make_engine
from broadcast.db.migrate import LATEST, all_migrations
from tests.helpers.migrations import migrate_only_to

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL


def _migrate_to(store: str, version: int) -> None:
    engine = make_engine(store)
    migrate_only_to(engine, version)
    engine.dispose()


def _applied(store: str) -> list[int]:
    engine = make_engine(store)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT version FROM broadcast_schema ORDER BY version")).scalars())
    finally:
        engine.dispose()


def test_db_status_shows_v3_pending_then_migrate_brings_it_to_latest(store: str, cli: Any, tmp_path: Path) -> None:
    assert LATEST > 3, "this test needs migrations after 3"
    _migrate_to(store, 3)
    descriptions = {x.version: x.description for x in all_migrations()}

    r = cli("db", "status", "--json")
    assert r.exit_code == 0, r
    data = r.json()
    assert data["version"] == 3 and data["latest"] == LATEST
    assert data["pending"] == [{"version": v, "description": descriptions[v]} for v in range(4, LATEST + 1)]
    if store.startswith("sqlite"):
        assert data["database_url"] == store

    r = cli("db", "status")
    assert r.exit_code == 0, r
    assert f"schema version 3 of {LATEST}" in r.stdout
    assert [ln.split()[1] for ln in r.stdout.splitlines() if ln.strip().startswith("pending:")] == [
        str(v) for v in range(4, LATEST + 1)]
    assert _applied(store) == [1, 2, 3]  # status only looks

    r = cli("db", "migrate")
    assert r.exit_code == 0, r
    assert f"Schema at version {LATEST}" in r.stdout
    assert _applied(store) == list(range(1, LATEST + 1))
    if store.startswith("sqlite"):  # a copy of the v3 file is kept before upgrading it
        assert (tmp_path / "data" / "broadcast.db.v3.bak").is_file()

    r = cli("db", "status", "--json")
    assert r.exit_code == 0, r
    assert (r.json()["version"], r.json()["latest"], r.json()["pending"]) == (LATEST, LATEST, [])
    r = cli("db", "status")
    assert f"schema version {LATEST} of {LATEST}" in r.stdout and "pending" not in r.stdout, r

    # migrating again is a no-op
    r = cli("db", "migrate")
    assert r.exit_code == 0 and f"Schema at version {LATEST}" in r.stdout, r
    assert _applied(store) == list(range(1, LATEST + 1))


def test_db_status_on_an_empty_database_lists_every_migration(store: str, cli: Any) -> None:
    r = cli("db", "status", "--json")
    assert r.exit_code == 0, r
    assert r.json()["version"] == 0
    assert [p["version"] for p in r.json()["pending"]] == list(range(1, LATEST + 1))
    r = cli("db", "migrate")
    assert r.exit_code == 0 and f"Schema at version {LATEST}" in r.stdout, r
    assert cli("db", "status", "--json").json()["pending"] == []
