"""The send policies on their own, without a send loop: the error storm (auto-pause), the failover
choice, the per-number cap's day and the delivery deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

from pydantic_settings import BaseSettings

from broadcast.dispatch.policies import (
    MIN_PAUSE_SAMPLES,
    ErrorStorm,
    Failover,
    FailureAction,
    PerNumberCap,
    account_refusal,
    lower,
)
from broadcast.gateways.base import Capabilities, Gateway, Outcome, SendItem, SendResult

OK = SendResult(1, Outcome.ACCEPTED)
DOWN = SendResult(1, Outcome.RETRYABLE, code="503", detail="Service Unavailable")
DEAD = SendResult(1, Outcome.PERMANENT, code="INVALID_NUMBER", detail="no such number", recipient_fault=True)
AUTH = SendResult(1, Outcome.PERMANENT, code="401", detail="bad key", pause=True)


def test_lower_ignores_unset_limits() -> None:
    assert lower(None, 5, 3) == 3 and lower(None, None) is None and lower(7) == 7 and lower(0, 4) == 4


def test_dead_numbers_never_make_a_storm() -> None:
    """Ten refused numbers first, then healthy answers: never a reason to pause."""
    storm = ErrorStorm(window=20, max_error_rate=0.5)
    for _ in range(10):
        assert storm.observe([DEAD]) is None
    for _ in range(30):
        assert storm.observe([OK]) is None
    assert storm.observe([DEAD] * 50) is None


def test_a_real_storm_pauses_once_enough_attempts_are_counted() -> None:
    storm = ErrorStorm(window=20, max_error_rate=0.5)
    reasons = [storm.observe([DOWN]) for _ in range(MIN_PAUSE_SAMPLES)]
    assert reasons[:-1] == [None] * (MIN_PAUSE_SAMPLES - 1)  # too few counted to judge
    assert reasons[-1] == f"{MIN_PAUSE_SAMPLES} of the last {MIN_PAUSE_SAMPLES} attempts failed (last: 503 Service Unavailable)"


def test_the_storm_counts_the_recent_window_only() -> None:
    storm = ErrorStorm(window=10, max_error_rate=0.5)
    for _ in range(5):
        storm.observe([DOWN])
    for _ in range(10):  # the failures slide out of the window
        assert storm.observe([OK]) is None
    for _ in range(5):
        assert storm.observe([DOWN]) is None  # 5 of 10: not over half
    assert storm.observe([DOWN]) is not None  # 6 of 10


def test_dead_numbers_mixed_into_a_storm_do_not_hide_it() -> None:
    storm = ErrorStorm(window=20, max_error_rate=0.5)
    reason = None
    for _ in range(MIN_PAUSE_SAMPLES):
        reason = storm.observe([DEAD, DOWN, DEAD])
    assert reason is not None and "(last: 503" in reason  # the last counted failure, not the dead number


def test_a_small_window_judges_after_the_whole_window() -> None:
    storm = ErrorStorm(window=3, max_error_rate=0.5)
    assert storm.observe([DOWN]) is None and storm.observe([DOWN]) is None
    assert storm.observe([DOWN]) == "3 of the last 3 attempts failed (last: 503 Service Unavailable)"


def test_two_failures_of_the_first_three_are_no_storm() -> None:
    """A faulty moment right after a restart (a reset, then a 500, in big batches) is no storm:
    judging early takes three failed requests (the soak test paused a message on "2 of the last 3")."""
    storm = ErrorStorm(window=50, max_error_rate=0.5)
    assert [storm.observe(batch) for batch in ([DOWN] * 50, [OK] * 50, [DOWN] * 50)] == [None, None, None]
    assert storm.observe([DOWN] * 50) == "3 of the last 4 attempts failed (last: 503 Service Unavailable)"


def test_account_refusal_reason() -> None:
    assert account_refusal([OK, DEAD, DOWN]) is None
    assert account_refusal([OK, AUTH]) == "the gateway refused the account: 401 bad key"


class _Settings(BaseSettings):
    pass


def _gateway(name: str) -> Gateway:
    class G(Gateway):
        capabilities: ClassVar[Capabilities] = Capabilities(name=name)
        settings_class = _Settings

        async def send(self, batch: list[SendItem]) -> list[SendResult]:  # type: ignore[override]
            return []

    return G(_Settings())


def test_failover_goes_down_the_list_then_pauses() -> None:
    a, b, c = _gateway("a"), _gateway("b"), _gateway("c")
    chain = Failover(a, [b, c])
    assert chain.decide(None) is FailureAction.FAILOVER and chain.decide("a") is FailureAction.FAILOVER
    assert chain.advance() is b and chain.current_name == "b"
    assert chain.decide("a") is FailureAction.IGNORE  # a late answer of the gateway already left
    assert chain.decide("b") is FailureAction.FAILOVER
    assert chain.advance() is c
    assert chain.decide("c") is FailureAction.PAUSE and chain.decide("b") is FailureAction.IGNORE


def test_a_single_gateway_pauses() -> None:
    assert Failover(_gateway("only")).decide("only") is FailureAction.PAUSE


def test_the_cap_day_is_the_local_day() -> None:
    cap = PerNumberCap(3, "Asia/Shanghai")
    # 2026-11-27 17:30 UTC is 01:30 on the 28th in Shanghai: the day began at 16:00 UTC on the 27th
    assert cap.day_start(datetime(2026, 11, 27, 17, 30, tzinfo=UTC)) == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert cap.day_start(datetime(2026, 11, 27, 15, 59, tzinfo=UTC)) == datetime(2026, 11, 26, 16, 0, tzinfo=UTC)


def test_the_cap_in_force_is_the_lower_one(ws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from broadcast.config import load_settings

    caps = Capabilities(name="x", per_number_daily_cap=5)
    assert PerNumberCap.in_force(load_settings(), Capabilities(name="x")) is None
    assert PerNumberCap.in_force(load_settings(), caps) == PerNumberCap(5, load_settings().timezone)
    monkeypatch.setenv("BROADCAST_MAX_PER_NUMBER_PER_DAY", "2")
    got = PerNumberCap.in_force(load_settings(), caps)
    assert got is not None and got.limit == 2


def test_deadlines_from_the_first_queued_delivery() -> None:
    from broadcast.dispatch.policies import Deadlines

    at = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    d = Deadlines({7: at})
    assert not d.passed(7, at - timedelta(seconds=1)) and d.passed(7, at) and not d.passed(8, at)


def test_one_failed_batch_request_is_one_failure() -> None:
    """A 500 to a request of 50 recipients is one failed request, not 50 failed attempts."""
    storm = ErrorStorm(window=50, max_error_rate=0.5)
    assert storm.observe([DOWN] * 50) is None
    for _ in range(5):
        assert storm.observe([OK] * 50) is None
    assert storm.observe([DOWN] * 50) is None  # 2 of 7 requests
    assert storm.observe([OK] * 49 + [DOWN]) is None  # one answer of many: a per-item matter
    storm = ErrorStorm(window=50, max_error_rate=0.5)
    assert storm.observe([DOWN] * 200) is None and storm.observe([DOWN] * 200) is None
    assert storm.observe([DOWN] * 200) == "3 of the last 3 attempts failed (last: 503 Service Unavailable)"


def test_throttling_counts_only_once_the_retries_are_spent() -> None:
    throttled = SendResult(1, Outcome.RETRYABLE, code="429", detail="slow down", retry_after_s=1.0)
    storm = ErrorStorm(window=20, max_error_rate=0.5)
    for _ in range(30):
        assert storm.observe([throttled], [False]) is None  # retries left: no observation
    reasons = [storm.observe([throttled], [True]) for _ in range(MIN_PAUSE_SAMPLES)]
    assert reasons[-1] == f"{MIN_PAUSE_SAMPLES} of the last {MIN_PAUSE_SAMPLES} attempts failed (last: 429 slow down)"


def test_the_drill_clock_keeps_running_across_a_workers_passes(ws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With BROADCAST_NOW frozen, a worker's later pass must see the time a retry was scheduled
    for come due: the clock runs on from the first pass instead of restarting at the setting."""
    import asyncio
    import time

    from broadcast.dispatch.dispatcher import Dispatcher

    monkeypatch.setenv("BROADCAST_NOW", "2026-12-01T07:30:00+08:00")
    start = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    dispatcher = Dispatcher(ws, _gateway("mock"), kind="worker")
    try:
        asyncio.run(dispatcher.run_pass(wait_for_retries=False))
        time.sleep(0.3)
        asyncio.run(dispatcher.run_pass(wait_for_retries=False))
        assert dispatcher.now() >= start + timedelta(seconds=0.3)
        monkeypatch.setenv("BROADCAST_NOW", "2026-12-01T09:00:00+08:00")  # a new setting moves the clock
        asyncio.run(dispatcher.run_pass(wait_for_retries=False))
        assert start + timedelta(minutes=90) <= dispatcher.now() < start + timedelta(minutes=91)
    finally:
        dispatcher.close()
