"""The twilio gateway against an httpx.MockTransport playing the Messages API (basic auth checked), the
StatusCallback parser and signature validation (the contract kit runs over it in test_contract.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from broadcast.errors import ConfigError
from broadcast.gateways import registry
from broadcast.gateways.base import Outcome, SendItem, SendResult, make_client
from broadcast.gateways.signing import twilio_signature
from broadcast.gateways.twilio import TwilioGateway, TwilioSettings, parse_status_callback, validate_signature

SID = "AC00000000000000000000000000000001"
TOKEN = "fake-twilio-token-5e2a"
Handler = Callable[[httpx.Request, dict[str, str]], httpx.Response]


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry.BUILTINS, "twilio", "broadcast.gateways.twilio:TwilioGateway")
    yield


def settings(**over: Any) -> TwilioSettings:
    base: dict[str, Any] = dict(account_sid=SID, auth_token=SecretStr(TOKEN), from_="+15005550006",
                                status_callback="https://hooks.example.org/receipts/twilio?k=1", endpoint="https://api.example.test")
    return TwilioSettings(**{**base, **over})


def provider(handler: Handler, seen: list[httpx.Request] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def transport(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return httpx.Response(401, json={"code": 20003, "message": "Authenticate", "status": 401})
        form = dict(parse_qsl(request.content.decode())) if request.method == "POST" else dict(request.url.params)
        return handler(request, form)

    return transport


def ok(request: httpx.Request, form: dict[str, str]) -> httpx.Response:
    if request.method == "GET":
        return httpx.Response(200, json={"messages": [], "page": 0})
    return httpx.Response(201, json={"sid": "SM" + form["To"][-8:], "status": "queued", "num_segments": "1", "error_code": None})


def gateway(handler: Handler, seen: list[httpx.Request] | None = None, **over: Any) -> TwilioGateway:
    client = make_client(2, 4, transport=httpx.MockTransport(provider(handler, seen)))
    return TwilioGateway(settings(**over), client, clock=lambda: datetime(2026, 3, 1, 1, 30, tzinfo=UTC))


def raiser(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)  # type: ignore[call-arg]

    return handler


def run(fn: Callable[[TwilioGateway], Any], gw: TwilioGateway) -> Any:
    async def go() -> Any:
        try:
            return await fn(gw)
        finally:
            await gw.aclose()

    return asyncio.run(go())


def one(handler: Handler, **over: Any) -> SendResult:
    (result,) = run(lambda g: g.send([SendItem(7, "+14155550100", "Good morning")]), gateway(handler, **over))
    return result  # type: ignore[no-any-return]


def fail(status: int, code: int | None, headers: dict[str, str] | None = None) -> Handler:
    body = {"code": code, "message": f"error {code}", "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    return lambda r, f: httpx.Response(status, json=body, headers=headers)


# -- requests -------------------------------------------------------------------------------------


def test_create_message_request() -> None:
    seen: list[httpx.Request] = []
    gw = gateway(ok, seen)
    (result,) = run(lambda g: g.send([SendItem(7, "+14155550100", "早上好 Good morning")]), gw)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"https://api.example.test/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(parse_qsl(request.content.decode()))
    assert form["To"] == "+14155550100" and form["Body"] == "早上好 Good morning" and form["From"] == "+15005550006"
    callback = urlsplit(form["StatusCallback"])
    assert callback.netloc == "hooks.example.org" and dict(parse_qsl(callback.query)) == {"k": "1", "bc_delivery": "7"}
    assert result.outcome is Outcome.ACCEPTED and result.provider_id == "SM55550100" and result.code == "queued"


def test_messaging_service_instead_of_from() -> None:
    seen: list[httpx.Request] = []
    run(lambda g: g.send([SendItem(1, "+14155550100", "x")]), gateway(ok, seen, from_="", messaging_service_sid="MG123", status_callback=""))
    form = dict(parse_qsl(seen[0].content.decode()))
    assert form["MessagingServiceSid"] == "MG123" and "From" not in form and "StatusCallback" not in form


def test_each_item_is_its_own_request() -> None:
    seen: list[httpx.Request] = []
    items = [SendItem(i, f"+1415555010{i}", "x") for i in range(3)]
    results = run(lambda g: g.send(items), gateway(ok, seen))
    assert len(seen) == 3 and [r.delivery_id for r in results] == [0, 1, 2]


# -- error mapping ----------------------------------------------------------------------------------


def test_throttling_is_retryable_with_retry_after() -> None:
    r = one(fail(429, 20429, {"Retry-After": "3"}))
    assert r.outcome is Outcome.RETRYABLE and r.retry_after_s == 3.0 and r.code == "429:20429" and not r.pause
    for code in (30001, 21611, 63017):
        assert one(fail(400, code)).outcome is Outcome.RETRYABLE


@pytest.mark.parametrize("code", [21211, 21614, 21610])
def test_invalid_numbers_are_permanent(code: int) -> None:
    r = one(fail(400, code))
    assert r.outcome is Outcome.PERMANENT and not r.pause and r.code == f"400:{code}" and r.detail == f"error {code}"


@pytest.mark.parametrize(("status", "code"), [(401, 20003), (403, 20003), (400, 10001), (401, None)])
def test_authentication_and_account_errors_pause(status: int, code: int | None) -> None:
    r = one(fail(status, code) if code else (lambda q, f: httpx.Response(status)))
    assert r.outcome is Outcome.PERMANENT and r.pause


def test_wrong_token_is_refused_by_the_fake_and_pauses() -> None:
    client = make_client(2, 4, transport=httpx.MockTransport(provider(ok)))
    gw = TwilioGateway(settings(auth_token=SecretStr("wrong")), client)
    (r,) = run(lambda g: g.send([SendItem(1, "+14155550100", "x")]), gw)
    assert r.outcome is Outcome.PERMANENT and r.pause and r.code == "401:20003" and "wrong" not in repr(r)


def test_server_errors() -> None:
    assert one(lambda r, f: httpx.Response(500, text="oops")).outcome is Outcome.RETRYABLE
    r = one(lambda r, f: httpx.Response(504))
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent
    assert one(fail(503, 20500)).outcome is Outcome.RETRYABLE


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError])
def test_timeouts_are_in_doubt(exc: type[Exception]) -> None:
    gw = TwilioGateway(settings(), make_client(2, 4, transport=httpx.MockTransport(raiser(exc))))
    (r,) = run(lambda g: g.send([SendItem(1, "+14155550100", "x")]), gw)
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent


def test_connect_errors_are_plain_retries() -> None:
    gw = TwilioGateway(settings(), make_client(2, 4, transport=httpx.MockTransport(raiser(httpx.ConnectTimeout))))
    (r,) = run(lambda g: g.send([SendItem(1, "+14155550100", "x")]), gw)
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent


@pytest.mark.parametrize("body", [b"", b"not json", b"{}", b'{"sid": ""}'])
def test_malformed_success_is_in_doubt(body: bytes) -> None:
    r = one(lambda q, f: httpx.Response(201, content=body))
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent and r.code == "malformed_response"


# -- query and pull -----------------------------------------------------------------------------------


def test_query_lists_messages_to_the_number() -> None:
    def handler(request: httpx.Request, form: dict[str, str]) -> httpx.Response:
        assert request.method == "GET" and form["To"] in ("+14155550100", "+14155550101")
        if form["To"] == "+14155550100" and form["DateSent"] == "2026-03-01":
            return httpx.Response(200, json={"messages": [
                {"sid": "SMother", "body": "different", "from": "+15005550006", "status": "delivered"},
                {"sid": "SMmatch", "body": "Good morning", "from": "+15005550006", "status": "sent"},
            ]})
        return httpx.Response(200, json={"messages": []})

    items = [SendItem(1, "+14155550100", "Good morning"), SendItem(2, "+14155550101", "Good morning")]
    a, b = run(lambda g: g.query(items), gateway(handler))
    assert a is not None and a.provider_id == "SMmatch" and a.outcome is Outcome.ACCEPTED
    assert b is None
    assert run(lambda g: g.query(items[:1]), gateway(fail(500, 20500))) == [None]


def test_fetch_status() -> None:
    def handler(request: httpx.Request, form: dict[str, str]) -> httpx.Response:
        assert request.url.path.endswith("/Messages/SM1.json")
        return httpx.Response(200, json={"sid": "SM1", "status": "undelivered", "error_code": 30003})

    receipt = run(lambda g: g.fetch_status("SM1"), gateway(handler))
    assert receipt is not None and receipt.status == "failed" and receipt.code == "30003" and receipt.provider_id == "SM1"
    pending = run(lambda g: g.fetch_status("SM1"), gateway(lambda r, f: httpx.Response(200, json={"sid": "SM1", "status": "sent"})))
    assert pending is None
    with pytest.raises(LookupError):
        run(lambda g: g.fetch_status("SM1"), gateway(fail(404, 20404)))


# -- status callback and its signature ----------------------------------------------------------------


def test_status_callback_round_trip_with_signature() -> None:
    url = "https://hooks.example.org/receipts/twilio?k=1&bc_delivery=7"
    params = {"MessageSid": "SM55550100", "MessageStatus": "delivered", "AccountSid": SID, "From": "+15005550006",
              "To": "+14155550100", "ApiVersion": "2010-04-01", "SmsSid": "SM55550100", "SmsStatus": "delivered"}
    signature = twilio_signature(url, params, TOKEN)
    assert validate_signature(url, params, signature, TOKEN)
    assert not validate_signature(url, {**params, "MessageStatus": "failed"}, signature, TOKEN)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    receipt = parse_status_callback(params, url, received_at=at)
    assert receipt is not None
    assert (receipt.delivery_id, receipt.provider_id, receipt.status, receipt.code, receipt.at) == (7, "SM55550100", "delivered", "delivered", at)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [("undelivered", "30003", ("failed", "30003")), ("failed", "30008", ("failed", "30008")),
     ("delivered", None, ("delivered", "delivered")), ("read", None, ("delivered", "read")),
     ("sent", None, None), ("queued", None, None), ("accepted", None, None)],
)
def test_status_callback_states(status: str, error: str | None, expected: tuple[str, str] | None) -> None:
    params = {"MessageSid": "SM1", "MessageStatus": status}
    if error:
        params["ErrorCode"] = error
    receipt = parse_status_callback(params)
    if expected is None:
        assert receipt is None
    else:
        assert receipt is not None and (receipt.status, receipt.code) == expected and receipt.delivery_id is None


# -- settings -----------------------------------------------------------------------------------------


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_TWILIO_ACCOUNT_SID", SID)
    monkeypatch.setenv("BROADCAST_TWILIO_AUTH_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="BROADCAST_TWILIO_FROM"):
        registry.create("twilio")
    monkeypatch.setenv("BROADCAST_TWILIO_FROM", "+15005550006")
    gw = registry.create("twilio")
    assert isinstance(gw, TwilioGateway) and gw.settings.from_ == "+15005550006"
    assert gw.settings.endpoint == "https://api.twilio.com" and TOKEN not in repr(gw.settings)
    assert any("STATUS_CALLBACK" in p for p in gw.check())
    monkeypatch.setenv("BROADCAST_TWILIO_STATUS_CALLBACK", "https://hooks.example.org/t")
    assert registry.create("twilio").check() == []


# -- recipient faults: a refused number never counts toward the auto-pause ------------------------------


@pytest.mark.parametrize(
    ("status", "code", "recipient"),
    [(400, 21211, True), (400, 21265, True), (400, 21610, True), (400, 21612, True), (400, 21614, True),
     (400, 21408, False),  # the account may not send to that region: every number of it
     (400, 21606, False), (400, 21603, False),  # the sender: every number
     (401, 20003, False), (400, 10001, False), (429, 20429, False), (400, 30001, False), (500, 20500, False)],
)
def test_only_refusals_of_the_to_number_are_recipient_faults(status: int, code: int, recipient: bool) -> None:
    r = one(fail(status, code))
    assert r.code == f"{status}:{code}" and r.recipient_fault is recipient, r
    assert not (recipient and r.pause)


def test_an_error_without_a_twilio_code_is_no_recipient_fault() -> None:
    assert not one(lambda r, f: httpx.Response(400, text="bad request")).recipient_fault
