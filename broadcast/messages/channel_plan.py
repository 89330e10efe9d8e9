"""Who gets a message on which channel, decided when its audience is frozen (``messages.channels``).

``plan`` walks the audience once, in member order. Each person gets one delivery, on the first of
the message's channels where they have an address and have not opted out of it; a person covered
by a group-chat post (``group-robots``) gets no delivery of their own: the post is one delivery for
the chat and ``delivery_people`` links it to them. Nobody reachable: left out and counted.

A group's chat is posted to through one robot: its WeCom robot, else its DingTalk one, else its
Feishu one (``broadcast group robot``); the post stands for the group's own members in the
audience (members of its sub-groups are in their own chats), except those opted out of that
platform.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.channel_models import GroupRobot
from broadcast.db.models import Group, Member, Membership, MessageTarget
from broadcast.db.types import table
from broadcast.messages.audience import AudienceMember
from broadcast.messages.channels import ADDRESS_COLUMN, OPTOUT_KEY, PLATFORM_OF_GATEWAY, ROBOT_GATEWAY, robot_address
from broadcast.recipients.groups import subtree_ids
from broadcast.recipients.optout_sets import opted_out

members_t = table(Member)
memberships_t = table(Membership)
groups_t = table(Group)
robots_t = table(GroupRobot)
targets_t = table(MessageTarget)

ROBOT_ORDER = ("wecom", "dingtalk", "feishu")


@dataclass(frozen=True)
class Assigned:
    """One person's delivery: the channel (a gateway name: ``sms`` for the SMS gateways) and the address there."""

    person: AudienceMember
    channel: str
    address: str = ""


@dataclass
class Post:
    """One post into a group's chat, standing for ``people``."""

    group_id: int
    group_name: str
    gateway: str  # wecom-robot | dingtalk-robot | feishu-robot
    people: list[AudienceMember] = field(default_factory=list)

    @property
    def address(self) -> str:
        return robot_address(self.group_id)


@dataclass
class Plan:
    assigned: list[Assigned] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    unreachable: list[AudienceMember] = field(default_factory=list)  # no channel of theirs is open
    opted_out: int = 0  # of the unreachable, those opted out of a channel that would have reached them

    def counts(self) -> dict[str, int]:
        """Deliveries per channel (a post counts once), plus ``people_in_chats`` and ``unreachable``."""
        c = collections.Counter(a.channel for a in self.assigned)
        for p in self.posts:
            c[p.gateway] += 1
        out = dict(c)
        covered = {m.phone for p in self.posts for m in p.people}
        if covered:
            out["people_in_chats"] = len(covered)
        if self.unreachable:
            out["unreachable"] = len(self.unreachable)
        return out


def _closed(keys: frozenset[str] | None, key: str) -> bool:
    return bool(keys) and ("all" in keys or key in keys)  # type: ignore[operator]


def plan(conn: Connection, message_id: int, channels: Sequence[str], people: Sequence[AudienceMember],
         target_all: bool) -> Plan:
    """The deliveries of a message on ``channels`` for ``people`` (its audience, SMS opt-outs
    included: another channel may still reach them)."""
    opts = opted_out(conn)
    contacts = _contacts(conn, [p.member_id for p in people if p.member_id is not None], channels)
    posts = _posts(conn, message_id, target_all, people, opts) if "group-robots" in channels else {}
    covered: set[str] = {m.phone for p in posts.values() for m in p.people}
    out = Plan(posts=[p for p in posts.values() if p.people])
    for person in people:
        keys = opts.get(person.phone)
        closed = False
        for ch in channels:
            if ch == "group-robots":
                if person.phone in covered:
                    break
                continue
            if ch == "sms":
                if not _closed(keys, "sms"):
                    out.assigned.append(Assigned(person, "sms"))
                    break
                closed = True
                continue
            address = contacts.get(person.member_id or -1, {}).get(ch, "")
            if address and not _closed(keys, OPTOUT_KEY[ch]):
                out.assigned.append(Assigned(person, ch, address))
                break
            closed = closed or bool(address)
        else:
            out.unreachable.append(person)
            out.opted_out += closed
    return out


def _contacts(conn: Connection, member_ids: list[int], channels: Sequence[str]) -> dict[int, dict[str, str]]:
    wanted = [ch for ch in channels if ch in ADDRESS_COLUMN]
    if not wanted or not member_ids:
        return {}
    cols = [members_t.c[ADDRESS_COLUMN[ch]] for ch in wanted]
    out: dict[int, dict[str, str]] = {}
    for i in range(0, len(member_ids), 5000):
        for row in conn.execute(sa.select(members_t.c.id, *cols).where(members_t.c.id.in_(member_ids[i:i + 5000]))):
            values = {ch: (v or "").strip() for ch, v in zip(wanted, row[1:])}
            if any(values.values()):
                out[row[0]] = values
    return out


def _posts(conn: Connection, message_id: int, target_all: bool, people: Sequence[AudienceMember],
           opts: dict[str, frozenset[str]]) -> dict[int, Post]:
    """One post per group chat in the message's scope that has a robot, with its members in the audience."""
    q = sa.select(groups_t.c.id, groups_t.c.name, robots_t.c.platform).join(robots_t, robots_t.c.group_id == groups_t.c.id)
    if not target_all:
        gids = list(conn.execute(sa.select(targets_t.c.group_id).where(targets_t.c.message_id == message_id)).scalars())
        if not gids:
            return {}
        q = q.where(groups_t.c.id.in_(sa.select(subtree_ids(conn, gids).c.id)))
    chosen: dict[int, Post] = {}
    for gid, name, platform in conn.execute(q):
        if platform not in ROBOT_GATEWAY:
            continue
        have = chosen.get(gid)
        if have is None or ROBOT_ORDER.index(platform) < ROBOT_ORDER.index(PLATFORM_OF_GATEWAY[have.gateway]):
            chosen[gid] = Post(gid, name, ROBOT_GATEWAY[platform])
    if not chosen:
        return {}
    by_member = {p.member_id: p for p in people if p.member_id is not None}
    rows = conn.execute(sa.select(memberships_t.c.group_id, memberships_t.c.member_id)
                        .where(memberships_t.c.group_id.in_(list(chosen))).order_by(memberships_t.c.member_id))
    for gid, mid in rows:
        person = by_member.get(mid)
        post = chosen[gid]
        if person is not None and not _closed(opts.get(person.phone), PLATFORM_OF_GATEWAY[post.gateway]):
            post.people.append(person)
    return chosen

