"""A token bucket shared by every process that sends through one gateway, kept in the database.

Each process takes tokens in small blocks (about 20 ms worth) with one short write transaction,
GCRA-style: the bucket may go into debt, and the taker sleeps until its block is due. So two
overlapping `broadcast run`s (cron fired twice, a worker plus a manual run) or several workers
on PostgreSQL together never exceed ``rate × T + burst`` in any window of T seconds, while each
process paces the block it holds with its own in-process bucket.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy import Engine

from broadcast.db.dispatch_models import RateBucket
from broadcast.db.engine import transaction
from broadcast.dispatch.ratelimit import TokenBucket

buckets_t = RateBucket.__table__


def take(engine: Engine, key: str, n: float, rate: float, burst: float, now: float) -> float:
    """Take ``n`` tokens from the shared bucket ``key``; returns seconds to wait before using them."""
    with transaction(engine, write=True) as conn:
        q = sa.select(buckets_t.c.tokens, buckets_t.c.updated).where(buckets_t.c.key == key)
        if engine.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            tokens, updated = 1.0, now  # a new bucket starts nearly empty: no first-second burst
            try:
                with conn.begin_nested():
                    conn.execute(buckets_t.insert().values(key=key, tokens=tokens, updated=updated))
            except sa.exc.IntegrityError:  # another process created it first
                row = conn.execute(q).first()
                assert row is not None
                tokens, updated = row
        else:
            tokens, updated = row
        now = max(now, updated)  # clocks of different hosts: never refill backwards
        tokens = min(burst, tokens + (now - updated) * rate) - n
        conn.execute(buckets_t.update().where(buckets_t.c.key == key).values(tokens=tokens, updated=now))
    return max(0.0, -tokens / rate)


class SharedLimiter:
    """``await limiter.acquire(n)``: paced locally at ``rate``, bounded globally by the shared bucket."""

    def __init__(self, engine: Engine, key: str, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.engine, self.key, self.rate = engine, key, rate
        self.burst = burst if burst is not None else max(1.0, rate * 0.010)
        self.block = max(1.0, min(self.burst, rate * 0.020))
        self._clock, self._sleep = clock, sleep
        self._local = TokenBucket(rate, self.burst, sleep=sleep)
        self._held = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, n: float = 1) -> None:
        """Shared tokens, then local pacing: ``acquire_shared`` followed by ``pace``."""
        await self.acquire_shared(n)
        await self.pace(n)

    async def acquire_shared(self, n: float = 1) -> None:
        """Take ``n`` tokens from the bucket all processes share (in blocks; sleeps until due)."""
        async with self._lock:
            while self._held < n:
                want = max(self.block, math.ceil(n - self._held))
                wait = take(self.engine, self.key, want, self.rate, self.burst, self._clock())
                if wait > 0:
                    await self._sleep(wait)
                self._held += want
            self._held -= n

    async def pace(self, n: float = 1) -> None:
        """Spread requests evenly at the rate within this process."""
        await self._local.acquire(n)
