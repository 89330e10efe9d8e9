"""Daily schedules: a series file becomes one message per line, one line per sending day.

``--on`` says which days send (:mod:`broadcast.calendar`: ``every-day``, the default; ``workdays``
by the State Council's arrangement; ``weekdays``; ``holidays-off``), ``--on-skip`` what becomes of
the line of a day that does not (``next``: it goes out on the next sending day, the default;
``drop``: it is not sent), and a line ``2026-12-24: …`` is pinned to its date
(:mod:`broadcast.messages.series_plan`). Each line goes out on its day at ``send_time`` (local).
Each message is an ordinary message (frozen text, approval, quiet hours, lateness) linked by
``schedule_id``; cancelling one day leaves a gap (the day is skipped, nothing shifts).
``schedule approve`` approves every pending message of the series at once; ``pause`` holds
them (a day that passes while paused expires), ``cancel`` cancels all that have not started.
The calendar is applied when the schedule is made; ``schedule show`` and ``broadcast due`` say
why a day sends nothing, and warn when the calendar has changed since under a day that sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.calendar import calendar_for, parse_rule
from broadcast.clock import at_local, local, parse_hhmm
from broadcast.clock import now as clock_now
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.models import Group, Message, Schedule, ScheduleTarget
from broadcast.db.types import table
from broadcast.errors import ConflictError, InputError, NotFoundError, StateError
from broadcast.messages.channels import parse_channels, parse_fallback, stored
from broadcast.messages.compose import freeze
from broadcast.messages.schedule_days import explain_days
from broadcast.messages.series_plan import parse_on_skip, plan_series
from broadcast.messages.states import transition
from broadcast.messages.store import check_for, insert_message, resolve_targets
from broadcast.messages.templates import load_series
from broadcast.workspace import Workspace

__all__ = [
    "ScheduleCreated", "ScheduleInfo", "approve_schedule", "cancel_schedule", "create_daily",
    "list_schedules", "pause_schedule", "resume_schedule", "show_schedule",
]

schedules_t = table(Schedule)
stargets_t = table(ScheduleTarget)
messages_t = table(Message)
groups_t = table(Group)

_NOT_STARTED = ("draft", "pending_approval", "rejected", "approved", "held", "paused")


@dataclass
class ScheduleCreated:
    id: int
    series: str
    on: str = "every-day"
    on_skip: str = "next"
    start: date | None = None
    end: date | None = None
    messages: list[dict[str, object]] = field(default_factory=list)  # id, date, status, line, pinned
    warnings: list[dict[str, object]] = field(default_factory=list)  # date, message_id, code, message
    skipped: list[dict[str, object]] = field(default_factory=list)  # date, kind, name, reason
    dropped: list[dict[str, object]] = field(default_factory=list)  # line, date, reason, text
    working_weekends: list[dict[str, object]] = field(default_factory=list)  # date, weekday, name, reason

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def create_daily(
    ws: Workspace,
    *,
    series: str,
    send_time: str,
    groups: Sequence[str] = (),
    all_: bool = False,
    start: date | None = None,
    days: int | None = None,
    on: str = "every-day",
    on_skip: str = "next",
    channels: str | None = None,
    fallback: str | None = None,
) -> ScheduleCreated:
    """One message per series line: the unpinned lines (the first ``days`` of them, default all) on
    the sending days from ``start`` (default: the first day whose ``send_time`` is still ahead)
    under ``on``, the pinned ones on their dates; at ``send_time`` local time."""
    tz = ws.settings.timezone
    hhmm = parse_hhmm(send_time)
    rule, skip = parse_rule(on), parse_on_skip(on_skip)
    chans = parse_channels(channels)  # every day's message goes out on them (messages.channels)
    fb = parse_fallback(fallback, chans)
    lines = load_series(ws.settings.templates_dir, series)
    now = clock_now(ws.settings)
    today = local(now, tz).date()
    if start is None:
        start = today if at_local(today, hhmm, tz) >= now else today + timedelta(days=1)
    elif at_local(start, hhmm, tz) < now:
        raise InputError(
            f"--start {start} at {hhmm:%H:%M} is in the past", hint="give a later --start, or leave it out"
        )
    if days is not None and days < 1:
        raise InputError("--days must be at least 1")
    plan = plan_series(calendar_for(ws.settings, rule), rule, skip, start, lines.entries, days)
    if not plan.placed:
        raise InputError(f"no line of the series {lines.name} would be sent: every day it reached dropped its line",
                         hint="use --on-skip next, or more --days")
    bodies = [freeze(p.line.text, p.day, source=f"series {lines.name}, line {p.line.number}") for p in plan.placed]
    assert plan.days is not None
    pinned_days = {p.day for p in plan.placed if p.pinned}
    out = ScheduleCreated(0, lines.name, rule, skip, start, plan.end,
                          skipped=[s.to_dict() for s in plan.days.skipped if s.day not in pinned_days],
                          dropped=[d.to_dict() for d in plan.dropped],
                          working_weekends=[w.to_dict() for w in plan.days.working_weekends])
    with transaction(ws.engine, write=True) as conn:
        gids = resolve_targets(conn, groups, all_)
        sid = conn.execute(
            schedules_t.insert().values(
                series=lines.name, send_time=f"{hhmm:%H:%M}", start_date=start, days=plan.span, status="active",
                target_all=all_, created_by=ws.operator, created_at=now, updated_at=now, send_on=rule, on_skip=skip,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        if gids:
            conn.execute(stargets_t.insert(), [{"schedule_id": sid, "group_id": g} for g in gids])
        note(conn, ws.operator, "schedule.create", f"schedule:{sid}", series=lines.name, time=f"{hhmm:%H:%M}",
             start=start, days=plan.span, lines=len(plan.placed), targets=list(groups), all=all_, on=rule,
             on_skip=skip, end=plan.end, pinned=[p.line.number for p in plan.placed if p.pinned],
             dropped=[{"line": d.line.number, "date": d.day} for d in plan.dropped],
             **({"channels": list(chans), "fallback": fb or None} if stored(chans) else {}))
        for placed, body in zip(plan.placed, bodies):
            mid, status = insert_message(
                conn, ws, body=body, template=f"series:{lines.name}", category="notice", group_ids=gids,
                target_all=all_, scheduled_at=at_local(placed.day, hhmm, tz), now=now, schedule_id=sid,
                pinned=placed.pinned, series_line=placed.line.number, channels=stored(chans), fallback=fb,
            )
            out.messages.append({"id": mid, "date": placed.day, "status": status, "line": placed.line.number,
                                 "pinned": placed.pinned})
            for w in check_for(ws.settings, body, "notice").warnings:
                out.warnings.append({"date": placed.day, "message_id": mid, "code": w.code, "message": w.message})
    out.id = sid
    return out


@dataclass
class ScheduleInfo:
    id: int
    series: str
    send_time: str
    start_date: date
    days: int  # calendar days from start_date to the last day
    status: str
    target_all: bool
    targets: list[str]
    created_by: str
    created_at: datetime
    counts: dict[str, int]  # messages by status
    on: str = "every-day"
    on_skip: str = "next"
    end_date: date | None = None
    messages: list[dict[str, object]] = field(default_factory=list)  # filled by show_schedule
    # filled by show_schedule (broadcast.messages.schedule_days): days it sends nothing on and why, its
    # working Saturdays and Sundays, waiting messages on days the calendar now says it does not send on
    skipped: list[dict[str, object]] = field(default_factory=list)
    working_weekends: list[dict[str, object]] = field(default_factory=list)
    calendar_warnings: list[dict[str, object]] = field(default_factory=list)
    calendar_error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _require(conn: Connection, schedule_id: int) -> sa.Row[Any]:
    row = conn.execute(sa.select(schedules_t).where(schedules_t.c.id == schedule_id)).first()
    if row is None:
        raise NotFoundError(f"no schedule {schedule_id}", hint="see 'broadcast schedule list'")
    return row


def _info(conn: Connection, row: sa.Row[Any]) -> ScheduleInfo:
    targets = list(
        conn.execute(
            sa.select(groups_t.c.name).join(stargets_t, stargets_t.c.group_id == groups_t.c.id)
            .where(stargets_t.c.schedule_id == row.id).order_by(groups_t.c.name)
        ).scalars()
    )
    counts: dict[str, int] = dict(
        conn.execute(
            sa.select(messages_t.c.status, sa.func.count()).where(messages_t.c.schedule_id == row.id)
            .group_by(messages_t.c.status)
        ).all()
    )
    return ScheduleInfo(row.id, row.series, row.send_time, row.start_date, row.days, row.status,
                        bool(row.target_all), targets, row.created_by, row.created_at, counts, row.send_on,
                        row.on_skip, row.start_date + timedelta(days=row.days - 1))


def list_schedules(ws: Workspace) -> list[ScheduleInfo]:
    with transaction(ws.engine) as conn:
        return [_info(conn, r) for r in conn.execute(sa.select(schedules_t).order_by(schedules_t.c.id))]


def show_schedule(ws: Workspace, schedule_id: int) -> ScheduleInfo:
    """The schedule, each of its messages, and (for a schedule on a calendar) the days it sends
    nothing on with the reason and its working Saturdays and Sundays."""
    tz = ws.settings.timezone
    with transaction(ws.engine) as conn:
        info = _info(conn, _require(conn, schedule_id))
        rows = conn.execute(
            sa.select(messages_t.c.id, messages_t.c.scheduled_at, messages_t.c.status, messages_t.c.body,
                      messages_t.c.status_reason, messages_t.c.pinned, messages_t.c.series_line)
            .where(messages_t.c.schedule_id == schedule_id).order_by(messages_t.c.scheduled_at, messages_t.c.id)
        ).all()
    info.messages = [
        {"id": r.id, "date": local(r.scheduled_at, tz).date() if r.scheduled_at else None, "status": r.status,
         "body": r.body, "status_reason": r.status_reason, "line": r.series_line, "pinned": bool(r.pinned)}
        for r in rows
    ]
    dates = [m["date"] for m in info.messages if isinstance(m["date"], date)]
    assert info.end_date is not None
    info.end_date = max([info.end_date, *dates])
    notes = explain_days(calendar_for(ws.settings, info.on), info.on, info.start_date, info.end_date, info.messages)
    info.skipped, info.working_weekends = notes.skipped, notes.working_weekends
    info.calendar_warnings, info.calendar_error = notes.warnings, notes.calendar_error
    return info


def _set_schedule_status(ws: Workspace, schedule_id: int, allowed: tuple[str, ...], to: str, verb: str) -> ScheduleInfo:
    now = clock_now(ws.settings)
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, schedule_id)
        if row.status not in allowed:
            raise StateError(f"cannot {verb} schedule {schedule_id}: it is {row.status}",
                             hint=f"see 'broadcast schedule show {schedule_id}'")
        conn.execute(schedules_t.update().where(schedules_t.c.id == schedule_id).values(status=to, updated_at=now))
        note(conn, ws.operator, f"schedule.{verb}", f"schedule:{schedule_id}", was=row.status, now=to)
        if to == "cancelled":
            ids = conn.execute(
                sa.select(messages_t.c.id).where(messages_t.c.schedule_id == schedule_id,
                                                 messages_t.c.status.in_(_NOT_STARTED))
            ).scalars().all()
            for mid in ids:
                transition(conn, mid, "cancelled", reason=f"schedule {schedule_id} cancelled by {ws.operator}",
                           updated_at=now)
        return _info(conn, _require(conn, schedule_id))


def pause_schedule(ws: Workspace, schedule_id: int) -> ScheduleInfo:
    return _set_schedule_status(ws, schedule_id, ("active",), "paused", "pause")


def resume_schedule(ws: Workspace, schedule_id: int) -> ScheduleInfo:
    return _set_schedule_status(ws, schedule_id, ("paused",), "active", "resume")


def cancel_schedule(ws: Workspace, schedule_id: int) -> ScheduleInfo:
    return _set_schedule_status(ws, schedule_id, ("active", "paused"), "cancelled", "cancel")


def approve_schedule(ws: Workspace, schedule_id: int, *, then: Any = None) -> list[int]:
    """Approve every pending message of the schedule (two-person rule for each); returns their ids.
    ``then(conn, ids)``: more work in the same transaction (the budget check, which may hold some)."""
    now = clock_now(ws.settings)
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, schedule_id)
        if row.status == "cancelled":
            raise StateError(f"cannot approve schedule {schedule_id}: it is cancelled")
        pending = conn.execute(
            sa.select(messages_t.c.id, messages_t.c.author)
            .where(messages_t.c.schedule_id == schedule_id, messages_t.c.status == "pending_approval")
            .order_by(messages_t.c.id)
        ).all()
        if not pending:
            raise StateError(f"schedule {schedule_id} has no messages waiting for approval",
                             hint=f"see 'broadcast schedule show {schedule_id}'")
        own = [mid for mid, author in pending if author == ws.operator]
        if own:
            raise ConflictError(
                f"{ws.operator} wrote {len(own)} of these messages (e.g. {own[0]}) and cannot approve them: "
                "a different operator must (two-person rule)",
                hint="the approver runs the command with their own BROADCAST_OPERATOR",
            )
        for mid, _author in pending:
            transition(conn, mid, "approved", approver=ws.operator, updated_at=now)
        note(conn, ws.operator, "schedule.approve", f"schedule:{schedule_id}", messages=[m for m, _ in pending])
        if then is not None:
            then(conn, [mid for mid, _ in pending])
    return [mid for mid, _ in pending]
