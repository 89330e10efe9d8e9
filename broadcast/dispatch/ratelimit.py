"""An asyncio token bucket for one process (messages/s or requests/s), with an injectable clock.

Semantics (GCRA, the "virtual scheduling" form of a token bucket):

* the bucket holds at most ``burst`` tokens and refills at ``rate_per_s``; ``acquire(n)`` waits
  until ``n`` tokens are available and takes them. ``burst`` defaults to ~10 ms of tokens, at
  least 1: measured on this machine, a bucket of 1 token undershoots by up to 9 % at 1,000/s
  (sleeps overshoot and the surplus is thrown away) while a bucket of 1 s lets 2x the rate
  through in the first second (measurements.md §6);
* it starts with ``initial_tokens`` (default 1, never more than ``burst``), so a fresh bucket
  lets through at most ``rate × T + burst`` in any window of T seconds, the first included;
* each caller reserves its slot on an ideal schedule at call time and then sleeps until it, so
  late wake-ups do not accumulate: the long-run rate is the target, not slightly under it;
  waiters are served in call order;
* ``acquire(n)`` with ``n > burst`` waits until the bucket is full and then goes into debt
  (later callers wait for the refill): the long-run rate still holds, and a window holds at
  most ``rate × T + n``;
* a cancelled waiter gives its reservation back.

Not thread-safe (one event loop). The limit across processes sharing a database lives in the
engine, not here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenBucket", "default_burst"]


def default_burst(rate_per_s: float) -> float:
    """About 10 ms worth of tokens, at least 1."""
    return max(1.0, rate_per_s * 0.010)


class TokenBucket:
    """``await bucket.acquire(n)`` before sending ``n`` messages (or one request)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        *,
        initial_tokens: float = 1.0,
    ) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, not {rate_per_s!r}")
        self.rate_per_s = float(rate_per_s)
        self._unlimited = math.isinf(self.rate_per_s)  # rate_per_s=math.inf: never waits
        if burst is None:
            burst = 1.0 if self._unlimited else default_burst(rate_per_s)
        self.burst = float(burst)
        if not self.burst >= 1 or math.isinf(self.burst):
            raise ValueError(f"burst must be a finite number >= 1, not {burst!r}")
        self._clock = clock
        self._sleep = sleep
        # _tat ("theoretical arrival time"): when the bucket will be full again. Full now = clock().
        # A bucket holding k tokens has _tat = now + (burst - k) / rate.
        start = min(max(initial_tokens, 0.0), self.burst)
        self._tat = clock() + (0.0 if self._unlimited else (self.burst - start) / self.rate_per_s)

    def tokens(self) -> float:
        """Tokens available now (negative while in debt)."""
        if self._unlimited:
            return math.inf
        return self.burst - max(0.0, self._tat - self._clock()) * self.rate_per_s

    def reserve(self, n: float = 1) -> float:
        """Take ``n`` tokens on the schedule and return how long to wait (seconds, >= 0) before using them."""
        if n <= 0:
            return 0.0
        if self._unlimited:
            return 0.0
        now = self._clock()
        base = max(self._tat, now)
        new_tat = base + n / self.rate_per_s
        allowed_at = max(now, new_tat - max(self.burst, n) / self.rate_per_s)
        self._tat = new_tat
        return allowed_at - now

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` tokens if they are available right now; never waits."""
        if n <= 0 or self._unlimited:
            return True
        now = self._clock()
        base = max(self._tat, now)
        if base + n / self.rate_per_s - max(self.burst, n) / self.rate_per_s > now:
            return False
        self._tat = base + n / self.rate_per_s
        return True

    async def acquire(self, n: float = 1) -> None:
        """Wait until ``n`` tokens are available and take them."""
        delay = self.reserve(n)
        if delay <= 0:
            return
        try:
            await self._sleep(delay)
        except asyncio.CancelledError:
            if not self._unlimited:
                self._tat -= n / self.rate_per_s  # give the slot back
            raise

    def hold(self, seconds: float) -> None:
        """Let nothing through for ``seconds`` from now (e.g. a gateway answered 429 Retry-After),
        and restart empty after that."""
        if seconds <= 0 or self._unlimited:
            return
        self._tat = max(self._tat, self._clock() + seconds + self.burst / self.rate_per_s)
