"""The feedback inbox: every reply that is neither an opt-out, a re-subscribe nor a submission.

An item (a ``feedback`` row, created ``new`` by :mod:`broadcast.twoway.intake`) is triaged into
one of the office's categories (fix-now 立行立改, study 列入专项研究, supervise 重点督办,
no-action 无需处理), optionally assigned to a branch with a due date (local), which makes it
``open``; it may be triaged again while open; it is closed with a note (its category stays, so
the report still counts it) and may be reopened with a note. An item is *overdue* when it is not
closed and its due date is before today (local). Every step, the replies sent back and the
exports are in the audit trail under ``inbox:ID``.

The reply's text is data: it is stored, shown through
:func:`broadcast.twoway.untrusted.for_terminal` and exported through ``spreadsheet_safe``, and
never rendered as a template. An operator's answer (:func:`reply`) is an ordinary message to
that one phone (``messages.to_phone``): content checks, signature, approval, quiet hours and
opt-outs apply as to any message; its text is sent as written (braces are literal).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.clock import at_local, local
from broadcast.clock import now as clock_now
from broadcast.db.audit_chain import log_t, note
from broadcast.db.dispatch_models import InboundMessage
from broadcast.db.engine import transaction
from broadcast.db.models import Group, Member, Message, OptOut
from broadcast.db.twoway_models import FEEDBACK_CATEGORIES, FEEDBACK_STATUSES, Feedback
from broadcast.db.types import table
from broadcast.errors import InputError, NotFoundError, StateError
from broadcast.recipients.groups import clean_group_name, group_id, subtree_ids
from broadcast.recipients.phones import mask_phone
from broadcast.workspace import Workspace

__all__ = [
    "CATEGORY_WORDS", "Item", "ItemDetail", "Replied", "close", "export_items", "list_items", "reopen", "reply",
    "show_item", "today", "triage",
]

feedback_t = table(Feedback)
inbound_t = table(InboundMessage)
groups_t = table(Group)
members_t = table(Member)
messages_t = table(Message)
optouts_t = table(OptOut)
branch_t = groups_t.alias("branch")
assigned_t = groups_t.alias("assigned")

CATEGORY_WORDS = {"fix-now": "立行立改", "study": "列入专项研究", "supervise": "重点督办", "no-action": "无需处理"}
"""The office's words for each category."""
_ALIASES = {**{c: c for c in FEEDBACK_CATEGORIES}, **{w: c for c, w in CATEGORY_WORDS.items()},
            "fix": "fix-now", "fixnow": "fix-now", "fix_now": "fix-now", "no_action": "no-action", "none": "no-action",
            "专项研究": "study", "督办": "supervise"}
LIST_STATUSES = (*FEEDBACK_STATUSES, "overdue")
HISTORY_LIMIT = 50  # the person's other replies shown by ``show``


def today(ws: Workspace) -> date:
    """Today's local date (``BROADCAST_NOW`` moves it)."""
    return local(clock_now(ws.settings), ws.settings.timezone).date()


def category_of(value: str) -> str:
    kind = _ALIASES.get(value.strip().lower())
    if kind is None:
        raise InputError(f"unknown category {value!r}", hint="use --as " + ", ".join(FEEDBACK_CATEGORIES))
    return kind


@dataclass
class Item:
    id: int
    status: str  # new | open | closed
    category: str | None
    phone: str
    name: str  # the member's name ("" when the phone is no member's)
    group: str  # the member's branch when the reply came
    assigned: str  # the branch it is assigned to ("" if none)
    due_date: date | None
    overdue: bool
    text: str
    note: str
    message_id: int | None  # the message it most likely answers
    received_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _query() -> sa.Select[Any]:
    f = feedback_t
    return (
        sa.select(f, members_t.c.name.label("member_name"), branch_t.c.name.label("branch_name"),
                  assigned_t.c.name.label("assigned_name"))
        .outerjoin(members_t, members_t.c.id == f.c.member_id)
        .outerjoin(branch_t, branch_t.c.id == f.c.group_id)
        .outerjoin(assigned_t, assigned_t.c.id == f.c.assigned_group_id)
        .order_by(f.c.id)
    )


def _item(row: sa.Row[Any], day: date) -> Item:
    overdue = row.status != "closed" and row.due_date is not None and row.due_date < day
    return Item(row.id, row.status, row.category, row.phone, row.member_name or "", row.branch_name or "",
                row.assigned_name or "", row.due_date, overdue, row.text, row.note, row.message_id,
                row.received_at, row.updated_at, row.closed_at)


