"""An organisation on several channels, for the channel tests: groups and members, contact points
set straight in the database, robots of the groups' chats, and the local fakes' settings."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from broadcast.db.channel_models import ChannelOptOut, GroupRobot
from broadcast.db.dispatch_models import Delivery
from broadcast.db.models import Group, Member, OptOut
from broadcast.db.types import utcnow
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member

CORP, CORP_SECRET, AGENT = "ww-chan-corp", "chan-corp-secret-1f2e", 1000002


def phone(i: int) -> str:
    return f"+86139{i:08d}"


def build_org(ws: Any, branches: dict[str, list[tuple[str, int, str, str]]]) -> None:
    """党工委 > each branch: [(name, number, wecom userid, email)] ("" = none)."""
    add_group(ws, "党工委")
    for branch, people in branches.items():
        add_group(ws, branch, parent="党工委")
        for name, i, wecom, email in people:
            add_member(ws, name, phone(i), [branch])
            with ws.engine.begin() as conn:
                m = Member.__table__
                conn.execute(m.update().where(m.c.phone == phone(i)).values(wecom=wecom, email=email))


def set_robot(ws: Any, group: str, platform: str, url: str, secret: str = "") -> None:
    with ws.engine.begin() as conn:
        gid = conn.execute(sa.select(Group.__table__.c.id).where(Group.__table__.c.name == group)).scalar_one()
        conn.execute(GroupRobot.__table__.insert().values(group_id=gid, platform=platform, url=url, secret=secret,
                                                          set_by="tester", set_at=utcnow()))


def opt_out(ws: Any, number: int, channel: str, all_channels: bool = False) -> None:
    with ws.engine.begin() as conn:
        if channel == "sms":
            conn.execute(OptOut.__table__.insert().values(phone=phone(number), reason="test", created_by="tester",
                                                          created_at=utcnow(), all_channels=all_channels))
        else:
            conn.execute(ChannelOptOut.__table__.insert().values(phone=phone(number), channel=channel, reason="test",
                                                                 created_by="tester", created_at=utcnow()))


def wecom_app_env(url: str) -> dict[str, str]:
    return {"BROADCAST_WECOM_APP_CORP_ID": CORP, "BROADCAST_WECOM_APP_CORP_SECRET": CORP_SECRET,
            "BROADCAST_WECOM_APP_AGENT_ID": str(AGENT), "BROADCAST_WECOM_APP_ENDPOINT": url}


def deliveries(ws: Any) -> list[dict[str, Any]]:
    d = Delivery.__table__
    with ws.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(d).order_by(d.c.id))]


def by_phone(ws: Any) -> dict[str, dict[str, Any]]:
    return {r["phone"]: r for r in deliveries(ws)}


def robots_env(prefix: str, url: str) -> dict[str, str]:
    return {f"BROADCAST_{prefix}_ROBOT_ENDPOINT": url, f"BROADCAST_{prefix}_ROBOT_ROBOTS": json.dumps({})}
