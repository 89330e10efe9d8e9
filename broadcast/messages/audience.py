"""The audience of a message: who it reaches now.

Members of the targeted groups and all their sub-groups (or every member for ``--all``), minus
opt-outs, one copy per phone even when a person is in several targeted groups. A message with
``to_phone`` (an inbox reply) reaches that phone only, named from its member if there is one, and
nobody at all if it is opted out. The audience actually sent is frozen by the dispatch engine when
sending starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.models import Group, Member, Membership, Message, MessageTarget, OptOut
from broadcast.db.types import table
from broadcast.errors import NotFoundError
from broadcast.recipients.groups import audience, subtree_ids

__all__ = ["AudienceMember", "audience_of", "message_audience"]

messages_t = table(Message)
targets_t = table(MessageTarget)
groups_t = table(Group)
members_t = table(Member)
memberships_t = table(Membership)
optouts_t = table(OptOut)


@dataclass(frozen=True)
class AudienceMember:
    member_id: int | None  # None: a message to one phone that is no member's
    phone: str
    name: str
    group: str  # the first (by name) targeted group the person is in, for {group}


def audience_of(conn: Connection, group_ids: Sequence[int], target_all: bool,
                to_phone: str | None = None, with_optouts: bool = False) -> list[AudienceMember]:
    """The people a message to these groups (sub-groups included) or to everyone reaches now:
    one per phone, (SMS) opt-outs excluded unless ``with_optouts``, ordered by member id.
    ``to_phone``: that phone only."""
    if to_phone:
        return _one_phone(conn, to_phone)
    if target_all:
        everyone = sa.select(members_t.c.id, members_t.c.phone, members_t.c.name).order_by(members_t.c.id)
        if not with_optouts:
            everyone = everyone.where(~members_t.c.phone.in_(sa.select(optouts_t.c.phone)))
        people: list[tuple[int, str, str]] = [tuple(r) for r in conn.execute(everyone)]
        scope = None
    else:
        if not group_ids:
            return []
        people = [(r.member_id, r.phone, r.name) for r in audience(conn, list(group_ids), with_optouts)]
        scope = sa.select(subtree_ids(conn, list(group_ids)).c.id)
    q = sa.select(memberships_t.c.member_id, sa.func.min(groups_t.c.name)).join(
        groups_t, groups_t.c.id == memberships_t.c.group_id
    )
    if scope is not None:
        q = q.where(memberships_t.c.group_id.in_(scope))
    first_group = dict(conn.execute(q.group_by(memberships_t.c.member_id)).all())
    return [AudienceMember(mid, phone, name, first_group.get(mid, "")) for mid, phone, name in people]


def _one_phone(conn: Connection, phone: str) -> list[AudienceMember]:
    if conn.execute(sa.select(optouts_t.c.phone).where(optouts_t.c.phone == phone)).first() is not None:
        return []
    person = conn.execute(sa.select(members_t.c.id, members_t.c.name).where(members_t.c.phone == phone)).first()
    if person is None:
        return [AudienceMember(None, phone, "", "")]
    group = conn.execute(
        sa.select(sa.func.min(groups_t.c.name)).join(memberships_t, memberships_t.c.group_id == groups_t.c.id)
        .where(memberships_t.c.member_id == person.id)
    ).scalar()
    return [AudienceMember(person.id, phone, person.name, group or "")]


def message_audience(conn: Connection, message_id: int, with_optouts: bool = False) -> list[AudienceMember]:
    """The audience of message ``message_id`` as it is now (for the dispatch engine's freeze);
    ``with_optouts``: SMS opt-outs included (for a message on other channels too)."""
    row = conn.execute(
        sa.select(messages_t.c.target_all, messages_t.c.to_phone).where(messages_t.c.id == message_id)).first()
    if row is None:
        raise NotFoundError(f"no message {message_id}", hint="see 'broadcast message list'")
    if row.to_phone:
        return _one_phone(conn, row.to_phone)
    gids = list(conn.execute(sa.select(targets_t.c.group_id).where(targets_t.c.message_id == message_id)).scalars())
    return audience_of(conn, gids, bool(row.target_all), with_optouts=with_optouts)


def optout_skips(conn: Connection, message_id: int) -> int:
    """How many people the message's groups hold who are opted out (left out of the audience)."""
    row = conn.execute(
        sa.select(messages_t.c.target_all, messages_t.c.to_phone).where(messages_t.c.id == message_id)).first()
    if row is None:
        raise NotFoundError(f"no message {message_id}", hint="see 'broadcast message list'")
    if row.to_phone:
        return int(conn.execute(sa.select(sa.func.count()).select_from(optouts_t)
                                .where(optouts_t.c.phone == row.to_phone)).scalar_one())
    opted = sa.select(optouts_t.c.phone)
    q = sa.select(sa.func.count()).select_from(members_t).where(members_t.c.phone.in_(opted))
    if not row.target_all:
        gids = list(conn.execute(sa.select(targets_t.c.group_id).where(targets_t.c.message_id == message_id)).scalars())
        if not gids:
            return 0
        scope = sa.select(subtree_ids(conn, gids).c.id)
        q = q.where(members_t.c.id.in_(sa.select(memberships_t.c.member_id).where(memberships_t.c.group_id.in_(scope))))
    return int(conn.execute(q).scalar_one())
