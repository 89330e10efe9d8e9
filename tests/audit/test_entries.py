"""Every state-changing command leaves exactly the audit entries described, in order; reads
leave none except unmasked views and exports; details never hold a full phone number."""

from __future__ import annotations

import json

import pytest

from tests.helpers.files import write_csv

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL


def actions(cli, since_id=0):
    return [(e["action"], e["object"], e["operator"]) for e in cli("audit", "log", "--json").json()][since_id:]


def new_entries(cli, before):
    return [(a, o) for a, o, _ in actions(cli)[before:]]


@pytest.fixture
def office(monkeypatch):
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    monkeypatch.setenv("BROADCAST_SIMULATOR_FAILURE_RATE", "0")
    monkeypatch.setenv("BROADCAST_SIMULATOR_LATENCY_MS", "0")
    monkeypatch.setenv("BROADCAST_SIMULATOR_UNDELIVERED_RATE", "0")


def step(cli, *args, env=None):
    r = cli(*args, env=env)
    assert r.exit_code in (0, 3), r
    return r


def test_each_command_leaves_its_entries(cli, office, tmp_path):
    n = 0

    def expect(*args, entries, env=None):
        nonlocal n
        step(cli, *args, env=env)
        got = new_entries(cli, n)
        assert got == entries, (args, got)
        n += len(got)

    expect("group", "add", "党工委", entries=[("group.add", "group:党工委")])
    expect("group", "add", "一支部", "--parent", "党工委", entries=[("group.add", "group:一支部")])
    expect("group", "add", "旧名", entries=[("group.add", "group:旧名")])
    expect("group", "rename", "旧名", "二支部", entries=[("group.rename", "group:二支部")])
    expect("member", "add", "张三", "13800138001", "-g", "一支部", entries=[("member.add", "member:138****8001")])
    expect("member", "add", "张三", "13800138001", "-g", "二支部", entries=[("member.join", "member:138****8001")])
    expect("member", "add", "张三", "13800138001", "-g", "二支部", entries=[])  # nothing changed: nothing recorded
    expect("member", "edit", "13800138001", "--title", "书记", entries=[("member.edit", "member:138****8001")])
    f = write_csv(tmp_path / "l.csv", [[1, "李四", "13800138002", "一支部", "", ""]])
    expect("member", "import", f, "--dry-run", entries=[])
    expect("member", "import", f, entries=[("member.import", "file:l.csv")])
    expect("member", "export", tmp_path / "out.csv", entries=[("member.export", "file:out.csv")])
    expect("optout", "add", "13800138002", "--reason", "退订", entries=[("optout.add", "phone:138****8002")])
    expect("optout", "remove", "13800138002", entries=[("optout.remove", "phone:138****8002")])
    expect("group", "list", entries=[])
    expect("member", "list", entries=[])
    expect("message", "new", "--text", "{name}同志：下午开会", "--to", "党工委", entries=[("message.create", "message:1")])
    expect("message", "edit", "1", "--text", "{name}同志：下午三点开会", entries=[("message.edit", "message:1")])
    expect("message", "approve", "1", env={"BROADCAST_OPERATOR": "leader"}, entries=[("message.approve", "message:1")])
    expect("message", "new", "--text", "作废", "--all", entries=[("message.create", "message:2")])
    expect("message", "reject", "2", "--reason", "重复", env={"BROADCAST_OPERATOR": "leader"},
           entries=[("message.reject", "message:2")])
    expect("message", "cancel", "2", entries=[("message.cancel", "message:2")])
    expect("run", entries=[("send.start", "message:1"), ("send.finish", "message:1")])
    expect("log", entries=[])
    expect("log", "--unmasked", entries=[("log.view_unmasked", "deliveries")])
    expect("log", "--csv", tmp_path / "log.csv", entries=[("log.export", "file:log.csv")])
    expect("report", entries=[])
    expect("schedule", "daily", "--series", str(_series(tmp_path)), "--all", "--time", "07:30", "--start", "2026-11-28",
           "--days", "2", entries=[("schedule.create", "schedule:1"), ])
    expect("schedule", "approve", "1", env={"BROADCAST_OPERATOR": "leader"}, entries=[("schedule.approve", "schedule:1")])
    expect("schedule", "pause", "1", entries=[("schedule.pause", "schedule:1")])
    expect("schedule", "resume", "1", entries=[("schedule.resume", "schedule:1")])
    expect("schedule", "cancel", "1", entries=[("schedule.cancel", "schedule:1")])
    expect("member", "remove", "13800138001", entries=[("member.remove", "member:138****8001")])
    expect("purge", "--before", "2026-12-31", "--yes", entries=[("purge", "deliveries")])
    assert cli("audit", "verify").exit_code == 0


def _series(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text("第一天\n第二天\n", encoding="utf-8")
    return p


def test_operator_and_configuration_of_a_send_are_recorded(cli, office, monkeypatch):
    monkeypatch.setenv("BROADCAST_RATE", "50")
    step(cli, "group", "add", "一支部")
    step(cli, "member", "add", "张三", "13800138001", "-g", "一支部")
    step(cli, "message", "new", "--text", "通知", "--to", "一支部")
    step(cli, "message", "approve", "1", env={"BROADCAST_OPERATOR": "leader"})
    step(cli, "run", env={"BROADCAST_OPERATOR": "cron"})
    log = cli("audit", "log", "--json").json()
    start = next(e for e in log if e["action"] == "send.start")
    assert start["operator"] == "cron"
    assert {k: start["details"][k] for k in ("audience", "gateway", "rate", "in_doubt")} == \
        {"audience": 1, "gateway": "simulator", "rate": 50.0, "in_doubt": "hold"}
    assert "13800138001" not in json.dumps(log, ensure_ascii=False)  # never a full number in the trail
