"""What the commands call: run a pass, run as a worker, send one message now, test sends,
resolve in-doubt deliveries, resume a paused message, plan a send."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from broadcast import clock
from broadcast.db.audit_chain import note
from broadcast.db.dispatch_models import (
    ACCEPTED,
    DELIVERED,
    EXPIRED,
    FAILED,
    IN_DOUBT,
    RETRY_WAIT,
    Delivery,
    DeliveryAttempt,
)
from broadcast.db.engine import transaction
from broadcast.db.types import table
from broadcast.dispatch import ledger
from broadcast.dispatch.dispatcher import Dispatcher, Progress, RunReport
from broadcast.dispatch.policies import effective_rate
from broadcast.errors import ConfigError, InputError, StateError
from broadcast.gateways.base import Addresses, Gateway, Outcome, SendItem, SendResult, make_client, settings_timeout
from broadcast.workspace import Workspace

if TYPE_CHECKING:
    from broadcast.costs.estimate import Estimate

deliveries_t = table(Delivery)
log = logging.getLogger(__name__)
attempts_t = table(DeliveryAttempt)


def open_gateway(ws: Workspace, name: str | None = None) -> Gateway:
    """A configured gateway (default: the first of BROADCAST_GATEWAYS, else BROADCAST_GATEWAY),
    with one HTTP client for the whole run."""
    from broadcast.gateways import registry

    cls = registry.load(name or ws.settings.gateway_names[0])
    if cls.capabilities.addresses is not Addresses.PHONE:  # a delivery carries a phone, not yet an address
        raise ConfigError(
            f"gateway {cls.capabilities.name!r} addresses {cls.capabilities.addresses.value.replace('_', ' ')}s, "
            "not phones: it cannot send deliveries yet (messages do not choose their channels)",
            hint=f"use an SMS gateway in BROADCAST_GATEWAY(S); try this one with 'broadcast gateway test --gateway "
                 f"{cls.capabilities.name} ADDRESS'")
    settings = registry.load_settings(cls)
    client = make_client(settings_timeout(settings), ws.settings.concurrency, backend=ws.settings.http_transport)
    return cls(settings, client)


def channel_opener(ws: Workspace) -> Callable[[str], Gateway]:
    """Opens the gateway of a channel beyond SMS by its name (``email``, ``wecom-app``,
    ``wecom-robot`` …) from its settings; a robot gateway also gets the robots of the groups' chats
    (``broadcast group robot``), named ``group:<id>``. ``ConfigError`` when it is not configured."""
    from broadcast.gateways import registry

    def open_channel(name: str) -> Gateway:
        cls = registry.load(name)
        settings = registry.load_settings(cls)
        client = make_client(settings_timeout(settings), ws.settings.concurrency, backend=ws.settings.http_transport)
        gateway = cls(settings, client)
        _add_group_robots(ws, gateway)
        return gateway

    return open_channel


def _add_group_robots(ws: Workspace, gateway: Gateway) -> None:
    from broadcast.dispatch.channel_pass import robots_json
    from broadcast.gateways import dingtalk, feishu, wecom
    from broadcast.gateways.robots import RobotGateway, parse_robots
    from broadcast.messages.channels import PLATFORM_OF_GATEWAY, robot_address
    from broadcast.recipients.robots import group_robots

    platform = PLATFORM_OF_GATEWAY.get(gateway.capabilities.name)
    if platform is None or not isinstance(gateway, RobotGateway):
        return
    extract = {"wecom": (wecom.extract_key, "key"), "dingtalk": (dingtalk.extract_token, "access token"),
               "feishu": (feishu.extract_hook, "hook id")}[platform]
    with ws.engine.connect() as conn:
        rows = [(robot_address(r.group_id), r.url, r.secret) for r in group_robots(conn) if r.platform == platform]
    if rows:
        try:
            found = parse_robots(robots_json(rows), *extract)
        except ValueError as exc:
            raise ConfigError(f"a group robot of {platform} is not usable: {exc}",
                              hint="set it again with 'broadcast group robot'") from None
        gateway.robots = {**gateway.robots, **found}


async def _close(gateway: Gateway) -> None:
    await gateway.aclose()
    client = getattr(gateway, "_client", None)
    if client is not None:
        await client.aclose()


async def _close_links(gateway: Gateway, fallbacks: list[Gateway]) -> None:
    """Close the gateways while the dispatcher can still record what their links bring in (an
    operator link drains its window and logs out); closing again later is a no-op."""
    for g in (gateway, *fallbacks):
        if g.capabilities.window:
            await g.aclose()


async def _with_gateways(ws: Workspace, fn: Callable[[Gateway, list[Gateway]], object]) -> object:
    """The failover list, opened: the first gateway and the ones to fall back to."""
    names = ws.settings.gateway_names
    first = open_gateway(ws, names[0])
    rest = [open_gateway(ws, n) for n in names[1:]]
    try:
        return await fn(first, rest)  # type: ignore[misc]
    finally:
        for g in (first, *rest):
            await _close(g)


async def _with_gateway(ws: Workspace, fn: Callable[[Gateway], object]) -> object:
    gateway = open_gateway(ws)
    try:
        return await fn(gateway)  # type: ignore[misc]
    finally:
        await _close(gateway)


def run_once(ws: Workspace, *, only: list[int] | None = None, progress: Callable[[Progress], None] | None = None,
             on_dispatcher: Callable[[Dispatcher], None] | None = None, receipt_wait_s: float = 0.0) -> RunReport:
    """One pass: send everything due, wait for retries due soon, then return."""
    async def go(gateway: Gateway, fallbacks: list[Gateway]) -> RunReport:
        dispatcher = Dispatcher(ws, gateway, kind="run" if only is None else "send", progress=progress,
                                receipt_wait_s=receipt_wait_s, fallbacks=fallbacks, channels=channel_opener(ws))
        if on_dispatcher:
            on_dispatcher(dispatcher)
        try:
            return await dispatcher.run_pass(only)
        finally:
            await _close_links(gateway, fallbacks)  # reports still arriving are recorded first
            await dispatcher.channels.aclose()
            dispatcher.close()

    return asyncio.run(_with_gateways(ws, go))  # type: ignore[return-value]


def run_worker(ws: Workspace, *, poll_s: float = 5.0, progress: Callable[[Progress], None] | None = None,
               on_pass: Callable[[RunReport], None] | None = None,
               on_dispatcher: Callable[[Dispatcher], None] | None = None) -> RunReport:
    """Passes in a loop until stopped (SIGTERM/Ctrl-C via ``Dispatcher.stop``). Returns the last pass."""
    async def go(gateway: Gateway, fallbacks: list[Gateway]) -> RunReport:
        dispatcher = Dispatcher(ws, gateway, kind="worker", progress=progress, fallbacks=fallbacks,
                                channels=channel_opener(ws))
        if on_dispatcher:
            on_dispatcher(dispatcher)
        try:
            return await _worker_passes(dispatcher, gateway, fallbacks)
        finally:
            await _close_links(gateway, fallbacks)
            await dispatcher.channels.aclose()
            dispatcher.close()

    async def _worker_passes(dispatcher: Dispatcher, gateway: Gateway, fallbacks: list[Gateway]) -> RunReport:
        last = RunReport()
        pulled_at = 0.0
        while not dispatcher.stopping:
            last = await dispatcher.run_pass(wait_for_retries=False)
            if on_pass:
                on_pass(last)
            if time.monotonic() - pulled_at >= ws.settings.receipts_pull_interval_s:
                # ask the gateways with a pull API about deliveries still awaiting a receipt (and
                # in-doubt ones), within each provider's request budget; never fatal
                from broadcast.receipts.pull import pull_once_async
                from broadcast.twoway.pull import pull_replies_async

                pulled_at = time.monotonic()
                opened = {g.capabilities.name: g for g in (gateway, *fallbacks)}
                try:
                    await pull_once_async(ws, instances=opened)
                except Exception as exc:  # a pull problem must not stop the sending
                    log.warning("receipts pull failed: %s", exc)
                try:  # replies, from the providers that offer them only (or also) by a pull API
                    await pull_replies_async(ws, instances=opened)
                except Exception as exc:
                    log.warning("replies pull failed: %s", exc)
            for _ in range(int(poll_s * 10)):
                if dispatcher.stopping:
                    break
                await asyncio.sleep(0.1)
        return last

    return asyncio.run(_with_gateways(ws, go))  # type: ignore[return-value]


@dataclass
class SendPlan:
    message_id: int
    status: str
    audience: int
    parts: int
    billable_parts: int
    rate: float | None
    eta_s: float | None
    gateway: str
    estimate: Estimate | None = None  # billable parts × the gateway's price
    over_budget: list[str] = field(default_factory=list)  # what would hold it when it starts

    def to_dict(self) -> dict[str, object]:
        data = dict(vars(self))
        data["estimate"] = self.estimate.to_dict() if self.estimate else None
        return data


def plan(ws: Workspace, message_id: int) -> SendPlan:
    """What `broadcast send` is about to do: audience, parts, billable parts, estimated cost and
    the budgets it would overrun, duration at the rate. A held message is refused with its reason."""
    from broadcast.costs import guard
    from broadcast.costs.estimate import estimate_in, first_gateway
    from broadcast.gateways import registry
    from broadcast.messages.store import show_message

    detail = show_message(ws, message_id)
    if detail.status == "held":
        raise _held_error(message_id, detail.status_reason)
    cls = registry.load(first_gateway(ws.settings))
    rate = effective_rate(ws, cls)
    audience = detail.audience
    with transaction(ws.engine) as conn:
        est = estimate_in(conn, ws.settings, message_id, cls.capabilities.name)
        over = guard.check_at_start(conn, ws, message_id, est, clock.now(ws.settings))
    return SendPlan(message_id, detail.status, audience, detail.parts, est.parts, rate,
                    audience / rate if rate else None, cls.capabilities.name, est, [o.text() for o in over])


def _held_error(message_id: int, reason: str | None) -> StateError:
    from broadcast.costs.guard import release_hint

    return StateError(f"message {message_id} is held: {reason or 'over budget'}", hint=release_hint(message_id))


def send_now(ws: Workspace, message_id: int, progress: Callable[[Progress], None] | None = None,
             receipt_wait_s: float = 0.0) -> RunReport:
    """Send one approved message now (its schedule is ignored; quiet hours are not)."""
    from broadcast.db.models import Message

    m = table(Message)
    with ws.engine.connect() as conn:
        row = conn.execute(sa.select(m.c.status, m.c.send_after).where(m.c.id == message_id)).first()
    if row is None:
        from broadcast.errors import NotFoundError

        raise NotFoundError(f"no message {message_id}", hint="see 'broadcast message list'")
    status, send_after = row
    if status == "held":
        with ws.engine.connect() as conn:
            raise _held_error(message_id, conn.execute(sa.select(m.c.status_reason).where(m.c.id == message_id)).scalar())
    if status not in ("approved", "sending"):
        raise StateError(f"message {message_id} is {status}: only approved messages are sent",
                         hint=f"broadcast message approve {message_id} (by another operator)")
    now = clock.now(ws.settings)
    quiet = ws.settings.quiet_window
    if quiet is not None and quiet.is_quiet(now, ws.settings.timezone):
        raise StateError(f"it is quiet hours ({quiet}); nothing is sent now",
                         hint="it goes out when they end with 'broadcast run', or change BROADCAST_QUIET_HOURS")
    if status == "approved" and (send_after is None or send_after > now):
        with transaction(ws.engine, write=True) as conn:
            conn.execute(m.update().where(m.c.id == message_id).values(send_after=now, scheduled_at=now))
    return run_once(ws, only=[message_id], progress=progress, receipt_wait_s=receipt_wait_s)


@dataclass
class TestSend:
    delivery_id: int
    phone: str
    text: str
    outcome: str
    provider_id: str | None
    detail: str | None

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))


def test_send(ws: Workspace, message_id: int, phone: str) -> TestSend:
    """Send the rendered text to one number only, recorded as a test delivery."""
    from broadcast.db.models import Member, Message
    from broadcast.messages.checks import wrap_signature
    from broadcast.messages.compose import render_for
    from broadcast.messages.states import FINAL
    from broadcast.recipients.members import parse_phone
    from broadcast.recipients.phones import mask_phone

    e164 = parse_phone(phone, ws.settings.default_region)
    m, mem = table(Message), table(Member)
    now = clock.now(ws.settings)

    async def go(gateway: Gateway) -> TestSend:
        with transaction(ws.engine, write=True) as conn:
            row = conn.execute(sa.select(m.c.status, m.c.body, m.c.signature).where(m.c.id == message_id)).first()
            if row is None:
                raise InputError(f"no message {message_id}")
            if row.status in FINAL:
                raise StateError(f"message {message_id} is {row.status}")
            person = conn.execute(sa.select(mem.c.id, mem.c.name).where(mem.c.phone == e164)).first()
            sig = "" if gateway.capabilities.adds_signature else wrap_signature(row.signature)
            name = person.name if person else ""
            text = sig + render_for(row.body, name=name, group="", phone=e164)
            ledger.freeze(conn, message_id, [ledger.FrozenRecipient(person.id if person else None, e164, name, "", text)],
                          now, gateway.capabilities.name, kind="test",
                          counted_prefix="" if sig else wrap_signature(row.signature))
            did = conn.execute(sa.select(sa.func.max(deliveries_t.c.id))).scalar_one()
            conn.execute(deliveries_t.update().where(deliveries_t.c.id == did)
                         .values(status="sending", attempts=1, claimed_by="test", lease_until=now))
        claimed = ledger.Claimed(did, message_id, e164, text, 1)
        [result] = await gateway.send([SendItem(did, e164, text)])
        policy = ledger.Policy(1, 1, 1, "hold")
        ledger.record(ws.engine, "test", gateway.capabilities.name, [(claimed, result)], clock.now(ws.settings), policy)
        with transaction(ws.engine, write=True) as conn:
            note(conn, ws.operator, "message.test_send", f"message:{message_id}", phone=mask_phone(e164),
                 outcome=result.outcome.value, gateway=gateway.capabilities.name)
        return TestSend(did, e164, text, result.outcome.value, result.provider_id, result.detail)

    return asyncio.run(_with_gateway(ws, go))  # type: ignore[return-value]


@dataclass
class Resolved:
    message_id: int
    confirmed: int  # the gateway confirmed them: accepted
    resent: int
    marked_sent: int

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))


def resolve(ws: Workspace, message_id: int, *, resend: bool) -> Resolved:
    """Settle a message's in-doubt deliveries: ask the gateway where it can tell, then resend
    the rest (``resend``) or mark them sent."""
    d = deliveries_t
    now = clock.now(ws.settings)
    by_gateway: dict[str, list[ledger.Claimed]] = {}
    with ws.engine.connect() as conn:
        for *fields, gw in conn.execute(
            sa.select(d.c.id, d.c.message_id, d.c.phone, d.c.text, d.c.attempts, d.c.gateway)
            .where(d.c.message_id == message_id, d.c.status == IN_DOUBT, d.c.kind == "real").order_by(d.c.id)
        ):
            by_gateway.setdefault(gw, []).append(ledger.Claimed(*fields))
    rows = [c for group in by_gateway.values() for c in group]
    if not rows:
        raise StateError(f"message {message_id} has no deliveries in doubt", hint=f"broadcast message show {message_id}")

    async def ask_all() -> dict[int, SendResult]:
        """Ask the gateway that carried each delivery (after a failover, not the first one)."""
        from broadcast.errors import ConfigError

        known: dict[int, SendResult] = {}
        for name, group in by_gateway.items():
            try:
                gateway = open_gateway(ws, name)
            except ConfigError:  # that gateway is no longer installed or configured: it cannot tell
                continue
            try:
                if gateway.capabilities.can_query:
                    answers = await gateway.query([SendItem(c.id, c.phone, c.text) for c in group])
                    known.update({c.id: a for c, a in zip(group, answers)
                                  if a is not None and a.outcome is Outcome.ACCEPTED})
            finally:
                await _close(gateway)
        return known

    known = asyncio.run(ask_all())
    out = Resolved(message_id, 0, 0, 0)
    with transaction(ws.engine, write=True) as conn:
        for c in rows:
            if c.id in known:
                values: dict[str, object] = dict(status=ACCEPTED, provider_id=known[c.id].provider_id, error_code=None,
                                                 error_text=None)
                out.confirmed += 1
                outcome = "accepted"
            elif resend:
                values = dict(status=RETRY_WAIT, next_attempt_at=now, error_code=None, error_text=None)
                out.resent += 1
                outcome = "resend"
            else:
                values = dict(status=ACCEPTED, error_code="marked_sent",
                              error_text=f"marked sent by {ws.operator} after being in doubt")
                out.marked_sent += 1
                outcome = "marked_sent"
            conn.execute(d.update().where(d.c.id == c.id, d.c.status == IN_DOUBT).values(updated_at=now, **values))
            conn.execute(attempts_t.insert().values(delivery_id=c.id, attempt=c.attempts, run_id="resolve",
                                                    gateway=ws.settings.gateway, outcome=outcome, code="resolve",
                                                    detail=f"by {ws.operator}", at=now))
        note(conn, ws.operator, "message.resolve", f"message:{message_id}", resend=resend, confirmed=out.confirmed,
             resent=out.resent, marked_sent=out.marked_sent)
    return out


def resume(ws: Workspace, message_id: int) -> str:
    """Continue a paused message: back to ``sending`` if it had started, else ``approved``."""
    from broadcast.messages.states import transition

    with transaction(ws.engine, write=True) as conn:
        started = conn.execute(sa.select(sa.func.count()).select_from(deliveries_t).where(
            deliveries_t.c.message_id == message_id, deliveries_t.c.kind == "real")).scalar_one()
        to = "sending" if started else "approved"
        transition(conn, message_id, to, reason=f"resumed by {ws.operator}")
        note(conn, ws.operator, "message.resume", f"message:{message_id}", now=to)
    return to


def summary_counts(ws: Workspace, message_id: int) -> dict[str, int]:
    """Deliveries of a message per state, every state named (0 where none)."""
    with ws.engine.connect() as conn:
        c = ledger.counts(conn, message_id)
    keys = ("queued", "sending", "retry_wait", ACCEPTED, DELIVERED, FAILED, EXPIRED, IN_DOUBT)
    return {k: c.get(k, 0) for k in keys}


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "as fast as the gateway answers (no rate limit)"
    if seconds < 60:
        return f"about {math.ceil(seconds)} s"
    return f"about {math.ceil(seconds / 60)} min"


def delivery_overview(ws: Workspace, message_id: int, limit: int = 50) -> dict[str, object]:
    """Delivery counts of a message and the deliveries held in doubt (for `message show`)."""
    d = deliveries_t
    with ws.engine.connect() as conn:
        doubt = conn.execute(
            sa.select(d.c.id, d.c.phone, d.c.name, d.c.updated_at, d.c.channel)
            .where(d.c.message_id == message_id, d.c.status == IN_DOUBT, d.c.kind == "real")
            .order_by(d.c.id).limit(limit)
        ).all()
        tests = conn.execute(sa.select(sa.func.count()).select_from(d).where(
            d.c.message_id == message_id, d.c.kind == "test")).scalar_one()
        by_channel: dict[str, dict[str, int]] = {}
        for channel, status, n in conn.execute(
                sa.select(d.c.channel, d.c.status, sa.func.count())
                .where(d.c.message_id == message_id, d.c.kind == "real").group_by(d.c.channel, d.c.status)):
            by_channel.setdefault(channel, {})[status] = n
    return {
        "counts": summary_counts(ws, message_id),
        "test_sends": tests,
        "in_doubt": [{"delivery_id": i, "phone": p, "name": n, "since": t.isoformat(), "channel": c}
                     for i, p, n, t, c in doubt],
        "by_channel": by_channel if set(by_channel) - {"sms"} else {},
    }
