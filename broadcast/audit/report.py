"""Reports: what was sent and what arrived, by day, week, month, group, message or gateway.

Counted from the delivery rows (test sends excluded), so a report always agrees with the log:
``deliveries`` rows, on the local day their message started sending; ``accepted`` = taken by the gateway (delivered ones included); ``delivered``
= confirmed by a receipt; ``failed`` and ``expired`` with reasons; ``pending`` = queued, retrying
or sending; ``in_doubt``; ``unconfirmed`` = still only accepted (no final receipt) although their message
started sending more than ``BROADCAST_RECEIPT_TIMEOUT`` ago (they count as accepted, never as
delivered; ``broadcast receipts status`` times each delivery exactly); ``sms`` = billable SMS parts of accepted deliveries; ``people`` =
distinct phones. ``delivery_rate`` = delivered / settled deliveries (not pending), or, for a
gateway without receipts, accepted / settled (``rate_basis`` says which).

Costs (``broadcast.costs``): ``billed_sms`` = the parts each provider bills (accepted and delivered
ones, and for a provider that bills what it accepted also those a carrier reported undelivered);
``cost`` = billed parts × ``BROADCAST_PRICE_<GATEWAY>`` of the gateway that carried each delivery;
``unpriced_sms`` = billed parts through a gateway with no price set (not in ``cost``). ``--by
group`` also gives each budgeted group's spend against its monthly budget, month by month.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from broadcast import clock
from broadcast.audit.timeutil import range_utc
from broadcast.costs.money import ZERO, exact, yuan
from broadcast.costs.prices import PriceBook
from broadcast.costs.spend import undelivered_parts
from broadcast.db.dispatch_models import (
    ACCEPTED,
    DELIVERED,
    EXPIRED,
    FAILED,
    IN_DOUBT,
    QUEUED,
    RETRY_WAIT,
    SENDING,
    Delivery,
)
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.errors import InputError
from broadcast.messages.channels import channel_of
from broadcast.workspace import Workspace

if TYPE_CHECKING:
    from broadcast.costs.budgets import BudgetLine

deliveries_t = table(Delivery)
messages_t = table(Message)
BY = ("day", "week", "month", "group", "message", "gateway", "channel")


@dataclass
class Row:
    key: str
    messages: int = 0
    deliveries: int = 0
    people: int | None = 0  # distinct phones: for the total (and per message); None where not counted
    accepted: int = 0
    delivered: int = 0
    failed: int = 0
    expired: int = 0
    pending: int = 0
    in_doubt: int = 0
    unconfirmed: int = 0  # accepted, but no final receipt within BROADCAST_RECEIPT_TIMEOUT
    sms: int = 0
    optout_skipped: int | None = None
    delivery_rate: float | None = None
    rate_basis: str = "delivered"
    billed_sms: int = 0  # parts the providers bill (by each one's rule)
    cost: Decimal = ZERO  # billed parts × the price of the gateway that carried them (yuan)
    unpriced_sms: int = 0  # billed parts through a gateway without a price: not in ``cost``

    def charge(self, parts: int, price: Decimal | None) -> None:
        self.billed_sms += parts
        if price is None:
            self.unpriced_sms += parts
        else:
            self.cost += parts * price

    def cost_text(self) -> str:
        """``≈ ¥617``, ``≈ ¥617 + 120 SMS at no known price``, or ``cost unknown``."""
        if self.unpriced_sms == self.billed_sms and self.billed_sms:
            return "cost unknown"
        return yuan(self.cost) + (f" + {self.unpriced_sms:,} SMS at no known price" if self.unpriced_sms else "")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost"] = exact(self.cost)
        data["cost_text"] = self.cost_text()
        return data

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
    prices: dict[str, str | None] = field(default_factory=dict)  # gateway -> yuan per part (None: not set)
    billing: dict[str, str] = field(default_factory=dict)  # gateway -> submitted | delivered
    budgets: list[BudgetLine] = field(default_factory=list)  # --by group: spend against budget, per month

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "by": self.by, "headline": self.headline,
                "total": self.total.to_dict(), "rows": [r.to_dict() for r in self.rows], "failures": self.failures,
                "per_day": [r.to_dict() for r in self.per_day], "prices": self.prices, "billing": self.billing,
                "budgets": [b.to_dict() for b in self.budgets]}


_STATE_FIELD = {ACCEPTED: "accepted", DELIVERED: "delivered", FAILED: "failed", EXPIRED: "expired",
                QUEUED: "pending", RETRY_WAIT: "pending", SENDING: "pending", IN_DOUBT: "in_doubt"}


def _period(day: date, by: str) -> str:
    if by == "week":
        return (day - timedelta(days=day.weekday())).isoformat()  # its Monday
    if by == "month":
        return day.isoformat()[:7]
    return day.isoformat()


def build(ws: Workspace, *, since: date | None = None, until: date | None = None, by: str = "day") -> Report:
    """Deliveries count on the local day their message started sending (all of a message's
    deliveries are frozen at that moment). One index-only scan grouped by (group, message,
    status, gateway) serves every --by, folded in Python; plus a distinct count of phones and the
    failure reasons."""
    if by not in BY:
        raise InputError(f"--by {by}: choose one of {', '.join(BY)}")
    d, m = deliveries_t, messages_t
    tz = ws.settings.timezone
    lo, hi = range_utc(since, until, tz)
    mq = sa.select(m.c.id, m.c.started_at, m.c.optout_skipped).where(m.c.started_at.is_not(None))
    if lo is not None:
        mq = mq.where(m.c.started_at >= lo)
    if hi is not None:
        mq = mq.where(m.c.started_at < hi)
    conds: list[Any] = [d.c.kind == "real"]
    with ws.engine.connect() as conn:
        cutoff = clock.now(ws.settings) - ws.settings.receipt_wait
        started: dict[int, tuple[date, int]] = {}
        overdue: set[int] = set()  # started before the receipt timeout: what is still accepted is unconfirmed
        for mid, at, skips in conn.execute(mq):
            started[mid] = (clock.local(at, tz).date(), skips)
            if at < cutoff:
                overdue.add(mid)
        if lo is not None or hi is not None:
            conds.append(d.c.message_id.in_(list(started)))
        dims = (d.c.group_name, d.c.message_id, d.c.status, d.c.gateway)
        grouped = conn.execute(
            sa.select(*dims, sa.func.count(), sa.func.sum(d.c.parts)).where(*conds).group_by(*dims)
        ).all() if started else []
        people = _people(conn, conds, filtered=lo is not None or hi is not None)
        reason = sa.func.coalesce(d.c.error_code, sa.literal_column("'unknown'"))
        failures: dict[str, int] = dict(conn.execute(
            sa.select(reason, sa.func.count()).where(*conds, d.c.status.in_((FAILED, EXPIRED)))
            .group_by(reason).order_by(sa.func.count().desc())).all())
        undelivered = undelivered_parts(conn, conds) if started else {}
        book = PriceBook(ws.settings)
        budgets = _budgets(conn, book, since, until, started, grouped, undelivered) if by == "group" else []
    rows: dict[str, Row] = {}
    days: dict[str, Row] = {}
    msgs: dict[str, set[int]] = {}
    day_msgs: dict[str, set[int]] = {}
    total = Row("total")
    seen: set[int] = set()
    for group, mid, status, gateway, n, parts in grouped:
        if mid not in started:  # a test send's message, or one that never started: not in the report
            continue
        seen.add(mid)
        day = _period(started[mid][0], "day")
        key = _key(by, group, mid, gateway) or _period(started[mid][0], by)
        sms = channel_of(gateway) == "sms"  # a post or message on another channel is neither SMS nor billed
        for row in (rows.setdefault(key, Row(key)), total, days.setdefault(day, Row(day))):
            row.deliveries += n
            field_ = _STATE_FIELD.get(status)
            if field_:
                setattr(row, field_, getattr(row, field_) + n)
            if status == DELIVERED:
                row.accepted += n
            if status in (ACCEPTED, DELIVERED) and sms:
                row.sms += int(parts or 0)
                row.charge(int(parts or 0), book.price(gateway))
            if status == ACCEPTED and mid in overdue and sms:  # the channels beyond SMS send no receipts
                row.unconfirmed += n
        msgs.setdefault(key, set()).add(mid)
        day_msgs.setdefault(day, set()).add(mid)
    for (group, mid, gateway), parts in undelivered.items():  # accepted, then undelivered: billed or not by rule
        if mid in started and book.billing(gateway) == "submitted":
            day = _period(started[mid][0], "day")
            key = _key(by, group, mid, gateway) or _period(started[mid][0], by)
            for row in (rows.setdefault(key, Row(key)), total, days.setdefault(day, Row(day))):
                row.charge(parts, book.price(gateway))
    for buckets, members in ((rows, msgs), (days, day_msgs)):
        for key, row in buckets.items():
            row.messages = len(members.get(key, ()))
            row.people = None  # distinct people are counted for the total only
    total.messages, total.people = len(seen), people
    total.optout_skipped = sum(started[mid][1] for mid in seen)
    ordered = [rows[k] for k in sorted(rows, key=lambda k: int(k) if by == "message" else k)]
    if by == "message":
        for r in ordered:
            r.optout_skipped = started[int(r.key)][1]
    per_day = [days[k] for k in sorted(days)]
    for r in [*ordered, total, *per_day]:
        r.finish()
    span_from = since.isoformat() if since else (per_day[0].key if per_day else None)
    span_to = until.isoformat() if until else (per_day[-1].key if per_day else None)
    gateways = sorted({g for _, _, _, g, _, _ in grouped} | {k[2] for k in undelivered})
    rules = {g: book.billing(g) for g in gateways if book.price(g) is not None or any(k[2] == g for k in undelivered)}
    return Report(span_from, span_to, by, headline(total, span_from, span_to), total, ordered, failures, per_day,
                  {g: exact(book.price(g)) for g in gateways}, rules, budgets)


def _key(by: str, group: str, mid: int, gateway: str) -> str | None:
    """A row's key for --by group/message/gateway/channel (None: a period)."""
    return {"group": group, "message": str(mid), "gateway": gateway, "channel": channel_of(gateway)}.get(by)


