"""``broadcast backup FILE`` and ``broadcast restore FILE``: a consistent copy taken while a send
is running restores into a fresh workspace as a working database whose deliveries are one moment
of that send; bad files are refused in one line with nothing written; an existing database is
replaced only with --force and is kept aside; both are in the audit trail."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery, DeliveryAttempt
from broadcast.db.migrate import LATEST
from tests.helpers import sending as S
from tests.helpers.stores import pg_schema, postgres_problem

D, A = Delivery.__table__, DeliveryAttempt.__table__


def _one_line_error(r: Any, *needles: str) -> None:
    assert r.exit_code == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r
    assert "Traceback" not in r.stderr + r.stdout
    for n in needles:
        assert n in lines[0], r


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def _fresh(tmp_path: Path, name: str = "fresh") -> tuple[dict[str, str], Path]:
    """The environment of a second, empty workspace (its database file is not created)."""
    data = tmp_path / name
    return {"BROADCAST_DATA_DIR": str(data), "BROADCAST_DATABASE_URL": f"sqlite:///{data / 'broadcast.db'}"}, data


def _audit(url: str, action: str) -> list[Any]:
    from broadcast.audit.trail import entries

    engine = sa.create_engine(url)
    try:
        return list(entries(engine, action=action))
    finally:
        engine.dispose()


# -- the end-to-end case: a backup taken in the middle of a real send --------------------------------


N = 1200


def _backup_mid_send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backup: Path) -> tuple[int, S.Mock, dict[str, Any]]:
    """A real ``broadcast send`` through the mock gateway, and a real ``broadcast backup`` taken
    while it is sending (the send is still running when the backup has finished)."""
    mid, _ = S.prepared_message(monkeypatch, tmp_path, N)
    mock = S.Mock(tmp_path / "received.jsonl", "--delay-ms", "20")
    env = mock.env(BROADCAST_CONCURRENCY="4")
    send = S.spawn(env, "send", str(mid), "--yes", "--json")
    try:
        assert S.wait_for(lambda: mock.count() >= 150 or send.poll() is not None, timeout=60)
        assert send.poll() is None, f"the send ended early (exit {send.returncode}): {send.stderr.read() if send.stderr else ''}"
        r = S.broadcast(env, "backup", str(backup), "--json")
        assert r.code == 0, r
        still_sending = send.poll() is None
        received_by_then = mock.count()
        assert still_sending and received_by_then < N, "the send finished before the backup did: slow the mock down"
        assert send.wait(timeout=120) == 0, send.stderr.read() if send.stderr else ""
    finally:
        if send.poll() is None:
            send.kill()
            send.wait()
        if send.stderr is not None:
            send.stderr.close()
    return mid, mock, r.json()


@pytest.mark.slow
def test_backup_during_a_send_restores_a_consistent_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    backup = tmp_path / "backups" / "mid-send.db"
    backup.parent.mkdir()
    mid, mock, made = _backup_mid_send(tmp_path, monkeypatch, backup)
    try:
        assert made["method"] == "sqlite backup API" and made["bytes"] == backup.stat().st_size
        assert _files(backup.parent) == {"mid-send.db"}  # one self-contained file, no partial left
        snap = made["deliveries"]
        assert sum(snap.values()) == N  # the audience was frozen whole, in one transaction
        assert 0 < snap.get("accepted", 0) < N and snap.get("queued", 0) + snap.get("sending", 0) > 0, snap

        env, data = _fresh(tmp_path)
        r = cli("restore", str(backup), "--json", env=env)
        assert r.exit_code == 0, r
        restored = r.json()
        assert restored["kept_aside"] is None and restored["held"] == [mid]
        assert cli("audit", "verify", env=env).exit_code == 0

        url = env["BROADCAST_DATABASE_URL"]
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(D.c.id, D.c.status, D.c.attempts, D.c.claimed_by, D.c.sent_at)
                                    .where(D.c.message_id == mid)).all()
                accepted_attempts: dict[int, list[int]] = {}
                for delivery_id, attempt in conn.execute(
                        sa.select(A.c.delivery_id, A.c.attempt).where(A.c.outcome == "accepted")):
                    accepted_attempts.setdefault(delivery_id, []).append(attempt)
                status, reason = conn.execute(sa.text("SELECT status, status_reason FROM messages WHERE id = :m"),
                                              {"m": mid}).one()
        finally:
            engine.dispose()
        # the counts are those of the backup, at one moment: every delivery there, each in one state
        by_status: dict[str, int] = {}
        for row in rows:
            by_status[row.status] = by_status.get(row.status, 0) + 1
        assert by_status == snap and len(rows) == N
        # each delivery row agrees with its attempts (written in one transaction with it)
        received = mock.by_id()
        for row in rows:
            if row.status == "accepted":
                assert accepted_attempts.get(row.id) == [row.attempts] and row.sent_at is not None, row
                assert received[row.id] == 1, row  # the gateway really had it
                assert row.claimed_by is None
            else:
                assert row.status in ("queued", "sending"), row  # a healthy gateway: nothing else
                assert row.id not in accepted_attempts, row
                assert (row.claimed_by is not None) == (row.status == "sending"), row
        assert len(accepted_attempts) == snap["accepted"]
        # the message may have gone on after the backup: held, for an operator to check and resume
        assert status == "paused" and "held by the restore of mid-send.db" in reason
        show = cli("message", "show", str(mid), "--json", env=env)
        assert show.exit_code == 0, show
        assert {k: v for k, v in show.json()["deliveries"].items() if v} == snap

        # the restored trail is the backup's, followed by the pause and the restore
        assert restored["audit_entries"] == made["audit_entries"] + 2
        trail = [json.loads(line) for line in _export(cli, env, tmp_path)]
        assert trail[made["audit_entries"] - 1]["hash"] == made["audit_head"]
        assert [e["action"] for e in trail[made["audit_entries"]:]] == ["message.pause", "db.restore"]
        assert any(e["action"] == "send.start" for e in trail[:made["audit_entries"]])
        done = trail[-1]["details"]
        assert done["path"] == str(backup) and done["kept_aside"] is None and done["held_messages"] == [mid]

        # the backup is in the trail of the database it copied: file, size, counts
        (entry,) = _audit(os.environ["BROADCAST_DATABASE_URL"], "db.backup")
        assert entry.object == "file:mid-send.db"
        assert entry.details["bytes"] == made["bytes"] and entry.details["sha256"] == made["sha256"]
        assert entry.details["deliveries"] == snap and entry.details["rows"]["deliveries"] == N
        assert cli("audit", "verify").exit_code == 0
        assert _files(data) == {"broadcast.db"}
        with capsys.disabled():
            print(f"\n[backup mid-send] snapshot of {N} deliveries: {snap}; {made['bytes']:,} bytes")
    finally:
        mock.stop()


def _export(cli: Any, env: dict[str, str], tmp_path: Path) -> list[str]:
    out = tmp_path / f"trail-{uuid.uuid4().hex[:6]}.jsonl"
    assert cli("audit", "export", str(out), env=env).exit_code == 0
    return out.read_text(encoding="utf-8").splitlines()


# -- restore over an existing database ------------------------------------------------------------


def test_restore_refuses_without_force_then_keeps_the_replaced_database(history: Any, tmp_path: Path) -> None:
    cli = history
    backup = tmp_path / "b.db"
    assert cli("backup", str(backup)).exit_code == 0
    assert cli("group", "add", "二支部").exit_code == 0  # after the backup: only in the current database
    live = tmp_path / "data" / "broadcast.db"
    before = _files(live.parent)

    r = cli("restore", str(backup))
    _one_line_error(r, "already exists", "--force")
    assert _files(live.parent) == before
    assert "二支部" in cli("group", "list").stdout

    r = cli("restore", str(backup), "--force", "--json")
    assert r.exit_code == 0, r
    aside = Path(r.json()["kept_aside"])
    assert aside.parent == live.parent and aside.name.startswith("broadcast.db.before-restore-")
    assert _files(live.parent) - before == {aside.name}
    assert "二支部" not in cli("group", "list").stdout  # the backup's groups
    assert cli("audit", "verify").exit_code == 0
    # the replaced database is kept whole, second branch and all, its own chain intact
    aside_env = {"BROADCAST_DATABASE_URL": f"sqlite:///{aside}"}
    assert "二支部" in cli("group", "list", env=aside_env).stdout
    check = cli("audit", "verify", "--json", env=aside_env)
    assert check.exit_code == 0, check
    (entry,) = _audit(f"sqlite:///{live}", "db.restore")
    assert entry.details["kept_aside"] == str(aside) and entry.details["path"] == str(backup)
    assert entry.details["replaced"]["audit_head"] == check.json()["head_hash"]
    assert entry.details["held_messages"] == []  # its one message had been sent


@pytest.mark.slow  # starts processes
def test_restore_refuses_while_a_worker_runs_on_the_database(history: Any, tmp_path: Path) -> None:
    from broadcast.dispatch.runs import HOST, process_start

    cli = history
    backup = tmp_path / "b.db"
    assert cli("backup", str(backup)).exit_code == 0
    live = tmp_path / "data" / "broadcast.db"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        conn = sqlite3.connect(live)
        with conn:
            conn.execute("INSERT INTO runs (id, host, pid, pid_start, kind, operator, started_at, heartbeat_at) "
                         "VALUES ('r-alive', ?, ?, ?, 'worker', 'w', '2026-11-27 02:00:00', '2026-11-27 02:00:00')",
                         (HOST, sleeper.pid, process_start(sleeper.pid)))
        conn.close()
        before = _files(live.parent)
        r = cli("restore", str(backup), "--force")
        _one_line_error(r, "in use by a running 'broadcast worker'", f"pid {sleeper.pid}")
        assert _files(live.parent) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    time.sleep(0.05)
    assert cli("restore", str(backup), "--force").exit_code == 0  # its process is gone: not in use


# -- files that are not a backup this broadcast can restore ------------------------------------------


def _newer(tmp_path: Path, backup: Path) -> Path:
    f = tmp_path / "newer.db"
    f.write_bytes(backup.read_bytes())
    conn = sqlite3.connect(f)
    with conn:
        conn.execute("INSERT INTO broadcast_schema VALUES (?, 'from the future', '2030-01-01 00:00:00')", (LATEST + 1,))
    conn.close()
    return f


def _not_ours(tmp_path: Path, backup: Path) -> Path:
    f = tmp_path / "other.sqlite"
    conn = sqlite3.connect(f)
    with conn:
        conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.close()
    return f


BAD = {
    "text": (lambda tmp, b: _write(tmp / "notes.db", b"name,phone\n"), "not an SQLite database"),
    "empty": (lambda tmp, b: _write(tmp / "empty.db", b""), "not an SQLite database"),
    "truncated": (lambda tmp, b: _write(tmp / "cut.db", b.read_bytes()[: b.stat().st_size // 2]), "is truncated"),
    "cut mid-page": (lambda tmp, b: _write(tmp / "cut2.db", b.read_bytes()[:10_000]), "is truncated"),
    "newer schema": (_newer, f"schema version {LATEST + 1}, newer than this broadcast knows ({LATEST})"),
    "not ours": (_not_ours, "not a broadcast database"),
    "missing": (lambda tmp, b: tmp / "nowhere.db", "no file"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", list(BAD))
def test_restore_of_a_bad_file_fails_in_one_line_writing_nothing(history: Any, tmp_path: Path, kind: str) -> None:
    cli = history
    backup = tmp_path / "b.db"
    assert cli("backup", str(backup)).exit_code == 0
    make, needle = BAD[kind]
    bad = make(tmp_path, backup)
    around = _files(tmp_path)
    env, data = _fresh(tmp_path)
    r = cli("restore", str(bad), env=env)  # into a fresh workspace
    _one_line_error(r, needle)
    assert not data.exists()
    r = cli("restore", str(bad), "--force")  # over the current database
    _one_line_error(r, needle)
    assert _files(tmp_path) == around and _files(tmp_path / "data") == {"broadcast.db"}
    assert cli("audit", "verify").exit_code == 0


def test_restore_refuses_a_backup_whose_audit_chain_was_edited(history: Any, tmp_path: Path) -> None:
    cli = history
    backup = tmp_path / "b.db"
    assert cli("backup", str(backup)).exit_code == 0
    conn = sqlite3.connect(backup)
    with conn:
        conn.execute("UPDATE audit_log SET operator = 'someone else' WHERE id = 2")
    conn.close()
    around = _files(tmp_path)
    env, data = _fresh(tmp_path)
    _one_line_error(cli("restore", str(backup), env=env), "does not verify", "entry 2 was edited", "nothing restored")
    assert not data.exists() and _files(tmp_path) == around


def test_restore_over_a_database_that_cannot_be_read_keeps_its_bytes(history: Any, tmp_path: Path) -> None:
    cli = history
    backup = tmp_path / "b.db"
    assert cli("backup", str(backup)).exit_code == 0
    live = tmp_path / "data" / "broadcast.db"
    for sidecar in ("-wal", "-shm"):
        live.with_name(live.name + sidecar).unlink(missing_ok=True)
    live.write_bytes(b"\x00garbage" * 1000)
    r = cli("restore", str(backup), "--force", "--json")
    assert r.exit_code == 0, r
    assert Path(r.json()["kept_aside"]).read_bytes() == b"\x00garbage" * 1000
    assert cli("audit", "verify").exit_code == 0
    (entry,) = _audit(f"sqlite:///{live}", "db.restore")
    assert entry.details["replaced"] is None  # nothing could be read from it


def test_restore_migrates_an_older_backup(tmp_path: Path, cli: Any) -> None:
    from broadcast.db.engine import make_engine
    from tests.helpers.migrations import migrate_only_to

    old = tmp_path / "v3.db"
    engine = make_engine(f"sqlite:///{old}")
    migrate_only_to(engine, 3)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO groups (name, created_at) VALUES ('党工委', '2026-01-01 00:00:00')"))
    engine.dispose()
    env, data = _fresh(tmp_path)
    r = cli("restore", str(old), "--json", env=env)
    assert r.exit_code == 0, r
    assert (r.json()["schema_version"], r.json()["migrated_to"]) == (3, LATEST)
    assert _files(data) == {"broadcast.db"}  # no .v3.bak: the original is the backup file itself
    assert cli("db", "status", "--json", env=env).json()["version"] == LATEST
    assert cli("group", "list", "--json", env=env).json()[0]["name"] == "党工委"
    assert cli("audit", "verify", env=env).exit_code == 0


# -- backup's own refusals ----------------------------------------------------------------------------


def test_backup_of_a_missing_database_is_a_clear_error(cli: Any, tmp_path: Path) -> None:
    r = cli("backup", str(tmp_path / "b.db"))
    _one_line_error(r, "no database at", str(tmp_path / "data" / "broadcast.db"))
    assert not (tmp_path / "data" / "broadcast.db").exists() and not (tmp_path / "b.db").exists()


def test_backup_refuses_the_live_database_and_an_existing_file(history: Any, tmp_path: Path) -> None:
    cli = history
    live = tmp_path / "data" / "broadcast.db"
    _one_line_error(cli("backup", str(live)), "is the database in use")
    _one_line_error(cli("backup", str(live.with_name("broadcast.db-wal"))), "is the database in use")
    target = tmp_path / "b.db"
    target.write_text("keep me")
    _one_line_error(cli("backup", str(target)), "already exists", "--force")
    assert target.read_text() == "keep me"
    assert cli("backup", str(target), "--force").exit_code == 0
    assert target.read_bytes().startswith(b"SQLite format 3\x00")
    _one_line_error(cli("backup", str(tmp_path / "no" / "b.db")), "no directory")


def test_a_backup_interrupted_before_its_rename_leaves_nothing(history: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import broadcast.db.backup as backup_mod
    from broadcast.config import load_settings

    def killed(*_: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(backup_mod.os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            backup_mod.backup(load_settings(), tmp_path / "b.db")
    assert not any(name.startswith((".b.db", "b.db")) for name in _files(tmp_path))
    assert _audit(os.environ["BROADCAST_DATABASE_URL"], "db.backup") == []


# -- on both stores: the round trip --------------------------------------------------------------------


@pytest.fixture
def second_store(store: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of another, empty database of the same kind as the test's."""
    if store.startswith("sqlite"):
        yield _fresh(tmp_path)[0]
        return
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    with pg_schema() as url:
        yield {"BROADCAST_DATABASE_URL": url}


