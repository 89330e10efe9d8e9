"""Branch submissions: lines the branches hand in for the daily series, and the office's review.

A submission comes by SMS (a branch submitter's reply starting with ``BROADCAST_SUBMIT_PREFIX``,
stored by the two-way intake) or from a spreadsheet (:mod:`broadcast.twoway.submission_import`).
It is ``pending`` until the office decides:

* **accept** puts the line into a day of a daily series (:mod:`broadcast.messages.schedules`), one
  of its sending days under its ``--on`` (a day it skips is refused): a day without a line gets a new message of the series (same audience, send time and
  signature, ``pending_approval`` through the normal insert); a day whose line is not yet approved
  (``draft``, ``pending_approval``, ``rejected``) has its text replaced and goes back to
  ``pending_approval`` with the accepting operator as its author (an earlier submission on that
  day goes back to ``pending``). A day whose message is approved or under way is refused. Either
  way the message still needs the two-person approval before ``broadcast run`` sends it.
* **reject** records the reason.

The text is data, never a template: braces are kept literally (``{name}`` in a branch's line is
not filled in). Lines that cannot go out as they are (``BLOCKING`` check codes) are refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.calendar import calendar_for, sends_on
from broadcast.clock import at_local, local, parse_hhmm
from broadcast.clock import now as clock_now
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.models import Group, Member, Message, Schedule, ScheduleTarget
from broadcast.db.twoway_models import SUBMISSION_STATUSES, Submission
from broadcast.db.types import table
from broadcast.errors import InputError, NotFoundError, StateError
from broadcast.messages.checks import CheckReport
from broadcast.messages.compose import freeze
from broadcast.messages.states import transition
from broadcast.messages.store import EDITABLE, check_for, initial_status, insert_message
from broadcast.messages.timing import first_send_time
from broadcast.recipients.groups import clean_group_name, group_id
from broadcast.workspace import Workspace

__all__ = [
    "BLOCKING", "Accepted", "SubmissionInfo", "accept_submission", "as_body", "blocking_problem",
    "list_submissions", "reject_submission",
]

submissions_t = table(Submission)
groups_t = table(Group)
members_t = table(Member)
messages_t = table(Message)
schedules_t = table(Schedule)
stargets_t = table(ScheduleTarget)

BLOCKING = ("empty", "too_long", "too_many_parts", "banned_word", "url")
"""Check codes that make a line unusable as it is (the other warnings are shown, not refused)."""
_GONE = ("cancelled", "expired")  # a day whose message is one of these has no line


def as_body(text: str, day: date) -> str:
    """The frozen message body of a submitted line: its braces literal (``{`` -> ``{{``)."""
    return freeze(text.replace("{", "{{").replace("}", "}}"), day, source="submission")


def blocking_problem(report: CheckReport) -> str | None:
    """The first finding of ``report`` that makes the line unusable, as one sentence; else None."""
    for w in report.warnings:
        if w.code in BLOCKING:
            return w.message
    return None


@dataclass
class SubmissionInfo:
    id: int
    group: str | None
    member: str | None  # the submitter's name (SMS) or None (import)
    source: str
    text: str
    wanted_day: date | None
    status: str
    reason: str
    schedule_id: int | None
    day: date | None
    message_id: int | None
    message_status: str | None
    created_by: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _query() -> sa.Select[Any]:
    s = submissions_t
    return (
        sa.select(s, groups_t.c.name.label("group_name"), members_t.c.name.label("member_name"),
                  messages_t.c.status.label("message_status"))
        .outerjoin(groups_t, groups_t.c.id == s.c.group_id)
        .outerjoin(members_t, members_t.c.id == s.c.member_id)
        .outerjoin(messages_t, messages_t.c.id == s.c.message_id)
        .order_by(s.c.id)
    )


def _info(row: sa.Row[Any]) -> SubmissionInfo:
    return SubmissionInfo(
        row.id, row.group_name, row.member_name, row.source, row.text, row.wanted_day, row.status, row.reason,
        row.schedule_id, row.day, row.message_id, row.message_status, row.created_by, row.created_at,
        row.decided_by, row.decided_at,
    )


def _load(conn: Connection, submission_id: int) -> SubmissionInfo:
    row = conn.execute(_query().where(submissions_t.c.id == submission_id)).first()
    if row is None:
        raise NotFoundError(f"no submission {submission_id}", hint="see 'broadcast submission list'")
    return _info(row)


def list_submissions(ws: Workspace, *, status: str | None = None, group: str | None = None) -> list[SubmissionInfo]:
    query = _query()
    if status is not None:
        if status not in SUBMISSION_STATUSES:
            raise InputError(f"unknown status {status!r}", hint="use one of " + ", ".join(SUBMISSION_STATUSES))
        query = query.where(submissions_t.c.status == status)
    with transaction(ws.engine) as conn:
        if group is not None:
            query = query.where(submissions_t.c.group_id == group_id(conn, clean_group_name(group)))
        return [_info(r) for r in conn.execute(query)]


def _pending(conn: Connection, submission_id: int, verb: str) -> SubmissionInfo:
    sub = _load(conn, submission_id)
    if sub.status != "pending":
        done = (f" (schedule {sub.schedule_id}, {sub.day}, message {sub.message_id})" if sub.status == "accepted"
                else f" ({sub.reason})" if sub.reason else "")
        raise StateError(f"cannot {verb} submission {submission_id}: it was already {sub.status}{done}",
                         hint="see 'broadcast submission list'")
    return sub


def reject_submission(ws: Workspace, submission_id: int, reason: str) -> SubmissionInfo:
    """Reject a pending submission, with the reason (told to nobody automatically: it is the
    office's record, shown in the list and the report)."""
    reason = reason.strip()
    if not reason:
        raise InputError("give the reason for rejecting with --reason TEXT")
    now = clock_now(ws.settings)
    with transaction(ws.engine, write=True) as conn:
        sub = _pending(conn, submission_id, "reject")
        _decide(conn, submission_id, "pending", status="rejected", reason=reason, decided_by=ws.operator,
                decided_at=now)
        note(conn, ws.operator, "submission.reject", f"submission:{submission_id}", group=sub.group, reason=reason)
        return _load(conn, submission_id)


def _decide(conn: Connection, submission_id: int, current: str, **values: Any) -> None:
    done = conn.execute(
        submissions_t.update().where(submissions_t.c.id == submission_id, submissions_t.c.status == current)
        .values(**values)
    ).rowcount
    if done != 1:
        raise StateError(f"submission {submission_id} changed while being decided; try again")


@dataclass
class Accepted:
    submission: SubmissionInfo
    schedule_id: int
    day: date
    message_id: int
    message_status: str
    replaced: dict[str, object] | None = None  # the text it replaced: message's old body, earlier submission
    warnings: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _schedule(conn: Connection, schedule_id: int | None) -> sa.Row[Any]:
    if schedule_id is None:  # the one series running, if there is exactly one
        live = list(conn.execute(sa.select(schedules_t.c.id).where(schedules_t.c.status != "cancelled")
                                 .order_by(schedules_t.c.id)).scalars())
        if len(live) != 1:
            raise InputError("name the series with --schedule ID" + (
                f" (schedules: {', '.join(map(str, live))})" if live else ": there is none"),
                hint="see 'broadcast schedule list'" if live else
                "create one with: broadcast schedule daily --series FILE --to GROUP --time 07:30")
        schedule_id = live[0]
    row = conn.execute(sa.select(schedules_t).where(schedules_t.c.id == schedule_id)).first()
    if row is None:
        raise NotFoundError(f"no schedule {schedule_id}", hint="see 'broadcast schedule list'")
    if row.status == "cancelled":
        raise StateError(f"schedule {schedule_id} is cancelled", hint="accept into another schedule")
    return row


def _series_days(ws: Workspace, conn: Connection, schedule_id: int) -> dict[date, list[sa.Row[Any]]]:
    """Local day -> that day's messages of the schedule that still hold a line (not cancelled or expired)."""
    tz = ws.settings.timezone
    out: dict[date, list[sa.Row[Any]]] = {}
    for row in conn.execute(
        sa.select(messages_t).where(messages_t.c.schedule_id == schedule_id, messages_t.c.status.not_in(_GONE),
                                    messages_t.c.scheduled_at.is_not(None)).order_by(messages_t.c.id)
    ):
        out.setdefault(local(row.scheduled_at, tz).date(), []).append(row)
    return out


def _first_day(ws: Workspace, sch: sa.Row[Any], now: datetime) -> date:
    """The first day of the series whose send time is still ahead."""
    tz, hhmm = ws.settings.timezone, parse_hhmm(sch.send_time)
    today = local(now, tz).date()
    first = today if at_local(today, hhmm, tz) >= now else today + timedelta(days=1)
    start: date = sch.start_date
    return max(first, start)


def _choose_day(ws: Workspace, sch: sa.Row[Any], sub: SubmissionInfo, day: date | None, now: datetime,
                taken: dict[date, list[sa.Row[Any]]]) -> date:
    """The day asked for, else the series' next sending day (under its ``--on``) without a line."""
    rule = str(sch.send_on)
    cal = calendar_for(ws.settings, rule)
    day = day or sub.wanted_day
    if day is None:
        day = _first_day(ws, sch, now)
        while day in taken or not sends_on(rule, cal.info(rule, day)):
            day += timedelta(days=1)
        return day
    if day < sch.start_date:
        raise InputError(f"{day} is before schedule {sch.id} starts ({sch.start_date})", hint="give a later --day")
    if day < _first_day(ws, sch, now):
        raise InputError(f"{day} at {sch.send_time} is in the past", hint="give a later --day")
    info = cal.info(rule, day)
    if day not in taken and not sends_on(rule, info):
        raise InputError(f"schedule {sch.id} sends on {rule}, and {info.describe()} is not one of its days",
                         hint="give another --day (broadcast calendar days --from … --to … --on " + rule + ")")
    return day


def accept_submission(ws: Workspace, submission_id: int, *, schedule_id: int | None = None,
                      day: date | None = None) -> Accepted:
    """Put a pending submission into a day of a daily series (see the module doc): the schedule
    ``schedule_id`` (default: the only one not cancelled); the day ``day``, else the
    submission's wanted day, else the series' next day without a line."""
    now = clock_now(ws.settings)
    tz = ws.settings.timezone
    with transaction(ws.engine, write=True) as conn:
        sub = _pending(conn, submission_id, "accept")
        sch = _schedule(conn, schedule_id)
        schedule_id = int(sch.id)
        taken = _series_days(ws, conn, schedule_id)
        day = _choose_day(ws, sch, sub, day, now, taken)
        body = as_body(sub.text, day)
        signature = conn.execute(
            sa.select(messages_t.c.signature).where(messages_t.c.schedule_id == schedule_id)
            .order_by(messages_t.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        signature = ws.settings.signature if signature is None else signature
        report = check_for(ws.settings, body, "notice", signature)
        problem = blocking_problem(report)
        if problem:
            raise InputError(f"submission {submission_id} cannot go out as it is: {problem}",
                             hint=f"reject it: broadcast submission reject {submission_id} --reason ...")
        replaced = None
        if day in taken:
            mid, status, replaced = _replace(ws, conn, taken[day], sub, body, signature, now)
        else:
            mid, status = _new_day(ws, conn, sch, sub, body, signature, at_local(day, parse_hhmm(sch.send_time), tz),
                                   now)
        _decide(conn, submission_id, "pending", status="accepted", reason="", schedule_id=schedule_id, day=day,
                message_id=mid, decided_by=ws.operator, decided_at=now)
        note(conn, ws.operator, "submission.accept", f"submission:{submission_id}", group=sub.group,
             schedule=schedule_id, day=day, message=mid, replaced=replaced)
        return Accepted(_load(conn, submission_id), schedule_id, day, mid, status, replaced,
                        [{"code": w.code, "message": w.message} for w in report.warnings])


def _new_day(ws: Workspace, conn: Connection, sch: sa.Row[Any], sub: SubmissionInfo, body: str, signature: str,
             at: datetime, now: datetime) -> tuple[int, str]:
    gids = sorted(conn.execute(sa.select(stargets_t.c.group_id).where(stargets_t.c.schedule_id == sch.id)).scalars())
    sibling = conn.execute(sa.select(messages_t.c.channels, messages_t.c.fallback)  # the series' channels
                           .where(messages_t.c.schedule_id == sch.id).order_by(messages_t.c.id).limit(1)).first()
    mid, status = insert_message(conn, ws, body=body, template=f"series:{sch.series}", category="notice",
                                 group_ids=gids, target_all=bool(sch.target_all), scheduled_at=at, now=now,
                                 schedule_id=sch.id, channels=sibling.channels if sibling else "",
                                 fallback=sibling.fallback if sibling else "")
    if signature != ws.settings.signature:
        conn.execute(messages_t.update().where(messages_t.c.id == mid).values(signature=signature))
    day = local(at, ws.settings.timezone).date()
    last = sch.start_date + timedelta(days=sch.days - 1)
    if day > last:  # a day after the series' last: the series grows to it
        conn.execute(schedules_t.update().where(schedules_t.c.id == sch.id)
                     .values(days=(day - sch.start_date).days + 1, updated_at=now))
    note(conn, ws.operator, "message.create", f"message:{mid}", status=status, body=body,
         template=f"series:{sch.series}", category="notice", schedule=sch.id, scheduled_at=at,
         signature=signature, submission=sub.id)
    return mid, status


def _replace(ws: Workspace, conn: Connection, rows: list[sa.Row[Any]], sub: SubmissionInfo, body: str,
             signature: str, now: datetime) -> tuple[int, str, dict[str, object]]:
    """Replace the text of the day's message, if it is not approved yet."""
    fixed = [r for r in rows if r.status not in EDITABLE]
    if fixed:
        m = fixed[0]
        raise StateError(
            f"{local(m.scheduled_at, ws.settings.timezone).date()} already has message {m.id}, which is {m.status}: "
            "only a line not yet approved can be replaced",
            hint=f"choose another --day, or cancel it first: broadcast message cancel {m.id}",
        )
    m = rows[0]
    to = initial_status(ws)
    values: dict[str, Any] = {"body": body, "author": ws.operator, "approver": None, "reject_reason": None,
                              "signature": signature, "updated_at": now}
    values["send_after"] = first_send_time(ws.settings, m.scheduled_at)
    transition(conn, m.id, to, reason=f"text replaced by submission {sub.id} ({ws.operator})", **values)
    earlier = conn.execute(
        sa.select(submissions_t.c.id).where(submissions_t.c.message_id == m.id, submissions_t.c.status == "accepted")
    ).scalars().all()
    for eid in earlier:  # its line is no longer used: back to the office's pile
        _decide(conn, eid, "accepted", status="pending", reason=f"replaced by submission {sub.id}",
                schedule_id=None, day=None, message_id=None, decided_by=ws.operator, decided_at=now)
        note(conn, ws.operator, "submission.replaced", f"submission:{eid}", by=sub.id, message=m.id)
    note(conn, ws.operator, "message.edit", f"message:{m.id}", status=to, changed=["body"], body=body,
         submission=sub.id)
    return m.id, to, {"message_id": m.id, "was": m.status, "body": m.body, "submissions": list(earlier)}