def _budgets(conn: Any, book: PriceBook, since: date | None, until: date | None, started: dict[int, tuple[date, int]],
             grouped: Sequence[Any], undelivered: dict[tuple[str, int, str], int]) -> list[BudgetLine]:
    """Each budgeted group's spend against its budget, for every month the report covers. A month
    wholly inside the report's span is folded from the rows the report already read; a month it
    cuts is read whole (a budget is for the whole month)."""
    from broadcast.costs.budgets import budget_lines
    from broadcast.costs.spend import OPEN, TAKEN, PartsRow, any_budget, spend_by

    days = [d for d, _ in started.values()]
    first = since or (min(days) if days else None)
    last = until or (max(days) if days else None)
    if first is None or last is None or not any_budget(conn):
        return []
    parts: dict[tuple[str, int, str], list[int]] = {}
    for group, mid, status, gateway, _n, n_parts in grouped:
        slot = parts.setdefault((group, mid, gateway), [0, undelivered.get((group, mid, gateway), 0), 0])
        if status in TAKEN:
            slot[0] += int(n_parts or 0)
        elif status in OPEN:
            slot[2] += int(n_parts or 0)
    rows = [PartsRow(g, m, gw, *v) for (g, m, gw), v in parts.items() if m in started]
    out: list[BudgetLine] = []
    month = first.replace(day=1)
    while month <= last:
        following = (month + timedelta(days=32)).replace(day=1)
        whole = (since is None or since <= month) and (until is None or until >= following - timedelta(days=1))
        mine = [r for r in rows if started[r.message_id][0].replace(day=1) == month] if whole else None
        out += budget_lines(conn, book, month,
                            spent_by_name=spend_by(mine, book, lambda r: r.group) if mine is not None else None)
        month = following
    return out


