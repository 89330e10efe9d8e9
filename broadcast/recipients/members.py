"""Members (people, identified by their E.164 phone number) and their groups."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.types import utcnow
from broadcast.errors import ConflictError, InputError, NotFoundError
from broadcast.recipients.contacts import CONTACT_FIELDS, clean_contact, mask_contact, shared_contacts
from broadcast.recipients.groups import (
    clean_group_name,
    group_id,
    groups_t,
    members_t,
    memberships_t,
    subtree_ids,
)
from broadcast.recipients.optout_sets import channel_list, opted_out
from broadcast.recipients.phones import PhoneResult, mask_phone, normalize_phone
from broadcast.workspace import Workspace

_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[\s\u00a0\u3000]+")
_NEEDS_CLEANING = re.compile("[\u200b\u200c\u200d\u2060\ufeff\\s\u00a0\u3000]")
_CJK_SPACE = re.compile(r"(?<=[\u3400-\u9fff\u00b7])\s+(?=[\u3400-\u9fff\u00b7])")


def clean_name(name: object) -> str:
    """Trim a person's name; ``'张　三'`` (padded to align in Excel) -> ``'张三'``."""
    if name is None:
        return ""
    text = str(name)
    if not _NEEDS_CLEANING.search(text):
        return text[:100]
    text = _INVISIBLE.sub("", text)
    text = _SPACES.sub(" ", text).strip()
    text = _CJK_SPACE.sub("", text)
    return text[:100]


def parse_phone(value: str, region: str = "CN", extra_prefixes: Sequence[str] | None = None) -> str:
    """A phone number typed on the command line, as E.164; a clear error otherwise.

    Without ``extra_prefixes`` it names a number that may already be stored (to show, edit,
    remove or opt out), so the allocated-range check is skipped; a number about to be stored
    passes ``settings.extra_mobile_prefixes`` and is checked (see ``normalize_phone``)."""
    return _checked_phone(value, region, extra_prefixes).e164 or ""


def _checked_phone(value: str, region: str, extra_prefixes: Sequence[str] | None) -> PhoneResult:
    result = normalize_phone(value, region, extra_prefixes or (), ranges=extra_prefixes is not None)
    if result.e164 is None:
        raise InputError(f"invalid phone number {value!r}: {result.reason}")
    return result


@dataclass
class MemberInfo:
    name: str
    phone: str
    groups: list[str]
    title: str = ""
    notes: str = ""
    opted_out: bool = False  # by SMS (``optouts``)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    email: str = ""
    wecom: str = ""  # WeCom (企业微信 / 政务微信) userid
    dingtalk: str = ""
    feishu: str = ""
    optouts: list[str] = field(default_factory=list)  # every opt-out: ["all"], ["sms", "email"], … (optout_sets)
    warnings: list[str] = field(default_factory=list)  # of the change that returned it (a shared email…)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        data["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        if not self.warnings:
            del data["warnings"]
        return data

    def contacts(self) -> dict[str, str]:
        """The contact points the member has besides the phone: field -> value."""
        return {f: getattr(self, f) for f in CONTACT_FIELDS if getattr(self, f)}


def _from_row(row: sa.Row[Any], groups: list[str], optouts: frozenset[str]) -> MemberInfo:
    return MemberInfo(row.name, row.phone, groups, row.title, row.notes, "sms" in optouts, row.created_at,
                      row.updated_at, **{f: getattr(row, f) for f in CONTACT_FIELDS}, optouts=channel_list(optouts))


def _contacts_given(values: dict[str, str | None]) -> dict[str, str]:
    """``--email`` … as given (None: not given), cleaned; ``""`` clears."""
    return {f: clean_contact(f, v) for f, v in values.items() if v is not None}


def _member_row(conn: Connection, phone: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(members_t).where(members_t.c.phone == phone)).first()


def _require(conn: Connection, phone: str) -> sa.Row[Any]:
    row = _member_row(conn, phone)
    if row is None:
        raise NotFoundError(f"no member with phone {phone}", hint="see 'broadcast member list --search ...'")
    return row


