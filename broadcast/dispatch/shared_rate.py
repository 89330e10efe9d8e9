"""The rate limit: a token bucket shared by every process that sends through one gateway, kept
in the database (table ``rate_buckets``), so two overlapping `broadcast run`s (cron fired twice,
a worker plus a manual run) or several workers on PostgreSQL together keep one rate.

A process reserves *send slots* a little ahead (about ``AHEAD_S`` = 50 ms of them per short write
transaction): taking k tokens from the bucket, GCRA-style, gives k moments, one per token, when
the bucket covers it: the first ones at once if the bucket held them, then one every 1/rate. The
bucket may go into debt, so processes' slots never overlap: in any window of T seconds at most
``rate × T + burst`` slots fall, whoever holds them.

A slot is *used at its moment or not at all*: a request leaves no earlier than its slot and at
most ``LATE_S`` after it; a sender that wakes later (an event loop held up by a commit, a
descheduled process) drops the slot and takes the next. Were late slots spent, they would pile
into the next second on top of the slots other processes spend on time. The bucket refills a
little slower than the rate (``MARGIN_S``: 1 %), which pays for that lateness and the way to the
gateway's socket: every one-second window where the gateway counts stays within ``rate + burst``.
The price: a long-run rate 1 % under the configured one, and slots a stalled process loses.

A request carrying n recipients takes n consecutive slots and leaves at the last one, so with
n above the burst the bound is ``rate × T + n``.

The burst defaults to about 10 ms of tokens, at least 1 (measured here: a bucket of 1 token
undershoots by up to 9 % at 1,000/s, a bucket of a whole second lets 2× the rate through in the
first second; measurements.md §6).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast.db.dispatch_models import RateBucket
from broadcast.db.engine import transaction
from broadcast.db.types import table

buckets_t = table(RateBucket)

LATE_S = 0.005  # a slot not used this long after its moment is dropped
MARGIN_S = 0.010  # the bucket refills at rate / (1 + MARGIN_S): LATE_S plus the way to the gateway
AHEAD_S = 0.05  # slots reserved per transaction: this long of sending at the full rate


def default_burst(rate_per_s: float) -> float:
    """About 10 ms worth of tokens, at least 1."""
    return max(1.0, rate_per_s * 0.010)


def take(engine: Engine, key: str, n: int, rate: float, burst: float,
         clock: Callable[[], float] = time.time) -> tuple[float, list[float]]:
    """Take ``n`` tokens from the shared bucket ``key`` (it may go into debt). Returns the time
    of the take and the moment each token is covered: immediately for what the bucket held, then
    one every 1/``rate``. Times are ``clock()`` (wall-clock seconds, comparable across hosts),
    read once the bucket's row is locked; a clock behind the newest time seen never refills it."""
    with transaction(engine, write=True) as conn:
        q = sa.select(buckets_t.c.tokens, buckets_t.c.updated).where(buckets_t.c.key == key)
        if engine.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            tokens, updated = 1.0, clock()  # a new bucket starts nearly empty: no first-second burst
            try:
                with conn.begin_nested():
                    conn.execute(buckets_t.insert().values(key=key, tokens=tokens, updated=updated))
            except sa.exc.IntegrityError:  # another process created it first
                row = conn.execute(q).first()
                assert row is not None
                tokens, updated = row
        else:
            tokens, updated = row
        now = max(clock(), updated)
        level = min(burst, tokens + (now - updated) * rate)
        conn.execute(buckets_t.update().where(buckets_t.c.key == key).values(tokens=level - n, updated=now))
    return now, [now + max(0.0, (j + 1 - level) / rate) for j in range(n)]


class SharedLimiter:
    """``due = await limiter.acquire(n)`` right before a request of ``n``; if something else ran
    in between, ``limiter.fresh(due)`` tells whether the slots may still be used (else acquire
    again)."""

    def __init__(self, engine: Engine, key: str, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 run_db: Callable[..., Awaitable[Any]] | None = None) -> None:
        """``run_db(fn, *args)``: where the reservation transactions run (the engine's database
        thread); default: inline."""
        self.engine, self.key, self.rate = engine, key, rate
        self._run_db = run_db
        self.burst = burst if burst is not None else default_burst(rate)
        self.block = max(1, math.floor(self.burst))  # single requests that may leave at once
        self.ahead = max(self.block, math.ceil(rate * AHEAD_S))  # slots per reservation
        self.bucket_rate = rate / (1 + MARGIN_S)
        self._clock, self._sleep, self._monotonic = clock, sleep, monotonic
        self._slots: collections.deque[float] = collections.deque()  # reserved moments, monotonic
        self._lock = asyncio.Lock()
        self.stale = 0  # slots dropped because their sender came too late (tests, benchmarks)
        self.reservations = 0

    async def _reserve(self, n: int) -> None:
        read: list[float] = []

        def clock() -> float:  # the wall clock take() reads, with the monotonic one at the same instant
            read[:] = [self._clock(), self._monotonic()]
            return read[0]

        args = (self.engine, self.key, n, self.bucket_rate, self.burst, clock)
        _, dues = await self._run_db(take, *args) if self._run_db else take(*args)
        shift = read[1] - read[0]
        self._slots.extend(d + shift for d in dues)
        self.reservations += 1

    def _drop_stale(self, n: int) -> None:
        """Drop slots too old for a request of ``n`` (which leaves at its n-th slot)."""
        limit = self._monotonic() - LATE_S
        while self._slots and self._slots[min(n, len(self._slots)) - 1] < limit:
            self._slots.popleft()
            self.stale += 1

    async def acquire(self, n: int = 1) -> float:
        """Wait for ``n`` slots (reserving more when few are left) and take them; returns the
        moment of the last one (``monotonic``), which is now or a moment ago."""
        async with self._lock:
            while True:
                self._drop_stale(n)
                if len(self._slots) < n:
                    await self._reserve(max(n - len(self._slots), self.ahead))
                    continue
                due = self._slots[n - 1]
                wait = due - self._monotonic()
                if wait > 0:
                    if self._slots[-1] - self._monotonic() < AHEAD_S / 2:  # reserve the next ones while waiting
                        await self._reserve(self.ahead)
                        continue
                    await self._sleep(wait)
                    continue
                for _ in range(n):
                    self._slots.popleft()
                return due

    def fresh(self, due: float) -> bool:
        """May slots whose moment was ``due`` still be used now?"""
        if self._monotonic() - due <= LATE_S:
            return True
        self.stale += 1
        return False
