"""Clocks for tests of paced channels: time that runs faster than real time, shared by a gateway
(its ``clock``, ``monotonic`` and ``sleep``) and a fake provider (its ``clock``), so that minutes of
a robot's windows pass in seconds over a real socket."""

from __future__ import annotations

import asyncio
import time


class ScaledClock:
    """``scale`` seconds of this clock pass in each real second; ``wall()`` starts at ``wall0``."""

    def __init__(self, scale: float = 1.0, wall0: float = 1_780_000_000.0) -> None:
        self.scale = scale
        self.wall0 = wall0
        self._m0 = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._m0) * self.scale

    def wall(self) -> float:
        return self.wall0 + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)


class ManualClock:
    """Time that moves only when a sleeper sleeps (one sleeper at a time): instant and exact."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)
