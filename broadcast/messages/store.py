"""Messages: create, list, show.

The text is frozen at creation (see :mod:`broadcast.messages.compose`) together with the
signature. With ``BROADCAST_REQUIRE_APPROVAL`` (default) a new message is ``pending_approval``
and must be approved or rejected by an operator other than its author (the two-person rule,
in :mod:`broadcast.messages.actions` with cancel and edit). The audience is in
:mod:`broadcast.messages.audience`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.clock import local
from broadcast.clock import now as clock_now
from broadcast.config import Settings
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.models import Group, Message, MessageTarget
from broadcast.db.types import table
from broadcast.errors import InputError, NotFoundError
from broadcast.messages.audience import AudienceMember, message_audience
from broadcast.messages.billable import billable_parts
from broadcast.messages.channels import of_row, parse_channels, parse_fallback, stored
from broadcast.messages.checks import CATEGORIES, CheckReport
from broadcast.messages.compose import check_body, freeze, render_for
from broadcast.messages.templates import load_template
from broadcast.messages.timing import first_send_time
from broadcast.recipients.groups import clean_group_name, group_id
from broadcast.recipients.phones import mask_phone
from broadcast.workspace import Workspace

messages_t = table(Message)
targets_t = table(MessageTarget)
groups_t = table(Group)

EDITABLE = ("draft", "pending_approval", "rejected", "held")

__all__ = [
    "AudienceMember", "Created", "MessageDetail", "MessageInfo", "create_message", "list_messages",
    "message_audience", "render_for", "show_message",
]


def category_of(value: str) -> str:
    kind = CATEGORIES.get(value.strip().lower())
    if kind is None:
        raise InputError(f"unknown category {value!r}", hint="use --category notice or --category marketing")
    return kind


def source_text(settings: Settings, text: str | None, template: str | None) -> tuple[str, str | None]:
    """(template text, template name) from exactly one of --text / --template."""
    if (text is None) == (template is None):
        raise InputError("give exactly one of --text or --template", hint="see 'broadcast template list'")
    if template is not None:
        return load_template(settings.templates_dir, template), template
    assert text is not None
    return text, None


def resolve_targets(conn: Connection, groups: Sequence[str], all_: bool) -> list[int]:
    if all_ and groups:
        raise InputError("give either --to GROUP or --all, not both")
    if not all_ and not groups:
        raise InputError("name the audience with --to GROUP (repeatable) or --all", hint="see 'broadcast group list'")
    return sorted({group_id(conn, clean_group_name(g)) for g in groups})


def _require(conn: Connection, message_id: int) -> sa.Row[Any]:
    row = conn.execute(sa.select(messages_t).where(messages_t.c.id == message_id)).first()
    if row is None:
        raise NotFoundError(f"no message {message_id}", hint="see 'broadcast message list'")
    return row


def initial_status(ws: Workspace) -> str:
    return "pending_approval" if ws.settings.require_approval else "approved"


def insert_message(
    conn: Connection,
    ws: Workspace,
    *,
    body: str,
    template: str | None,
    category: str,
    group_ids: Sequence[int],
    target_all: bool,
    scheduled_at: datetime | None,
    now: datetime,
    schedule_id: int | None = None,
    to_phone: str | None = None,
    pinned: bool = False,
    series_line: int | None = None,
    channels: str = "",
    fallback: str = "",
) -> tuple[int, str]:
    """Insert one message (frozen body) with its targets; returns (id, status)."""
    status = initial_status(ws)
    send_after = None
    if scheduled_at is not None:
        send_after = first_send_time(ws.settings, scheduled_at)
    elif status == "approved":
        send_after = first_send_time(ws.settings, now)
    mid = conn.execute(
        messages_t.insert().values(
            body=body, template=template, signature=ws.settings.signature, category=category, status=status,
            author=ws.operator, approver=None, reject_reason=None,
            status_reason=None if ws.settings.require_approval else "approval not required (BROADCAST_REQUIRE_APPROVAL=false)",
            created_at=now, updated_at=now, scheduled_at=scheduled_at, send_after=send_after,
            schedule_id=schedule_id, target_all=target_all, to_phone=to_phone, pinned=pinned,
            series_line=series_line, channels=channels, fallback=fallback,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    if group_ids:
        conn.execute(targets_t.insert(), [{"message_id": mid, "group_id": g} for g in group_ids])
    return mid, status


def _local_day(ws: Workspace, instant: datetime) -> date:
    return local(instant, ws.settings.timezone).date()


@dataclass
class Created:
    id: int
    status: str
    check: CheckReport

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "warnings": self.check.to_dict()["warnings"]}


def check_for(s: Settings, body: str, category: str, signature: str | None = None) -> CheckReport:
    """Content checks of a frozen body with the configured signature, limits and banned words."""
    return check_body(
        body, signature=s.signature if signature is None else signature, max_parts=s.max_parts,
        category=category, banned_words=s.banned_words,
    )


def create_message(
    ws: Workspace,
    *,
    text: str | None = None,
    template: str | None = None,
    groups: Sequence[str] = (),
    all_: bool = False,
    at: datetime | None = None,
    category: str = "notice",
    to_phone: str | None = None,
    channels: str | None = None,
    fallback: str | None = None,
) -> Created:
    """Create a message; the text is rendered (for the local date of ``at``, else today) and frozen.
    ``to_phone`` (E.164) instead of groups: a message to that one phone (an inbox reply).
    ``channels`` ("wecom-app,sms") and ``fallback`` ("sms"): see ``messages.channels``."""
    if to_phone is not None and (groups or all_):
        raise InputError("a message to one phone has no groups: give either to_phone or --to/--all")
    chans = parse_channels(channels)
    fb = parse_fallback(fallback, chans)
    if to_phone is not None and stored(chans):
        raise InputError("a message to one phone goes by SMS: leave out --channel")
    source, tname = source_text(ws.settings, text, template)
    kind = category_of(category)
    now = clock_now(ws.settings)
    if at is not None and at < now:
        raise InputError(
            f"--at {local(at, ws.settings.timezone):%Y-%m-%d %H:%M} is in the past",
            hint="give a later time, or leave out --at to send as soon as possible",
        )
    body = freeze(source, _local_day(ws, at or now), source=f"template {tname!r}" if tname else "--text")
    report = check_for(ws.settings, body, kind)
    with transaction(ws.engine, write=True) as conn:
        gids = [] if to_phone is not None else resolve_targets(conn, groups, all_)
        mid, status = insert_message(
            conn, ws, body=body, template=tname, category=kind, group_ids=gids, target_all=all_,
            scheduled_at=at, now=now, to_phone=to_phone, channels=stored(chans), fallback=fb,
        )
        extra: dict[str, object] = {} if to_phone is None else {"to_phone": mask_phone(to_phone)}
        if stored(chans):
            extra.update(channels=list(chans), fallback=fb or None)
        note(conn, ws.operator, "message.create", f"message:{mid}", status=status, body=body, template=tname,
             category=kind, targets=list(groups), all=all_, scheduled_at=at, signature=ws.settings.signature, **extra)
    return Created(mid, status, report)


@dataclass
class MessageInfo:
    id: int
    status: str
    category: str
    author: str
    approver: str | None
    scheduled_at: datetime | None
    send_after: datetime | None
    schedule_id: int | None
    target_all: bool
    targets: list[str]
    body: str
    template: str | None
    signature: str
    status_reason: str | None
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime
    to_phone: str | None = None  # a message to one phone (an inbox reply) instead of groups
    channels: str = ""  # "wecom-app,sms" ("": SMS only), see messages.channels
    fallback: str = ""  # "sms" or ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _info(conn: Connection, row: sa.Row[Any]) -> MessageInfo:
    names = list(
        conn.execute(
            sa.select(groups_t.c.name).join(targets_t, targets_t.c.group_id == groups_t.c.id)
            .where(targets_t.c.message_id == row.id).order_by(groups_t.c.name)
        ).scalars()
    )
    return MessageInfo(
        row.id, row.status, row.category, row.author, row.approver, row.scheduled_at, row.send_after,
        row.schedule_id, bool(row.target_all), names, row.body, row.template, row.signature,
        row.status_reason, row.reject_reason, row.created_at, row.updated_at, row.to_phone, row.channels,
        row.fallback,
    )


def list_messages(ws: Workspace, *, status: str | None = None, schedule_id: int | None = None) -> list[MessageInfo]:
    from broadcast.messages.states import STATES

    query = sa.select(messages_t).order_by(messages_t.c.id)
    if status:
        if status not in STATES:
            raise InputError(f"unknown status {status!r}", hint="use one of " + ", ".join(STATES))
        query = query.where(messages_t.c.status == status)
    if schedule_id is not None:
        query = query.where(messages_t.c.schedule_id == schedule_id)
    with transaction(ws.engine) as conn:
        return [_info(conn, row) for row in conn.execute(query)]


@dataclass
class MessageDetail(MessageInfo):
    audience: int = 0
    length: int = 0
    encoding: str = ""
    parts: int = 0
    billable_parts: int = 0
    preview: str = ""
    preview_for: str = ""
    warnings: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def show_message(ws: Workspace, message_id: int) -> MessageDetail:
    with transaction(ws.engine) as conn:
        row = _require(conn, message_id)
        info = _info(conn, row)
        people = message_audience(conn, message_id)
        sms_people = people
        if row.channels:  # on other channels too: who it reaches there, and who by SMS (before any fallback)
            from broadcast.messages import channel_plan

            plan = channel_plan.plan(conn, message_id, of_row(row.channels),
                                     message_audience(conn, message_id, with_optouts=True), bool(row.target_all))
            sms_people = [a.person for a in plan.assigned if a.channel == "sms"]
            covered = {m.phone for p in plan.posts for m in p.people} | {a.person.phone for a in plan.assigned}
            people = [a.person for a in plan.assigned] + [m for p in plan.posts for m in p.people]
            people = list({m.phone: m for m in people if m.phone in covered}.values())
    first = people[0] if people else None
    recipient = {"name": first.name, "group": first.group, "phone": first.phone} if first else None
    report = check_for(ws.settings, row.body, row.category, row.signature) if recipient is None else check_body(
        row.body, signature=row.signature, max_parts=ws.settings.max_parts, category=row.category,
        banned_words=ws.settings.banned_words, recipient=recipient,
    )
    data = asdict(info)
    return MessageDetail(
        **data, audience=len(people), length=report.length, encoding=report.encoding, parts=report.parts,
        billable_parts=billable_parts(sms_people, row.body, row.signature).parts, preview=report.text,
        preview_for=f"{first.name} {first.phone}" if first else "sample recipient (the audience is empty)",
        warnings=[{"code": w.code, "message": w.message} for w in report.warnings],
    )
