"""Per-address pacing: at most ``count`` messages to one address (a robot, a user) in any ``per_s``
seconds, kept by the gateway itself, with an injectable clock and sleep.

The dispatcher's rate limit (``dispatch/shared_rate.py``) is one bucket per gateway; a group chat's
robot has a limit of its own (20 a minute), which no gateway-wide rate can express without
holding back the other 64 branches' robots. ``Pacer.acquire(keys)`` waits until every key has room
in each of its windows and takes it (no ``await`` between the check and the take; senders to one
key are served in the order they came).

A provider counts a request when it arrives, somewhere between its leaving and its answer. So a
request is counted as arriving *now* for as long as it is in flight, and at the moment of its
answer once ``settle`` is told (a first request's TLS handshake can take a good part of a second,
and Feishu's 5-a-second window is shorter than a slow answer). The windows are also a little longer
than declared (``margin_s``). ``hold(key, s)`` keeps a key closed after the provider said it is
throttled. The pace is kept per process: two processes posting through one robot at once are held
back by the robot's own throttle answers.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from broadcast.gateways.base import AddressRate

__all__ = ["Pacer", "margin_s"]


def margin_s(per_s: float) -> float:
    """How much longer than declared a window is kept: 2 % and at least 50 ms (1.2 s a minute)."""
    return max(0.05, per_s * 0.02)


class Pacer:
    """Sliding windows per key; ``clock`` is monotonic seconds, ``sleep`` waits that long."""

    def __init__(self, rates: Sequence[AddressRate], clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rates = tuple(rates)
        self.clock = clock
        self.sleep = sleep
        self._sent: dict[tuple[str, int], list[float]] = {}  # answered sends, sorted times
        self._in_flight: dict[str, int] = {}  # taken, not yet answered: arriving "now"
        self._held: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _wait(self, keys: Iterable[str]) -> tuple[float, float]:
        """(seconds until every key has room, how long to sleep before looking again)."""
        now = self.clock()
        wait = nap = 0.0
        for key in keys:
            held = self._held.get(key, now) - now
            wait, nap = max(wait, held), max(nap, held)
            flying = self._in_flight.get(key, 0)
            for i, rate in enumerate(self.rates):
                window = rate.per_s + margin_s(rate.per_s)
                sent = self._sent.setdefault((key, i), [])
                old = bisect.bisect_right(sent, now - window)
                if old:
                    del sent[:old]
                over = len(sent) + flying - rate.count
                if over < 0:
                    continue
                if over < len(sent):  # an answered send leaves the window then
                    due = sent[over] + window - now
                    wait, nap = max(wait, due), max(nap, due)
                else:  # only a send still in flight is in the way: look again when it may be answered
                    wait, nap = max(wait, window), max(nap, min(window, margin_s(rate.per_s)))
        return max(0.0, wait), max(0.0, nap)

    def wait_s(self, keys: Iterable[str]) -> float:
        """Seconds until every key has room in all its windows (0: now), counting the sends in
        flight as arriving now."""
        return self._wait(keys)[0]

    def take(self, keys: Iterable[str]) -> float:
        """One send to each key leaves now (in flight until ``settle``); returns the moment."""
        for key in keys:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return self.clock()

    def settle(self, keys: Iterable[str], taken: float) -> None:
        """The send taken at ``taken`` was answered (or given up on) now: it counts from now."""
        now = max(self.clock(), taken)
        for key in keys:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)
            for i, _ in enumerate(self.rates):
                bisect.insort(self._sent.setdefault((key, i), []), now)

    async def acquire(self, keys: Sequence[str], max_wait_s: float | None = None) -> tuple[float | None, float]:
        """Wait for room for one send to every key and take it: ``(None, taken)``; the caller
        must ``settle(keys, taken)`` once the send is answered or given up. When the wait would be
        longer than ``max_wait_s`` (from the call): ``(wait, 0)``, nothing taken. Senders to a key
        are served in the order they came (a lock per key, taken in one order)."""
        deadline = None if max_wait_s is None else self.clock() + max_wait_s
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self._locks.setdefault(key, asyncio.Lock()))
            while True:
                wait, nap = self._wait(keys)
                if wait <= 0:
                    return None, self.take(keys)
                if deadline is not None and self.clock() + nap > deadline:
                    return wait, 0.0
                await self.sleep(nap)

    def hold(self, key: str, seconds: float) -> None:
        """The provider throttled ``key``: nothing more to it for ``seconds`` from now."""
        until = self.clock() + seconds
        self._held[key] = max(self._held.get(key, until), until)