def _require(conn: Connection, item_id: int, day: date) -> Item:
    row = conn.execute(_query().where(feedback_t.c.id == item_id)).first()
    if row is None:
        raise NotFoundError(f"no inbox item {item_id}", hint="see 'broadcast inbox list'")
    return _item(row, day)


def list_items(ws: Workspace, *, status: str | None = None, group: str | None = None,
               since: date | None = None, until: date | None = None) -> list[Item]:
    """Items in id order. ``status``: new, open, closed or overdue; ``group``: items from members
    of that branch or assigned to it (sub-groups included); ``since``/``until``: local received dates."""
    day = today(ws)
    q = _query()
    if status is not None:
        status = status.strip().lower()
        if status not in LIST_STATUSES:
            raise InputError(f"unknown status {status!r}", hint="use --status " + ", ".join(LIST_STATUSES))
        if status == "overdue":
            q = q.where(feedback_t.c.status != "closed", feedback_t.c.due_date < day)
        else:
            q = q.where(feedback_t.c.status == status)
    start, end = received_range(ws, since, until)
    if start is not None:
        q = q.where(feedback_t.c.received_at >= start)
    if end is not None:
        q = q.where(feedback_t.c.received_at < end)
    with transaction(ws.engine) as conn:
        if group is not None:
            tree = sa.select(subtree_ids(conn, [group_id(conn, clean_group_name(group))]).c.id)
            q = q.where(sa.or_(feedback_t.c.group_id.in_(tree), feedback_t.c.assigned_group_id.in_(tree)))
        return [_item(r, day) for r in conn.execute(q)]


@dataclass
class ItemDetail:
    item: Item
    member: dict[str, Any] | None  # name, phone, title, groups
    answered: dict[str, Any] | None  # the message it answers: id, text, date (local), status
    history: list[dict[str, Any]] = field(default_factory=list)  # this item's audit entries
    other_replies: list[dict[str, Any]] = field(default_factory=list)  # the person's other replies, newest first
    opted_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item.to_dict(), "member": self.member, "answered": self.answered,
                "history": self.history, "other_replies": self.other_replies, "opted_out": self.opted_out}


def show_item(ws: Workspace, item_id: int) -> ItemDetail:
    """An item with its member, the message it answers, its audit history and the person's other replies."""
    import json

    tz = ws.settings.timezone
    with transaction(ws.engine) as conn:
        item = _require(conn, item_id, today(ws))
        row = conn.execute(sa.select(feedback_t.c.member_id, feedback_t.c.inbound_id)
                           .where(feedback_t.c.id == item_id)).one()
        member = None
        if row.member_id is not None:
            m = conn.execute(sa.select(members_t).where(members_t.c.id == row.member_id)).first()
            if m is not None:
                from broadcast.recipients.groups import memberships_t

                groups = list(conn.execute(
                    sa.select(groups_t.c.name).join(memberships_t, memberships_t.c.group_id == groups_t.c.id)
                    .where(memberships_t.c.member_id == m.id).order_by(groups_t.c.name)).scalars())
                member = {"name": m.name, "phone": m.phone, "title": m.title, "groups": groups}
        answered = None
        if item.message_id is not None:
            msg = conn.execute(sa.select(messages_t).where(messages_t.c.id == item.message_id)).first()
            if msg is not None:
                when = msg.started_at or msg.scheduled_at or msg.created_at
                answered = {"id": msg.id, "text": msg.body, "date": local(when, tz).date().isoformat(),
                            "status": msg.status}
        history = [
            {"id": e.id, "at": e.at, "operator": e.operator, "action": e.action, "details": json.loads(e.details)}
            for e in conn.execute(sa.select(log_t).where(log_t.c.object == f"inbox:{item_id}").order_by(log_t.c.id))
        ]
        others = [
            {"inbound_id": r.id, "kind": r.kind, "text": r.text, "received_at": r.received_at, "inbox_id": r.fid,
             "status": r.fstatus}
            for r in conn.execute(
                sa.select(inbound_t.c.id, inbound_t.c.kind, inbound_t.c.text, inbound_t.c.received_at,
                          feedback_t.c.id.label("fid"), feedback_t.c.status.label("fstatus"))
                .outerjoin(feedback_t, feedback_t.c.inbound_id == inbound_t.c.id)
                .where(inbound_t.c.phone == item.phone, inbound_t.c.id != row.inbound_id)
                .order_by(inbound_t.c.received_at.desc(), inbound_t.c.id.desc()).limit(HISTORY_LIMIT))
        ]
        opted = conn.execute(sa.select(optouts_t.c.phone).where(optouts_t.c.phone == item.phone)).first() is not None
    return ItemDetail(item, member, answered, history, others, opted)


