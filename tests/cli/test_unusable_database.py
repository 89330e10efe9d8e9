"""A database the command cannot use ends in one clear line and exit 1: never a traceback, never
a half-written state. Read-only file, a folder that cannot exist, a schema newer than the code,
a database locked past the busy timeout, a file that is not a database, a full disk."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

COMMANDS = [("group", "add", "新支部"), ("group", "list"), ("member", "list"), ("audit", "verify"),
            ("message", "list"), ("run",), ("db", "status")]


def one_clear_line(r: Any, *words: str) -> None:
    assert r.exit_code == 1, r
    assert "Traceback" not in r.stderr + r.stdout, r
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("Error: "), r
    for w in words:
        assert w in r.stderr, r


@pytest.fixture
def db(cli: Any, tmp_path: Path) -> Path:
    assert cli("group", "add", "一支部").exit_code == 0
    return tmp_path / "data" / "broadcast.db"


def audit_entries(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]


def test_a_read_only_database_refuses_writes_in_one_line_and_still_reads(cli: Any, db: Path, monkeypatch) -> None:
    # root ignores file modes; SQLite's read-only open is what a chmod 444 file gives anyone else
    if os.geteuid() == 0:
        monkeypatch.setenv("BROADCAST_DATABASE_URL", f"sqlite:///file:{db}?mode=ro&uri=true")
    else:
        db.chmod(0o444)
        db.parent.chmod(0o555)
    try:
        before = audit_entries(db)
        r = cli("group", "add", "新支部")
        one_clear_line(r, "read-only")
        assert cli("group", "list", "--json").json()[0]["name"] == "一支部"
        assert audit_entries(db) == before
    finally:
        db.parent.chmod(0o755)
        db.chmod(0o644)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_a_folder_that_cannot_exist(cli: Any, tmp_path: Path, monkeypatch, args: tuple[str, ...]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BROADCAST_DATABASE_URL", f"sqlite:///{blocker / 'sub' / 'broadcast.db'}")
    one_clear_line(cli(*args), str(blocker))


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_a_file_that_is_not_a_database(cli: Any, tmp_path: Path, monkeypatch, args: tuple[str, ...]) -> None:
    bad = tmp_path / "members.xlsx.db"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 4000)
    monkeypatch.setenv("BROADCAST_DATABASE_URL", f"sqlite:///{bad}")
    one_clear_line(cli(*args), "not an SQLite database")
    assert bad.read_bytes()[:4] == b"PK\x03\x04"


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_a_schema_newer_than_the_code(cli: Any, db: Path, args: tuple[str, ...]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO broadcast_schema (version, description, applied_at) VALUES (999, 'future', '2030-01-01')")
    one_clear_line(cli(*args), "newer than this broadcast")


def test_a_database_locked_past_the_busy_timeout(cli: Any, db: Path, monkeypatch) -> None:
    monkeypatch.setenv("BROADCAST_BUSY_TIMEOUT_S", "0.3")
    before = audit_entries(db)
    holder = sqlite3.connect(db, isolation_level=None, timeout=0.1)
    holder.execute("BEGIN IMMEDIATE")  # another process mid-import
    try:
        one_clear_line(cli("group", "add", "新支部"), "locked by another process")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    names = [g["name"] for g in cli("group", "list", "--json").json()]
    assert names == ["一支部"] and audit_entries(db) == before
    assert cli("group", "add", "新支部").exit_code == 0  # and works once the lock is gone


@pytest.mark.slow  # starts a process with a file-size limit
def test_a_full_disk_writes_nothing(cli: Any, db: Path, tmp_path: Path) -> None:
    rows = "\n".join(f"成员{i},1380013{i:04d}" for i in range(6000))
    source = tmp_path / "名单.csv"
    source.write_text("姓名,手机\n" + rows + "\n", encoding="gbk")
    limit = db.stat().st_size + 30_000  # the disk fills part-way through the import

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    before = audit_entries(db)
    p = subprocess.run([sys.executable, "-m", "broadcast", "member", "import", str(source), "--group", "一支部"],
                       preexec_fn=small_disk, capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert p.returncode == 1, p
    assert "Traceback" not in p.stderr and p.stderr.startswith("Error: "), p.stderr
    assert "nothing was written" in p.stderr
    assert cli("member", "list", "--json").json() == []
    assert audit_entries(db) == before
    assert cli("audit", "verify").exit_code == 0
