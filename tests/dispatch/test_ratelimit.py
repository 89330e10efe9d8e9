"""TokenBucket with a virtual clock: no real sleeping anywhere."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import math
from collections.abc import Coroutine
from typing import Any

import pytest

from broadcast.dispatch.ratelimit import TokenBucket, default_burst


class VirtualTime:
    """A clock plus a ``sleep`` that parks the caller until virtual time reaches its deadline.
    ``run`` drives the tasks: when all are parked, time jumps to the earliest deadline."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self._parked: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._parked, (self.now + max(0.0, seconds), next(self._seq), fut))
        await fut

    async def run(self, *coros: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            for _ in range(10):
                await asyncio.sleep(0)
            if not self._parked:
                continue
            deadline = self._parked[0][0]
            self.now = max(self.now, deadline)
            while self._parked and self._parked[0][0] <= self.now:
                _, _, fut = heapq.heappop(self._parked)
                if not fut.done():
                    fut.set_result(None)
        for t in tasks:
            t.result()


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    stamps = sorted(stamps)
    return max(bisect.bisect_right(stamps, t + window - 1e-9) - i for i, t in enumerate(stamps))


def consume(vt: VirtualTime, bucket: TokenBucket, workers: int, per_worker: int, n: int = 1) -> list[float]:
    stamps: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            await bucket.acquire(n)
            stamps.extend([vt.now] * n)

    asyncio.run(vt.run(*(worker() for _ in range(workers))))
    return stamps


@pytest.mark.parametrize("rate", [50.0, 200.0, 1000.0, 5000.0])
def test_long_run_rate_and_windows_with_many_workers(rate: float) -> None:
    vt = VirtualTime()
    bucket = TokenBucket(rate, clock=vt, sleep=vt.sleep)
    start = vt.now
    seconds = 10 if rate <= 1000 else 3
    stamps = consume(vt, bucket, workers=64, per_worker=int(rate * seconds / 64) + 1)
    achieved = (len(stamps) - bucket.burst) / (max(stamps) - start)
    assert abs(achieved / rate - 1) < 0.005
    assert max_in_window(stamps) <= rate + bucket.burst


def test_default_burst_is_about_10ms_and_at_least_one() -> None:
    assert default_burst(50) == 1 and default_burst(1000) == 10 and default_burst(20_000) == 200
    assert TokenBucket(1000).burst == 10


def test_fresh_bucket_does_not_burst_a_whole_second() -> None:
    vt = VirtualTime()
    rate = 1000.0
    bucket = TokenBucket(rate, clock=vt, sleep=vt.sleep)
    stamps = consume(vt, bucket, workers=32, per_worker=100)
    first_second = [t for t in stamps if t < 100.0 + 1.0]
    assert len(first_second) <= rate + bucket.burst
    assert sum(1 for t in stamps if t == 100.0) == 1  # starts with one token, not a full bucket


def test_burst_honoured_after_idle() -> None:
    vt = VirtualTime()
    bucket = TokenBucket(100, burst=5, clock=vt, sleep=vt.sleep)
    vt.now += 60  # long idle: the bucket is full, but holds only `burst`
    assert bucket.tokens() == 5
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    vt.now += 0.01  # one token back
    assert bucket.try_acquire() and not bucket.try_acquire()
    vt.now += 60
    t0 = vt.now
    stamps = sorted(consume(vt, bucket, workers=10, per_worker=1))
    assert stamps[:5] == [t0] * 5  # the burst, at once
    assert stamps[5:] == pytest.approx([t0 + 0.01 * k for k in range(1, 6)])  # then the rate


def test_sequential_caller_gets_exact_spacing() -> None:
    vt = VirtualTime()
    bucket = TokenBucket(250, burst=1, clock=vt, sleep=vt.sleep)
    stamps = consume(vt, bucket, workers=1, per_worker=1001)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(stamps)}
    assert gaps == {0.004}


def test_late_wakeups_do_not_lower_the_rate() -> None:
    """Every sleep overshoots by 0.1 ms (as measured); the schedule must not drift."""
    now = [0.0]

    async def sloppy_sleep(seconds: float) -> None:
        now[0] += seconds + 0.0001

    bucket = TokenBucket(1000, clock=lambda: now[0], sleep=sloppy_sleep)

    async def go() -> None:
        for _ in range(10_000):
            await bucket.acquire()

    asyncio.run(go())
    assert 10_000 / now[0] == pytest.approx(1000, rel=0.005)


def test_n_greater_than_one() -> None:
    vt = VirtualTime()
    bucket = TokenBucket(1000, burst=10, clock=vt, sleep=vt.sleep)
    stamps = consume(vt, bucket, workers=8, per_worker=250, n=5)  # 10,000 messages in lumps of 5
    assert len(stamps) == 10_000
    achieved = (len(stamps) - bucket.burst) / (max(stamps) - 100.0)
    assert abs(achieved / 1000 - 1) < 0.005
    assert max_in_window(stamps) <= 1000 + bucket.burst


def test_lump_bigger_than_burst_goes_into_debt() -> None:
    vt = VirtualTime()
    bucket = TokenBucket(100, burst=2, clock=vt, sleep=vt.sleep, initial_tokens=2)

    async def go() -> None:
        await bucket.acquire(50)  # full bucket: allowed at once, then 0.48 s of debt
        assert vt.now == 100.0 and bucket.tokens() == pytest.approx(-48)
        await bucket.acquire(1)
        assert vt.now == pytest.approx(100.0 + 0.49)

    asyncio.run(vt.run(go()))


def test_cancelled_waiter_gives_its_slot_back() -> None:
    vt = VirtualTime()
    bucket = TokenBucket(10, burst=1, clock=vt, sleep=vt.sleep)

    async def go() -> None:
        await bucket.acquire()  # the initial token
        waiter = asyncio.ensure_future(bucket.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await bucket.acquire()
        assert vt.now == pytest.approx(100.1)  # the cancelled slot was reused

    asyncio.run(vt.run(go()))


def test_hold_blocks_everyone() -> None:
    vt = VirtualTime()
    bucket = TokenBucket(100, clock=vt, sleep=vt.sleep)

    async def go() -> None:
        await bucket.acquire()
        bucket.hold(2.0)
        await bucket.acquire()
        assert vt.now >= 102.0

    asyncio.run(vt.run(go()))


def test_invalid_arguments_and_unlimited() -> None:
    for bad in (0, -1, math.nan):
        with pytest.raises(ValueError):
            TokenBucket(bad)
    with pytest.raises(ValueError):
        TokenBucket(10, burst=0.5)
    unlimited = TokenBucket(math.inf)
    asyncio.run(unlimited.acquire(10**6))
    assert unlimited.try_acquire(10**9)


def test_real_clock_smoke() -> None:
    """The defaults (time.monotonic, asyncio.sleep) work: 20 acquisitions at 2000/s take ~10 ms."""
    import time

    bucket = TokenBucket(2000)

    async def go() -> float:
        t0 = time.monotonic()
        for _ in range(21):
            await bucket.acquire()
        return time.monotonic() - t0

    elapsed = asyncio.run(go())
    assert 0.008 <= elapsed < 0.5
