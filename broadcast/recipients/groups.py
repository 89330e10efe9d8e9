"""Recipient groups. Groups nest (the committee above its branches); a group's audience is its
own members and those of all its sub-groups."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.models import Group, Member, Membership, OptOut
from broadcast.db.types import table, utcnow
from broadcast.errors import ConflictError, InputError, NotFoundError
from broadcast.workspace import Workspace

groups_t = table(Group)
members_t = table(Member)
memberships_t = table(Membership)
optouts_t = table(OptOut)

_SPACES = re.compile(r"\s+")


def clean_group_name(name: str) -> str:
    cleaned = _SPACES.sub(" ", name.replace("\u00a0", " ")).strip()
    if not cleaned:
        raise InputError("a group name cannot be empty")
    if len(cleaned) > 200:
        raise InputError(f"group name too long ({len(cleaned)} characters, at most 200)")
    if any(ord(c) < 32 for c in cleaned):
        raise InputError(f"group name {cleaned!r} contains control characters")
    return cleaned


@dataclass
class GroupInfo:
    name: str
    parent: str | None
    members: int  # direct members
    subgroups: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class GroupDetail(GroupInfo):
    reach: int = 0  # distinct members of the group and all its sub-groups, opt-outs excluded
    member_list: list[dict[str, object]] = field(default_factory=list)
    robots: list[dict[str, object]] = field(default_factory=list)  # its chat's robots, keys masked (robots.py)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["member_list"] = self.member_list
        return data


def group_id(conn: Connection, name: str) -> int:
    gid: int | None = conn.execute(sa.select(groups_t.c.id).where(groups_t.c.name == name)).scalar_one_or_none()
    if gid is None:
        raise NotFoundError(f"no group named {name!r}", hint="see 'broadcast group list'")
    return gid


def subtree_ids(conn: Connection, root_ids: list[int]) -> sa.CTE:
    """A recursive CTE of the given groups and all their descendants (column ``id``)."""
    tree = sa.select(groups_t.c.id).where(groups_t.c.id.in_(root_ids)).cte("tree", recursive=True)
    child = groups_t.alias("child")
    return tree.union(sa.select(child.c.id).join(tree, child.c.parent_id == tree.c.id))


def add_group(ws: Workspace, name: str, parent: str | None = None) -> GroupInfo:
    name = clean_group_name(name)
    with transaction(ws.engine, write=True) as conn:
        if conn.execute(sa.select(groups_t.c.id).where(groups_t.c.name == name)).first():
            raise ConflictError(f"group {name!r} already exists")
        parent_id = group_id(conn, clean_group_name(parent)) if parent else None
        conn.execute(groups_t.insert().values(name=name, parent_id=parent_id, created_at=utcnow()))
        note(conn, ws.operator, "group.add", f"group:{name}", parent=parent)
    return GroupInfo(name=name, parent=parent, members=0)


def list_groups(ws: Workspace) -> list[GroupInfo]:
    parent = groups_t.alias("parent")
    counts = (
        sa.select(memberships_t.c.group_id, sa.func.count().label("n"))
        .group_by(memberships_t.c.group_id)
        .subquery()
    )
    query = (
        sa.select(groups_t.c.id, groups_t.c.name, parent.c.name, sa.func.coalesce(counts.c.n, 0))
        .outerjoin(parent, groups_t.c.parent_id == parent.c.id)
        .outerjoin(counts, counts.c.group_id == groups_t.c.id)
        .order_by(groups_t.c.name)
    )
    with transaction(ws.engine) as conn:
        rows = conn.execute(query).all()
        children: dict[int, list[str]] = {}
        for cname, pid in conn.execute(
            sa.select(groups_t.c.name, groups_t.c.parent_id).where(groups_t.c.parent_id.is_not(None))
        ):
            children.setdefault(pid, []).append(cname)
    return [GroupInfo(name, pname, n, sorted(children.get(gid, []))) for gid, name, pname, n in rows]


def show_group(ws: Workspace, name: str) -> GroupDetail:
    from broadcast.recipients.robots import robots_of

    name = clean_group_name(name)
    with transaction(ws.engine) as conn:
        gid = group_id(conn, name)
        info = next(g for g in list_groups(ws) if g.name == name)
        reach = len(audience(conn, [gid]))
        members = conn.execute(
            sa.select(members_t.c.name, members_t.c.phone, members_t.c.title, optouts_t.c.phone.is_not(None),
                      memberships_t.c.submitter)
            .join(memberships_t, memberships_t.c.member_id == members_t.c.id)
            .outerjoin(optouts_t, optouts_t.c.phone == members_t.c.phone)
            .where(memberships_t.c.group_id == gid)
            .order_by(members_t.c.name, members_t.c.phone)
        ).all()
        robots = [r.to_dict() for r in robots_of(conn, gid, name)]
    return GroupDetail(
        name=info.name,
        parent=info.parent,
        members=info.members,
        subgroups=info.subgroups,
        reach=reach,
        member_list=[
            {"name": n, "phone": p, "title": t, "opted_out": bool(o), "submitter": bool(s)}
            for n, p, t, o, s in members
        ],
        robots=robots,
    )


def rename_group(ws: Workspace, old: str, new: str) -> None:
    old, new = clean_group_name(old), clean_group_name(new)
    with transaction(ws.engine, write=True) as conn:
        gid = group_id(conn, old)
        if old == new:
            return
        if conn.execute(sa.select(groups_t.c.id).where(groups_t.c.name == new)).first():
            raise ConflictError(f"group {new!r} already exists")
        conn.execute(groups_t.update().where(groups_t.c.id == gid).values(name=new))
        note(conn, ws.operator, "group.rename", f"group:{new}", old=old, new=new)


@dataclass
class RemovedGroup:
    name: str
    memberships_removed: int
    subgroups_moved: list[str]


def remove_group(ws: Workspace, name: str, *, force: bool = False) -> RemovedGroup:
    """Remove a group. Refuses while it has members or sub-groups unless ``force``; with
    ``force`` its memberships go (the members stay, with their other groups and opt-outs) and
    its sub-groups move up to its parent."""
    name = clean_group_name(name)
    with transaction(ws.engine, write=True) as conn:
        gid = group_id(conn, name)
        n_members = conn.execute(
            sa.select(sa.func.count()).select_from(memberships_t).where(memberships_t.c.group_id == gid)
        ).scalar_one()
        subgroups = list(conn.execute(sa.select(groups_t.c.name).where(groups_t.c.parent_id == gid)).scalars())
        if (n_members or subgroups) and not force:
            what = []
            if n_members:
                what.append(f"{n_members} member{'s' if n_members != 1 else ''}")
            if subgroups:
                what.append(f"{len(subgroups)} sub-group{'s' if len(subgroups) != 1 else ''}")
            raise ConflictError(
                f"group {name!r} still has {' and '.join(what)}",
                hint=f"remove it anyway with 'broadcast group remove {name} --force'",
            )
        _refuse_if_targeted(conn, gid, name)
        parent_id = conn.execute(sa.select(groups_t.c.parent_id).where(groups_t.c.id == gid)).scalar_one()
        conn.execute(groups_t.update().where(groups_t.c.parent_id == gid).values(parent_id=parent_id))
        conn.execute(memberships_t.delete().where(memberships_t.c.group_id == gid))
        conn.execute(groups_t.delete().where(groups_t.c.id == gid))
        note(conn, ws.operator, "group.remove", f"group:{name}", force=force, memberships_removed=n_members,
             subgroups_moved=sorted(subgroups))
    return RemovedGroup(name, n_members, sorted(subgroups))


def _refuse_if_targeted(conn: Connection, gid: int, name: str) -> None:
    """A group that an unsent message or an active schedule targets cannot go, even with
    --force: its audience would silently shrink after approval."""
    from broadcast.db.models import FINAL_MESSAGE_STATES, Message, MessageTarget, Schedule, ScheduleTarget

    msgs, mt = table(Message), table(MessageTarget)
    ids = list(conn.execute(
        sa.select(msgs.c.id).join(mt, mt.c.message_id == msgs.c.id)
        .where(mt.c.group_id == gid, msgs.c.status.not_in(sorted(FINAL_MESSAGE_STATES))).order_by(msgs.c.id)
    ).scalars())
    if ids:
        shown = ", ".join(map(str, ids[:5])) + (" ..." if len(ids) > 5 else "")
        raise ConflictError(
            f"group {name!r} is targeted by {len(ids)} unsent message(s): {shown}",
            hint=f"cancel them first: broadcast message cancel {ids[0]}",
        )
    sch, st = table(Schedule), table(ScheduleTarget)
    sids = list(conn.execute(
        sa.select(sch.c.id).join(st, st.c.schedule_id == sch.c.id)
        .where(st.c.group_id == gid, sch.c.status != "cancelled").order_by(sch.c.id)
    ).scalars())
    if sids:
        raise ConflictError(
            f"group {name!r} is targeted by schedule {sids[0]}",
            hint=f"cancel it first: broadcast schedule cancel {sids[0]}",
        )


@dataclass(frozen=True)
class Recipient:
    member_id: int
    phone: str
    name: str


def audience(conn: Connection, group_ids: list[int], with_optouts: bool = False) -> list[Recipient]:
    """Members of the groups and all their sub-groups, one per phone, (SMS) opt-outs excluded
    unless ``with_optouts`` (a message on other channels may still reach them)."""
    tree = subtree_ids(conn, group_ids)
    cond = [members_t.c.id.in_(
        sa.select(memberships_t.c.member_id).where(memberships_t.c.group_id.in_(sa.select(tree.c.id))))]
    if not with_optouts:
        cond.append(~members_t.c.phone.in_(sa.select(optouts_t.c.phone)))
    query = sa.select(members_t.c.id, members_t.c.phone, members_t.c.name).where(*cond).order_by(members_t.c.id)
    return [Recipient(mid, phone, name) for mid, phone, name in conn.execute(query)]


def audience_for(ws: Workspace, group_names: list[str]) -> list[Recipient]:
    with transaction(ws.engine) as conn:
        ids = [group_id(conn, clean_group_name(n)) for n in group_names]
        return audience(conn, ids)
