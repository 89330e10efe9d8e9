"""The sending engine: due messages -> frozen deliveries -> claim -> gateway -> record.

One asyncio loop per process: a feeder claims due deliveries a little ahead of the workers (and,
rate-limited, reserves their send slots); ``concurrency`` workers call the gateway; answers are
recorded in batches every few milliseconds on a database thread. At most ``concurrency × batch``
rows are in flight, and ``hold_limit`` (1.5 times that) bounds everything claimed and not yet
recorded: in flight, claimed and waiting for a worker, answered and not yet committed. A request's
rows are stamped as started (one commit for all the requests starting at that moment) just before
it leaves: after a crash only stamped rows can be in doubt. See ``ledger`` for the state protocol
and README "Delivery guarantee" for what survives a crash.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from broadcast import clock
from broadcast.audit.trail import note
from broadcast.db.dispatch_models import ACCEPTED, DELIVERED, EXPIRED, FAILED, IN_DOUBT, OPEN_STATES, RETRY_WAIT, Delivery
from broadcast.db.engine import transaction
from broadcast.db.types import table
from broadcast.dispatch import ledger, runs
from broadcast.dispatch.ledger import Claimed, FrozenRecipient, Outcomes, Policy
from broadcast.dispatch.shared_rate import SharedLimiter
from broadcast.gateways.base import Gateway, Outcome, SendItem, SendResult
from broadcast.messages.audience import message_audience, optout_skips
from broadcast.messages.checks import wrap_signature
from broadcast.messages.compose import render_for
from broadcast.messages.states import transition
from broadcast.workspace import Workspace

T = TypeVar("T")
deliveries_t = table(Delivery)
MAX_WAIT_IN_PASS_S = 30.0  # a one-shot run waits for retries due this soon; later ones are left to the next run
FLUSH_EVERY_S = 0.02
MIN_PAUSE_SAMPLES = 10


@dataclass
class Progress:
    message_id: int
    total: int
    outcomes: Outcomes
    elapsed_s: float


@dataclass
class RunReport:
    started: list[int] = field(default_factory=list)  # messages frozen by this run
    completed: list[int] = field(default_factory=list)  # messages now fully sent
    paused: dict[int, str] = field(default_factory=dict)
    expired: dict[int, str] = field(default_factory=dict)
    waiting_quiet: list[int] = field(default_factory=list)
    in_doubt: dict[int, int] = field(default_factory=dict)  # message -> deliveries held in doubt
    failovers: list[dict[str, str]] = field(default_factory=list)
    outcomes: Outcomes = field(default_factory=Outcomes)
    recovered: Outcomes = field(default_factory=Outcomes)
    receipts: int = 0
    elapsed_s: float = 0.0

    @property
    def needs_attention(self) -> bool:
        return bool(self.paused or self.in_doubt)

    def to_dict(self) -> dict[str, object]:
        return {
            "started": self.started, "completed": self.completed,
            "paused": [{"id": k, "reason": v} for k, v in self.paused.items()],
            "expired": [{"id": k, "reason": v} for k, v in self.expired.items()],
            "waiting_quiet_hours": self.waiting_quiet,
            "in_doubt": [{"id": k, "deliveries": v} for k, v in self.in_doubt.items()],
            "failovers": self.failovers,
            "accepted": self.outcomes.accepted, "failed": self.outcomes.failed, "retrying": self.outcomes.retry,
            "expired_deliveries": self.outcomes.expired, "in_doubt_new": self.outcomes.in_doubt,
            "recovered": vars(self.recovered), "receipts": self.receipts, "elapsed_s": round(self.elapsed_s, 3),
        }


def effective_rate(ws: Workspace, gateway: Gateway) -> float | None:
    """The lower of the configured and the gateway's declared message rate (None: unlimited)."""
    return _lower(ws.settings.rate, gateway.capabilities.max_per_second)