def _people(conn: Any, conds: list[Any], *, filtered: bool) -> int:
    """Distinct phones reached. Unfiltered, it is counted on the phone index (an index-only scan)
    less the phones that only ever got test sends and the purged rows (each its own 'phone')."""
    d = deliveries_t
    if filtered:
        real_phone = sa.case((d.c.phone.like("purged-%"), None), else_=d.c.phone)
        return int(conn.execute(sa.select(sa.func.count(sa.distinct(real_phone))).where(*conds)).scalar_one())
    every = conn.execute(sa.select(sa.func.count(sa.distinct(d.c.phone)))).scalar_one()
    real = sa.select(d.c.phone).where(d.c.kind == "real")
    test_only = conn.execute(sa.select(sa.func.count(sa.distinct(d.c.phone)))
                             .where(d.c.kind != "real", d.c.phone.not_in(real))).scalar_one()
    purged = conn.execute(sa.select(sa.func.count()).select_from(d).where(d.c.phone.like("purged-%"))).scalar_one()
    return int(every - test_only - purged)


def headline(t: Row, since: str | None, until: str | None) -> str:
    """In the office's own style: '2014-04-01 – 2014-05-06: 7 messages, 5,032 SMS to 712 people, 98.9 % delivered'."""
    span = f"{since} – {until}" if since and until and since != until else (since or "no sends yet")
    rate = f"{t.delivery_rate:.1f} % {t.rate_basis}" if t.delivery_rate is not None else "nothing settled yet"
    msgs = f"{t.messages} message{'' if t.messages == 1 else 's'}"
    cost = f", {t.cost_text()}" if t.billed_sms and t.unpriced_sms < t.billed_sms else ""
    return f"{span}: {msgs}, {t.sms:,} SMS to {t.people:,} people, {rate}{cost}"