def _group(conn: Connection, name: str | None) -> tuple[int | None, str | None]:
    if name is None:
        return None, None
    cleaned = clean_group_name(name)
    return group_id(conn, cleaned), cleaned


def triage(ws: Workspace, item_id: int, category: str, *, assign: str | None = None, due: date | None = None,
           note_text: str | None = None) -> Item:
    """Sort a new or open item into a category (new -> open); an open one may be triaged again.
    ``assign`` (a branch) and ``due`` (a local date, not before today) are kept when not given."""
    kind = category_of(category)
    now, day = clock_now(ws.settings), today(ws)
    if due is not None and due < day:
        raise InputError(f"--due {due.isoformat()} is before today ({day.isoformat()})",
                         hint="give today or a later date as YYYY-MM-DD")
    text = (note_text or "").strip()
    with transaction(ws.engine, write=True) as conn:
        item = _require(conn, item_id, day)
        if item.status == "closed":
            raise StateError(f"inbox item {item_id} is closed (as {item.category})",
                             hint=f"reopen it first: broadcast inbox reopen {item_id} --note ...")
        gid, gname = _group(conn, assign)
        values: dict[str, Any] = {"status": "open", "category": kind, "updated_at": now}
        if gid is not None:
            values["assigned_group_id"] = gid
        if due is not None:
            values["due_date"] = due
        if text:
            values["note"] = text
        _update(conn, item_id, item.status, values)
        due_now = due or item.due_date
        note(conn, ws.operator, "inbox.triage", f"inbox:{item_id}", was=item.status, was_category=item.category,
             category=kind, assigned=gname or item.assigned or None,
             due=due_now.isoformat() if due_now else None, note=text)
        return _require(conn, item_id, day)


def _update(conn: Connection, item_id: int, status: str, values: dict[str, Any]) -> None:
    done = conn.execute(feedback_t.update().where(feedback_t.c.id == item_id, feedback_t.c.status == status)
                        .values(**values)).rowcount
    if done != 1:
        from broadcast.errors import ConflictError

        raise ConflictError(f"inbox item {item_id} changed while being updated; try again")


def _needs_note(note_text: str | None, verb: str) -> str:
    text = (note_text or "").strip()
    if not text:
        raise InputError(f"say why with --note when you {verb} an inbox item",
                         hint="e.g. --note \"路灯已修复，已电话回访\"")
    return text


def close(ws: Workspace, item_id: int, note_text: str | None) -> Item:
    """Close an open item with a note; its category stays."""
    text = _needs_note(note_text, "close")
    now, day = clock_now(ws.settings), today(ws)
    with transaction(ws.engine, write=True) as conn:
        item = _require(conn, item_id, day)
        if item.status == "closed":
            assert item.closed_at is not None
            raise StateError(f"inbox item {item_id} is already closed (since "
                             f"{local(item.closed_at, ws.settings.timezone):%Y-%m-%d %H:%M})",
                             hint=f"see 'broadcast inbox show {item_id}'")
        if item.status == "new":
            raise StateError(f"inbox item {item_id} is new: triage it before closing it",
                             hint=f"broadcast inbox triage {item_id} --as no-action (or fix-now, study, supervise)")
        _update(conn, item_id, item.status, {"status": "closed", "closed_at": now, "updated_at": now, "note": text})
        note(conn, ws.operator, "inbox.close", f"inbox:{item_id}", category=item.category, note=text,
             overdue=item.overdue, due=item.due_date.isoformat() if item.due_date else None)
        return _require(conn, item_id, day)


def reopen(ws: Workspace, item_id: int, note_text: str | None) -> Item:
    """Open a closed item again (with a note): it keeps its category, branch and due date."""
    text = _needs_note(note_text, "reopen")
    now, day = clock_now(ws.settings), today(ws)
    with transaction(ws.engine, write=True) as conn:
        item = _require(conn, item_id, day)
        if item.status != "closed":
            raise StateError(f"inbox item {item_id} is {item.status}, not closed: nothing to reopen",
                             hint=f"see 'broadcast inbox show {item_id}'")
        _update(conn, item_id, "closed", {"status": "open", "closed_at": None, "updated_at": now, "note": text})
        note(conn, ws.operator, "inbox.reopen", f"inbox:{item_id}", category=item.category, note=text)
        return _require(conn, item_id, day)


