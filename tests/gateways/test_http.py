"""The http gateway against httpx.MockTransport: every answer and transport error mapped."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from broadcast.errors import ConfigError
from broadcast.gateways.base import (
    Outcome,
    SendItem,
    SendResult,
    make_client,
    parse_retry_after,
)
from broadcast.gateways.http import HttpGateway, HttpSettings, parse_headers
from broadcast.gateways.registry import create

URL = "https://sms.example.com/send"
Handler = Callable[[httpx.Request], httpx.Response]


def items(n: int = 1, start: int = 1) -> list[SendItem]:
    return [SendItem(i, f"+8613800000{i:03d}", f"早上好 {i}") for i in range(start, start + n)]


def send(handler: Handler, to_send: list[SendItem], **settings: Any) -> tuple[list[SendResult], list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    async def go() -> list[SendResult]:
        async with make_client(5, 4, transport=httpx.MockTransport(record)) as client:
            gateway = HttpGateway(HttpSettings(url=URL, **settings), client)
            try:
                return await gateway.send(to_send)
            finally:
                await gateway.aclose()

    return asyncio.run(go()), seen


def one(handler: Handler, **settings: Any) -> SendResult:
    results, _ = send(handler, items(1), **settings)
    assert len(results) == 1 and results[0].delivery_id == 1
    return results[0]


def raiser(exc_type: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return handler


# -- request shape ---------------------------------------------------------------------------


def test_single_request_body_and_headers() -> None:
    _, seen = send(lambda r: httpx.Response(200, json={"id": "p1"}), items(1), headers="Authorization: Bearer s3cret; X-App: bc")
    (request,) = seen
    assert request.method == "POST" and str(request.url) == URL
    assert json.loads(request.content) == {"id": "1", "to": "+8613800000001", "text": "早上好 1"}
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-app"] == "bc"
    assert request.headers["content-type"].startswith("application/json")
    assert "早上好".encode() in request.content  # UTF-8, not \\u escapes


def test_batch_request_body_and_chunking() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        msgs = json.loads(request.content)["messages"]
        return httpx.Response(200, json={"results": [{"id": m["id"], "status": "accepted", "provider_id": "p" + m["id"]} for m in msgs]})

    results, seen = send(handler, items(5), batch=2)
    assert [len(json.loads(r.content)["messages"]) for r in seen] == [2, 2, 1]
    assert json.loads(seen[0].content)["messages"][0] == {"id": "1", "to": "+8613800000001", "text": "早上好 1"}
    assert [r.delivery_id for r in results] == [1, 2, 3, 4, 5]
    assert [r.provider_id for r in results] == ["p1", "p2", "p3", "p4", "p5"]
    assert all(r.outcome is Outcome.ACCEPTED for r in results)


def test_headers_as_json_object() -> None:
    assert parse_headers('{"X-Key": "abc", "X-N": 3}') == {"X-Key": "abc", "X-N": "3"}
    assert parse_headers("") == {}
    for bad in ("no colon here", '{"a": ', "Bad Name: x", "[1]"):
        with pytest.raises(ValueError):
            parse_headers(bad)


def test_bad_settings_become_config_errors_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="BROADCAST_HTTP_URL"):
        create("http")
    monkeypatch.setenv("BROADCAST_HTTP_URL", "ftp://x")
    with pytest.raises(ConfigError, match="BROADCAST_HTTP_URL"):
        create("http")
    monkeypatch.setenv("BROADCAST_HTTP_URL", URL)
    monkeypatch.setenv("BROADCAST_HTTP_HEADERS", "Authorization Bearer topsecret")
    with pytest.raises(ConfigError) as info:
        create("http")
    assert "BROADCAST_HTTP_HEADERS" in info.value.message and "topsecret" not in info.value.message
    monkeypatch.setenv("BROADCAST_HTTP_HEADERS", "Authorization: Bearer topsecret")
    monkeypatch.setenv("BROADCAST_HTTP_BATCH", "50")
    gateway = create("http")
    assert gateway.capabilities.max_batch == 50 and HttpGateway.capabilities.max_batch == 1
    assert "topsecret" not in repr(gateway.settings)


def test_check_warns_about_clear_text_credentials() -> None:
    gateway = HttpGateway(HttpSettings(url="http://sms.example.com/send", headers=SecretStr("X-Key: k")))
    assert any("unencrypted" in p for p in gateway.check())
    assert HttpGateway(HttpSettings(url="http://127.0.0.1:9/send", headers=SecretStr("X-Key: k"))).check() == []
    assert HttpGateway(HttpSettings(url=URL)).check() == []


# -- answer mapping (single) ------------------------------------------------------------------


def test_2xx_is_accepted_with_provider_id() -> None:
    result = one(lambda r: httpx.Response(200, json={"id": "abc-1"}))
    assert result.outcome is Outcome.ACCEPTED and result.provider_id == "abc-1" and not result.maybe_sent
    assert one(lambda r: httpx.Response(202, json={"id": 77})).provider_id == "77"
    assert one(lambda r: httpx.Response(204)).outcome is Outcome.ACCEPTED


def test_2xx_with_malformed_json_is_accepted_without_provider_id() -> None:
    result = one(lambda r: httpx.Response(200, content=b'{"id": "tr'))
    assert result.outcome is Outcome.ACCEPTED and result.provider_id is None


def test_429_with_retry_after_seconds() -> None:
    result = one(lambda r: httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"}))
    assert result.outcome is Outcome.RETRYABLE and result.retry_after_s == 7.0
    assert result.code == "429" and result.detail == "slow down" and not result.maybe_sent


def test_429_with_retry_after_http_date() -> None:
    date = email.utils.formatdate(time.time() + 120, usegmt=True)
    result = one(lambda r: httpx.Response(429, headers={"Retry-After": date}))
    assert result.outcome is Outcome.RETRYABLE
    assert result.retry_after_s is not None and 115 <= result.retry_after_s <= 121


def test_parse_retry_after() -> None:
    assert parse_retry_after("3.5") == 3.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=email.utils.mktime_tz((2015, 10, 21, 7, 27, 0, 0, 1, -1, 0))) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retryable(status: int) -> None:
    result = one(lambda r: httpx.Response(status, text="upstream trouble"))
    assert result.outcome is Outcome.RETRYABLE and result.code == str(status)
    assert not result.maybe_sent and not result.pause and "upstream trouble" in (result.detail or "")


def test_503_honours_retry_after_and_504_is_maybe_sent() -> None:
    assert one(lambda r: httpx.Response(503, headers={"Retry-After": "2"})).retry_after_s == 2.0
    result = one(lambda r: httpx.Response(504))
    assert result.outcome is Outcome.RETRYABLE and result.maybe_sent


def test_400_is_permanent_with_provider_code() -> None:
    result = one(lambda r: httpx.Response(400, json={"code": "INVALID_NUMBER", "error": "号码无效"}))
    assert result.outcome is Outcome.PERMANENT and not result.pause
    assert result.code == "400:INVALID_NUMBER" and result.detail == "号码无效"
    assert one(lambda r: httpx.Response(422, text="nope")).outcome is Outcome.PERMANENT


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_pause(status: int) -> None:
    result = one(lambda r: httpx.Response(status, json={"error": "bad key"}))
    assert result.outcome is Outcome.PERMANENT and result.pause


def test_redirect_is_not_followed_and_pauses() -> None:
    result = one(lambda r: httpx.Response(302, headers={"Location": "https://elsewhere/"}))
    assert result.outcome is Outcome.PERMANENT and result.pause and "elsewhere" in (result.detail or "")


def test_408_is_retryable() -> None:
    assert one(lambda r: httpx.Response(408)).outcome is Outcome.RETRYABLE


# -- transport errors -------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_not_sent_errors_are_plain_retries(exc: type[httpx.TransportError]) -> None:
    result = one(raiser(exc))
    assert result.outcome is Outcome.RETRYABLE and not result.maybe_sent and result.code == exc.__name__


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.DecodingError],
)
def test_maybe_sent_errors(exc: type[httpx.TransportError]) -> None:
    result = one(raiser(exc))
    assert result.outcome is Outcome.RETRYABLE and result.maybe_sent


def test_transport_error_on_a_batch_marks_every_item() -> None:
    results, _ = send(raiser(httpx.ReadTimeout), items(3), batch=10)
    assert [r.delivery_id for r in results] == [1, 2, 3]
    assert all(r.outcome is Outcome.RETRYABLE and r.maybe_sent for r in results)
    results, _ = send(raiser(httpx.ConnectError), items(3), batch=10)
    assert all(r.outcome is Outcome.RETRYABLE and not r.maybe_sent for r in results)


def test_bad_scheme_in_a_shared_client_pauses() -> None:
    result = one(raiser(httpx.UnsupportedProtocol))
    assert result.outcome is Outcome.PERMANENT and result.pause


# -- batch answers ----------------------------------------------------------------------------


def test_batch_partial_failure_and_missing_ids() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": [
            {"id": "3", "status": "accepted", "provider_id": "p3"},
            {"id": "1", "status": "accepted"},
            {"id": 2, "status": "failed", "error": "BLACKLISTED"},
            {"id": "4", "status": "weird"},
            # 5: missing
        ]})

    results, _ = send(handler, items(5), batch=5)
    assert [r.delivery_id for r in results] == [1, 2, 3, 4, 5]
    r1, r2, r3, r4, r5 = results
    assert r1.outcome is Outcome.ACCEPTED and r1.provider_id is None
    assert r2.outcome is Outcome.PERMANENT and r2.code == "BLACKLISTED" and not r2.maybe_sent
    assert r3.outcome is Outcome.ACCEPTED and r3.provider_id == "p3"
    assert r4.outcome is Outcome.RETRYABLE and r4.maybe_sent
    assert r5.outcome is Outcome.RETRYABLE and r5.maybe_sent and r5.code == "missing_result"


@pytest.mark.parametrize("body", [b"not json", b'{"results": "x"}', b"[]", b'{"id": "x"}'])
def test_batch_malformed_answer_is_in_doubt(body: bytes) -> None:
    results, _ = send(lambda r: httpx.Response(200, content=body), items(3), batch=3)
    assert all(r.outcome is Outcome.RETRYABLE and r.maybe_sent for r in results)


def test_batch_error_status_applies_to_every_item() -> None:
    results, _ = send(lambda r: httpx.Response(429, headers={"Retry-After": "1"}), items(3), batch=3)
    assert all(r.outcome is Outcome.RETRYABLE and r.retry_after_s == 1.0 for r in results)
    results, _ = send(lambda r: httpx.Response(401), items(3), batch=3)
    assert all(r.outcome is Outcome.PERMANENT and r.pause for r in results)


def test_own_client_is_created_and_closed() -> None:
    async def go() -> None:
        gateway = HttpGateway(HttpSettings(url="http://127.0.0.1:9/send", timeout_s=1))
        (result,) = await gateway.send(items(1))  # nothing listens on port 9 (discard)
        assert result.outcome is Outcome.RETRYABLE and not result.maybe_sent
        client = gateway._client
        assert client is not None
        await gateway.aclose()
        await gateway.aclose()
        assert client.is_closed

    asyncio.run(go())


def test_make_client_has_explicit_limits() -> None:
    from broadcast.gateways.aio_transport import AiohttpTransport

    client = make_client(7.5, 16)
    try:
        assert client.timeout.read == 7.5 and client.timeout.write == 7.5 and client.timeout.pool == 7.5
        assert client.timeout.connect == 5.0
        transport = client._transport  # type: ignore[attr-defined]
        assert isinstance(transport, AiohttpTransport) and transport.max_in_flight == 16
    finally:
        asyncio.run(client.aclose())
    client = make_client(7.5, 16, backend="httpx")
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 16
    finally:
        asyncio.run(client.aclose())
    with pytest.raises(ValueError):
        make_client(0, 1)
    with pytest.raises(ValueError):
        make_client(1, 1, backend="curl")


# -- recipient faults: "fault": "recipient" says the number alone is refused ------------------------


REFUSED = {"error": "invalid number", "code": "INVALID_NUMBER", "fault": "recipient"}


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_a_single_refusal_marked_recipient_is_a_recipient_fault(status: int) -> None:
    result = one(lambda r: httpx.Response(status, json=REFUSED))
    assert result.outcome is Outcome.PERMANENT and result.recipient_fault and not result.pause
    assert result.code == f"{status}:INVALID_NUMBER" and result.detail == "invalid number"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(400, json={"error": "invalid number", "code": "INVALID_NUMBER"}),  # not marked: counts
        httpx.Response(400, json={**REFUSED, "fault": "gateway"}),
        httpx.Response(400, text="fault: recipient"),  # not JSON
        httpx.Response(401, json=REFUSED),  # credentials, whatever the body says
        httpx.Response(408, json=REFUSED),
        httpx.Response(429, json=REFUSED),
        httpx.Response(500, json=REFUSED),
        httpx.Response(503, json=REFUSED),
    ],
    ids=["unmarked", "gateway", "not-json", "401", "408", "429", "500", "503"],
)
def test_other_failures_are_no_recipient_faults(response: httpx.Response) -> None:
    result = one(lambda r: response)
    assert not result.recipient_fault and result.outcome is not Outcome.ACCEPTED
    assert result.pause is (response.status_code == 401)


def test_batch_rows_marked_recipient_are_recipient_faults_and_a_failed_request_is_not() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": [
            {"id": "1", "status": "failed", "error": "INVALID_NUMBER", "fault": "recipient"},
            {"id": "2", "status": "failed", "error": "NO_BALANCE"},  # not said to be the number's: counts
            {"id": "3", "status": "accepted", "provider_id": "p3"},
        ]})

    r1, r2, r3 = send(handler, items(3), batch=3)[0]
    assert (r1.outcome, r1.code, r1.recipient_fault) == (Outcome.PERMANENT, "INVALID_NUMBER", True)
    assert (r2.outcome, r2.recipient_fault) == (Outcome.PERMANENT, False)
    assert r3.outcome is Outcome.ACCEPTED and not r3.recipient_fault
    results, _ = send(lambda r: httpx.Response(400, json=REFUSED), items(3), batch=3)  # about the whole request
    assert all(r.outcome is Outcome.PERMANENT and not r.recipient_fault for r in results)
