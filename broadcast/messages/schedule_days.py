"""Why a schedule sends nothing on a day, and which of its Saturdays and Sundays are working days:
for ``schedule show`` (every day of the schedule) and ``broadcast due`` (today).

The calendar is applied when a schedule is made; the office's calendar file may change later (a
local arrangement added, a year's file replaced). A message still waiting on a day the calendar
now says the schedule does not send on is reported (``calendar_changed``) and left as it is: it
was approved for that date, so only a person cancels it. A pinned line is sent on its date
whatever the calendar says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from broadcast.calendar import WorkCalendar, calendar_for, needs_data, sending_days, sends_on
from broadcast.clock import local
from broadcast.clock import now as clock_now
from broadcast.db.engine import transaction
from broadcast.db.models import Message, Schedule
from broadcast.db.types import table
from broadcast.errors import CalendarGapError
from broadcast.workspace import Workspace

__all__ = ["CalendarNote", "DayNotes", "calendar_notes", "explain_days"]

messages_t = table(Message)
schedules_t = table(Schedule)

WAITING = ("draft", "pending_approval", "rejected", "approved", "paused")
_GONE = ("cancelled", "expired")


@dataclass
class DayNotes:
    skipped: list[dict[str, object]] = field(default_factory=list)  # date, kind, name, reason
    working_weekends: list[dict[str, object]] = field(default_factory=list)  # date, weekday, kind, name, reason
    warnings: list[dict[str, object]] = field(default_factory=list)  # date, message_id, code, message
    calendar_error: str | None = None  # the calendar cannot say (a year it has no data for)


def explain_days(calendar: WorkCalendar, rule: str, start: date, end: date,
                 messages: list[dict[str, Any]]) -> DayNotes:
    """The days of ``start``–``end`` a schedule ``--on rule`` sends nothing on, with the reason; its
    working weekends; and its waiting messages on days the calendar now says it does not send on.
    ``messages``: id, date, status, pinned."""
    out = DayNotes()
    if rule == "every-day":
        return out
    try:
        days = sending_days(calendar, rule, start, end)
    except CalendarGapError as exc:
        out.calendar_error = exc.message
        return out
    live: dict[date, list[dict[str, Any]]] = {}
    for m in messages:
        if m["date"] is not None and m["status"] not in _GONE:
            live.setdefault(m["date"], []).append(m)
    for skip in days.skipped:
        here = live.get(skip.day, [])
        if not here:
            out.skipped.append(skip.to_dict())
        for m in here:
            if not m["pinned"] and m["status"] in WAITING:
                out.warnings.append({"date": skip.day, "message_id": m["id"], "code": "calendar_changed",
                                     "message": _changed(m["id"], skip.reason)})
    sending = set(days.sending)
    out.working_weekends = [w.to_dict() for w in days.working_weekends if w.day in sending]
    return out


def _changed(mid: int, reason: str) -> str:
    return (f"message {mid} is set for {reason}, a day the calendar now says this schedule does not send on (it "
            f"changed after the schedule was made): 'broadcast message cancel {mid}' if it should not go")


@dataclass
class CalendarNote:
    schedule_id: int
    date: date
    code: str  # skipped | working_weekend | pinned | calendar_changed | no_data
    message: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def calendar_notes(ws: Workspace, now: datetime | None = None) -> list[CalendarNote]:
    """For ``broadcast due``: what the working calendar means today for each schedule that is not
    cancelled, sends on a calendar (not every day) and runs today. The calendar file is read only
    when such a schedule runs today (a broken file is refused, as everywhere)."""
    now = now or clock_now(ws.settings)
    tz = ws.settings.timezone
    today = local(now, tz).date()
    with transaction(ws.engine) as conn:
        rows = [r for r in conn.execute(sa.select(schedules_t).where(
            schedules_t.c.status != "cancelled", schedules_t.c.send_on != "every-day",
            schedules_t.c.start_date <= today).order_by(schedules_t.c.id))
            if today <= r.start_date + timedelta(days=r.days - 1)]
        msgs = {r.id: conn.execute(
            sa.select(messages_t.c.id, messages_t.c.scheduled_at, messages_t.c.status, messages_t.c.pinned,
                      messages_t.c.series_line)
            .where(messages_t.c.schedule_id == r.id, messages_t.c.scheduled_at.is_not(None),
                   messages_t.c.status.not_in(_GONE))
            .order_by(messages_t.c.scheduled_at, messages_t.c.id)).all() for r in rows}
    out: list[CalendarNote] = []
    calendars: dict[bool, WorkCalendar] = {}
    for r in rows:
        rule = str(r.send_on)
        if needs_data(rule) not in calendars:  # read the calendar file once, and only when a schedule needs it
            calendars[needs_data(rule)] = calendar_for(ws.settings, rule)
        cal = calendars[needs_data(rule)]
        head = f"schedule {r.id} ({r.series}, {rule})"
        todays = [m for m in msgs[r.id] if local(m.scheduled_at, tz).date() == today]
        later = [m for m in msgs[r.id] if local(m.scheduled_at, tz).date() > today]
        try:
            info = cal.info(rule, today)
        except CalendarGapError as exc:
            out.append(CalendarNote(r.id, today, "no_data", f"{head}: {exc.message}"))
            continue
        if not sends_on(rule, info):
            if not todays:
                nxt = (f"; its next line: {local(later[0].scheduled_at, tz):%Y-%m-%d %H:%M} (message {later[0].id})"
                       if later else "")
                out.append(CalendarNote(r.id, today, "skipped", f"{head} sends nothing today: {info.describe()}{nxt}"))
            for m in todays:
                if m.pinned:
                    out.append(CalendarNote(r.id, today, "pinned", f"{head}: today is {info.describe()}; line "
                                            f"{m.series_line} is pinned to it and goes out (message {m.id})"))
                elif m.status in WAITING:
                    out.append(CalendarNote(r.id, today, "calendar_changed", f"{head}: {_changed(m.id, info.describe())}"))
        elif info.working_weekend:
            ids = ", ".join(str(m.id) for m in todays) or "none"
            out.append(CalendarNote(r.id, today, "working_weekend",
                                    f"{head}: today is {info.describe()}, so it sends (message {ids})"))
    return out
