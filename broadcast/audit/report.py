"""Reports: what was sent and what arrived, by day, week, month, group, message or gateway.

Counted from the delivery rows (test sends excluded), so a report always agrees with the log:
``deliveries`` rows; ``accepted`` = taken by the gateway (delivered ones included); ``delivered``
= confirmed by a receipt; ``failed`` and ``expired`` with reasons; ``pending`` = queued, retrying
or sending; ``in_doubt``; ``sms`` = billable SMS parts of accepted deliveries; ``people`` =
distinct phones. ``delivery_rate`` = delivered / settled deliveries (not pending), or, for a
gateway without receipts, accepted / settled (``rate_basis`` says which).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa

from broadcast.audit.timeutil import local_key, range_utc
from broadcast.db.dispatch_models import (
    ACCEPTED, DELIVERED, EXPIRED, FAILED, IN_DOUBT, QUEUED, RETRY_WAIT, SENDING, Delivery,
)
from broadcast.db.models import Message
from broadcast.errors import InputError
from broadcast.workspace import Workspace

deliveries_t = Delivery.__table__
messages_t = Message.__table__
BY = ("day", "week", "month", "group", "message", "gateway")


@dataclass
class Row:
    key: str
    messages: int = 0
    deliveries: int = 0
    people: int = 0
    accepted: int = 0
    delivered: int = 0
    failed: int = 0
    expired: int = 0
    pending: int = 0
    in_doubt: int = 0
    sms: int = 0
    optout_skipped: int | None = None
    delivery_rate: float | None = None
    rate_basis: str = "delivered"

    def finish(self) -> Row:
        settled = self.deliveries - self.pending
        basis = self.delivered if self.delivered else self.accepted
        self.rate_basis = "delivered" if self.delivered or not self.accepted else "accepted"
        self.delivery_rate = round(100.0 * basis / settled, 1) if settled else None
        return self


@dataclass
class Report:
    since: str | None
    until: str | None
    by: str
    headline: str
    total: Row
    rows: list[Row]
    failures: dict[str, int] = field(default_factory=dict)  # reason -> deliveries failed or expired
    per_day: list[Row] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "by": self.by, "headline": self.headline,
                "total": asdict(self.total), "rows": [asdict(r) for r in self.rows], "failures": self.failures,
                "per_day": [asdict(r) for r in self.per_day]}


def _aggregates(key: Any) -> list[Any]:
    d = deliveries_t
    def n(*states: str) -> Any:
        return sa.func.sum(sa.case((d.c.status.in_(states), 1), else_=0))
    real_phone = sa.case((d.c.phone.like("purged-%"), None), else_=d.c.phone)
    return [
        key.label("key"),
        sa.func.count(sa.distinct(d.c.message_id)).label("messages"),
        sa.func.count().label("deliveries"),
        sa.func.count(sa.distinct(real_phone)).label("people"),
        n(ACCEPTED, DELIVERED).label("accepted"),
        n(DELIVERED).label("delivered"),
        n(FAILED).label("failed"),
        n(EXPIRED).label("expired"),
        n(QUEUED, RETRY_WAIT, SENDING).label("pending"),
        n(IN_DOUBT).label("in_doubt"),
        sa.func.sum(sa.case((d.c.status.in_((ACCEPTED, DELIVERED)), d.c.parts), else_=0)).label("sms"),
    ]


def _row(r: Any) -> Row:
    return Row(str(r.key), *(int(getattr(r, f) or 0) for f in
                             ("messages", "deliveries", "people", "accepted", "delivered", "failed", "expired",
                              "pending", "in_doubt", "sms")))


def build(ws: Workspace, *, since: date | None = None, until: date | None = None, by: str = "day") -> Report:
    if by not in BY:
        raise InputError(f"--by {by}: choose one of {', '.join(BY)}")
    d = deliveries_t
    tz, dialect = ws.settings.timezone, ws.engine.dialect.name
    lo, hi = range_utc(since, until, tz)
    conds: list[Any] = [d.c.kind == "real"]
    if lo is not None:
        conds.append(d.c.queued_at >= lo)
    if hi is not None:
        conds.append(d.c.queued_at < hi)
    keys = {"group": d.c.group_name, "message": d.c.message_id, "gateway": d.c.gateway}
    key = keys.get(by)
    if key is None:
        key = local_key(d.c.queued_at, by, dialect, tz)
    day = local_key(d.c.queued_at, "day", dialect, tz)
    with ws.engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(sa.select(*_aggregates(key)).where(*conds).group_by(key).order_by(key))]
        total = _row(conn.execute(sa.select(*_aggregates(sa.literal("total"))).where(*conds)).one())
        per_day = rows if by == "day" else [
            _row(r) for r in conn.execute(sa.select(*_aggregates(day)).where(*conds).group_by(day).order_by(day))]
        failures = dict(conn.execute(
            sa.select(sa.func.coalesce(d.c.error_code, "unknown"), sa.func.count())
            .where(*conds, d.c.status.in_((FAILED, EXPIRED))).group_by(d.c.error_code)
            .order_by(sa.func.count().desc())).all())
        mids = sa.select(d.c.message_id).where(*conds).distinct()
        skips = dict(conn.execute(sa.select(messages_t.c.id, messages_t.c.optout_skipped)
                                  .where(messages_t.c.id.in_(mids))).all())
    total.optout_skipped = sum(skips.values())
    if by == "message":
        for r in rows:
            r.optout_skipped = skips.get(int(r.key), 0)
    for r in [*rows, total, *per_day]:
        r.finish()
    first = per_day[0].key if per_day else None
    last = per_day[-1].key if per_day else None
    span_from = since.isoformat() if since else first
    span_to = until.isoformat() if until else last
    return Report(span_from, span_to, by, headline(total, span_from, span_to), total, rows, failures, per_day)


def headline(t: Row, since: str | None, until: str | None) -> str:
    """In the office's own style: '2014-04-01 – 2014-05-06: 7 messages, 5,032 SMS to 712 people, 98.9 % delivered'."""
    span = f"{since} – {until}" if since and until and since != until else (since or "no sends yet")
    rate = f"{t.delivery_rate:.1f} % {t.rate_basis}" if t.delivery_rate is not None else "nothing settled yet"
    msgs = f"{t.messages} message{'' if t.messages == 1 else 's'}"
    return f"{span}: {msgs}, {t.sms:,} SMS to {t.people:,} people, {rate}"
