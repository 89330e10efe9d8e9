"""When a message may be sent: quiet hours, lateness, and what is due now.

* ``send_after`` is the moment a message may first be sent: its ``scheduled_at`` (or, for an
  "as soon as possible" message, the moment it was approved) pushed past the quiet hours
  (``BROADCAST_QUIET_HOURS``, local time in ``BROADCAST_TIMEZONE``).
* A message is *due* when it is ``approved`` (or already ``sending``), ``send_after`` has come,
  the current time is outside quiet hours, and its schedule (if any) is not paused.
* Lateness counts from ``send_after``: a message more than ``BROADCAST_MAX_LATENESS`` past it
  is not sent; :func:`expire_overdue` marks it ``expired`` with the reason. Exactly the limit
  is still on time. A message already ``sending`` is never expired here (its audience is
  frozen; the dispatch engine finishes or pauses it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from broadcast.clock import format_duration, local
from broadcast.clock import now as clock_now
from broadcast.config import Settings
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.models import Message, Schedule
from broadcast.db.types import table
from broadcast.messages.states import transition
from broadcast.workspace import Workspace

__all__ = ["DueItem", "DueReport", "WaitItem", "due", "expire_overdue", "first_send_time", "late_by"]

messages_t = table(Message)
schedules_t = table(Schedule)

EXPIRABLE = ("pending_approval", "approved", "held")
_LOOKED_AT = ("draft", "pending_approval", "rejected", "approved", "held", "paused", "sending")


def first_send_time(settings: Settings, at: datetime) -> datetime:
    """``at`` pushed past the quiet hours (unchanged when outside them or when there are none)."""
    window = settings.quiet_window
    return window.end_after(at, settings.timezone) if window else at


def late_by(settings: Settings, send_after: datetime | None, now: datetime) -> timedelta | None:
    """How late a message is beyond the allowed lateness; None when it is not too late."""
    if send_after is None:
        return None
    late = now - send_after
    return late if late > settings.lateness else None


def _fmt(settings: Settings, dt: datetime | None) -> str:
    return local(dt, settings.timezone).strftime("%Y-%m-%d %H:%M") if dt else ""


@dataclass
class DueItem:
    id: int
    status: str
    send_after: datetime | None
    scheduled_at: datetime | None
    schedule_id: int | None
    late: str  # how late it is now (0m when on time)
    preview: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class WaitItem:
    id: int
    status: str
    code: str  # draft | rejected | approval | held | scheduled | quiet_hours | paused | schedule_paused | too_late
    reason: str
    send_after: datetime | None
    scheduled_at: datetime | None
    schedule_id: int | None
    preview: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class DueReport:
    now: datetime
    due: list[DueItem] = field(default_factory=list)
    waiting: list[WaitItem] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "now": self.now,
            "due": [d.to_dict() for d in self.due],
            "waiting": [w.to_dict() for w in self.waiting],
        }


def _preview(body: str, limit: int = 30) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _rows(conn: sa.Connection, statuses: tuple[str, ...]) -> list[sa.Row[Any]]:
    query = (
        sa.select(
            messages_t.c.id, messages_t.c.status, messages_t.c.body, messages_t.c.author,
            messages_t.c.send_after, messages_t.c.scheduled_at, messages_t.c.schedule_id,
            messages_t.c.status_reason, schedules_t.c.status.label("schedule_status"),
        )
        .outerjoin(schedules_t, schedules_t.c.id == messages_t.c.schedule_id)
        .where(messages_t.c.status.in_(statuses))
        .order_by(sa.func.coalesce(messages_t.c.send_after, messages_t.c.created_at), messages_t.c.id)
    )
    return list(conn.execute(query))


def _why_waiting(settings: Settings, row: sa.Row[Any], now: datetime) -> tuple[str, str] | None:
    """(code, reason) when the message waits; None when it is due now."""
    mid = row.id
    if row.status == "draft":
        return "draft", "draft: not submitted for approval"
    if row.status == "rejected":
        return "rejected", f"rejected: edit it to resubmit ('broadcast message edit {mid}')"
    if row.status == "paused":
        return "paused", "paused"
    too_late = late_by(settings, row.send_after, now) if row.status in EXPIRABLE else None
    if too_late is not None:
        return "too_late", (
            f"too late: it could first be sent at {_fmt(settings, row.send_after)}, now {format_duration(now - row.send_after)}"
            f" later (limit BROADCAST_MAX_LATENESS={settings.max_lateness}); it will be marked expired"
        )
    if row.status == "held":
        return "held", (f"held: {row.status_reason or 'over budget'}; released by a budget that makes room, or by"
                         f" another operator: 'broadcast message approve {mid} --over-budget'")
    if row.status == "pending_approval":
        return "approval", f"waiting for approval by someone other than {row.author} ('broadcast message approve {mid}')"
    if row.schedule_status == "paused":
        return "schedule_paused", f"its schedule {row.schedule_id} is paused ('broadcast schedule resume {row.schedule_id}')"
    if row.send_after is not None and now < row.send_after:
        return "scheduled", f"scheduled for {_fmt(settings, row.send_after)}"
    window = settings.quiet_window
    if window is not None and window.is_quiet(now, settings.timezone):
        until = window.end_after(now, settings.timezone)
        return "quiet_hours", f"quiet hours {window} (until {_fmt(settings, until)})"
    return None


def due(ws: Workspace, now: datetime | None = None) -> DueReport:
    """What would be sent if the sender ran at ``now`` (default: the clock), and why anything
    else waits. Read-only: :func:`expire_overdue` does the expiring."""
    now = now or clock_now(ws.settings)
    report = DueReport(now=now)
    with transaction(ws.engine) as conn:
        rows = _rows(conn, _LOOKED_AT)
    for row in rows:
        why = _why_waiting(ws.settings, row, now)
        if why is None:
            late = max(now - row.send_after, timedelta(0)) if row.send_after else timedelta(0)
            report.due.append(
                DueItem(row.id, row.status, row.send_after, row.scheduled_at, row.schedule_id,
                        format_duration(late) if late else "0m", _preview(row.body))
            )
        else:
            report.waiting.append(
                WaitItem(row.id, row.status, why[0], why[1], row.send_after, row.scheduled_at,
                         row.schedule_id, _preview(row.body))
            )
    return report


@dataclass
class Expired:
    id: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def expire_overdue(ws: Workspace, now: datetime | None = None) -> list[Expired]:
    """Mark ``expired`` every pending or approved message more than BROADCAST_MAX_LATENESS past
    its ``send_after`` at ``now``, recording the reason in ``status_reason``."""
    settings = ws.settings
    now = now or clock_now(settings)
    cutoff = now - settings.lateness
    out: list[Expired] = []
    with transaction(ws.engine, write=True) as conn:
        rows = conn.execute(
            sa.select(messages_t.c.id, messages_t.c.status, messages_t.c.send_after).where(
                messages_t.c.status.in_(EXPIRABLE), messages_t.c.send_after < cutoff
            ).with_for_update()  # PostgreSQL: a worker expiring it at the same time goes first; it is skipped here
        ).all()
        for mid, status, send_after in rows:
            what = {"pending_approval": "not approved in time", "held": "still held over budget"}.get(status, "not sent in time")
            reason = (
                f"{what}: it could first be sent at {_fmt(settings, send_after)}; at {_fmt(settings, now)} it was "
                f"{format_duration(now - send_after)} late (limit {settings.max_lateness})"
            )
            transition(conn, mid, "expired", reason=reason, updated_at=now)
            note(conn, ws.operator, "message.expire", f"message:{mid}", reason=reason)
            out.append(Expired(mid, reason))
    return out
