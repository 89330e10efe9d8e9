"""The rate limit: a token bucket shared by every process that sends through one gateway, kept
in the database (table ``rate_buckets``), so two overlapping `broadcast run`s (cron fired twice,
a worker plus a manual run) or several workers on PostgreSQL together keep one rate.

A process reserves *send slots* a little ahead, in short write transactions: taking k tokens
from the bucket, GCRA-style, gives k moments, one per token, when the bucket covers it: the first
ones at once if the bucket held them, then one every 1/rate. The bucket may go into debt, so
processes' slots never overlap: in any window of T seconds at most ``rate × T + burst`` slots
fall, whoever holds them. A take is a run, (time, level, k), not k moments: its cost does not
depend on the rate. How many tokens a take asks for follows what the process sends (at most
``AHEAD_S`` = 50 ms of the rate): a limit far above the demand costs a small take now and then,
and does not put the bucket into debt another process would have to wait out.

A slot is *used at its moment or not at all*: a request leaves no earlier than its slot and at
most ``LATE_S`` after it; a sender that wakes later (an event loop held up by a commit, a
descheduled process) drops the slot and takes the next. Were late slots spent, they would pile
into the next second on top of the slots other processes spend on time. The bucket refills a
little slower than the rate (``MARGIN_S``: 1.7 %), which pays for that lateness and the way to the
gateway's socket: every one-second window where the gateway counts stays within ``rate + burst``.
The price: a long-run rate 1.7 % under the configured one, and slots a stalled process loses.

A request carrying n recipients takes n consecutive slots and leaves at the last one, so with
n above the burst the bound is ``rate × T + n``.

The burst defaults to about 10 ms of tokens, at least 1: a bucket of 1 token undershoots the
rate, a bucket of a whole second lets twice the rate through in the first second.

The dispatcher takes its slots with its requests' start stamps (``reserve_in``, in the stamps'
write transaction, which ``dispatch.stamps`` writes a moment before the requests leave), so the
limit costs no transaction of its own; a take there asks for the round's shortfall or for
``size``, whichever is more, and the next rounds use what is left while it is fresh. ``acquire``
then waits for the slots, and takes on its own only for slots that went stale meanwhile.
Used on its own (``take_ahead``, as the tests drive it), the limiter reserves in the background.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from broadcast.db.dispatch_models import RateBucket
from broadcast.db.engine import transaction
from broadcast.db.types import table

buckets_t = table(RateBucket)

LATE_S = 0.012  # a slot not used this long after its moment is dropped
MARGIN_S = 0.017  # the bucket refills at rate / (1 + MARGIN_S): LATE_S plus the way to the gateway
AHEAD_S = 0.05  # slots reserved per transaction: this long of sending at the full rate


def default_burst(rate_per_s: float) -> float:
    """About 10 ms worth of tokens, at least 1."""
    return max(1.0, rate_per_s * 0.010)


def _take_statement() -> sa.Update:
    """One statement a take: refill to ``b_now`` (never backwards), cap at the burst, take
    ``b_n``, returning (level - n, now). The UPDATE locks the row until the transaction ends."""
    b = buckets_t.c
    now = sa.bindparam("b_now", type_=sa.Float)
    start = sa.case((now > b.updated, now), else_=b.updated)
    refilled = b.tokens + (start - b.updated) * sa.bindparam("b_rate", type_=sa.Float)
    burst = sa.bindparam("b_burst", type_=sa.Float)
    level = sa.case((refilled > burst, burst), else_=refilled)
    return (buckets_t.update().where(b.key == sa.bindparam("b_key"))
            .values(tokens=level - sa.bindparam("b_n", type_=sa.Float), updated=start)
            .returning(b.tokens, b.updated))


_TAKE = _take_statement()
_INSERT = buckets_t.insert()


def moment(now: float, level: float, rate: float, j: int) -> float:
    """When slot ``j`` (from 0) of a take at ``now`` that found ``level`` tokens is covered."""
    return now + max(0.0, (j + 1 - level) / rate)


def take(engine: Engine, key: str, n: int, rate: float, burst: float,
         clock: Callable[[], float] = time.time) -> tuple[float, float, int]:
    """Take ``n`` tokens from the shared bucket ``key`` in a write transaction of its own; see
    ``take_in``."""
    with transaction(engine, write=True) as conn:
        return take_in(conn, key, n, rate, burst, clock)


def take_in(conn: Connection, key: str, n: int, rate: float, burst: float,
            clock: Callable[[], float] = time.time) -> tuple[float, float, int]:
    """Take ``n`` tokens from the shared bucket ``key`` (it may go into debt), inside the write
    transaction of ``conn``. Returns the run of slots ``(now, level, n)``: slot j is covered at
    ``moment(now, level, rate, j)``, immediately for what the bucket held, then one every
    1/``rate``. Times are ``clock()`` (wall-clock seconds, comparable across hosts); a clock behind
    the newest time the bucket saw never refills it (the take is dated then)."""
    params = {"b_key": key, "b_now": clock(), "b_rate": rate, "b_burst": burst, "b_n": n}
    row = conn.execute(_TAKE, params).first()
    if row is None:  # a new bucket starts nearly empty: no first-second burst
        try:
            with conn.begin_nested():
                conn.execute(_INSERT, {"key": key, "tokens": 1.0, "updated": params["b_now"]})
        except sa.exc.IntegrityError:  # another process created it first
            pass
        row = conn.execute(_TAKE, params).first()
        assert row is not None
    left, now = row
    return now, left + n, n


class _Run:
    """The slots of one take still held, ``first`` to ``end`` - 1, in monotonic time."""

    __slots__ = ("base", "level", "rate", "first", "end", "dropped")

    def __init__(self, base: float, level: float, rate: float, n: int) -> None:
        self.base, self.level, self.rate = base, level, rate
        self.first, self.end, self.dropped = 0, n, 0

    def at(self, j: int) -> float:
        return moment(self.base, self.level, self.rate, j)

    def left(self) -> int:
        return self.end - self.first

    def older_than(self, limit: float) -> int:
        """How many of the held slots fall before ``limit`` (a prefix: moments never decrease).
        The estimate is corrected against ``at`` itself, so float rounding cannot disagree."""
        if self.at(self.first) >= limit:
            return 0
        if self.at(self.end - 1) < limit:
            return self.left()
        j = math.ceil((limit - self.base) * self.rate + self.level - 1)  # about the first j at or after limit
        j = min(max(j, self.first + 1), self.end - 1)
        while j > self.first + 1 and self.at(j - 1) >= limit:
            j -= 1
        while self.at(j) < limit:
            j += 1
        return j - self.first


class SharedLimiter:
    """``due = await limiter.acquire(n)`` right before a request of ``n``; if something else ran
    in between, ``limiter.fresh(due)`` tells whether the slots may still be used (else acquire
    again).

    The slots held are a few runs, each one take's arithmetic (no slot is a Python object), so
    finding the n-th slot, using n slots and dropping stale ones cost O(1) per run, whatever the
    rate. How many slots a take asks for follows the demand: it doubles (up to ``rate × AHEAD_S``)
    when a run was used up, and shrinks to twice what was used when slots of a run went stale;
    never below the request. So a limit that does not bind reserves about what is sent and keeps
    the shared bucket out of debt: another process sharing it is not pushed into the future.
    The next take runs in the background when the slots held are about to run out (by count, or
    by time: a take's round trip before they go stale, or ``AHEAD_S / 2`` before the last one's
    moment when the bucket was empty, as the next slots then follow these); its error reaches the
    next ``acquire``. Strictness is unchanged: every slot used is one of a take's, at its moment
    and at most ``LATE_S`` after it, and takes are what bound every window to ``rate × T + burst``;
    holding fewer slots only leaves tokens in the bucket."""

    def __init__(self, engine: Engine, key: str, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 run_db: Callable[..., Awaitable[Any]] | None = None, take_ahead: bool = True) -> None:
        """``run_db(fn, *args)``: where the reservation transactions run (the engine's database
        thread); default: inline. ``take_ahead=False``: the slots come with the requests' start
        stamps (``reserve_in``), and ``acquire`` takes on its own only what those did not bring
        or what went stale, exactly that many, never ahead."""
        self.engine, self.key, self.rate = engine, key, rate
        self._run_db = run_db
        self.take_ahead = take_ahead
        self.burst = burst if burst is not None else default_burst(rate)
        self.block = max(1, math.floor(self.burst))  # single requests that may leave at once
        self.ahead = max(self.block, math.ceil(rate * AHEAD_S))  # the most slots one take may ask for
        self.most = max(1, math.ceil(rate * AHEAD_S))  # the most a take asks for beyond the request
        self.size = 1  # what the next take asks for (at least the request): follows the demand
        self.bucket_rate = rate / (1 + MARGIN_S)
        self._clock, self._sleep, self._monotonic = clock, sleep, monotonic
        self._runs: collections.deque[_Run] = collections.deque()
        self._held = 0  # slots in self._runs
        self._taking: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._used = 0  # slots used since slots last went stale
        self._owed = 0  # slots held for requests stamped (reserve_in) that have not yet acquired them
        self._latency = 0.0  # a take's round trip (moving average), monotonic seconds
        self._lock = asyncio.Lock()
        self.stale = 0  # slots dropped because their sender came too late (tests, benchmarks)
        self.reservations = 0

    async def _reserve(self, n: int) -> None:
        read: list[float] = []

        def clock() -> float:  # the wall clock take() reads, with the monotonic one at the same instant
            read[:] = [self._clock(), self._monotonic()]
            return read[0]

        t0 = self._monotonic()
        try:
            args = (self.engine, self.key, n, self.bucket_rate, self.burst, clock)
            self._keep(await self._run_db(take, *args) if self._run_db else take(*args), read)
            self.reservations += 1
            self._latency += 0.3 * (self._monotonic() - t0 - self._latency)
        except Exception as e:  # for the next acquire
            self._error = e
        finally:
            self._taking = None

    def _keep(self, run: tuple[float, float, int], read: list[float]) -> None:
        """Hold the slots of a take whose clocks read ``read`` = [wall, monotonic]."""
        now, level, got = run
        self._runs.append(_Run(now + read[1] - read[0], level, self.bucket_rate, got))
        self._held += got

    def reserve_in(self, n: int) -> Reservation | None:
        """Slots for requests of ``n`` in all whose start stamps are about to be written: a take to
        run inside that write transaction (so the limit costs no transaction of its own), or None
        when the slots held, less those owed to requests stamped before, cover them and stay fresh
        a while yet. A take asks for at least the shortfall, and for ``size`` (what the demand
        used before its slots went stale, see ``_retire``): a take serves a few rounds."""
        self._owed += n
        short = self._owed - self._fresh_for(LATE_S / 2)
        return Reservation(self, max(short, self.size)) if short > 0 else None

    def _fresh_for(self, margin: float) -> int:
        """Slots held that will still be fresh ``margin`` from now."""
        return self._held - self._older_than(self._monotonic() - LATE_S + margin)

    def _older_than(self, limit: float) -> int:
        """How many of the slots held fall before ``limit`` (a prefix: moments never decrease)."""
        old = 0
        for run in self._runs:
            k = run.older_than(limit)
            old += k
            if k < run.left():
                break
        return old

    def _start_take(self, n: int) -> asyncio.Task[None]:
        if self._taking is None:
            self._taking = asyncio.ensure_future(self._reserve(max(n, self.size) if self.take_ahead else n))
        return self._taking

    def _retire(self, run: _Run) -> None:
        self._runs.popleft()
        if not run.dropped:  # used up before its time: ask for more
            self.size = min(self.most, 2 * max(self.size, run.end))

    def _use(self, n: int, stale: bool) -> float:
        """Take ``n`` slots off the front (used, or dropped if ``stale``); the latest moment."""
        last = -math.inf
        while n > 0:
            run = self._runs[0]
            k = min(n, run.left())
            run.first += k
            last = max(last, run.at(run.first - 1))
            if stale:
                run.dropped += k
            else:
                self._used += k
            n -= k
            self._held -= k
            if not run.left():
                self._retire(run)
        return last

    def _nth(self, n: int) -> float:
        """The moment of the n-th slot held (the latest of the runs it spans)."""
        last = -math.inf
        for run in self._runs:
            k = min(n, run.left())
            last = max(last, run.at(run.first + k - 1))
            n -= k
            if n <= 0:
                break
        return last

    def _drop_stale(self, n: int) -> None:
        """Drop slots too old for a request of ``n`` (which leaves at its n-th slot): the front
        ones, until the n-th is fresh, or all if the last one is stale."""
        old = self._older_than(self._monotonic() - LATE_S)
        drop = self._held if old == self._held else max(0, old - n + 1)
        if drop:
            self._use(drop, stale=True)
            self.stale += drop
            self.size = max(1, min(self.size, 2 * self._used))  # twice what was used meanwhile
            self._used = 0

    def _take_ahead(self, n: int) -> None:
        """Start the next take in the background if the slots held are about to run out."""
        if self._taking is not None or self._error is not None or not self.take_ahead:
            return
        if self._held < n + 1:
            self._start_take(n)
            return
        last = self._runs[-1]
        end = last.at(last.end - 1)
        lead = 2 * self._latency + LATE_S / 2
        if end - last.base > LATE_S:  # the limit binds (the run's slots spread out): the next ones follow these
            lead += AHEAD_S / 2
        if end + LATE_S - self._monotonic() < lead:
            self._start_take(n)

    def _raise_error(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    async def acquire(self, n: int = 1) -> float:
        """Wait for ``n`` slots (reserving more when few are left) and take them; returns the
        moment of the last one (``monotonic``), which is now or a moment ago."""
        self._owed = max(0, self._owed - n)
        async with self._lock:
            while True:
                self._raise_error()
                self._drop_stale(n)
                if self._held < n:
                    await asyncio.shield(self._start_take(n - self._held))
                    continue
                wait = self._nth(n) - self._monotonic()
                if wait > 0:
                    self._take_ahead(n)  # reserve the next ones while waiting
                    await self._sleep(wait)
                    continue
                due = self._use(n, stale=False)
                self._take_ahead(n)
                return due

    def fresh(self, due: float) -> bool:
        """May slots whose moment was ``due`` still be used now?"""
        if self._monotonic() - due <= LATE_S:
            return True
        self.stale += 1
        return False


class Reservation:
    """``r(conn)`` takes the slots inside the caller's write transaction (on the database
    thread); ``r.keep()``, on the event loop once that transaction committed, hands them to the
    limiter. A transaction that rolls back leaves the bucket as it was, and nothing is kept."""

    __slots__ = ("limiter", "n", "run", "read")

    def __init__(self, limiter: SharedLimiter, n: int) -> None:
        self.limiter, self.n = limiter, n
        self.run: tuple[float, float, int] | None = None
        self.read: list[float] = []

    def __call__(self, conn: Connection) -> None:
        lim = self.limiter

        def clock() -> float:
            self.read[:] = [lim._clock(), lim._monotonic()]
            return self.read[0]

        self.run = take_in(conn, lim.key, self.n, lim.bucket_rate, lim.burst, clock)

    def keep(self) -> None:
        if self.run is not None:
            self.limiter._keep(self.run, self.read)
            self.limiter.reservations += 1
