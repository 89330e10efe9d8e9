"""The per-address pacer on a manual clock: windows never overfilled, first come first served, a
throttle hold, the give-back when the wait is too long, and a place moved to its answer."""

from __future__ import annotations

import asyncio

import pytest

from broadcast.gateways.base import AddressRate
from broadcast.gateways.pacing import Pacer, margin_s
from tests.helpers.clocks import ManualClock

MINUTE = AddressRate(20, 60.0)


def most_in_any_window(times: list[float], per_s: float) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + per_s) for t in times), default=0)


def test_65_sends_to_one_robot_from_8_senders_keep_20_a_minute() -> None:
    clock = ManualClock()
    pacer = Pacer([MINUTE], clock, clock.sleep)
    taken: list[tuple[int, float]] = []

    async def sender(queue: asyncio.Queue[int]) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            wait, at = await pacer.acquire(["城南"])
            assert wait is None
            taken.append((n, at))
            await asyncio.sleep(0)
            pacer.settle(["城南"], at)  # answered
            await asyncio.sleep(0)

    async def go() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(65):
            queue.put_nowait(n)
        await asyncio.gather(*(sender(queue) for _ in range(8)))

    start = clock.now
    asyncio.run(go())
    times = [at for _, at in taken]
    assert len(times) == 65
    assert most_in_any_window(times, 60.0 + margin_s(60.0)) == 20
    # 65 = 20 + 20 + 20 + 5: the last ones leave three windows after the first
    assert 3 * 61.2 <= max(times) - start < 3 * 61.2 + 1
    # first come, first served: the sends leave in the order they asked
    assert [n for n, _ in taken] == sorted(n for n, _ in taken)


def test_robots_do_not_wait_for_each_other() -> None:
    clock = ManualClock()
    pacer = Pacer([MINUTE], clock, clock.sleep)

    async def go() -> list[float]:
        out = []
        for branch in range(65):
            wait, at = await pacer.acquire([f"branch-{branch}"])
            assert wait is None
            out.append(at)  # none answered yet: another robot's sends in flight hold nobody
        return out

    times = asyncio.run(go())
    assert set(times) == {clock.now} and clock.slept == []


def test_two_windows_each_hold() -> None:
    clock = ManualClock()
    pacer = Pacer([AddressRate(5, 1.0), AddressRate(100, 60.0)], clock, clock.sleep)

    async def go() -> list[float]:
        out = []
        for _ in range(130):
            _, at = await pacer.acquire(["bot"])
            pacer.settle(["bot"], at)
            out.append(at)
        return out

    times = asyncio.run(go())
    assert most_in_any_window(times, 1.0 + margin_s(1.0)) == 5
    assert most_in_any_window(times, 60.0 + margin_s(60.0)) == 100


def test_a_wait_longer_than_allowed_takes_nothing() -> None:
    clock = ManualClock()
    pacer = Pacer([MINUTE], clock, clock.sleep)

    async def go() -> tuple[float | None, float]:
        for _ in range(20):
            pacer.settle(["r"], (await pacer.acquire(["r"]))[1])
        return await pacer.acquire(["r"], max_wait_s=30)

    wait, _ = asyncio.run(go())
    assert wait is not None and 61 < wait < 62 and clock.slept == []
    assert pacer.wait_s(["r"]) == wait  # nothing was taken by the refused call


def test_hold_and_settle() -> None:
    clock = ManualClock()
    pacer = Pacer([AddressRate(1, 10.0)], clock, clock.sleep)
    pacer.hold("r", 60)
    assert pacer.wait_s(["r"]) == 60
    clock.now += 60
    taken = pacer.take(["r"])
    clock.now += 5  # the answer came 5 s later: the provider may have counted it then
    pacer.settle(["r"], taken)
    assert pacer.wait_s(["r"]) == pytest.approx(10 + margin_s(10))


def test_keys_are_taken_together_for_a_multi_recipient_request() -> None:
    clock = ManualClock()
    pacer = Pacer([AddressRate(2, 60.0)], clock, clock.sleep)

    async def go() -> None:
        pacer.settle(["a", "b"], (await pacer.acquire(["a", "b"]))[1])
        pacer.settle(["b", "c"], (await pacer.acquire(["b", "c"]))[1])
        wait, _ = await pacer.acquire(["a", "b"], max_wait_s=0)  # b is full, a is not
        assert wait is not None and wait > 60
        await pacer.acquire(["a", "c"])

    asyncio.run(go())
    assert clock.slept == []


def test_a_send_in_flight_counts_as_arriving_now() -> None:
    clock = ManualClock()
    pacer = Pacer([AddressRate(2, 1.0)], clock, clock.sleep)
    first, second = pacer.take(["bot"]), pacer.take(["bot"])
    clock.now += 30  # both still unanswered: the provider may count them any moment
    assert pacer.wait_s(["bot"]) == pytest.approx(1.05)
    pacer.settle(["bot"], first)
    clock.now += 0.5
    pacer.settle(["bot"], second)
    assert pacer.wait_s(["bot"]) == pytest.approx(0.55)  # from the first answer

    async def go() -> None:
        a = pacer.take(["bot"])  # one in flight again: the next waits, looking again every margin
        clock.now += 0.55
        task = asyncio.ensure_future(pacer.acquire(["bot"]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        pacer.settle(["bot"], a)
        await task

    asyncio.run(go())
    assert clock.slept and all(s <= 1.05 for s in clock.slept)
