"""The gateway contract kit: every built-in gateway goes through the same checks.

A new gateway joins by adding a ``Case``: how to build it when all is well, and when its
provider or transport is failing. Every built-in must have a case (``test_every_builtin_has_a_case``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic_settings import BaseSettings

from broadcast.gateways import registry
from broadcast.gateways.base import (
    Capabilities,
    Gateway,
    Outcome,
    Receipt,
    SendItem,
    SendResult,
    make_client,
)
from broadcast.gateways.console import ConsoleGateway, ConsoleSettings
from broadcast.gateways.http import HttpGateway, HttpSettings
from broadcast.gateways.simulator import SimulatorGateway, SimulatorSettings


def _ok_http(request: httpx.Request) -> httpx.Response:
    import json

    body = json.loads(request.content)
    if "messages" in body:
        return httpx.Response(200, json={"results": [{"id": m["id"], "status": "accepted", "provider_id": "p" + m["id"]} for m in body["messages"]]})
    return httpx.Response(200, json={"id": "p" + body["id"]})


def _broken_http(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset by peer", request=request)


def _http(handler: Callable[[httpx.Request], httpx.Response], batch: int = 1) -> Gateway:
    client = make_client(2, 4, transport=httpx.MockTransport(handler))
    return HttpGateway(HttpSettings(url="https://sms.example.com/send", batch=batch), client)


async def _instant(_: float) -> None:
    return None


@dataclass
class Case:
    name: str
    healthy: Callable[[], Gateway]  # every send accepted
    failing: Callable[[], Gateway]  # provider/transport failing: nothing accepted, nothing raised


CASES = [
    Case(
        "simulator",
        lambda: SimulatorGateway(SimulatorSettings(seed=1, latency_ms=0, failure_rate=0), sleep=_instant),
        lambda: SimulatorGateway(SimulatorSettings(seed=1, latency_ms=0, failure_rate=0.5, throttle_rate=0.5), sleep=_instant),
    ),
    Case("console", lambda: ConsoleGateway(ConsoleSettings(), writer=lambda line: None), lambda: ConsoleGateway(ConsoleSettings(), writer=lambda line: None)),
    Case("http", lambda: _http(_ok_http), lambda: _http(_broken_http)),
    Case("http-batch", lambda: _http(_ok_http, batch=25), lambda: _http(_broken_http, batch=25)),
]
IDS = [c.name for c in CASES]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sample(gateway: Gateway, n: int | None = None) -> list[SendItem]:
    n = n or min(gateway.capabilities.max_batch, 30)
    return [SendItem(1000 + 7 * i, f"+86137{i:08d}", f"【测试】第{i}条 text") for i in range(n)]


async def _send_and_close(gateway: Gateway, items: list[SendItem]) -> list[SendResult]:
    try:
        return await gateway.send(items)
    finally:
        await gateway.aclose()
        await gateway.aclose()  # idempotent


def all_cases() -> list[Case]:
    """These cases and the ones each gateway's own test module runs the kit over."""
    from tests.gateways import test_aliyun, test_kannel, test_tencent, test_twilio

    return [*CASES, *test_aliyun.CASES, *test_tencent.CASES, *test_twilio.CASES, test_kannel.KANNEL_CASE]


def test_every_builtin_has_a_case() -> None:
    assert set(registry.BUILTINS) <= {c.name for c in all_cases()}


def test_builtins_match_the_entry_points() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert registry.BUILTINS == pyproject["project"]["entry-points"][registry.GROUP]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_declares_capabilities_and_settings(case: Case) -> None:
    gateway = case.healthy()
    cls = type(gateway)
    assert isinstance(cls.capabilities, Capabilities) and isinstance(gateway.capabilities, Capabilities)
    assert case.name.startswith(cls.capabilities.name)
    assert registry.load(cls.capabilities.name) is cls
    caps = gateway.capabilities
    assert caps.max_batch >= 1 and caps.description
    assert caps.max_per_second is None or caps.max_per_second > 0
    assert issubclass(cls.settings_class, BaseSettings)
    assert str(cls.settings_class.model_config.get("env_prefix", "")).startswith("BROADCAST_")
    assert isinstance(gateway.check(), list)
    run(gateway.aclose())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_one_result_per_item_in_order(case: Case) -> None:
    gateway = case.healthy()
    items = sample(gateway)
    results = run(_send_and_close(gateway, items))
    assert [r.delivery_id for r in results] == [i.delivery_id for i in items]
    assert all(isinstance(r, SendResult) and r.outcome is Outcome.ACCEPTED for r in results)
    assert all(r.provider_id for r in results)
    assert not any(r.maybe_sent or r.pause for r in results)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_more_than_max_batch_is_split_not_dropped(case: Case) -> None:
    gateway = case.healthy()
    items = sample(gateway, gateway.capabilities.max_batch * 2 + 1)
    results = run(_send_and_close(gateway, items))
    assert [r.delivery_id for r in results] == [i.delivery_id for i in items]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_failures_are_classified_never_raised(case: Case) -> None:
    gateway = case.failing()
    items = sample(gateway)
    results = run(_send_and_close(gateway, items))
    assert [r.delivery_id for r in results] == [i.delivery_id for i in items]
    for r in results:
        assert isinstance(r.outcome, Outcome)
        if r.outcome is not Outcome.ACCEPTED:
            assert r.code, r
        if r.maybe_sent:
            assert r.outcome is Outcome.RETRYABLE
        assert r.retry_after_s is None or r.retry_after_s >= 0
    if case.name != "console":
        assert all(r.outcome is not Outcome.ACCEPTED for r in results)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_empty_batch_query_and_receipts(case: Case) -> None:
    gateway = case.healthy()

    async def go() -> None:
        assert await gateway.send([]) == []
        items = sample(gateway, 3)
        answers = await gateway.query(items)
        assert len(answers) == 3 and all(a is None or a.delivery_id == i.delivery_id for a, i in zip(answers, items))
        receipts = await gateway.fetch_receipts()
        assert isinstance(receipts, list) and all(isinstance(r, Receipt) for r in receipts)
        await gateway.aclose()

    run(go())


def test_results_and_items_are_immutable() -> None:
    result = SendResult(1, Outcome.ACCEPTED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.outcome = Outcome.PERMANENT  # type: ignore[misc]
    assert Outcome("retryable") is Outcome.RETRYABLE and str(Outcome.PERMANENT) == "permanent"


def test_console_prints_what_would_be_sent(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    gateway = ConsoleGateway(ConsoleSettings(), writer=lines.append)
    (result,) = run(gateway.send([SendItem(42, "+8613800000000", "早安\n第二行")]))
    assert result.outcome is Outcome.ACCEPTED and result.provider_id == "console-42"
    assert lines == ["[console] #42 → +8613800000000: 早安⏎第二行"]
    run(ConsoleGateway(ConsoleSettings()).send([SendItem(1, "+8613800000001", "hi")]))
    captured = capsys.readouterr()
    assert "+8613800000001: hi" in captured.err and captured.out == ""