@dataclass
class Replied:
    item_id: int
    message_id: int
    status: str  # the message's: approved, or pending_approval
    phone: str
    name: str
    warnings: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def literal(text: str) -> str:
    """``text`` as a message template that renders to exactly ``text`` (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def reply_target(ws: Workspace, item_id: int) -> Item:
    """The item a reply answers; refused (StateError) when its phone has opted out."""
    with transaction(ws.engine) as conn:
        item = _require(conn, item_id, today(ws))
        opt = conn.execute(sa.select(optouts_t).where(optouts_t.c.phone == item.phone)).first()
    if opt is not None:
        how = {"reply": "by a reply", "carrier": "by the carrier (blacklisted)"}.get(opt.source, "by an operator")
        raise StateError(f"{mask_phone(item.phone)} ({item.name or 'no member'}) has opted out {how} on "
                         f"{local(opt.created_at, ws.settings.timezone):%Y-%m-%d}: no reply is sent to them",
                         hint=f"only if they asked to receive messages again: broadcast optout remove {item.phone}")
    return item


def reply(ws: Workspace, item_id: int, text: str) -> Replied:
    """Create one SMS back to the item's phone through the normal message path (checks, signature,
    approval when required); audited on the item with the message's id. Sending is the caller's
    (``broadcast inbox reply`` sends it at once when it needs no approval)."""
    from broadcast.messages.store import create_message

    body = text.strip()
    if not body:
        raise InputError("the reply is empty: give its text with --text")
    item = reply_target(ws, item_id)
    created = create_message(ws, text=literal(body), to_phone=item.phone, category="notice")
    with transaction(ws.engine, write=True) as conn:
        note(conn, ws.operator, "inbox.reply", f"inbox:{item_id}", message=created.id, status=created.status,
             phone=mask_phone(item.phone), text=body)
    warnings = created.to_dict()["warnings"]
    return Replied(item_id, created.id, created.status, item.phone, item.name, warnings)  # type: ignore[arg-type]


EXPORT_COLUMNS = ("id", "received_at", "status", "category", "overdue", "name", "phone", "group", "assigned",
                  "due_date", "message_id", "text", "note", "closed_at")


def export_rows(ws: Workspace, items: list[Item]) -> Iterator[list[Any]]:
    """The items as spreadsheet rows (local times, phones masked); text cells are neutralised by the writer."""
    tz = ws.settings.timezone

    def when(v: datetime | None) -> str:
        return local(v, tz).strftime("%Y-%m-%d %H:%M") if v else ""

    for i in items:
        yield [i.id, when(i.received_at), i.status, i.category or "", "yes" if i.overdue else "", i.name,
               mask_phone(i.phone), i.group, i.assigned, i.due_date.isoformat() if i.due_date else "",
               i.message_id if i.message_id is not None else "", i.text, i.note, when(i.closed_at)]


def export_items(ws: Workspace, items: list[Item], path: Path, *, filters: dict[str, Any]) -> int:
    """Write ``items`` to .csv (UTF-8 with BOM) or .xlsx, atomically, every text cell through
    ``spreadsheet_safe``; audited (``inbox.export``)."""
    from broadcast.recipients.files import atomic_writer, write_rows

    path = Path(path)
    with atomic_writer(path) as tmp:
        n = write_rows(tmp, path.suffix, list(EXPORT_COLUMNS), export_rows(ws, items), encoding="utf-8-sig",
                       sheet="inbox")
        with transaction(ws.engine, write=True) as conn:
            note(conn, ws.operator, "inbox.export", f"file:{path.name}", rows=n,
                 filters={k: (v.isoformat() if isinstance(v, date) else v) for k, v in filters.items()})
    return n


def received_range(ws: Workspace, since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """Local ``since``..``until`` (both included) as UTC bounds on ``received_at``."""
    if since is not None and until is not None and until < since:
        raise InputError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    tz = ws.settings.timezone
    return (at_local(since, time(0), tz) if since else None,
            at_local(until + timedelta(days=1), time(0), tz) if until else None)
