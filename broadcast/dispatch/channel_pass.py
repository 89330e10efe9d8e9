"""The channels beyond SMS in a dispatcher's pass: freeze a message on its channels, send each
channel's deliveries through its own gateway, and move what failed to SMS where the message says so.

A pass sends every channel side by side, each on its own lane (its gateway, batch size and limits:
``dispatch.lane``) through the same ``SendPass`` as SMS (claim, start stamp, send, record); then
``fallback.sweep`` moves what failed to SMS, and one more SMS pass sends those. So a
person's delivery is one row that only moves channel after it failed: never both, never by SMS
after the channel accepted. Crash safety and in-doubt handling are the SMS path's own: a channel's
request stamped as started and never answered is in doubt, and an in-doubt row never falls back.

A channel whose gateway cannot be opened (not configured), that refuses the account or keeps
failing: with ``--fallback sms`` its rows not yet sent there go by SMS (audited
``send.channel_fallback``); without, the message pauses with the reason, as for SMS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.db.audit_chain import note
from broadcast.db.dispatch_models import OPEN_STATES, Delivery
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.dispatch import fallback
from broadcast.dispatch.ledger import FrozenRecipient, freeze
from broadcast.errors import BroadcastError
from broadcast.gateways.base import Gateway
from broadcast.messages import channel_plan
from broadcast.messages.audience import message_audience
from broadcast.messages.channels import of_row
from broadcast.messages.checks import wrap_signature
from broadcast.messages.compose import render_for
from broadcast.messages.states import transition

if TYPE_CHECKING:
    from broadcast.dispatch.dispatcher import Dispatcher
    from broadcast.dispatch.run_report import RunReport

deliveries_t = table(Delivery)
messages_t = table(Message)

#: opens the gateway of a channel (``email``, ``wecom-app``, ``wecom-robot`` …); raises
#: ``BroadcastError`` when it is not configured
Opener = Callable[[str], Gateway]


@dataclass
class Frozen:
    """What freezing a message on its channels made."""

    count: int
    channels: dict[str, int] = field(default_factory=dict)
    unreachable: int = 0  # people no channel of the message reaches (no address there, or opted out)
    opted_out: int = 0  # of them, people left out because they opted out


def freeze_on_channels(conn: Connection, d: Dispatcher, message_id: int, body: str, sig: str,
                       channels: tuple[str, ...], target_all: bool) -> Frozen:
    """The deliveries of a message on its channels (inside the start transaction)."""
    people = message_audience(conn, message_id, with_optouts=True)
    plan = channel_plan.plan(conn, message_id, channels, people, target_all)
    now = d.now()
    recipients = [FrozenRecipient(a.person.member_id, a.person.phone, a.person.name, a.person.group,
                                  sig + render_for(body, name=a.person.name, group=a.person.group, phone=a.person.phone),
                                  a.channel, a.address) for a in plan.assigned]
    recipients += [FrozenRecipient(None, p.address, p.group_name[:100], p.group_name,
                                   sig + render_for(body, name="", group=p.group_name, phone=""), p.gateway, p.address)
                   for p in plan.posts]
    n = freeze(conn, message_id, recipients, now, d.name)
    fallback.link_people(conn, message_id, [(p.address, [(m.member_id, m.phone, m.name) for m in p.people])
                                            for p in plan.posts])
    return Frozen(n, plan.counts(), len(plan.unreachable), plan.opted_out)


class Channels:
    """A dispatcher's gateways beyond SMS, opened when a pass first needs them."""

    def __init__(self, d: Dispatcher, opener: Opener | None) -> None:
        self.d, self.opener = d, opener
        self.open: dict[str, Gateway] = {}
        self.refused: dict[str, str] = {}  # channel -> why its gateway could not be opened

    def gateway(self, channel: str) -> Gateway | None:
        if channel in self.open:
            return self.open[channel]
        if channel in self.refused:
            return None
        if self.opener is None:
            self.refused[channel] = f"no gateway for channel {channel!r} in this process"
            return None
        try:
            gw = self.opener(channel)
        except BroadcastError as exc:
            self.refused[channel] = f"channel {channel!r} cannot be used: {exc}"
            return None
        self.open[channel] = gw
        return gw

    async def aclose(self) -> None:
        for gw in self.open.values():
            await gw.aclose()
            client = getattr(gw, "_client", None)
            if client is not None:
                await client.aclose()
        self.open.clear()

    # -- a pass --------------------------------------------------------------------------------

    def due(self, ids: list[int]) -> list[str]:
        """The channels other than SMS with open deliveries of these messages, in a fixed order."""
        dt = deliveries_t
        with self.d.ws.engine.connect() as conn:
            found = conn.execute(sa.select(dt.c.channel).where(
                dt.c.message_id.in_(ids), dt.c.status.in_(OPEN_STATES), dt.c.channel != "sms").distinct()).scalars()
            return sorted(found)

    async def send(self, ids: list[int], report: RunReport, wait_for_retries: bool) -> None:
        """Every channel's deliveries through its own gateway, side by side with the SMS pass; then
        what failed on a channel moves to SMS (``fallback.sweep``) and goes in one more SMS pass."""
        from broadcast.dispatch.send_pass import SendPass

        d = self.d
        passes = [SendPass(d, ids, report, wait_for_retries)]
        for channel in self.due(ids):
            gw = self.gateway(channel)
            if gw is None:
                for mid in self._messages_on(ids, channel):
                    self.failure(mid, channel, self.refused[channel], report)
                continue
            passes.append(SendPass(d, ids, report, wait_for_retries, lane=d.channel_lane(gw, channel)))
        report.fell_back += self.sweep(ids)  # what a run killed between a failure and its move left
        before = report.fell_back  # a channel failing for a whole message moves its rows at once
        await asyncio.gather(*(p.run() for p in passes))
        report.fell_back += self.sweep(ids)
        if report.fell_back > before and not d.stopping:  # what moved after the SMS pass had looked
            await SendPass(d, ids, report, wait_for_retries).run()

    def sweep(self, ids: list[int]) -> int:
        """``fallback.sweep`` for the messages among ``ids`` that have ``--fallback sms`` (none: no write)."""
        with self.d.ws.engine.connect() as conn:
            with_fallback = list(conn.execute(sa.select(messages_t.c.id).where(
                messages_t.c.id.in_(ids), messages_t.c.fallback == "sms")).scalars())
        if not with_fallback:
            return 0
        return fallback.sweep(self.d.ws.engine, with_fallback, self.d.failover.current_name, self.d.now(), self.render)

    def _messages_on(self, ids: list[int], channel: str) -> list[int]:
        dt = deliveries_t
        with self.d.ws.engine.connect() as conn:
            return list(conn.execute(sa.select(dt.c.message_id).where(
                dt.c.message_id.in_(ids), dt.c.channel == channel, dt.c.status.in_(OPEN_STATES)).distinct()).scalars())

    def has_fallback(self, mid: int) -> bool:
        with self.d.ws.engine.connect() as conn:
            return conn.execute(sa.select(messages_t.c.fallback).where(messages_t.c.id == mid)).scalar() == "sms"

    def failure(self, mid: int, channel: str, reason: str, report: RunReport) -> bool:
        """A channel failed for a whole message: its open rows go by SMS (``--fallback sms``; True),
        or the message pauses (False), audited either way."""
        d = self.d
        if self.has_fallback(mid):
            moved = fallback.move_open(d.ws.engine, mid, channel, self._sms_name(), d.now(), reason, self.render)
            with transaction(d.ws.engine, write=True) as conn:
                note(conn, d.ws.operator, "send.channel_fallback", f"message:{mid}", channel=channel, reason=reason,
                     to_sms=moved, run=d.run.id if d.run else None)
            report.fell_back += moved
            return True
        with transaction(d.ws.engine, write=True) as conn:
            status = conn.execute(sa.select(messages_t.c.status).where(messages_t.c.id == mid)).scalar()
            if status == "sending":
                transition(conn, mid, "paused", reason=reason)
                note(conn, d.ws.operator, "message.pause", f"message:{mid}", reason=reason, channel=channel,
                     run=d.run.id if d.run else None)
        report.paused[mid] = reason
        return False

    def _sms_name(self) -> str:
        return self.d.failover.current_name

    # -- texts ---------------------------------------------------------------------------------

    def render(self, message_id: int, name: str, group: str, phone: str) -> str:
        """A person's SMS text of a message (a failed post's people): the freeze's own rendering."""
        d = self.d
        cache: dict[int, tuple[str, str]] = getattr(self, "_bodies", {})
        self._bodies = cache
        if message_id not in cache:
            with d.ws.engine.connect() as conn:
                body, signature = conn.execute(sa.select(messages_t.c.body, messages_t.c.signature)
                                               .where(messages_t.c.id == message_id)).one()
            cache[message_id] = (body, wrap_signature(signature if d.signature is None else d.signature))
        body, sig = cache[message_id]
        return sig + render_for(body, name=name, group=group, phone=phone)


def robots_json(rows: list[tuple[str, str, str]]) -> str:
    """``[(name, url, secret)]`` as a robot gateway's ``ROBOTS`` JSON (for ``robots.parse_robots``)."""
    return json.dumps({name: {"url": url, "secret": secret} for name, url, secret in rows}, ensure_ascii=False)


def channels_of(conn: Connection, message_id: int) -> tuple[str, ...]:
    return of_row(conn.execute(sa.select(messages_t.c.channels).where(messages_t.c.id == message_id)).scalar())
