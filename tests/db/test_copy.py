"""`broadcast db copy --to URL`: a whole history moves with ids and the audit chain intact."""

from __future__ import annotations

import pytest

from tests.conftest import PG_URL, _pg_exec, postgres_problem

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL


@pytest.fixture
def history(cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_SIMULATOR_LATENCY_MS", "0")
    for args in (("group", "add", "党工委"), ("group", "add", "一支部", "--parent", "党工委"),
                 ("member", "add", "张三", "13800138001", "-g", "一支部"),
                 ("member", "add", "李四", "13800138002", "-g", "一支部"),
                 ("optout", "add", "13800138002"),
                 ("message", "new", "--text", "{name}同志：开会", "--to", "党工委")):
        assert cli(*args).exit_code == 0
    assert cli("message", "approve", "1", env={"BROADCAST_OPERATOR": "leader"}).exit_code == 0
    assert cli("run").exit_code in (0, 3)
    return cli


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


def test_copy_to_sqlite(history, tmp_path):
    _check_copy(history, f"sqlite:///{tmp_path / 'copy.db'}")


def test_copy_to_postgresql(history):
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    import uuid

    schema = f"bt_{uuid.uuid4().hex[:16]}"
    _pg_exec(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in PG_URL else "?"
        _check_copy(history, f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    finally:
        _pg_exec(f"DROP SCHEMA {schema} CASCADE")