def effective_request_rate(ws: Workspace, gateway: Gateway) -> float | None:
    """The lower of the configured and the gateway's declared request rate (None: unlimited)."""
    return _lower(ws.settings.request_rate, gateway.capabilities.max_requests_per_second)


def _lower(*limits: Any) -> Any:
    """The lowest of the limits that are set (None: none is)."""
    return min((r for r in limits if r), default=None)


class Engine:
    def __init__(self, ws: Workspace, gateway: Gateway, *, kind: str = "run",
                 progress: Callable[[Progress], None] | None = None, receipt_wait_s: float = 0.0,
                 fallbacks: Sequence[Gateway] = ()) -> None:
        """``fallbacks``: the next gateways of BROADCAST_GATEWAYS, in order. When the current one
        keeps failing (the auto-pause condition) or refuses the account, the rest of the send
        goes through the next instead of pausing."""
        self.ws, self.kind, self.progress = ws, kind, progress
        self.receipt_wait_s = receipt_wait_s  # after sending, wait this long for pulled receipts
        self.concurrency = ws.settings.concurrency
        self.lease = timedelta(seconds=ws.settings.lease_s)
        self.fallbacks = list(fallbacks)
        self.primary_adds_signature = gateway.capabilities.adds_signature
        # texts are frozen for the first gateway (with or without the signature, as it needs)
        self.signature = "" if gateway.capabilities.adds_signature else None  # None: each message's own
        # the send loop's claims, records and rate reservations run on one thread of their own, in
        # order: a commit never holds up the event loop, so requests leave on their send slots and
        # HTTP overlaps the database (sqlite3 and psycopg release the GIL while they wait)
        self._db_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="broadcast-db")
        self._use(gateway)
        self._stopping = False
        self.run: runs.RunHandle | None = None

    def _use(self, gateway: Gateway) -> None:
        """Send through ``gateway`` from now on: its batch size and its rate limits."""
        s = self.ws.settings
        caps = gateway.capabilities
        self.gateway = gateway
        self.name = caps.name
        self.max_batch = max(1, caps.max_batch)
        # claimed and not yet recorded: in flight (concurrency × batch), plus half as much again of
        # requests waiting for a worker and answers not yet committed. What a crash can leave
        # stranded; of it only the rows stamped as started (``started`` in ``_send``) end in doubt.
        # At 1.25x the 50 ms gateway of bench_dispatch (b) fell from ~595 to 506 msg/s.
        self.hold_limit = self.concurrency * self.max_batch * 3 // 2
        rate = effective_rate(self.ws, gateway)
        self.rate = rate
        self.limiter = SharedLimiter(self.ws.engine, f"{self.name}:messages", rate, s.burst,
                                     run_db=self._db) if rate else None
        rps = effective_request_rate(self.ws, gateway)
        self.req_limiter = SharedLimiter(self.ws.engine, f"{self.name}:requests", rps, run_db=self._db) if rps else None

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the engine's database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, functools.partial(fn, *args))

    def close(self) -> None:
        self._db_thread.shutdown(wait=True)

    def _text_for(self, text: str, signature: str) -> str:
        """A frozen text as the current gateway needs it: the signature is prepended for a
        fallback that does not add it itself, and removed for one that does."""
        adds = self.gateway.capabilities.adds_signature
        if adds == self.primary_adds_signature:
            return text
        sig = wrap_signature(signature)
        if adds:
            return text[len(sig):] if sig and text.startswith(sig) else text
        return sig + text

    def now(self) -> datetime:
        """The configured clock (``BROADCAST_NOW`` for drills) read once per pass, advanced by
        real elapsed time: a drill that starts at 07:29 still sees retries come due."""
        anchor = getattr(self, "_anchor", None)
        if anchor is None:
            return clock.now(self.ws.settings)
        return anchor[0] + timedelta(seconds=time.monotonic() - anchor[1])

    def stop(self) -> None:
        """Stop taking new work; requests in flight finish and are recorded."""
        self._stopping = True

    # -- one pass -------------------------------------------------------------------------

    async def run_pass(self, only: list[int] | None = None, *, wait_for_retries: bool = True) -> RunReport:
        from broadcast.messages.timing import due, expire_overdue

        t0 = time.monotonic()
        self._anchor = (clock.now(self.ws.settings), t0)
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
                    report.started.append(item.id)
            if ids:
                await self._send(ids, report, wait_for_retries)
            report.receipts += await self.pull_receipts()
            await self._await_receipts(ids, report)
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

    # -- freeze -----------------------------------------------------------------------------

    def start_message(self, message_id: int) -> int:
        """Freeze the audience and move the message to ``sending``, in one transaction. A message
        another run started meanwhile (two runs saw it approved at once) is left as it is: 0."""
        from broadcast.db.models import Message

        m = table(Message)
        now = self.now()
        with transaction(self.ws.engine, write=True) as conn:
            status, body, signature = conn.execute(  # FOR UPDATE: PostgreSQL runs do not serialise otherwise
                sa.select(m.c.status, m.c.body, m.c.signature).where(m.c.id == message_id).with_for_update()).one()
            if status == "sending":  # frozen by the run that moved it there, in one transaction
                return 0
            sig = wrap_signature(signature if self.signature is None else self.signature)
            recipients = (
                FrozenRecipient(a.member_id, a.phone, a.name, a.group,
                                sig + render_for(body, name=a.name, group=a.group, phone=a.phone))
                for a in message_audience(conn, message_id)
            )
            n = ledger.freeze(conn, message_id, recipients, now, self.name)
            skipped = optout_skips(conn, message_id)
            transition(conn, message_id, "sending", optout_skipped=skipped, started_at=now)
            note(conn, self.ws.operator, "send.start", f"message:{message_id}", run=self.run.id if self.run else None,
                 run_kind=self.kind, audience=n, optout_skipped=skipped, gateway=self.name, rate=self.rate,
                 concurrency=self.concurrency, max_batch=self.max_batch, in_doubt=self.ws.settings.in_doubt,
                 max_attempts=self.ws.settings.max_attempts)
        return n

    # -- recovery ---------------------------------------------------------------------------

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
            if self.gateway.capabilities.can_query:
                answers = await self.gateway.query([SendItem(c.id, c.phone, c.text) for c in rows])
                known = {c.id: a for c, a in zip(rows, answers) if a is not None}
            out = ledger.settle(self.ws.engine, self.run.id, self.name, rows, known, self.ws.settings.in_doubt, now)
        with transaction(self.ws.engine, write=True) as conn:
            note(conn, self.ws.operator, "send.recover", f"run:{self.run.id}", dead_runs=dead,
                 stranded=len(rows) + requeued, requeued=requeued, confirmed=out.accepted, in_doubt=out.in_doubt,
                 resent=out.retry, policy=self.ws.settings.in_doubt)
        return out

    # -- receipts -----------------------------------------------------------------------------

    async def pull_receipts(self) -> int:
        if not self.gateway.capabilities.pull_receipts:
            return 0
        return ledger.apply_receipts(self.ws.engine, self.name, await self.gateway.fetch_receipts(), self.now())

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

    # -- the send loop ----------------------------------------------------------------------

    def _deadlines(self, ids: list[int]) -> dict[int, datetime]:
        d = deliveries_t
        with self.ws.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.message_id, sa.func.min(d.c.queued_at)).where(d.c.message_id.in_(ids), d.c.kind == "real")
                .group_by(d.c.message_id)
            ).all()
        return {mid: first + self.ws.settings.deadline for mid, first in rows}

    def _next_retry(self, ids: list[int]) -> datetime | None:
        d = deliveries_t
        with self.ws.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(d.c.next_attempt_at)).where(d.c.message_id.in_(ids), d.c.status == RETRY_WAIT)
            ).scalar_one_or_none()

    def _batches(self, rows: list[Claimed]) -> list[list[Claimed]]:
        """Requests: up to max_batch rows of one message (and one text, unless the gateway mixes)."""
        groups: dict[tuple[int, str], list[Claimed]] = collections.defaultdict(list)
        for c in rows:
            groups[(c.message_id, "" if self.gateway.capabilities.mixed_texts else c.text)].append(c)
        return [g[i:i + self.max_batch] for g in groups.values() for i in range(0, len(g), self.max_batch)]

    def _cap(self) -> int | None:
        """The per-number daily cap in force: the lower of the configured and the gateway's."""
        return _lower(self.ws.settings.max_per_number_per_day, self.gateway.capabilities.per_number_daily_cap)

    def _over_cap(self, run_id: str, rows: list[Claimed], cap: int, now: datetime) -> tuple[list[Claimed], list[Claimed]]:
        """The per-number daily cap on claimed rows: (may send, failed with reason ``cap``)."""
        tz = self.ws.settings.timezone
        day_start = clock.at_local(clock.local(now, tz).date(), datetime.min.time(), tz)
        return ledger.apply_cap(self.ws.engine, run_id, self.name, rows, cap, day_start, now,
                                "over the per-number daily cap (BROADCAST_MAX_PER_NUMBER_PER_DAY)")

    async def _fresh_tokens(self, n: int, due: float | None) -> float | None:
        """Send slots for a request of ``n`` that may be used now: the feeder's (at ``due``) if the
        worker picked them up in time, else the next ones; and a request slot if the gateway limits
        requests per second. Nothing leaves on a stale slot (``shared_rate.LATE_S``)."""
        req_due: float | None = None
        while True:
            if self.limiter and (due is None or not self.limiter.fresh(due)):
                due = await self.limiter.acquire(n)
                continue
            if self.req_limiter and (req_due is None or not self.req_limiter.fresh(req_due)):
                req_due = await self.req_limiter.acquire(1)
                continue
            return due

    async def _send(self, ids: list[int], report: RunReport, wait_for_retries: bool) -> None:
        assert self.run is not None
        s = self.ws.settings
        engine, run_id = self.ws.engine, self.run.id
        deadlines = self._deadlines(ids)
        for mid, deadline in deadlines.items():  # nothing goes out after its delivery deadline
            report.outcomes.expired += ledger.expire_past_deadline(engine, mid, deadline, self.now())
        policy = Policy(s.max_attempts, s.retry_base_s, s.retry_max_s, s.in_doubt, deadlines)
        queue: asyncio.Queue[tuple[list[Claimed], float | None] | None] = asyncio.Queue()
        room = asyncio.Event()
        pending: list[tuple[Claimed, SendResult]] = []
        holding = 0
        paused: set[int] = set()
        windows: dict[int, collections.deque[bool]] = collections.defaultdict(
            lambda: collections.deque(maxlen=s.error_window))
        from broadcast.db.models import Message

        with engine.connect() as conn:
            totals = {mid: sum(ledger.counts(conn, mid).values()) for mid in ids}
            m = table(Message)
            signatures = dict(conn.execute(sa.select(m.c.id, m.c.signature).where(m.c.id.in_(ids))).all())
        carried: dict[int, str] = {}
        t0 = time.monotonic()
        quiet = s.quiet_window
        # record as soon as a sixth of the hold window is answered (at least 8 rows, or half a
        # small window; at most 200), so the feeder can claim again while the rest is in flight:
        # waiting for the flusher's tick stalls every worker. With 32 in flight at 50 ms a
        # half-window rhythm left them idle for a record plus a claim every cycle (532 msg/s of
        # 640); a quarter of the 1.5x window, 587; a sixth, 613-615 (bench_dispatch (b)).
        def chunk() -> int:  # of the current gateway's hold window (a failover changes it)
            return max(1, min(200, max(min(8, self.hold_limit // 2), self.hold_limit // 6)))

        def freed(n: int) -> None:
            nonlocal holding
            holding -= n
            room.set()

        def take_pending() -> tuple[list[tuple[Claimed, SendResult]], dict[int, str]]:
            pairs = pending[:]
            pending.clear()
            return pairs, {c.id: carried.pop(c.id, self.name) for c, _ in pairs}

        def recorded(pairs: list[tuple[Claimed, SendResult]], out: Outcomes) -> None:
            report.outcomes.add(out)
            freed(len(pairs))
            if self.progress:
                for mid in {c.message_id for c, _ in pairs}:
                    self.progress(Progress(mid, totals.get(mid, 0), report.outcomes, time.monotonic() - t0))

        def flush() -> None:
            """Record the answers so far, here and now (pause, failover, the end)."""
            if pending:
                pairs, carriers = take_pending()
                recorded(pairs, ledger.record(engine, run_id, self.name, pairs, self.now(), policy, carriers))

        async def flush_async() -> None:
            """Record the answers so far on the database thread; the loop goes on sending."""
            if pending:
                pairs, carriers = take_pending()
                recorded(pairs, await self._db(ledger.record, engine, run_id, self.name, pairs, self.now(), policy, carriers))

        def pause(mid: int, reason: str, from_gateway: str | None = None) -> None:
            if mid in paused or (from_gateway is not None and from_gateway != self.name):
                return  # already paused, or the failing gateway was already replaced
            if self.fallbacks:  # failover instead of pausing: the rest goes through the next gateway
                flush()
                failed_gw = self.name
                self._use(self.fallbacks.pop(0))
                windows.clear()
                with transaction(engine, write=True) as conn:
                    for m_id in ids:
                        note(conn, self.ws.operator, "send.failover", f"message:{m_id}", run=run_id,
                             from_gateway=failed_gw, to_gateway=self.name, reason=reason)
                report.failovers.append({"from": failed_gw, "to": self.name, "reason": reason})
                return
            paused.add(mid)
            flush()
            try:
                with transaction(engine, write=True) as conn:
                    transition(conn, mid, "paused", reason=reason)
                    note(conn, self.ws.operator, "message.pause", f"message:{mid}", reason=reason, run=run_id)
            except Exception:  # cancelled or changed meanwhile: stop sending it all the same
                pass
            report.paused[mid] = reason

        idle = self.concurrency
        worker_free = asyncio.Event()

        async def claim_batches(active: list[int], want: int, now: datetime) -> tuple[int, list[list[Claimed]]]:
            """Claim up to ``want`` due rows (the per-number cap applied): (rows claimed, requests)."""
            nonlocal holding
            rows = await self._db(ledger.claim, engine, run_id, active, want, now, self.lease)
            holding += len(rows)
            claimed = len(rows)
            cap = self._cap()
            if rows and cap:  # no database round trip on the hot path without a cap
                rows, over = await self._db(self._over_cap, run_id, rows, cap, now)
                if over:
                    report.outcomes.failed += len(over)
                    freed(len(over))
            return claimed, self._batches(rows)

        async def feeder() -> None:
            """Unlimited: claims what keeps every worker busy, with up to half of them again queued.
            Rate-limited: keeps the next requests claimed (up to ~50 ms of sending, claimed while
            the previous ones wait for their send slots) and hands each to an idle worker at its
            slot. Either way at most ``hold_limit`` rows are claimed and not yet recorded."""
            nonlocal idle
            ready: collections.deque[list[Claimed]] = collections.deque()  # claimed, waiting for a slot
            ahead: asyncio.Task[tuple[int, list[list[Claimed]]]] | None = None
            try:
                while not self._stopping:
                    active = [m for m in ids if m not in paused]
                    if not active:
                        break
                    now = self.now()
                    if quiet is not None and quiet.is_quiet(now, s.timezone):
                        report.waiting_quiet.extend(m for m in active if m not in report.waiting_quiet)
                        break
                    if self.limiter:
                        limiter = self.limiter
                        if ahead is not None and (not ready or ahead.done()):
                            ready.extend((await ahead)[1])
                            ahead = None
                        if ready:
                            room_left = self.hold_limit - holding
                            if (ahead is None and sum(map(len, ready)) <= limiter.ahead // 2
                                    and room_left >= self.max_batch):  # claim the next while these wait
                                ahead = asyncio.create_task(claim_batches(
                                    active, min(room_left, max(self.max_batch, limiter.ahead)), now))
                            if idle <= 0:
                                worker_free.clear()
                                await worker_free.wait()
                                continue
                            batch = ready.popleft()
                            stamp = asyncio.ensure_future(started(batch))  # while it waits for its slot
                            due = await limiter.acquire(len(batch))
                            await stamp
                            idle -= 1
                            queue.put_nowait((batch, due))
                            continue
                        want = min(self.hold_limit - holding, max(self.max_batch, limiter.ahead))
                        if want < self.max_batch:
                            room.clear()
                            await room.wait()
                            continue
                    else:
                        want = self.hold_limit - holding
                        if want < chunk():
                            room.clear()
                            await room.wait()
                            continue
                    claimed, batches = await claim_batches(active, want, now)
                    if not claimed:
                        if holding:
                            room.clear()
                            await room.wait()
                            continue
                        nxt = self._next_retry(active)
                        if nxt is None:
                            break
                        wait = (nxt - now).total_seconds()
                        if not wait_for_retries or wait > MAX_WAIT_IN_PASS_S:
                            break
                        await asyncio.sleep(min(max(wait, 0.01), 1.0))
                        continue
                    if self.limiter:
                        ready.extend(batches)
                        continue
                    for batch in batches:
                        idle -= 1
                        queue.put_nowait((batch, None))
            finally:
                if ahead is not None:
                    ready.extend((await ahead)[1])
                for batch in ready:  # claimed, never handed to a worker: back to the queue
                    ledger.release(engine, run_id, batch, self.now())
                    freed(len(batch))
                for _ in range(self.concurrency):
                    queue.put_nowait(None)

        starting: list[tuple[list[int], asyncio.Future[None]]] = []
        stamper: asyncio.Task[None] | None = None

        async def stamp_waiting() -> None:
            """Stamp every batch waiting to start, together, in one transaction per round."""
            while starting:
                group = starting[:]
                starting.clear()
                try:
                    await self._db(ledger.mark_started, engine, run_id, [i for ids, _ in group for i in ids],
                                   self.now())
                except BaseException as exc:  # each waiting worker raises it
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    return
                for _, fut in group:
                    if not fut.done():
                        fut.set_result(None)

        async def started(batch: list[Claimed]) -> None:
            """Return once the batch's request is stamped as starting (committed): a crash after
            this may leave it in doubt, a crash before it leaves it to be queued again."""
            nonlocal stamper
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            starting.append(([c.id for c in batch], fut))
            if stamper is None or stamper.done():
                stamper = asyncio.create_task(stamp_waiting())
            await fut

        def done_with(n_rows: int = 0, release: bool = False) -> None:
            nonlocal idle
            idle += 1
            worker_free.set()
            if release:
                freed(n_rows)

        async def worker() -> None:
            nonlocal idle
            while (item := await queue.get()) is not None:
                batch, due = item
                if self._stopping or batch[0].message_id in paused:
                    ledger.release(engine, run_id, batch, self.now())
                    done_with(len(batch), release=True)
                    continue
                if due is None:  # the feeder stamps what it hands over at a send slot, nothing else
                    await started(batch)
                if self.limiter or self.req_limiter:
                    due = await self._fresh_tokens(len(batch), due)
                if self._stopping or batch[0].message_id in paused:
                    ledger.release(engine, run_id, batch, self.now())
                    done_with(len(batch), release=True)
                    continue
                gateway, gw_name = self.gateway, self.name
                if len(batch) > self.max_batch:  # claimed for a gateway we have since failed over from
                    for i in range(self.max_batch, len(batch), self.max_batch):
                        queue.put_nowait((batch[i:i + self.max_batch], None))
                        idle -= 1
                    batch = batch[:self.max_batch]
                results = await gateway.send([SendItem(c.id, c.phone, self._text_for(c.text, signatures.get(c.message_id, "")))
                                              for c in batch])
                carried.update({c.id: gw_name for c in batch})
                pending.extend(zip(batch, results))
                done_with()
                mid = batch[0].message_id
                window = windows[mid]
                for r in results:
                    window.append(r.outcome is not Outcome.ACCEPTED)
                    if r.pause:
                        pause(mid, f"the gateway refused the account: {r.code or ''} {r.detail or ''}".strip(), gw_name)
                if (mid not in paused and len(window) >= min(MIN_PAUSE_SAMPLES, window.maxlen or 1)
                        and sum(window) / len(window) > s.max_error_rate):
                    last = results[-1]
                    pause(mid, f"{sum(window)} of the last {len(window)} attempts failed "
                               f"(last: {last.code or ''} {last.detail or ''})".strip(), gw_name)
                if len(pending) >= chunk():
                    flush_now.set()

        flush_now = asyncio.Event()
        sent_all = False

        async def flusher() -> None:
            """Records every FLUSH_EVERY_S, or at once when half the hold window is answered."""
            while True:
                try:
                    await asyncio.wait_for(flush_now.wait(), FLUSH_EVERY_S)
                except TimeoutError:
                    pass
                flush_now.clear()
                done = sent_all
                await flush_async()
                if done:
                    return
                if self.gateway.capabilities.pull_receipts:
                    report.receipts += await self.pull_receipts()

        flush_task = asyncio.create_task(flusher())
        try:
            await asyncio.gather(feeder(), *(worker() for _ in range(self.concurrency)))
        finally:
            sent_all = True
            flush_now.set()
            try:
                await flush_task  # its last round records what is left
            except Exception:  # a failed commit: the answers are still pending, try once more below
                pass
            except BaseException:  # cancelled: record what is pending, here and now
                flush_task.cancel()
                flush()
                raise
            flush()

    # -- completion ---------------------------------------------------------------------------

    def _settle_messages(self, ids: list[int], report: RunReport) -> None:
        """Mark messages sent when nothing is left open; report held in-doubt deliveries."""
        from broadcast.db.models import Message

        m = table(Message)
        now = self.now()
        deadlines = self._deadlines(ids)
        for mid in ids:
            if mid in deadlines:
                report.outcomes.expired += ledger.expire_past_deadline(self.ws.engine, mid, deadlines[mid], now)
            with transaction(self.ws.engine, write=True) as conn:
                status = conn.execute(sa.select(m.c.status).where(m.c.id == mid).with_for_update()).scalar_one()
                c = ledger.counts(conn, mid)
                if c.get(IN_DOUBT):
                    report.in_doubt[mid] = c[IN_DOUBT]
                if status == "sending" and not any(c.get(st) for st in (*OPEN_STATES, IN_DOUBT)):
                    transition(conn, mid, "sent")
                    note(conn, self.ws.operator, "send.finish", f"message:{mid}", counts=c, gateway=self.name,
                         run=self.run.id if self.run else None)
                    report.completed.append(mid)


def summary_counts(ws: Workspace, message_id: int) -> dict[str, int]:
    with ws.engine.connect() as conn:
        c = ledger.counts(conn, message_id)
    keys = ("queued", "sending", "retry_wait", ACCEPTED, DELIVERED, FAILED, EXPIRED, IN_DOUBT)
    return {k: c.get(k, 0) for k in keys}
