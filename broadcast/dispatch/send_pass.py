"""One send pass over some messages: claimed deliveries → the gateway → recorded answers.

::

    feed ──claims──▶ queue of requests ──▶ work (× concurrency) ──answers──▶ pending ──flusher──▶ ledger.record
                                                    │  deliver(): stamp (and take the send slots),
                                                    │  wait for the slots, gateway.send, the policies
     └─────────────── holding ≤ hold_limit: claimed and not yet recorded ──────────────┘

* **feed** claims due rows of the active messages (the per-number cap applied) in chunks and hands
  the requests to the workers. It never holds more than ``hold_limit`` rows claimed and not yet
  recorded, and it gives back what it claimed but never handed out.
* **deliver** (one worker, one request) is the whole life of a delivery between claim and record.
  Under a rate limit the start stamp's transaction also takes the request's send slots from the
  shared bucket (``stamps``), and the worker waits for them; a slot gone stale meanwhile is
  replaced by a take of its own. With or without a limit the loop is the same.
* **flusher** records the answers every ``FLUSH_EVERY_S``, or at once when a chunk is answered, on
  the dispatcher's database thread, so the loop goes on sending while a commit runs.

A gateway that keeps a window of unacknowledged submits on a long-lived connection fits as it is:
its ``send`` awaits the response to its own submit, and the workers are that window.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.dispatch import ledger
from broadcast.dispatch.ledger import Claimed, Policy
from broadcast.dispatch.policies import Deadlines, ErrorStorm, FailureAction, account_refusal
from broadcast.dispatch.run_report import Progress, RunReport
from broadcast.dispatch.stamps import StartStamps
from broadcast.gateways.base import SendItem, SendResult
from broadcast.messages.states import transition

if TYPE_CHECKING:
    from broadcast.dispatch.dispatcher import Dispatcher
    from broadcast.dispatch.lane import Lane

MAX_WAIT_IN_PASS_S = 30.0  # a one-shot run waits for retries due this soon; later ones are left to the next run
FLUSH_EVERY_S = 0.02
messages_t = table(Message)


@dataclass
class Request:
    """Claimed rows for one gateway call."""

    rows: list[Claimed]


class SendPass:
    def __init__(self, dispatcher: Dispatcher, ids: list[int], report: RunReport, wait_for_retries: bool,
                 lane: Lane | None = None) -> None:
        """``lane``: the gateway and limits this pass sends through (default: the dispatcher's SMS
        lane, which a failover replaces); it sends the deliveries of the lane's channel only."""
        d = self.d = dispatcher
        self.lane = lane or d.lane
        assert d.run is not None
        s = self.settings = d.ws.settings
        self.ids, self.report, self.wait_for_retries = ids, report, wait_for_retries
        self.engine, self.run_id = d.ws.engine, d.run.id
        self.deadlines = Deadlines.load(self.engine, ids, s.deadline)
        self.policy = Policy(s.max_attempts, s.retry_base_s, s.retry_max_s, s.in_doubt, self.deadlines.at)
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self.holding = 0  # claimed and not yet recorded or given back
        self.room = asyncio.Event()  # set whenever rows stop being held
        self.pending: list[tuple[Claimed, SendResult]] = []  # answered, not yet recorded
        self.carried: dict[int, str] = {}  # delivery id -> the gateway that carried it
        self.reply_to: dict[int, str] = {}  # delivery id -> where a reply comes back (reply extension code)
        self.paused: set[int] = set()
        self.storms: dict[int, ErrorStorm] = {}
        self.stamps = StartStamps(d.db, self.engine, self.run_id, d.now, lambda: (self.lane.limiter, self.lane.req_limiter))
        self.flush_now = asyncio.Event()
        self.sent_all = False
        with self.engine.connect() as conn:
            self.totals = {mid: sum(ledger.counts(conn, mid).values()) for mid in ids}
            self.signatures: dict[int, str] = dict(conn.execute(
                sa.select(messages_t.c.id, messages_t.c.signature).where(messages_t.c.id.in_(ids))).all())
        self.t0 = time.monotonic()

    async def run(self) -> None:
        for mid, deadline in self.deadlines.at.items():  # nothing goes out after its delivery deadline
            self.report.outcomes.expired += ledger.expire_past_deadline(self.engine, mid, deadline, self.d.now())
        flush_task = asyncio.create_task(self.flusher())
        try:
            await asyncio.gather(self.feed(), *(self.work() for _ in range(self.lane.concurrency)))
        finally:
            self.sent_all = True
            self.flush_now.set()
            try:
                await flush_task  # its last round records what is left
            except Exception:  # a failed commit: the answers are still pending, try once more below
                pass
            except BaseException:  # cancelled: record what is pending, here and now
                flush_task.cancel()
                self.flush()
                raise
            self.flush()

    # -- holding --------------------------------------------------------------------------

    def chunk(self) -> int:
        """Rows recorded (and claimed) at a time: a sixth of the current gateway's hold window, at
        least 8 rows (or half a small window), at most 200. Recording as soon as a chunk is
        answered lets the feeder claim again while the rest is in flight; waiting for the
        flusher's tick, or for half the window, would leave every worker idle once a cycle."""
        window = self.lane.hold_limit
        return max(1, min(200, max(min(8, window // 2), window // 6)))

    def freed(self, n: int) -> None:
        self.holding -= n
        self.room.set()

    async def wait_room(self) -> None:
        self.room.clear()
        await self.room.wait()

    def give_back(self, req: Request) -> None:
        """Claimed rows whose request never started: queued again, and the worker is free."""
        ledger.release(self.engine, self.run_id, req.rows, self.d.now())
        self.freed(len(req.rows))

    # -- feed -----------------------------------------------------------------------------

    def active(self) -> list[int]:
        return [m for m in self.ids if m not in self.paused]

    async def feed(self) -> None:
        """Claim and hand out requests until nothing is due, the messages pause, quiet hours
        begin or the dispatcher stops."""
        try:
            while not self.d.stopping:
                active = self.active()
                if not active:
                    break
                now = self.d.now()
                quiet = self.settings.quiet_window
                if quiet is not None and quiet.is_quiet(now, self.settings.timezone):
                    self.report.waiting_quiet.extend(m for m in active if m not in self.report.waiting_quiet)
                    break
                if not await self.feed_some(active, now):
                    break
        finally:
            for _ in range(self.lane.concurrency):
                self.queue.put_nowait(None)

    async def feed_some(self, active: list[int], now: datetime) -> bool:
        """Claim what keeps every worker busy, with up to half of them again queued; False: done."""
        want = self.lane.hold_limit - self.holding
        if want < self.chunk():
            await self.wait_room()
            return True
        claimed, batches = await self.claim(active, want, now)
        if not claimed:
            return await self.nothing_due(active, now)
        for rows in batches:
            self.hand_out(Request(rows))
        return True

    async def claim(self, active: list[int], want: int, now: datetime) -> tuple[int, list[list[Claimed]]]:
        """Claim up to ``want`` due rows, the per-number cap applied: (rows claimed, requests)."""
        rows = await self.d.db(ledger.claim, self.engine, self.run_id, active, want, now, self.d.lease, self.lane.channel)
        self.holding += len(rows)
        claimed = len(rows)
        if rows and self.lane.cap:  # no database round trip on the hot path without a cap
            rows, over = await self.d.db(self.lane.over_cap, self.d.ws, self.run_id, rows, now)
            if over:
                self.report.outcomes.failed += len(over)
                self.freed(len(over))
        return claimed, self.lane.batches(rows)

    async def nothing_due(self, active: list[int], now: datetime) -> bool:
        """Nothing was claimed: wait for rows in flight, or for a retry due soon; False: done."""
        if self.holding:
            await self.wait_room()
            return True
        nxt = self.d.next_retry(active, self.lane.channel)
        if nxt is None:
            return False
        wait = (nxt - now).total_seconds()
        if not self.wait_for_retries or wait > MAX_WAIT_IN_PASS_S:
            return False
        await asyncio.sleep(min(max(wait, 0.01), 1.0))
        return True

    def hand_out(self, req: Request) -> None:
        self.queue.put_nowait(req)

    # -- work -----------------------------------------------------------------------------

    async def work(self) -> None:
        while (req := await self.queue.get()) is not None:
            await self.deliver(req)

    def dropped(self, req: Request) -> bool:
        """Is this request no longer to be sent (the dispatcher stops, its message paused)?"""
        return self.d.stopping or req.rows[0].message_id in self.paused

    async def deliver(self, req: Request) -> None:
        """One request, from claimed rows to answers waiting to be recorded."""
        if self.dropped(req):
            self.give_back(req)
            return
        await self.stamps.started(req.rows)  # before it leaves; under a limit, with its send slots
        if self.lane.limiter or self.lane.req_limiter:
            await self.send_slots(req)
        if self.dropped(req):
            self.give_back(req)
            return
        lane = self.lane
        gateway, name = lane.gateway, lane.name
        rows = self.fit(req.rows)
        ext = lane.extension_for(rows[0].message_id)  # a request carries one message
        results = await gateway.send([SendItem(c.id, c.phone, self.d.text_for(c.text, self.signatures.get(c.message_id, ""), lane),
                                               ext, c.address) for c in rows])
        self.carried.update({c.id: name for c in rows})
        if ext and (address := gateway.reply_address(ext)):
            self.reply_to.update({c.id: address for c in rows})
        self.pending.extend(zip(rows, results))
        self.apply_policies(rows, results, name)
        if len(self.pending) >= self.chunk():
            self.flush_now.set()

    async def send_slots(self, req: Request) -> None:
        """Wait for the request's send slots (taken with its start stamp, or now if those went
        stale), and a request slot where requests per second are limited. Nothing leaves on a
        stale slot (``shared_rate.LATE_S``): one that went stale while the other was awaited is
        taken again."""
        limiter, req_limiter = self.lane.limiter, self.lane.req_limiter
        due: float | None = None
        req_due: float | None = None
        while True:
            if limiter and (due is None or not limiter.fresh(due)):
                due = await limiter.acquire(len(req.rows))
                continue
            if req_limiter and (req_due is None or not req_limiter.fresh(req_due)):
                req_due = await req_limiter.acquire(1)
                continue
            return

    def fit(self, rows: list[Claimed]) -> list[Claimed]:
        """Rows claimed for a gateway we have since failed over from may be too many for the
        current one: the rest goes back to the queue as requests of their own."""
        size = self.lane.max_batch
        for i in range(size, len(rows), size):
            self.hand_out(Request(rows[i:i + size]))
        return rows[:size]

    # -- policies -------------------------------------------------------------------------

    def apply_policies(self, rows: list[Claimed], results: list[SendResult], gateway: str) -> None:
        """An account refusal, or an error storm, of the gateway in use: pause or fail over. The
        late answers of a gateway already failed over from count for nothing."""
        mid = rows[0].message_id
        if gateway != self.lane.name or mid in self.paused:
            return
        refusal = account_refusal(results)
        if refusal:
            self.on_failure(mid, refusal, gateway)
            return
        storm = self.storms.get(mid)
        if storm is None:
            storm = self.storms[mid] = ErrorStorm(self.settings.error_window, self.settings.max_error_rate)
        reason = storm.observe(results, [c.attempts >= self.settings.max_attempts for c in rows])
        if reason and mid not in self.paused:
            self.on_failure(mid, reason, gateway)

    def on_failure(self, mid: int, reason: str, gateway: str) -> None:
        if mid in self.paused:
            return
        if self.lane.channel != "sms":  # a channel beyond SMS: its rows go by SMS (--fallback sms), or the message pauses
            self.paused.add(mid)
            self.flush()
            self.d.channels.failure(mid, self.lane.channel, f"{gateway}: {reason}", self.report)
            return
        action = self.d.failover.decide(gateway)
        if action is FailureAction.FAILOVER:
            self.fail_over(reason)
        elif action is FailureAction.PAUSE:
            self.pause(mid, reason)

    def fail_over(self, reason: str) -> None:
        """The rest of the send goes through the next gateway (audited for every message)."""
        self.flush()
        failed = self.lane.name
        self.d.use(self.d.failover.advance())
        self.lane = self.d.lane
        self.storms.clear()
        with transaction(self.engine, write=True) as conn:
            for m_id in self.ids:
                note(conn, self.d.ws.operator, "send.failover", f"message:{m_id}", run=self.run_id,
                     from_gateway=failed, to_gateway=self.lane.name, reason=reason)
        self.report.failovers.append({"from": failed, "to": self.lane.name, "reason": reason})

    def pause(self, mid: int, reason: str) -> None:
        self.paused.add(mid)
        self.flush()
        try:
            with transaction(self.engine, write=True) as conn:
                transition(conn, mid, "paused", reason=reason)
                note(conn, self.d.ws.operator, "message.pause", f"message:{mid}", reason=reason, run=self.run_id)
        except Exception:  # cancelled or changed meanwhile: stop sending it all the same
            pass
        self.report.paused[mid] = reason

    # -- record ---------------------------------------------------------------------------

    def take_pending(self) -> tuple[list[tuple[Claimed, SendResult]], ledger.Carriers]:
        pairs, self.pending = self.pending, []
        carriers = {c.id: self.carried.pop(c.id, self.lane.name) for c, _ in pairs}
        addresses = {c.id: a for c, _ in pairs if (a := self.reply_to.pop(c.id, ""))}
        return pairs, ledger.Carriers(carriers, addresses)

    def recorded(self, pairs: list[tuple[Claimed, SendResult]], out: ledger.Outcomes) -> None:
        self.report.outcomes.add(out)
        self.freed(len(pairs))
        if self.d.progress:
            for mid in {c.message_id for c, _ in pairs}:
                self.d.progress(Progress(mid, self.totals.get(mid, 0), self.report.outcomes, time.monotonic() - self.t0))

    def flush(self) -> None:
        """Record the answers so far, here and now (pause, failover, the end)."""
        if self.pending:
            pairs, carriers = self.take_pending()
            self.recorded(pairs, ledger.record(self.engine, self.run_id, self.lane.name, pairs, self.d.now(),
                                               self.policy, carriers.gateways, carriers.reply_addresses))

    async def flush_async(self) -> None:
        """Record the answers so far on the database thread; the loop goes on sending."""
        if self.pending:
            pairs, carriers = self.take_pending()
            self.recorded(pairs, await self.d.db(ledger.record, self.engine, self.run_id, self.lane.name, pairs,
                                                 self.d.now(), self.policy, carriers.gateways, carriers.reply_addresses))

    async def flusher(self) -> None:
        """Record every FLUSH_EVERY_S, or at once when a chunk is answered; pull receipts between."""
        while True:
            try:
                await asyncio.wait_for(self.flush_now.wait(), FLUSH_EVERY_S)
            except TimeoutError:
                pass
            self.flush_now.clear()
            done = self.sent_all
            await self.flush_async()
            if done:
                return
            if self.lane.channel == "sms":  # the SMS pass pulls the SMS gateway's receipts
                self.report.receipts += await self.d.pull_receipts()
