"""The ``kannel`` gateway against ``httpx.MockTransport``: exact sendsms queries, every answer
mapping, the part limit, ``check()`` (the contract kit runs over it in test_contract.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from broadcast.gateways import registry
from broadcast.gateways.base import Gateway, Outcome, SendItem, SendResult, make_client
from broadcast.gateways.kannel import (
    KannelGateway,
    KannelSettings,
    classify_answer,
    dlr_url,
)

URL = "http://127.0.0.1:13013/cgi-bin/sendsms"
RECEIPTS = "http://127.0.0.1:8787/s3cret"


def settings(**kw: object) -> KannelSettings:
    base: dict[str, object] = dict(url=URL, username="bc", password="pw", sender="10690", max_parts=3, receipts_url=RECEIPTS)
    base.update(kw)
    return KannelSettings(**base)  # type: ignore[arg-type]


def gateway(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> KannelGateway:
    return KannelGateway(settings(**kw), make_client(2, 4, transport=httpx.MockTransport(handler)))


def send(gw: Gateway, *items: SendItem) -> list[SendResult]:
    async def go() -> list[SendResult]:
        try:
            return await gw.send(list(items))
        finally:
            await gw.aclose()
            if gw._client is not None:
                await gw._client.aclose()

    return asyncio.run(go())


def accepted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, text="0: Accepted for delivery")


class Capture:
    def __init__(self, response: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response or httpx.Response(202, text="0: Accepted for delivery")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response

    def query(self, i: int = 0) -> list[tuple[str, str]]:
        return parse_qsl(self.requests[i].url.query.decode("ascii"), keep_blank_values=True, strict_parsing=True)


# -- the exact request ------------------------------------------------------------------------

def test_chinese_text_is_utf8_with_coding_2_and_charset() -> None:
    cap = Capture()
    (r,) = send(gateway(cap), SendItem(41, "+8613800000001", "【城南】明天 9:00 开会 & 100% 到场"))
    assert r.outcome is Outcome.ACCEPTED and r.provider_id == "kannel-41" and r.code == "202:0"
    req = cap.requests[0]
    assert req.method == "GET" and str(req.url).startswith(URL + "?")
    assert cap.query() == [
        ("username", "bc"), ("password", "pw"), ("to", "+8613800000001"),
        ("text", "【城南】明天 9:00 开会 & 100% 到场"), ("charset", "UTF-8"), ("coding", "2"), ("from", "10690"),
        ("dlr-mask", "31"),
        ("dlr-url", f"{RECEIPTS}/kannel?id=41&type=%d&ts=%T&to=%p&reply=%A&fid=%F"),
    ]
    raw = req.url.query.decode("ascii")
    # UTF-8 percent-encoded text, '+' for space, and the dlr-url escapes double-encoded ('%' -> '%25')
    assert "text=%E3%80%90%E5%9F%8E%E5%8D%97%E3%80%91" in raw and "+%26+100%25+" in raw
    assert "%3Fid%3D41%26type%3D%25d%26ts%3D%25T%26to%3D%25p%26reply%3D%25A%26fid%3D%25F" in raw
    assert "%2B8613800000001" in raw  # '+' of the number is not a space


def test_gsm_text_has_no_coding_and_no_sender_when_unset() -> None:
    cap = Capture()
    send(gateway(cap, sender=""), SendItem(7, "+447700900123", "Meeting at 9 {room} €5"))
    q = dict(cap.query())
    assert q["text"] == "Meeting at 9 {room} €5" and q["charset"] == "UTF-8"
    assert "coding" not in q and "from" not in q


def test_one_non_gsm_character_switches_to_ucs2() -> None:
    cap = Capture()
    send(gateway(cap), SendItem(8, "+447700900123", "Hello “quoted”"))
    assert dict(cap.query())["coding"] == "2"


def test_no_receipts_url_means_no_dlr_parameters() -> None:
    cap = Capture()
    send(gateway(cap, receipts_url=""), SendItem(9, "+8613800000001", "你好"))
    q = dict(cap.query())
    assert "dlr-url" not in q and "dlr-mask" not in q


def test_dlr_url_shape() -> None:
    assert dlr_url("http://h:1/x", 5) == "http://h:1/x/kannel?id=5&type=%d&ts=%T&to=%p&reply=%A&fid=%F"


def test_receipts_url_read_from_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_KANNEL_URL", URL)
    monkeypatch.setenv("BROADCAST_KANNEL_USERNAME", "bc")
    monkeypatch.setenv("BROADCAST_KANNEL_PASSWORD", "pw")
    monkeypatch.setenv("BROADCAST_KANNEL_MAX_PARTS", "4")
    monkeypatch.setenv("BROADCAST_RECEIPTS_URL", "http://127.0.0.1:8787/abc/")
    s = registry.load_settings(KannelGateway)
    assert isinstance(s, KannelSettings)
    assert s.receipts_url == "http://127.0.0.1:8787/abc" and s.max_parts == 4
    assert "pw" not in repr(s)


@pytest.mark.parametrize("bad", ["ftp://x/sendsms", "127.0.0.1:13013", "http://h/cgi-bin/sendsms?username=a"])
def test_bad_url_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        settings(url=bad)


# -- long texts -------------------------------------------------------------------------------

def test_text_longer_than_max_parts_is_held_not_truncated() -> None:
    cap = Capture()
    text = "长" * 140  # 3 UCS-2 parts
    (r,) = send(gateway(cap, max_parts=2), SendItem(3, "+8613800000001", text))
    assert r.outcome is Outcome.RETRYABLE and r.pause and r.code == "too_many_parts" and not r.maybe_sent
    assert "BROADCAST_KANNEL_MAX_PARTS=2" in (r.detail or "") and cap.requests == []
    (r,) = send(gateway(cap, max_parts=3), SendItem(3, "+8613800000001", text))
    assert r.outcome is Outcome.ACCEPTED and len(cap.requests) == 1


def test_check_warns_when_kannel_allows_fewer_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_MAX_PARTS", "3")
    problems = KannelGateway(settings(max_parts=1)).check()
    assert any("BROADCAST_KANNEL_MAX_PARTS=1" in p and "max-messages = 3" in p for p in problems)
    assert KannelGateway(settings(max_parts=3)).check() == []
    assert any("BROADCAST_RECEIPTS_URL is empty" in p for p in KannelGateway(settings(receipts_url="")).check())
    remote = KannelGateway(settings(url="http://sms.example.com:13013/cgi-bin/sendsms")).check()
    assert any("unencrypted" in p for p in remote)


# -- answers ----------------------------------------------------------------------------------

def resp(status: int, text: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, text=text, headers=headers)


@pytest.mark.parametrize(
    ("response", "outcome", "code", "maybe_sent", "pause"),
    [
        (resp(202, "0: Accepted for delivery"), Outcome.ACCEPTED, "202:0", False, False),
        (resp(202, "3: Queued for later delivery"), Outcome.ACCEPTED, "202:3", False, False),
        (resp(200, "<html>proxy</html>"), Outcome.RETRYABLE, "200:unexpected", True, False),
        (resp(403, "Authorization failed for sendsms"), Outcome.PERMANENT, "403", False, True),
        (resp(401, "Unauthorized"), Outcome.PERMANENT, "401", False, True),
        (resp(400, "Sender missing and no global set, rejected"), Outcome.PERMANENT, "400", False, True),
        (resp(403, "Not routable. Do not try again."), Outcome.PERMANENT, "403", False, False),
        (resp(400, "Missing receiver number, rejected"), Outcome.PERMANENT, "400", False, False),
        (resp(400, "Coding field misformed, rejected"), Outcome.PERMANENT, "400", False, False),
        (resp(503, "Temporal failure, try again later."), Outcome.RETRYABLE, "503", False, False),
        (resp(500, "oops"), Outcome.RETRYABLE, "500", False, False),
        (resp(504, "gateway timeout"), Outcome.RETRYABLE, "504", True, False),
        (resp(429, "slow down"), Outcome.RETRYABLE, "429", False, False),
        (resp(302, "", {"Location": "http://elsewhere/"}), Outcome.PERMANENT, "302", False, True),
    ],
)
def test_answer_mapping(response: httpx.Response, outcome: Outcome, code: str, maybe_sent: bool, pause: bool) -> None:
    (r,) = send(gateway(lambda req: response), SendItem(5, "+8613800000001", "你好"))
    assert (r.outcome, r.code, r.maybe_sent, r.pause) == (outcome, code, maybe_sent, pause), r
    assert r.delivery_id == 5
    if outcome is not Outcome.ACCEPTED:
        assert r.detail


def test_503_retry_after_is_honoured() -> None:
    r = classify_answer(1, resp(503, "Temporal failure, try again later.", {"Retry-After": "7"}))
    assert r.retry_after_s == 7.0 and r.outcome is Outcome.RETRYABLE


@pytest.mark.parametrize(
    ("exc", "maybe_sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("connect timeout"), False),
        (httpx.ReadTimeout("read timeout"), True),
        (httpx.RemoteProtocolError("server disconnected"), True),
        (httpx.WriteError("broken pipe"), True),
    ],
)
def test_transport_errors(exc: Exception, maybe_sent: bool) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise exc

    (r,) = send(gateway(boom), SendItem(6, "+8613800000001", "你好"))
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent is maybe_sent and r.code == type(exc).__name__


def test_connection_refused_for_real() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = KannelGateway(settings(url=f"http://127.0.0.1:{port}/cgi-bin/sendsms"))
    (r,) = send(gw, SendItem(6, "+8613800000001", "你好"))
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent and r.code == "ConnectError"


def test_password_never_in_results() -> None:
    (r,) = send(gateway(lambda req: resp(403, "Authorization failed for sendsms")), SendItem(5, "+86138", "x"))
    assert "pw" not in f"{r}"


def test_registry_loads_kannel() -> None:
    assert registry.load("kannel") is KannelGateway
    assert urlsplit(URL).path == "/cgi-bin/sendsms"


# -- recipient faults: a refused number never counts toward the auto-pause ---------------------

DENIED = "Number(s) has/have been denied by white- and/or black-lists."


@pytest.mark.parametrize(
    ("response", "recipient"),
    [
        (resp(400, DENIED), True),  # smsbox's white/black-list (or characters 'to' may not hold)
        (resp(403, "Not routable. Do not try again."), False),  # also what a Kannel with no SMSC says
        (resp(400, "Missing receiver number, rejected"), False),
        (resp(400, "Coding field misformed, rejected"), False),
        (resp(403, "Authorization failed for sendsms"), False),
        (resp(400, "Sender missing and no global set, rejected"), False),
        (resp(503, "Temporal failure, try again later."), False),
        (resp(500, DENIED), False),
    ],
)
def test_only_a_denied_number_is_a_recipient_fault(response: httpx.Response, recipient: bool) -> None:
    (r,) = send(gateway(lambda req: response), SendItem(5, "+8613800000001", "你好"))
    assert r.recipient_fault is recipient and r.outcome is not Outcome.ACCEPTED, r
    if recipient:
        assert (r.outcome, r.code, r.detail, r.pause) == (Outcome.PERMANENT, "400", DENIED, False)
