"""`broadcast db copy --to URL`: a whole history moves with ids and the audit chain intact."""

from __future__ import annotations

import pytest

from tests.helpers.stores import pg_schema, postgres_problem

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL


def _check_copy(cli, url):
    r = cli("db", "copy", "--to", url, "--json")
    assert r.exit_code == 0, r
    rows = r.json()["rows"]
    assert rows["groups"] == 2 and rows["members"] == 2 and rows["deliveries"] == 1 and rows["audit_log"] > 5
    # the copy is a working database: the same commands run against it, new ids follow the old
    env = {"BROADCAST_DATABASE_URL": url}
    assert cli("audit", "verify", env=env).exit_code == 0
    assert cli("group", "show", "党工委", "--json", env=env).json()["subgroups"] == ["一支部"]
    assert cli("group", "add", "二支部", env=env).exit_code == 0
    assert cli("report", "--json", env=env).json()["total"]["deliveries"] == 1
    assert cli("audit", "verify", env=env).exit_code == 0
    r = cli("db", "copy", "--to", url)
    assert r.exit_code == 1 and "already holds data" in r.stderr


def test_every_table_is_copied():
    """db copy, backup and restore go through ``tables()``: a new table must be in ``ORDER``."""
    from sqlmodel import SQLModel

    from broadcast.db.copy import ORDER, tables

    assert set(tables()) == set(ORDER) == set(SQLModel.metadata.tables) - {"broadcast_schema"}


def test_copy_to_sqlite(history, tmp_path):
    _check_copy(history, f"sqlite:///{tmp_path / 'copy.db'}")


def test_copy_to_postgresql(history):
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    with pg_schema() as url:
        _check_copy(history, url)
