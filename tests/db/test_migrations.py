"""The migrations build exactly the tables the models describe, and upgrades keep data."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from broadcast.db.engine import make_engine
from broadcast.db.migrate import LATEST, all_migrations, ensure_schema, migrate, status
from broadcast.errors import StateError
from tests.helpers.migrations import migrate_only_to

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL


def test_latest_matches_the_migration_files():
    assert [m.version for m in all_migrations()] == list(range(1, LATEST + 1))


def test_migrated_schema_equals_the_models(store):
    """On SQLite and on PostgreSQL: the same migrations give exactly the models' tables."""
    from sqlmodel import SQLModel

    import broadcast.db.models  # noqa: F401  (registers every table)

    engine = make_engine(store)
    migrate(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = [d for d in compare_metadata(ctx, SQLModel.metadata)
                if not (isinstance(d, tuple) and d[0] in ("add_index", "remove_index"))]
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_upgrade_keeps_data_and_a_backup(tmp_path, monkeypatch):
    import broadcast.db.migrate as m

    db = tmp_path / "u.db"
    engine = make_engine(f"sqlite:///{db}")
    # an "old release": only migration 1 applied, with data in it
    monkeypatch.setattr(m, "all_migrations", lambda: [x for x in all_migrations() if x.version == 1])
    assert migrate(engine) == 1
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO optouts (phone, reason, created_by, created_at) "
                             "VALUES ('+8613805141234', 'x', 'y', '2026-01-01 00:00:00')"))
    monkeypatch.undo()
    if LATEST > 1:
        assert ensure_schema(engine) == LATEST
        assert (tmp_path / "u.db.v1.bak").exists()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT phone FROM optouts")).scalar_one() == "+8613805141234"
    assert status(engine) == (LATEST, [])


def test_a_newer_database_is_refused(store):
    engine = make_engine(store)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO broadcast_schema VALUES (999, 'future', '2030-01-01 00:00:00')"))
    with pytest.raises(StateError, match="newer than this broadcast"):
        ensure_schema(engine)


def test_db_status_command(cli):
    r = cli("db", "status", "--json")
    assert r.exit_code == 0 and r.json()["latest"] == LATEST


def _old_message(conn: sa.Connection, status: str) -> None:
    """Message 1, written as an older release would (no columns added since v3)."""
    conn.execute(sa.text("INSERT INTO messages (id, body, signature, category, status, author, created_at, "
                         "updated_at, target_all) VALUES (1, 'x', '', 'notice', :s, 'a', :t, :t, :f)"),
                 dict(s=status, t="2026-11-01 00:00:00", f=False))


def test_upgrade_from_v3_keeps_sends_and_backfills_their_start(store):
    """A database with a send log from the release before the audit trail is upgraded in place."""
    engine = make_engine(store)
    migrate_only_to(engine, 3)
    with engine.begin() as conn:
        _old_message(conn, "sent")
        conn.execute(sa.text("INSERT INTO deliveries (message_id, kind, phone, name, group_name, text, parts, status, "
                             "attempts, gateway, queued_at, updated_at) VALUES (1, 'real', '+8613800000000', 'n', 'g', "
                             "'t', 1, 'delivered', 1, 'sim', :q, :q)"), dict(q="2026-11-01 23:30:00"))
    assert ensure_schema(engine) == LATEST
    with engine.connect() as conn:
        started = conn.execute(sa.text("SELECT started_at FROM messages WHERE id = 1")).scalar_one()
        assert conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one() == 1
    assert str(started).startswith("2026-11-01 23:30")


def test_upgrade_from_v4_keeps_a_stranded_send_in_doubt(store):
    """A run of the release before request stamps died mid-send: its rows still ``sending`` may
    have gone, so the upgrade stamps them as started; after a crash they are held in doubt, not
    queued again as never started."""
    from broadcast.dispatch import ledger

    engine = make_engine(store)
    migrate_only_to(engine, 4)
    with engine.begin() as conn:
        _old_message(conn, "sending")
        for i, status in ((1, "sending"), (2, "queued")):
            conn.execute(sa.text("INSERT INTO deliveries (id, message_id, kind, phone, name, group_name, text, parts, "
                                 "status, attempts, claimed_by, gateway, queued_at, updated_at) VALUES (:i, 1, 'real', "
                                 ":p, 'n', 'g', 't', 1, :s, 1, 'old-run', 'sim', :q, :q)"),
                         dict(i=i, p=f"+861380000000{i}", s=status, q="2026-11-01 23:30:00"))
    assert ensure_schema(engine) == LATEST
    started, unstarted = ledger.stranded(engine, ["old-run"], sa.func.now())
    assert [c.id for c in started] == [1] and unstarted == []


def test_upgrade_from_v7_keeps_schedules_sending_every_day(store, cli, monkeypatch):
    """A schedule made before the working calendar keeps its days: every day, a skipped day's line
    moving on (nothing it had is pinned); `schedule show` works on it."""
    engine = make_engine(store)
    migrate_only_to(engine, 7)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO schedules (id, series, send_time, start_date, days, status, target_all, "
                             "created_by, created_at, updated_at) VALUES (1, '早餐', '07:30', '2026-11-28', 1, "
                             "'active', :t, 'a', :c, :c)"), dict(t=True, c="2026-11-27 00:00:00"))
        _old_message(conn, "approved")
        conn.execute(sa.text("UPDATE messages SET schedule_id = 1, scheduled_at = :s"), dict(s="2026-11-27 23:30:00"))
    assert ensure_schema(engine) == LATEST
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT send_on, on_skip FROM schedules")).one() == ("every-day", "next")
        assert conn.execute(sa.text("SELECT pinned, series_line FROM messages")).one() == (False, None)
    engine.dispose()
    shown = cli("schedule", "show", "1", "--json")
    assert shown.exit_code == 0, shown
    data = shown.json()
    assert (data["on"], data["skipped"], data["messages"][0]["pinned"]) == ("every-day", [], False)
