"""Retention: erase phone numbers, names and texts of old deliveries, keeping every count.

A purged delivery keeps its message, group, status, parts, times and error code (so reports stay
right) and loses the personal data: phone becomes ``purged-<id>``, name, text and address (an email
address, a WeCom userid) are emptied, and the people a group-chat post stood for are unlinked (the
post stays, one delivery).
Audit entries never hold full numbers, so the chain is not touched. The purge itself is audited.

Replies received before the cutoff lose the same data (phone ``purged-<id>``, text and raw payload
emptied, the member link cut), unless they are feedback still open in the inbox; their kind, branch,
message, category and dates stay, so the inbox report's counts stay right.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from broadcast import clock
from broadcast.audit.timeutil import day_start
from broadcast.db.audit_chain import note
from broadcast.db.channel_models import DeliveryPerson
from broadcast.db.dispatch_models import OPEN_STATES, Delivery, InboundMessage
from broadcast.db.engine import transaction
from broadcast.db.twoway_models import Feedback
from broadcast.db.types import table, utcnow
from broadcast.errors import InputError
from broadcast.workspace import Workspace

deliveries_t = table(Delivery)
inbound_t = table(InboundMessage)
feedback_t = table(Feedback)


@dataclass
class Purged:
    before: str
    deliveries: int
    replies: int = 0

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))


def cutoff(ws: Workspace, before: date | None = None) -> date:
    """The local date a purge erases before: ``before`` if given, else today (local) minus
    ``BROADCAST_RETENTION_DAYS``; neither is bad input."""
    if before is not None:
        return before
    days = ws.settings.retention_days
    if not days:
        raise InputError("say which deliveries to purge",
                         hint="broadcast purge --before YYYY-MM-DD, or set BROADCAST_RETENTION_DAYS")
    return clock.local(clock.now(ws.settings), ws.settings.timezone).date() - timedelta(days=days)


people_t = table(DeliveryPerson)


def _scope(before_utc: datetime) -> list[sa.ColumnElement[bool]]:
    d = deliveries_t
    return [d.c.queued_at < before_utc, ~d.c.phone.like("purged-%"), d.c.status.not_in(OPEN_STATES)]


def count(ws: Workspace, before: date) -> int:
    """Deliveries a purge before ``before`` would erase (still-open ones are never purged)."""
    with ws.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(deliveries_t)
                            .where(*_scope(day_start(before, ws.settings.timezone)))).scalar_one()


def purge(ws: Workspace, before: date) -> Purged:
    d = deliveries_t
    cutoff = day_start(before, ws.settings.timezone)
    with transaction(ws.engine, write=True) as conn:
        # the people a chat post stood for go with it (the post itself stays, counted once)
        conn.execute(people_t.delete().where(people_t.c.delivery_id.in_(sa.select(d.c.id).where(*_scope(cutoff)))))
        n = conn.execute(
            d.update().where(*_scope(cutoff))
            .values(phone=sa.literal("purged-") + sa.cast(d.c.id, sa.String), name="", text="", error_text=None,
                    address="", updated_at=utcnow())
        ).rowcount
        replies = _purge_replies(conn, cutoff)
        note(conn, ws.operator, "purge", "deliveries", before=before.isoformat(), deliveries=n, replies=replies,
             retention_days=ws.settings.retention_days)
    return Purged(before.isoformat(), n, replies)


def _purge_replies(conn: sa.Connection, cutoff: datetime) -> int:
    i, f = inbound_t, feedback_t
    still_open = sa.select(f.c.inbound_id).where(f.c.status != "closed")
    n = conn.execute(
        i.update().where(i.c.received_at < cutoff, ~i.c.phone.like("purged-%"), i.c.id.not_in(still_open))
        .values(phone=sa.literal("purged-") + sa.cast(i.c.id, sa.String), text="", raw="", member_id=None)
    ).rowcount
    conn.execute(
        f.update().where(f.c.received_at < cutoff, f.c.status == "closed", ~f.c.phone.like("purged-%"))
        .values(phone=sa.literal("purged-") + sa.cast(f.c.id, sa.String), text="", member_id=None)
    )
    return int(n or 0)
