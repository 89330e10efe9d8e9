"""The simulator: deterministic with a seed, rates roughly as configured, receipts after the delay."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from broadcast.gateways.base import Outcome, SendItem, SendResult
from broadcast.gateways.simulator import SimulatorGateway, SimulatorSettings


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gateway(t: FakeTime | None = None, **settings: Any) -> SimulatorGateway:
    t = t or FakeTime()
    return SimulatorGateway(SimulatorSettings(**settings), clock=t, sleep=t.sleep)


def batch(n: int, start: int = 1) -> list[SendItem]:
    return [SendItem(i, f"+86138{i:08d}", "早安") for i in range(start, start + n)]


def run_batches(gw: SimulatorGateway, items: list[SendItem], size: int = 100) -> list[SendResult]:
    async def go() -> list[SendResult]:
        out: list[SendResult] = []
        for i in range(0, len(items), size):
            out += await gw.send(items[i : i + size])
        return out

    return asyncio.run(go())


def test_same_seed_same_outcomes() -> None:
    settings: dict[str, Any] = {"seed": 42, "failure_rate": 0.1, "throttle_rate": 0.1}
    a = run_batches(gateway(**settings), batch(1000))
    b = run_batches(gateway(**settings), batch(1000))
    c = run_batches(gateway(**{**settings, "seed": 43}), batch(1000))
    assert a == b
    assert [r.outcome for r in a] != [r.outcome for r in c]


def test_outcome_depends_on_delivery_and_attempt_not_batching() -> None:
    settings: dict[str, Any] = {"seed": 7, "failure_rate": 0.2, "throttle_rate": 0.2}
    big = run_batches(gateway(**settings), batch(300), size=100)
    small = run_batches(gateway(**settings), batch(300), size=7)
    assert big == small
    gw = gateway(**settings)
    first = run_batches(gw, batch(300))
    second = run_batches(gw, batch(300))  # attempt 2 draws again
    assert [r.outcome for r in first] != [r.outcome for r in second]
    assert all(r.provider_id.endswith("-2") for r in second if r.provider_id)


def test_rates_roughly_as_configured() -> None:
    results = run_batches(gateway(seed=1, failure_rate=0.05, throttle_rate=0.1, throttle_retry_after_s=2), batch(20_000))
    counts = Counter(r.outcome for r in results)
    assert 0.04 < counts[Outcome.PERMANENT] / 20_000 < 0.06
    assert 0.09 < counts[Outcome.RETRYABLE] / 20_000 < 0.11
    throttled = next(r for r in results if r.outcome is Outcome.RETRYABLE)
    assert throttled.retry_after_s == 2 and throttled.code == "throttled" and not throttled.maybe_sent
    failed = next(r for r in results if r.outcome is Outcome.PERMANENT)
    assert failed.code == "EMPTY_NUMBER" and "空号" in (failed.detail or "")


def test_latency_per_request_and_invalid_numbers() -> None:
    t = FakeTime()
    gw = gateway(t, seed=1, latency_ms=35, failure_rate=0)
    results = asyncio.run(gw.send([SendItem(1, "13800000000", "x"), SendItem(2, "+8613800000000", "x")]))
    assert t.slept == [0.035]
    assert results[0].outcome is Outcome.PERMANENT and results[0].code == "INVALID_NUMBER"
    assert results[1].outcome is Outcome.ACCEPTED and results[1].provider_id == "sim-2-1"
    assert asyncio.run(gw.send([])) == [] and t.slept == [0.035]


def test_receipts_arrive_after_the_delay_once() -> None:
    t = FakeTime()
    gw = gateway(t, seed=3, latency_ms=0, failure_rate=0, receipt_delay_ms=200, undelivered_rate=0.1)

    async def go() -> None:
        accepted = await gw.send(batch(100))
        assert await gw.fetch_receipts() == []
        t.now += 0.199
        assert await gw.fetch_receipts() == []
        t.now += 0.002
        receipts = await gw.fetch_receipts()
        assert len(receipts) == 100 and await gw.fetch_receipts() == []
        assert {r.delivery_id for r in receipts} == set(range(1, 101))
        assert {r.provider_id for r in receipts} == {r.provider_id for r in accepted}
        statuses = Counter(r.status for r in receipts)
        assert statuses["failed"] >= 1 and statuses["delivered"] >= 80
        assert all(r.at.tzinfo is not None for r in receipts)
        assert {r.code for r in receipts if r.status == "failed"} == {"UNDELIV"}

    asyncio.run(go())


def test_receipts_only_for_accepted_and_in_order() -> None:
    t = FakeTime()
    gw = gateway(t, seed=5, latency_ms=0, failure_rate=0.5, receipt_delay_ms=100)

    async def go() -> None:
        first = await gw.send(batch(50))
        t.now += 0.05
        second = await gw.send(batch(50, start=51))
        t.now += 0.06  # only the first batch is due
        early = await gw.fetch_receipts()
        assert {r.delivery_id for r in early} == {r.delivery_id for r in first if r.outcome is Outcome.ACCEPTED}
        t.now += 1
        late = await gw.fetch_receipts()
        assert {r.delivery_id for r in late} == {r.delivery_id for r in second if r.outcome is Outcome.ACCEPTED}
        assert [r.at for r in early + late] == sorted(r.at for r in early + late)

    asyncio.run(go())


def test_query_answers_from_memory() -> None:
    gw = gateway(seed=1, latency_ms=0, failure_rate=0)
    items = batch(2)
    asyncio.run(gw.send(items[:1]))
    known, unknown = asyncio.run(gw.query(items))
    assert known is not None and known.outcome is Outcome.ACCEPTED and known.provider_id == "sim-1-1"
    assert unknown is None


def test_default_settings_from_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("BROADCAST_SIMULATOR_LATENCY_MS", "5")
    monkeypatch.setenv("BROADCAST_SIMULATOR_SEED", "9")
    s = SimulatorSettings()
    assert s.latency_ms == 5 and s.seed == 9 and s.failure_rate == 0.02 and s.throttle_rate == 0.0
    assert s.receipt_delay_ms == 200 and s.undelivered_rate == 0.01
    assert gateway(failure_rate=0.7, throttle_rate=0.5).check()


def test_refused_numbers_are_recipient_faults_and_throttling_is_not() -> None:
    results = run_batches(gateway(seed=1, failure_rate=0.1, throttle_rate=0.1), batch(2_000))
    assert all(r.recipient_fault is (r.outcome is Outcome.PERMANENT) for r in results)
    assert any(r.outcome is Outcome.RETRYABLE for r in results)  # throttled: about the gateway
    (invalid,) = asyncio.run(gateway(seed=1).send([SendItem(1, "13800000000", "x")]))
    assert invalid.code == "INVALID_NUMBER" and invalid.recipient_fault


def test_dead_numbers_are_always_empty_numbers() -> None:
    dead = ["+8613800000002", "+8613800000005"]
    gw = gateway(seed=1, failure_rate=0, dead_numbers=" , ".join(dead) + ",")
    for _ in range(3):  # every attempt
        results = run_batches(gw, batch(6))
        assert {r.delivery_id for r in results if r.outcome is Outcome.PERMANENT} == {2, 5}
        assert all(r.code == "EMPTY_NUMBER" and r.recipient_fault for r in results if r.delivery_id in (2, 5))
    assert SimulatorSettings(dead_numbers="").dead() == frozenset()


def test_dead_numbers_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("BROADCAST_SIMULATOR_DEAD_NUMBERS", "+8613800000001,+8613800000009")
    assert SimulatorSettings().dead() == {"+8613800000001", "+8613800000009"}