def _groups_of(conn: Connection, member_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if not member_ids:
        return out
    query = (
        sa.select(memberships_t.c.member_id, groups_t.c.name)
        .join(groups_t, groups_t.c.id == memberships_t.c.group_id)
        .where(memberships_t.c.member_id.in_(member_ids))
        .order_by(groups_t.c.name)
    )
    for mid, gname in conn.execute(query):
        out.setdefault(mid, []).append(gname)
    return out


def _info(conn: Connection, row: sa.Row[Any], groups: list[str] | None = None) -> MemberInfo:
    opted = opted_out(conn, [row.phone]).get(row.phone, frozenset())
    if groups is None:
        groups = _groups_of(conn, [row.id]).get(row.id, [])
    return _from_row(row, groups, opted)


def _join(conn: Connection, member_id: int, gid: int) -> bool:
    """Add a membership; False when it already existed."""
    exists = conn.execute(
        sa.select(memberships_t.c.id).where(memberships_t.c.member_id == member_id, memberships_t.c.group_id == gid)
    ).first()
    if exists:
        return False
    conn.execute(memberships_t.insert().values(member_id=member_id, group_id=gid, created_at=utcnow()))
    return True


@dataclass
class AddResult:
    member: MemberInfo
    created: bool
    joined: list[str] = field(default_factory=list)
    warning: str | None = None  # the number is accepted only thanks to BROADCAST_EXTRA_MOBILE_PREFIXES

    @property
    def warnings(self) -> list[str]:
        return ([self.warning] if self.warning else []) + self.member.warnings


def add_member(
    ws: Workspace, name: str, phone: str, groups: Sequence[str], *, title: str = "", notes: str = "",
    email: str = "", wecom: str = "", dingtalk: str = "", feishu: str = "",
) -> AddResult:
    """Add a person to groups. An existing phone with the same name joins the groups; a
    different name is a conflict, never overwritten. Contact points given (``email`` …) are set,
    on an existing member too (replacing theirs); one another member has is a warning."""
    checked = _checked_phone(phone, ws.settings.default_region, ws.settings.extra_mobile_prefixes)
    e164 = checked.e164 or ""
    name = clean_name(name)
    contacts = {k: v for k, v in _contacts_given(dict(email=email, wecom=wecom, dingtalk=dingtalk,
                                                      feishu=feishu)).items() if v}
    if not groups:
        raise InputError("name at least one group with --group")
    with transaction(ws.engine, write=True) as conn:
        gids = [(g, group_id(conn, clean_group_name(g))) for g in groups]
        row = _member_row(conn, e164)
        created = row is None
        if row is None:
            now = utcnow()
            mid = conn.execute(
                members_t.insert().values(
                    phone=e164, name=name, title=clean_name(title), notes=notes.strip(), created_at=now, updated_at=now,
                    **contacts,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            changed = contacts
        else:
            if name and row.name and row.name != name:
                raise ConflictError(
                    f"{e164} is already recorded as {row.name!r}, not {name!r}",
                    hint=f"to change the name: broadcast member edit {e164} --name {name}",
                )
            mid = row.id
            changed = {f: v for f, v in contacts.items() if getattr(row, f) != v}
            if changed:
                conn.execute(members_t.update().where(members_t.c.id == mid).values(**changed, updated_at=utcnow()))
        joined = [g for g, gid in gids if _join(conn, mid, gid)]
        info = _info(conn, _require(conn, e164))
        if created or joined or changed:
            note(conn, ws.operator, "member.add" if created else "member.join", f"member:{mask_phone(e164)}",
                 name=info.name, joined=joined, title=info.title,
                 **({"contacts": {f: mask_contact(f, v) for f, v in changed.items()}} if changed else {}))
        info.warnings = shared_contacts(conn, contacts, phone=e164)
    return AddResult(info, created, joined, checked.warning)


def list_members(ws: Workspace, *, group: str | None = None, search: str | None = None) -> list[MemberInfo]:
    """Members, by name; ``group`` includes its sub-groups; ``search`` matches name, phone,
    title or notes."""
    query = sa.select(members_t)
    with transaction(ws.engine) as conn:
        if group:
            tree = subtree_ids(conn, [group_id(conn, clean_group_name(group))])
            query = query.where(
                members_t.c.id.in_(
                    sa.select(memberships_t.c.member_id).where(memberships_t.c.group_id.in_(sa.select(tree.c.id)))
                )
            )
        if search:
            like = f"%{search.strip()}%"
            digits = re.sub(r"\D", "", search)
            conds = [members_t.c.name.like(like), members_t.c.title.like(like), members_t.c.notes.like(like)]
            conds += [members_t.c[f].like(like) for f in CONTACT_FIELDS]
            if digits:
                conds.append(members_t.c.phone.like(f"%{digits}%"))
            query = query.where(sa.or_(*conds))
        rows = conn.execute(query.order_by(members_t.c.name, members_t.c.phone)).all()
        groups = _groups_of(conn, [r.id for r in rows])
        opted = opted_out(conn)
    return [_from_row(r, groups.get(r.id, []), opted.get(r.phone, frozenset())) for r in rows]


def show_member(ws: Workspace, phone: str) -> MemberInfo:
    e164 = parse_phone(phone, ws.settings.default_region)
    with transaction(ws.engine) as conn:
        return _info(conn, _require(conn, e164))


def edit_member(
    ws: Workspace,
    phone: str,
    *,
    name: str | None = None,
    new_phone: str | None = None,
    title: str | None = None,
    notes: str | None = None,
    add_groups: Sequence[str] = (),
    remove_groups: Sequence[str] = (),
    email: str | None = None,
    wecom: str | None = None,
    dingtalk: str | None = None,
    feishu: str | None = None,
) -> MemberInfo:
    """Change what is given (None: unchanged). A contact point given as ``""`` is cleared."""
    e164 = parse_phone(phone, ws.settings.default_region)
    contacts = _contacts_given(dict(email=email, wecom=wecom, dingtalk=dingtalk, feishu=feishu))
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, e164)
        values: dict[str, object] = {}
        if name is not None:
            values["name"] = clean_name(name)
        if title is not None:
            values["title"] = clean_name(title)
        if notes is not None:
            values["notes"] = notes.strip()
        if new_phone is not None:
            target = parse_phone(new_phone, ws.settings.default_region, ws.settings.extra_mobile_prefixes)
            if target != e164 and _member_row(conn, target) is not None:
                raise ConflictError(f"{target} already belongs to another member")
            values["phone"] = target
        values.update({f: v for f, v in contacts.items() if getattr(row, f) != v})
        for g in add_groups:
            _join(conn, row.id, group_id(conn, clean_group_name(g)))
        for g in remove_groups:
            gid = group_id(conn, clean_group_name(g))
            gone = conn.execute(
                memberships_t.delete().where(memberships_t.c.member_id == row.id, memberships_t.c.group_id == gid)
            ).rowcount
            if not gone:
                raise NotFoundError(f"{e164} is not a member of {g!r}")
        if values or add_groups or remove_groups:
            changes = {k: (mask_phone(str(v)) if k == "phone" else mask_contact(k, str(v)) if k in CONTACT_FIELDS else v)
                       for k, v in values.items()}
            note(conn, ws.operator, "member.edit", f"member:{mask_phone(e164)}", changes=changes,
                 add_groups=list(add_groups), remove_groups=list(remove_groups))
            values["updated_at"] = utcnow()
            conn.execute(members_t.update().where(members_t.c.id == row.id).values(**values))
        info = _info(conn, _require(conn, str(values.get("phone", e164))))
        info.warnings = shared_contacts(conn, {f: v for f, v in contacts.items() if v}, phone=info.phone)
        return info


def remove_member(ws: Workspace, phone: str) -> MemberInfo:
    """Remove a member and their memberships. An opt-out of the number is kept."""
    e164 = parse_phone(phone, ws.settings.default_region)
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, e164)
        info = _info(conn, row)
        conn.execute(memberships_t.delete().where(memberships_t.c.member_id == row.id))
        conn.execute(members_t.delete().where(members_t.c.id == row.id))
        note(conn, ws.operator, "member.remove", f"member:{mask_phone(e164)}", name=info.name, groups=info.groups)
    return info


EXPORT_HEADERS = ["姓名", "手机号码", "所属支部", "职务", "备注", "邮箱", "企业微信", "钉钉", "飞书"]


def _export_rows(ws: Workspace, group: str | None) -> Iterator[list[str]]:
    for m in list_members(ws, group=group):
        for g in m.groups or [""]:  # one row per (member, group), as the import reads it back
            yield [m.name, m.phone, g, m.title, m.notes, m.email, m.wecom, m.dingtalk, m.feishu]


def export_members(ws: Workspace, path: str | Path, *, group: str | None = None) -> int:
    """Write members to .csv (UTF-8 with BOM, so Excel opens it) or .xlsx, in the columns the
    import recognises. Returns the number of rows written. The file appears whole or not at all."""
    from broadcast.recipients.files import atomic_writer, write_rows

    path = Path(path)
    with atomic_writer(path) as tmp:
        n = write_rows(tmp, path.suffix, EXPORT_HEADERS, _export_rows(ws, group), encoding="utf-8-sig")
        with transaction(ws.engine, write=True) as conn:  # an export of unmasked numbers is itself audited
            note(conn, ws.operator, "member.export", f"file:{path.name}", rows=n, group=group, unmasked=True)
    return n
