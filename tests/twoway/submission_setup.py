"""Shared set-up of the submissions tests: an office with branches, submitters and a daily series."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

BOB = {"BROADCAST_OPERATOR": "bob"}


def ok(cli, *args, env=None):
    r = cli(*args, env=env)
    assert r.exit_code == 0, r
    return r


@pytest.fixture(name="office")
def office_fixture(cli, tmp_path: Path, monkeypatch):
    """党工委 over 一支部 and 二支部; 张三 (一支部, its submitter) and 李四 (二支部); schedule 1 sends
    the series 早餐 (4 lines, 2026-11-28 to 2026-12-01 at 07:30) to 党工委, not yet approved."""
    tdir = tmp_path / "templates"
    (tdir / "series").mkdir(parents=True)
    (tdir / "series" / "早餐.txt").write_text("第一句\n第二句\n第三句\n第四句\n", encoding="utf-8")
    for key, value in (("BROADCAST_TEMPLATES_DIR", str(tdir)), ("BROADCAST_NOW", "2026-11-27T10:00"),
                       ("BROADCAST_QUIET_HOURS", ""), ("BROADCAST_SIMULATOR_FAILURE_RATE", "0"),
                       ("BROADCAST_SIMULATOR_LATENCY_MS", "0"), ("BROADCAST_SIMULATOR_UNDELIVERED_RATE", "0")):
        monkeypatch.setenv(key, value)
    ok(cli, "group", "add", "党工委")
    ok(cli, "group", "add", "一支部", "--parent", "党工委")
    ok(cli, "group", "add", "二支部", "--parent", "党工委")
    ok(cli, "member", "add", "张三", "13800138001", "-g", "一支部")
    ok(cli, "member", "add", "李四", "13800138002", "-g", "二支部")
    ok(cli, "group", "submitter", "一支部", "13800138001")
    r = ok(cli, "schedule", "daily", "--series", "早餐", "--to", "党工委", "--time", "07:30", "--json")
    return r.json()


def sms_submission(ws, phone: str, text: str) -> int:
    """``投稿<text>`` from ``phone`` taken in by the two-way intake, as a reply pushed or read off a
    link would be; returns the pending submission's id."""
    from broadcast.gateways.base import Inbound
    from broadcast.twoway import intake

    now = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    body = "投稿" + text
    taken = intake.record(ws.engine, [Inbound("simulator", f"sub-{phone}-{hash(text)}", phone, "1069000", body, now,
                                              body.encode())], now, intake.Rules.of(ws.settings))
    assert taken.submissions == 1, taken
    with ws.engine.connect() as conn:
        return int(conn.execute(sa.text("select max(id) from submissions")).scalar_one())


def actions(cli) -> list[tuple[str, str, str]]:
    return [(e["action"], e["object"], e["operator"]) for e in ok(cli, "audit", "log", "--json").json()]
