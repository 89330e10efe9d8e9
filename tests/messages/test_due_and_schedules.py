"""Quiet hours, lateness and `due` at the edges; daily schedules; the schema of v0002."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL

BOB = {"BROADCAST_OPERATOR": "bob"}


@pytest.fixture
def setup(cli, tmp_path: Path, monkeypatch):
    tdir = tmp_path / "templates"
    (tdir / "series").mkdir(parents=True)
    (tdir / "series" / "早餐.txt").write_text(
        "# 精神早餐\n{date}{weekday} 第一句\n\n第二句\n第三句\n第四句\n", encoding="utf-8"
    )
    monkeypatch.setenv("BROADCAST_TEMPLATES_DIR", str(tdir))
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    assert cli("group", "add", "一支部").exit_code == 0
    assert cli("member", "add", "张三", "13800138001", "-g", "一支部").exit_code == 0
    return tdir


def approved_at(cli, when: str) -> int:
    r = cli("message", "new", "--text", "通知", "--to", "一支部", "--at", when, "--json")
    assert r.exit_code == 0, r
    mid = r.json()["id"]
    assert cli("message", "approve", str(mid), env=BOB).exit_code == 0
    return mid


def due_at(cli, now: str) -> dict:
    r = cli("due", "--json", env={"BROADCAST_NOW": now})
    assert r.exit_code == 0, r
    data = r.json()
    assert set(data) >= {"due", "waiting"}
    return data


def state(cli, now: str, mid: int) -> str:
    data = due_at(cli, now)
    if any(d["id"] == mid for d in data["due"]):
        return "due"
    return next(w["code"] for w in data["waiting"] if w["id"] == mid)


def test_due_json_shape(cli, setup):
    mid = approved_at(cli, "2026-11-27 12:00")
    pending = cli("message", "new", "--text", "待批", "--to", "一支部", "--json").json()["id"]
    data = due_at(cli, "2026-11-27T12:00")
    assert [d["id"] for d in data["due"]] == [mid]
    assert {"id", "status", "send_after"} <= set(data["due"][0])
    (wait,) = data["waiting"]
    assert wait["id"] == pending and wait["code"] == "approval" and "approval" in wait["reason"]
    assert {"id", "reason", "status", "code"} <= set(wait)


def test_morning_edge_0659_0700(cli, setup):
    mid = approved_at(cli, "2026-11-28 06:30")  # inside quiet hours: may first go at 07:00
    assert cli("message", "show", str(mid), "--json").json()["send_after"] == "2026-11-27T23:00:00+00:00"
    assert state(cli, "2026-11-28T06:29", mid) == "scheduled"
    assert state(cli, "2026-11-28T06:59", mid) == "scheduled"
    assert state(cli, "2026-11-28T07:00", mid) == "due"
    # lateness counts from 07:00, not 06:30: 09:00 is exactly 2h, still on time
    assert state(cli, "2026-11-28T08:45", mid) == "due"
    assert state(cli, "2026-11-28T09:00", mid) == "due"
    assert state(cli, "2026-11-28T09:01", mid) == "too_late"


def test_evening_edge_2059_2100(cli, setup):
    mid = approved_at(cli, "2026-11-27 20:30")
    assert state(cli, "2026-11-27T20:59", mid) == "due"
    r = due_at(cli, "2026-11-27T21:00")
    (w,) = [w for w in r["waiting"] if w["id"] == mid]
    assert w["code"] == "quiet_hours" and "2026-11-28 07:00" in w["reason"]
    assert state(cli, "2026-11-27T22:30", mid) == "quiet_hours"  # 2h late, but quiet
    assert state(cli, "2026-11-28T00:00", mid) == "too_late"  # midnight: 3.5h late
    assert state(cli, "2026-11-28T07:00", mid) == "too_late"  # no surprise in the morning


def test_late_evening_message_moves_across_the_date(cli, setup):
    mid = approved_at(cli, "2026-11-27 23:30")
    assert cli("message", "show", str(mid), "--json").json()["send_after"] == "2026-11-27T23:00:00+00:00"
    assert state(cli, "2026-11-28T00:00", mid) == "scheduled"
    assert state(cli, "2026-11-28T07:00", mid) == "due"
    midnight = approved_at(cli, "2026-11-28 00:00")
    assert state(cli, "2026-11-28T06:59", midnight) == "scheduled"
    assert state(cli, "2026-11-28T07:00", midnight) == "due"


def test_expire_overdue_records_the_reason(cli, setup, ws, monkeypatch):
    from broadcast.clock import parse_local
    from broadcast.messages.timing import due, expire_overdue

    late = approved_at(cli, "2026-11-28 07:30")
    ok = approved_at(cli, "2026-11-28 09:00")
    unapproved = cli("message", "new", "--text", "x", "--to", "一支部", "--at", "2026-11-28 07:30", "--json").json()["id"]
    now = parse_local("2026-11-28 09:31", "Asia/Shanghai")
    assert expire_overdue(ws, parse_local("2026-11-28 09:30", "Asia/Shanghai")) == []
    expired = expire_overdue(ws, now)
    assert sorted(e.id for e in expired) == [late, unapproved]
    shown = cli("message", "show", str(late), "--json").json()
    assert shown["status"] == "expired" and "2h1m late" in shown["status_reason"] and "limit 2h" in shown["status_reason"]
    assert "not approved in time" in cli("message", "show", str(unapproved), "--json").json()["status_reason"]
    assert [d.id for d in due(ws, now).due] == [ok]
    assert expire_overdue(ws, now) == []


def test_max_lateness_and_quiet_hours_settings(cli, setup, monkeypatch):
    monkeypatch.setenv("BROADCAST_MAX_LATENESS", "30m")
    mid = approved_at(cli, "2026-11-28 07:30")
    assert state(cli, "2026-11-28T08:00", mid) == "due"
    assert state(cli, "2026-11-28T08:01", mid) == "too_late"
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    night = approved_at(cli, "2026-11-28 23:00")
    assert state(cli, "2026-11-28T23:00", night) == "due"


def test_asap_message_counts_from_approval(cli, setup):
    mid = cli("message", "new", "--text", "尽快", "--to", "一支部", "--json").json()["id"]
    assert state(cli, "2026-11-27T22:00", mid) == "approval"
    assert cli("message", "approve", str(mid), env={**BOB, "BROADCAST_NOW": "2026-11-27T22:00"}).exit_code == 0
    assert state(cli, "2026-11-27T22:30", mid) == "scheduled"
    assert state(cli, "2026-11-28T07:00", mid) == "due"


def test_due_human_output(cli, setup):
    approved_at(cli, "2026-11-27 12:00")
    out = cli("due", env={"BROADCAST_NOW": "2026-11-27T12:00"}).stdout
    assert "Due" in out and "通知" in out
    assert "Nothing is due" in cli("due", env={"BROADCAST_NOW": "2026-11-27T22:00"}).stdout


def daily(cli, *args: str, env: dict[str, str] | None = None) -> dict:
    r = cli("schedule", "daily", "--series", "早餐", "--to", "一支部", "--time", "07:30", *args, "--json", env=env)
    assert r.exit_code == 0, r
    return r.json()


def test_daily_creates_one_message_per_line_on_consecutive_days(cli, setup):
    data = daily(cli)
    assert [m["date"] for m in data["messages"]] == ["2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01"]
    assert all(m["status"] == "pending_approval" for m in data["messages"])
    first = cli("message", "show", str(data["messages"][0]["id"]), "--json").json()
    assert first["body"] == "11月28日星期六 第一句"
    assert first["scheduled_at"] == "2026-11-27T23:30:00+00:00" and first["schedule_id"] == data["id"]
    second = cli("message", "show", str(data["messages"][1]["id"]), "--json").json()
    assert second["body"] == "第二句" and second["scheduled_at"] == "2026-11-28T23:30:00+00:00"


def test_daily_start_today_when_time_is_ahead_and_days(cli, setup):
    data = daily(cli, "--days", "2", env={"BROADCAST_NOW": "2026-11-27T07:00"})
    assert [m["date"] for m in data["messages"]] == ["2026-11-27", "2026-11-28"]
    data = daily(cli, "--start", "2026-12-10")
    assert data["messages"][0]["date"] == "2026-12-10" and len(data["messages"]) == 4
    for bad in (["--days", "5"], ["--days", "0"], ["--start", "2026-11-01"], ["--start", "someday"]):
        r = cli("schedule", "daily", "--series", "早餐", "--to", "一支部", "--time", "07:30", *bad)
        assert r.exit_code == 1, (bad, r)
    assert cli("schedule", "daily", "--series", "早餐", "--all", "--time", "7.30").exit_code == 1
    assert cli("schedule", "daily", "--series", "没有", "--all", "--time", "07:30").exit_code == 1


def test_series_by_path(cli, setup, tmp_path):
    path = tmp_path / "other.txt"
    path.write_text("甲\n乙\n", encoding="utf-8")
    r = cli("schedule", "daily", "--series", str(path), "--all", "--time", "08:00", "--json")
    assert r.exit_code == 0 and len(r.json()["messages"]) == 2


def test_schedule_approve_and_cancelled_day_is_skipped_not_shifted(cli, setup):
    data = daily(cli)
    sid, ids = data["id"], [m["id"] for m in data["messages"]]
    assert cli("schedule", "approve", str(sid)).exit_code == 1  # the author cannot
    r = cli("schedule", "approve", str(sid), "--json", env=BOB)
    assert r.exit_code == 0 and r.json()["approved"] == ids
    assert cli("message", "cancel", str(ids[1])).exit_code == 0
    assert state(cli, "2026-11-28T07:30", ids[0]) == "due"
    data29 = due_at(cli, "2026-11-29T07:30")
    assert not data29["due"]  # day 2 cancelled: nothing goes out that day
    assert state(cli, "2026-11-30T07:30", ids[2]) == "due"  # day 3 keeps its own line and day
    shown = cli("schedule", "show", str(sid), "--json").json()
    assert [m["status"] for m in shown["messages"]] == ["approved", "cancelled", "approved", "approved"]
    assert shown["messages"][2]["body"] == "第三句" and shown["messages"][2]["date"] == "2026-11-30"


def test_schedule_pause_resume_cancel(cli, setup):
    data = daily(cli)
    sid, ids = data["id"], [m["id"] for m in data["messages"]]
    cli("schedule", "approve", str(sid), env=BOB)
    assert cli("schedule", "pause", str(sid)).exit_code == 0
    assert state(cli, "2026-11-28T07:30", ids[0]) == "schedule_paused"
    assert cli("schedule", "pause", str(sid)).exit_code == 1
    assert cli("schedule", "resume", str(sid), "--json").json() == {"id": sid, "status": "active"}
    assert state(cli, "2026-11-28T07:30", ids[0]) == "due"
    assert cli("schedule", "cancel", str(sid)).exit_code == 0
    listed = cli("schedule", "list", "--json").json()
    assert listed[0]["status"] == "cancelled" and listed[0]["counts"] == {"cancelled": 4}
    assert cli("schedule", "resume", str(sid)).exit_code == 1
    assert cli("schedule", "show", "99").exit_code == 1
    assert "早餐" in cli("schedule", "list").stdout


def test_core_does_not_import_the_cli():
    import subprocess
    import sys

    code = (
        "import sys; import broadcast.messages.store, broadcast.messages.actions, broadcast.messages.schedules, "
        "broadcast.messages.timing, broadcast.clock; "
        "assert 'typer' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