@pytest.mark.both_stores
def test_backup_and_restore_round_trip(history: Any, tmp_path: Path, store: str, second_store: dict[str, str]) -> None:
    cli = history
    assert cli("group", "budget", "党工委", "--monthly", "300").exit_code == 0
    backup = tmp_path / "b.db"
    r = cli("backup", str(backup), "--json")
    assert r.exit_code == 0, r
    made = r.json()
    assert made["method"] == ("sqlite backup API" if store.startswith("sqlite") else "db copy")
    assert made["rows"]["groups"] == 2 and made["rows"]["deliveries"] == 1 and made["audit_ok"]
    assert made["rows"]["budgets"] == 1
    assert backup.read_bytes()[:16] == b"SQLite format 3\x00" and not backup.with_name("b.db-wal").exists()

    r = cli("restore", str(backup), "--json", env=second_store)
    assert r.exit_code == 0, r
    assert r.json()["rows"]["groups"] == 2
    assert cli("audit", "verify", env=second_store).exit_code == 0
    assert cli("group", "show", "党工委", "--json", env=second_store).json()["subgroups"] == ["一支部"]
    assert cli("group", "budget", "党工委", "--json", env=second_store).json()["monthly"] == "300.00"
    assert cli("report", "--json", env=second_store).json()["total"]["deliveries"] == 1
    assert cli("optout", "list", "--json", env=second_store).json()[0]["phone"].endswith("8002")
    assert cli("group", "add", "二支部", env=second_store).exit_code == 0  # new ids follow the restored ones
    assert cli("audit", "verify", env=second_store).exit_code == 0
    (entry,) = _audit(second_store["BROADCAST_DATABASE_URL"], "db.restore")
    assert entry.details["sha256"] == made["sha256"]

    r = cli("restore", str(backup), "--force", env=second_store)
    if store.startswith("sqlite"):
        assert r.exit_code == 0, r
    else:  # PostgreSQL data is never replaced: restore into an empty database
        _one_line_error(r, "already holds data", "pg_dump")
