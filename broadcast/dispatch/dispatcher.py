"""The dispatcher: due messages → frozen deliveries → a send pass → receipts → messages settled.

One ``Dispatcher`` per process (``broadcast run``, ``send`` or ``worker``), one asyncio loop. A pass
(``run_pass``) registers the run, settles what dead runs left ``sending`` (``recover``), expires
overdue messages, freezes the audience of each message that became due (``start_message``), sends
(``SendPass``: claim → gateway → record), pulls receipts where the gateway offers them, and marks
messages sent when nothing of them is open. The send loop's claims, records and rate
reservations run on one database thread of the dispatcher's own, in order: a commit never holds
up the event loop, so requests leave on their send slots and HTTP overlaps the database (sqlite3
and psycopg release the GIL while they wait).

At most ``concurrency × batch`` rows are in flight, and ``hold_limit`` (1.5 times that) bounds
everything claimed and not yet recorded: in flight, claimed and waiting for a worker, answered and
not yet committed. Only rows stamped as started can end in doubt after a crash. See ``ledger`` for
the state protocol and README "Delivery guarantee" for what survives a crash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from broadcast import clock
from broadcast.costs import guard
from broadcast.costs.estimate import frozen_estimate
from broadcast.db.audit_chain import note
from broadcast.db.dispatch_models import ACCEPTED, IN_DOUBT, OPEN_STATES, RETRY_WAIT, Delivery
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.dispatch import ledger, runs
from broadcast.dispatch.channel_pass import Channels, Opener, freeze_on_channels
from broadcast.dispatch.lane import Lane
from broadcast.dispatch.ledger import Claimed, FrozenRecipient, Outcomes
from broadcast.dispatch.policies import Deadlines, Failover
from broadcast.dispatch.run_report import Progress, RunReport
from broadcast.gateways.base import Gateway, Receipt, SendItem, SendResult
from broadcast.messages.audience import message_audience, optout_skips
from broadcast.messages.channels import of_row
from broadcast.messages.checks import wrap_signature
from broadcast.messages.compose import render_for
from broadcast.messages.states import transition
from broadcast.receipts import store
from broadcast.twoway import intake
from broadcast.workspace import Workspace

__all__ = ["Dispatcher", "Progress", "RunReport"]

T = TypeVar("T")
deliveries_t = table(Delivery)
messages_t = table(Message)


class Dispatcher:
    def __init__(self, ws: Workspace, gateway: Gateway, *, kind: str = "run",
                 progress: Callable[[Progress], None] | None = None, receipt_wait_s: float = 0.0,
                 fallbacks: Sequence[Gateway] = (), channels: Opener | None = None) -> None:
        """``fallbacks``: the next gateways of BROADCAST_GATEWAYS, in order. When the current one
        keeps failing (the auto-pause condition) or refuses the account, the rest of the send
        goes through the next instead of pausing. ``channels`` opens the gateway of a channel
        beyond SMS (``channel_pass``) when a message on it is sent."""
        self.ws, self.kind, self.progress = ws, kind, progress
        self.receipt_wait_s = receipt_wait_s  # after sending, wait this long for pulled receipts
        caps = gateway.capabilities  # an operator link's window is its concurrency: the workers fill it
        self.concurrency = caps.window * (caps.connections or 1) if caps.window else ws.settings.concurrency
        self.lease = timedelta(seconds=ws.settings.lease_s)
        self.failover = Failover(gateway, fallbacks)
        self.primary_adds_signature = gateway.capabilities.adds_signature
        # texts are frozen for the first gateway (with or without the signature, as it needs)
        self.signature = "" if gateway.capabilities.adds_signature else None  # None: each message's own
        self._db_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="broadcast-db")
        self.channels = Channels(self, channels)
        self.use(gateway)
        self.stopping = False
        self.run: runs.RunHandle | None = None
        self._receipts_after: int | None = None  # receipts logged by this dispatcher have higher ids
        self._heard = 0  # deliveries changed by reports a gateway's own connection brought
        self._skipped: dict[int, int] = {}  # message -> opted-out people left out when it was frozen
        self._held: dict[int, str] = {}  # message -> why it was held (over a budget) when it was to start
        self.channel_counts: dict[int, dict[str, int]] = {}  # message started on channels -> deliveries per channel
        self._reply_rules = intake.Rules.of(ws.settings)  # what a reply on an operator link means
        for g in (gateway, *fallbacks):
            g.listen(self._sink_for(g.capabilities.name))

    def use(self, gateway: Gateway) -> None:
        """Send SMS through ``gateway`` from now on: its batch size, its rate limits, its cap (the lane)."""
        self.lane = Lane.of(self.ws, gateway, self.concurrency, "sms", self.db)

    # the SMS lane's, as the rest of the dispatcher (and its tests) read them
    gateway = property(lambda self: self.lane.gateway)
    name = property(lambda self: self.lane.name)
    max_batch = property(lambda self: self.lane.max_batch)
    hold_limit = property(lambda self: self.lane.hold_limit)
    rate = property(lambda self: self.lane.rate)
    limiter = property(lambda self: self.lane.limiter)
    req_limiter = property(lambda self: self.lane.req_limiter)
    cap = property(lambda self: self.lane.cap)

    def channel_lane(self, gateway: Gateway, channel: str) -> Lane:
        """The lane of a channel beyond SMS (its gateway paces itself; BROADCAST_CONCURRENCY in flight)."""
        return Lane.of(self.ws, gateway, self.ws.settings.concurrency, channel, self.db)

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the dispatcher's database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, functools.partial(fn, *args))

    def close(self) -> None:
        self._db_thread.shutdown(wait=True)

    def stop(self) -> None:
        """Stop taking new work; requests in flight finish and are recorded."""
        self.stopping = True

    def now(self) -> datetime:
        """The configured clock (``BROADCAST_NOW`` for drills) advanced by real elapsed time since
        the dispatcher first read it: a drill that starts at 07:29 still sees retries come due,
        in this pass and in a worker's later passes (the frozen setting is read again each pass,
        and only a changed setting moves the anchor)."""
        anchor: tuple[datetime, float] | None = getattr(self, "_anchor", None)
        if anchor is None:
            return clock.now(self.ws.settings)
        return anchor[0] + timedelta(seconds=time.monotonic() - anchor[1])

    def _set_anchor(self) -> None:
        configured = clock.now(self.ws.settings)
        if getattr(self, "_configured", None) != configured:  # the real clock always moves
            self._configured = configured
            self._anchor = (configured, time.monotonic())

    def extension_for(self, message_id: int) -> str:
        return self.lane.extension_for(message_id)

    def text_for(self, text: str, signature: str, lane: Lane | None = None) -> str:
        """A frozen text as the lane's gateway (default: the SMS one in use) needs it (``Lane.text_for``)."""
        return (lane or self.lane).text_for(text, signature, not self.primary_adds_signature)

    # -- one pass -------------------------------------------------------------------------

    async def run_pass(self, only: list[int] | None = None, *, wait_for_retries: bool = True) -> RunReport:
        from broadcast.messages.timing import due, expire_overdue

        t0 = time.monotonic()
        self._set_anchor()
        report = RunReport()
        self.run = runs.start_run(self.ws.engine, self.kind, self.ws.operator, self.now())
        beat = asyncio.create_task(self._heartbeat())
        try:
            report.recovered = await self.recover()
            for e in expire_overdue(self.ws, self.now()):
                report.expired[e.id] = e.reason
            plan = due(self.ws, self.now())
            ids = [d.id for d in plan.due if only is None or d.id in only]
            report.waiting_quiet = [w.id for w in plan.waiting if w.code == "quiet_hours"
                                    and (only is None or w.id in only)]
            for item in plan.due:
                if item.id in ids and item.status == "approved":
                    self.start_message(item.id)
                    if item.id in self._held:  # over a budget: held, nothing of it frozen
                        report.held[item.id] = self._held.pop(item.id)
                        ids.remove(item.id)
                        continue
                    report.started.append(item.id)
                    if item.id in self.channel_counts:
                        report.channels[item.id] = self.channel_counts.pop(item.id)
                    if self._skipped.get(item.id):
                        report.optout_skipped[item.id] = self._skipped[item.id]
            if ids:
                await self.channels.send(ids, report, wait_for_retries)  # every channel, SMS included
            report.receipts += await self.pull_receipts()
            await self._await_receipts(ids, report)
            report.receipts += self._apply_deferred_receipts()
            report.receipts, self._heard = report.receipts + self._heard, 0
            self._settle_messages(ids, report)
        finally:
            beat.cancel()
            runs.finish_run(self.ws.engine, self.run, self.now())
        report.elapsed_s = time.monotonic() - t0
        return report

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.lease.total_seconds() / 3))
            assert self.run is not None
            runs.heartbeat(self.ws.engine, self.run, self.now(), self.lease)

    # -- freeze ---------------------------------------------------------------------------

    def start_message(self, message_id: int) -> int:
        """Freeze the audience and move the message to ``sending``, in one transaction. A message
        another run started meanwhile (two runs saw it approved at once) is left as it is: 0."""
        m = messages_t
        now = self.now()
        with transaction(self.ws.engine, write=True) as conn:
            status, body, signature, chans, target_all = conn.execute(  # FOR UPDATE: PostgreSQL runs do not serialise otherwise
                sa.select(m.c.status, m.c.body, m.c.signature, m.c.channels, m.c.target_all)
                .where(m.c.id == message_id).with_for_update()).one()
            if status == "sending":  # frozen by the run that moved it there, in one transaction
                return 0
            sig = wrap_signature(signature if self.signature is None else self.signature)
            after_id = conn.execute(sa.select(sa.func.coalesce(sa.func.max(deliveries_t.c.id), 0))).scalar_one()
            on: dict[str, object] = {}
            skipped = -1
            if chans:  # channels beyond SMS: each person on the first of theirs (channel_plan)
                frozen = freeze_on_channels(conn, self, message_id, body, sig, of_row(chans), bool(target_all))
                n, on = frozen.count, {"channels": frozen.channels, "unreachable": frozen.unreachable}
                skipped = frozen.opted_out
                self.channel_counts[message_id] = frozen.channels
            else:
                recipients = (
                    FrozenRecipient(a.member_id, a.phone, a.name, a.group,
                                    sig + render_for(body, name=a.name, group=a.group, phone=a.phone))
                    for a in message_audience(conn, message_id)
                )
                # a gateway that adds the signature itself bills it too: count it in each delivery's parts
                counted = wrap_signature(signature) if self.signature == "" else ""
                n = ledger.freeze(conn, message_id, recipients, now, self.name, counted_prefix=counted)
            if self._over_budget(conn, message_id, now, after_id):
                return 0
            if skipped < 0:
                skipped = optout_skips(conn, message_id)
            self._skipped[message_id] = skipped
            transition(conn, message_id, "sending", optout_skipped=skipped, started_at=now)
            note(conn, self.ws.operator, "send.start", f"message:{message_id}", run=self.run.id if self.run else None,
                 run_kind=self.kind, audience=n, optout_skipped=skipped, gateway=self.name, rate=self.rate,
                 concurrency=self.concurrency, max_batch=self.max_batch, in_doubt=self.ws.settings.in_doubt,
                 max_attempts=self.ws.settings.max_attempts, **on)
        return n

    def _over_budget(self, conn: sa.Connection, message_id: int, now: datetime, after_id: int) -> bool:
        """The budget check when sending starts, on the parts just frozen × this gateway's price
        (``costs.guard``). Over a budget: the frozen rows are taken back and the message is held,
        in the same transaction; nothing of it is sent."""
        if not guard.any_budget(conn):
            return False
        est = frozen_estimate(conn, self.ws.settings, message_id, self.name)
        over = guard.check_at_start(conn, self.ws, message_id, est, now)
        if not over:
            return False
        ledger.unfreeze(conn, message_id, after_id)
        self._held[message_id] = guard.hold(conn, self.ws, message_id, over, "start")
        return True

    # -- recovery -------------------------------------------------------------------------

    async def recover(self) -> Outcomes:
        """Settle deliveries stranded in ``sending`` by dead runs: those whose request never started
        are queued again; the rest are asked of the gateway where it can tell, else held in doubt."""
        now = self.now()
        dead = runs.dead_owners(self.ws.engine, now, self.lease)
        rows, unstarted = ledger.stranded(self.ws.engine, dead, now)
        requeued = ledger.release(self.ws.engine, None, unstarted, now)  # claimed, never sent: no doubt
        if not rows and not requeued:
            return Outcomes()
        assert self.run is not None
        out = Outcomes()
        if rows:
            known: dict[int, SendResult] = {}
            sms = [c for c in rows if c.channel == "sms"]  # a channel's rows are not the SMS gateway's to tell
            if sms and self.gateway.capabilities.can_query:
                answers = await self.gateway.query([SendItem(c.id, c.phone, c.text) for c in sms])
                known = {c.id: a for c, a in zip(sms, answers) if a is not None}
            out = ledger.settle(self.ws.engine, self.run.id, self.name, rows, known, self.ws.settings.in_doubt, now)
        with transaction(self.ws.engine, write=True) as conn:
            note(conn, self.ws.operator, "send.recover", f"run:{self.run.id}", dead_runs=dead,
                 stranded=len(rows) + requeued, requeued=requeued, confirmed=out.accepted, in_doubt=out.in_doubt,
                 resent=out.retry, policy=self.ws.settings.in_doubt)
        return out

    # -- receipts -------------------------------------------------------------------------

    def _sink_for(self, name: str) -> Callable[[list[Receipt], list[Any]], Awaitable[None]]:
        """Where an operator link's reports and replies go: recorded (the same receipt path as
        pushed ones) before the link acknowledges them."""
        async def sink(receipts: list[Receipt], inbound: list[Any]) -> None:
            await self.db(self._keep, name, receipts, inbound)
        return sink

    def _keep(self, name: str, receipts: list[Receipt], inbound: list[Any]) -> None:
        now = self.now()
        if inbound:
            intake.record(self.ws.engine, inbound, now, self._reply_rules)
        if receipts:
            first, applied = store.ingest(self.ws.engine, name, receipts, now)
            if self._receipts_after is None:
                self._receipts_after = first - 1
            self._heard += applied.changed

    async def pull_receipts(self) -> int:
        """Delivery reports the gateway offers to pull, logged and applied by the same rules as
        pushed ones (``receipts.store``). Returns how many deliveries changed."""
        if not self.gateway.capabilities.pull_receipts:
            return 0
        receipts = await self.gateway.fetch_receipts()
        if not receipts:
            return 0
        first, applied = await self.db(store.ingest, self.ws.engine, self.name, receipts, self.now())
        if self._receipts_after is None:
            self._receipts_after = first - 1
        return applied.changed

    def _apply_deferred_receipts(self) -> int:
        """Receipts pulled for deliveries whose answer was not yet recorded wait as pending: apply
        them now that every answer of the pass is."""
        if self._receipts_after is None:
            return 0
        return store.apply_all(self.ws.engine, self.now(), after_id=self._receipts_after).changed

    async def _await_receipts(self, ids: list[int], report: RunReport) -> None:
        if not (ids and self.receipt_wait_s > 0 and self.gateway.capabilities.pull_receipts):
            return
        d = deliveries_t
        give_up = time.monotonic() + self.receipt_wait_s
        while time.monotonic() < give_up:
            with self.ws.engine.connect() as conn:
                waiting = conn.execute(sa.select(sa.func.count()).select_from(d).where(
                    d.c.message_id.in_(ids), d.c.status == ACCEPTED)).scalar_one()
            if not waiting:
                return
            await asyncio.sleep(0.05)
            report.receipts += await self.pull_receipts()
            # reports that came before their delivery's answer was recorded waited: apply them
            report.receipts += await self.db(self._apply_deferred_receipts)

    # -- what a send pass asks ------------------------------------------------------------

    def next_retry(self, ids: list[int], channel: str = "sms") -> datetime | None:
        d = deliveries_t
        with self.ws.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(d.c.next_attempt_at)).where(d.c.message_id.in_(ids), d.c.status == RETRY_WAIT,
                                                                  d.c.channel == channel)
            ).scalar_one_or_none()

    def batches(self, rows: list[Claimed]) -> list[list[Claimed]]:
        return self.lane.batches(rows)

    # -- completion -----------------------------------------------------------------------

    def _settle_messages(self, ids: list[int], report: RunReport) -> None:
        """Mark messages sent when nothing is left open; report held in-doubt deliveries."""
        m = messages_t
        now = self.now()
        deadlines = Deadlines.load(self.ws.engine, ids, self.ws.settings.deadline)
        for mid in ids:
            if mid in deadlines.at:
                report.outcomes.expired += ledger.expire_past_deadline(self.ws.engine, mid, deadlines.at[mid], now)
            with transaction(self.ws.engine, write=True) as conn:
                status = conn.execute(sa.select(m.c.status).where(m.c.id == mid).with_for_update()).scalar_one()
                c = ledger.counts(conn, mid)
                if c.get(IN_DOUBT):
                    report.in_doubt[mid] = c[IN_DOUBT]
                    by_channel = ledger.in_doubt_by_channel(conn, mid)
                    if set(by_channel) != {"sms"}:
                        report.in_doubt_by_channel[mid] = by_channel
                if status == "sending" and not any(c.get(st) for st in (*OPEN_STATES, IN_DOUBT)):
                    transition(conn, mid, "sent")
                    note(conn, self.ws.operator, "send.finish", f"message:{mid}", counts=c, gateway=self.name,
                         run=self.run.id if self.run else None)
                    report.completed.append(mid)
