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
    """What the two-way intake stores for ``投稿<text>`` from a branch's submitter: the reply in
    ``inbound`` and a pending ``submissions`` row for the branch the member submits for."""
    from broadcast.db.dispatch_models import InboundMessage
    from broadcast.db.models import Member, Membership
    from broadcast.db.twoway_models import Submission
    from broadcast.db.types import table

    members, memberships = table(Member), table(Membership)
    inbound, subs = table(InboundMessage), table(Submission)
    now = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    with ws.engine.begin() as conn:
        mid, gid = conn.execute(
            sa.select(members.c.id, memberships.c.group_id).join(memberships, memberships.c.member_id == members.c.id)
            .where(members.c.phone == "+86" + phone, memberships.c.submitter.is_(True))
        ).one()
        iid = conn.execute(inbound.insert().values(
            gateway="simulator", phone="+86" + phone, to_addr="1069000", text="投稿" + text, sent_at=now,
            received_at=now, raw=("投稿" + text).encode().hex(), member_id=mid, kind="submission",
        )).inserted_primary_key[0]
        return int(conn.execute(subs.insert().values(
            group_id=gid, member_id=mid, inbound_id=iid, source="sms", text=text, status="pending",
            created_by="intake", created_at=now,
        )).inserted_primary_key[0])


def actions(cli) -> list[tuple[str, str, str]]:
    return [(e["action"], e["object"], e["operator"]) for e in ok(cli, "audit", "log", "--json").json()]
