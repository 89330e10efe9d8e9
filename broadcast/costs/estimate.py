"""What a message will cost: its billable parts for its audience × the price of the gateway that
will carry it (the first of ``BROADCAST_GATEWAYS``, else ``BROADCAST_GATEWAY``).

Before sending, the audience is the message's audience as it is now (opt-outs left out) and each
person's text is rendered and counted with the signature (``messages.billable``). Once sending has
started, ``message_cost`` gives what was billed so far and what may still be (``spend``). The
estimate assumes every part goes through that gateway and is billed: failures, a failover to a
gateway with another price and undelivered parts of a ``delivered``-billing provider only make the
real figure lower or different; reports give the real one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.config import Settings
from broadcast.costs.money import exact, yuan
from broadcast.costs.prices import PriceBook, billing_of, price_of, price_var
from broadcast.costs.spend import Spend, parts_rows
from broadcast.db.dispatch_models import QUEUED, Delivery
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.errors import NotFoundError
from broadcast.messages import channel_plan
from broadcast.messages.audience import AudienceMember, message_audience
from broadcast.messages.billable import billable_parts
from broadcast.messages.channels import of_row
from broadcast.workspace import Workspace

__all__ = ["Estimate", "MessageCost", "estimate_audience", "estimate_in", "estimate_message", "first_gateway",
           "message_cost"]

messages_t = table(Message)
deliveries_t = table(Delivery)


def first_gateway(settings: Settings) -> str:
    """The gateway a send starts with: the first of BROADCAST_GATEWAYS, else BROADCAST_GATEWAY."""
    return settings.gateway_names[0]


@dataclass
class Estimate:
    gateway: str
    price: Decimal | None  # yuan per part; None: BROADCAST_PRICE_<GATEWAY> is not set
    billing: str
    people: int = 0
    parts: int = 0  # billable SMS parts
    by_group: dict[str, int] = field(default_factory=dict)  # group reached through -> parts
    by_size: dict[int, int] = field(default_factory=dict)  # parts per SMS -> people

    @property
    def cost(self) -> Decimal | None:
        return None if self.price is None else self.parts * self.price

    def cost_of(self, parts: int) -> Decimal | None:
        return None if self.price is None else parts * self.price

    def text(self) -> str:
        """``701 billable SMS parts, ≈ ¥28.04 (aliyun ¥0.04 a part)`` in the office's terms."""
        if self.price is None:
            return (f"{self.parts:,} billable SMS parts; cost unknown: the price of gateway {self.gateway} "
                    f"is not set ({price_var(self.gateway)})")
        return f"{self.parts:,} billable SMS parts, {yuan(self.cost)} ({self.gateway} ¥{exact(self.price)} a part)"

    def to_dict(self) -> dict[str, object]:
        return {"gateway": self.gateway, "price": exact(self.price), "billing": self.billing, "people": self.people,
                "billable_sms": self.parts, "cost": exact(self.cost), "cost_text": yuan(self.cost),
                "by_group": dict(self.by_group), "by_size": {str(k): v for k, v in sorted(self.by_size.items())}}


def estimate_audience(settings: Settings, people: Iterable[AudienceMember], body: str, signature: str,
                      gateway: str | None = None) -> Estimate:
    """The estimate for a frozen ``body`` sent to ``people`` through ``gateway`` (default: the
    first configured). For a month plan: the audience of a series' day and its text."""
    gw = gateway or first_gateway(settings)
    b = billable_parts(people, body, signature)
    return Estimate(gw, price_of(settings, gw), billing_of(settings, gw), b.people, b.parts, b.by_group, b.by_size)


def estimate_in(conn: Connection, settings: Settings, message_id: int, gateway: str | None = None) -> Estimate:
    """The estimate for message ``message_id`` and its audience as it is now (inside ``conn``)."""
    row = conn.execute(sa.select(messages_t.c.body, messages_t.c.signature, messages_t.c.channels,
                                 messages_t.c.target_all).where(messages_t.c.id == message_id)).first()
    if row is None:
        raise NotFoundError(f"no message {message_id}", hint="see 'broadcast message list'")
    if row.channels:  # on other channels too: the people who would get an SMS (before any fallback)
        people = message_audience(conn, message_id, with_optouts=True)
        plan = channel_plan.plan(conn, message_id, of_row(row.channels), people, bool(row.target_all))
        sms = [a.person for a in plan.assigned if a.channel == "sms"]
        return estimate_audience(settings, sms, row.body, row.signature, gateway)
    return estimate_audience(settings, message_audience(conn, message_id), row.body, row.signature, gateway)


def estimate_message(ws: Workspace, message_id: int, gateway: str | None = None) -> Estimate:
    """The estimated cost of a message for its audience now, through ``gateway`` (default: the first)."""
    with transaction(ws.engine) as conn:
        return estimate_in(conn, ws.settings, message_id, gateway)


def frozen_estimate(conn: Connection, settings: Settings, message_id: int, gateway: str) -> Estimate:
    """The estimate from the deliveries just frozen for a message (queued: all of them when it
    starts), each with the parts it recorded."""
    d = deliveries_t
    rows = conn.execute(sa.select(d.c.group_name, d.c.parts, sa.func.count())
                        .where(d.c.message_id == message_id, d.c.kind == "real", d.c.status == QUEUED,
                               d.c.channel == "sms")
                        .group_by(d.c.group_name, d.c.parts)).all()
    est = Estimate(gateway, price_of(settings, gateway), billing_of(settings, gateway))
    for group, parts, n in rows:
        est.people += n
        est.parts += parts * n
        est.by_group[group] = est.by_group.get(group, 0) + parts * n
        est.by_size[parts] = est.by_size.get(parts, 0) + n
    return est


@dataclass
class MessageCost:
    """What ``message show`` says about money: the estimate before sending, what was billed once started."""

    message_id: int
    started: bool
    estimate: Estimate | None  # before sending starts
    spent: Spend | None  # once it started: billed so far, and what may still be

    def text(self) -> str:
        if self.spent is not None:
            return f"Cost: {self.spent.billed_parts:,} SMS billed, {self.spent.text()}"
        assert self.estimate is not None
        return f"Estimated cost: {self.estimate.text()}"

    def to_dict(self) -> dict[str, object]:
        return {"started": self.started, "estimate": self.estimate.to_dict() if self.estimate else None,
                "spent": self.spent.to_dict() if self.spent else None, "text": self.text()}


def message_cost(ws: Workspace, message_id: int) -> MessageCost:
    with transaction(ws.engine) as conn:
        started = conn.execute(sa.select(messages_t.c.started_at).where(messages_t.c.id == message_id)).first()
        if started is None:
            raise NotFoundError(f"no message {message_id}", hint="see 'broadcast message list'")
        if started[0] is None:
            return MessageCost(message_id, False, estimate_in(conn, ws.settings, message_id), None)
        book = PriceBook(ws.settings)
        total = Spend()
        for r in parts_rows(conn, [deliveries_t.c.message_id == message_id]):
            total.add(r, book)
        return MessageCost(message_id, True, None, total)
