"""The cloud providers' push formats (parsers on ``Incoming``, then served for real) and the pull's
bookkeeping (skips, budget)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from broadcast.gateways.signing import twilio_signature
from broadcast.gateways.twilio_receipts import parse_twilio, twilio_public_url
from broadcast.receipts.formats import FORMATS, BadCallback, Forbidden, Incoming
from broadcast.receipts.pull import pull_once
from broadcast.receipts.server import ReceiptsSettings, running
from tests.helpers.receipt_rows import receipt_rows, status_of

TOKEN = "unit-twilio-token"
SID = "AC" + "1".ljust(32, "0")
PUBLIC = "https://sms.example.org/receipts"


@pytest.fixture
def twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"BROADCAST_TWILIO_ACCOUNT_SID": SID, "BROADCAST_TWILIO_AUTH_TOKEN": TOKEN,
                 "BROADCAST_TWILIO_FROM": "+15005550006", "BROADCAST_RECEIPTS_PUBLIC_URL": PUBLIC}.items():
        monkeypatch.setenv(k, v)


def twilio_incoming(params: dict[str, str], path: str = "/twilio", query: str = "bc_delivery=7",
                    url: str | None = None, token: str = TOKEN) -> Incoming:
    signed = url or f"{PUBLIC}{path}?{query}"
    body = urlencode(params).encode()
    headers = {"X-Twilio-Signature": twilio_signature(signed, params, token), "Host": "127.0.0.1:8787"}
    return Incoming("POST", [], headers, body, path=path, raw_query=query)


def test_registered_with_the_answers_each_provider_expects() -> None:
    assert json.loads(FORMATS["aliyun"].ack_body) == {"code": 0, "msg": "成功"}
    assert json.loads(FORMATS["tencent"].ack_body) == {"result": 0, "errmsg": "OK"}
    assert FORMATS["twilio"].ack_body == b""


def test_twilio_signature_is_checked_against_the_public_url(twilio_env: None) -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": SID}
    (r,) = parse_twilio(twilio_incoming(params))
    assert (r.delivery_id, r.provider_id, r.status) == (7, "SM1", "delivered")
    with pytest.raises(Forbidden):  # signed for the internal URL, not the one Twilio called
        parse_twilio(twilio_incoming(params, url="http://127.0.0.1:8787/twilio?bc_delivery=7"))
    with pytest.raises(Forbidden):
        parse_twilio(twilio_incoming(params, token="forged"))
    with pytest.raises(Forbidden):
        parse_twilio(Incoming("POST", [], {}, urlencode(params).encode(), path="/twilio"))


def test_twilio_interim_status_settles_in_doubt_only(twilio_env: None) -> None:
    (r,) = parse_twilio(twilio_incoming({"MessageSid": "SM2", "MessageStatus": "sent"}))
    assert (r.delivery_id, r.provider_id, r.status, r.code) == (7, "SM2", "accepted", "sent")


def test_twilio_without_settings_is_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_RECEIPTS_PUBLIC_URL", PUBLIC)
    with pytest.raises(BadCallback) as info:
        parse_twilio(twilio_incoming({"MessageSid": "SM1", "MessageStatus": "delivered"}))
    assert info.value.status == 500 and TOKEN not in str(info.value)


def test_public_url_falls_back_to_forwarded_headers() -> None:
    inc = Incoming("POST", [], {"X-Forwarded-Proto": "https", "Host": "hooks.example.org"}, b"", path="/s/twilio", raw_query="a=1")
    assert twilio_public_url(inc, "") == "https://hooks.example.org/s/twilio?a=1"
    assert twilio_public_url(inc, "https://x.org/r/") == "https://x.org/r/s/twilio?a=1"


def test_served_pushes(engine: sa.Engine, make_deliveries: Callable[..., list[int]], twilio_env: None) -> None:
    (a,) = make_deliveries(1, gateway="tencent")
    (b,) = make_deliveries(1, gateway="twilio")
    sa_update = sa.text("update deliveries set provider_id = :p where id = :i")
    with engine.begin() as conn:
        conn.execute(sa_update, {"p": "2433:1", "i": a})
    with running(engine, ReceiptsSettings(apply_interval_s=0.05)) as base:
        r = httpx.post(f"{base}/tencent", content=json.dumps([{"user_receive_time": "2026-03-01 09:30:00", "nationcode": "86",
                       "mobile": "13900000000", "report_status": "FAIL", "errmsg": "MK:0005", "description": "x", "sid": "2433:1"}]))
        assert r.status_code == 200 and r.json() == {"result": 0, "errmsg": "OK"}
        params = {"MessageSid": "SM9", "MessageStatus": "delivered"}
        good = twilio_signature(f"{PUBLIC}/twilio?bc_delivery={b}", params, TOKEN)
        assert httpx.post(f"{base}/twilio?bc_delivery={b}", data=params, headers={"X-Twilio-Signature": "bad"}).status_code == 403
        ok = httpx.post(f"{base}/twilio?bc_delivery={b}", data=params, headers={"X-Twilio-Signature": good})
        assert (ok.status_code, ok.text) == (200, "")
        assert httpx.post(f"{base}/aliyun", content=b"{").status_code == 400
    assert status_of(engine, a, b) == ["failed", "delivered"]
    assert [(x.gateway, x.status) for x in receipt_rows(engine)] == [("tencent", "failed"), ("twilio", "delivered")]


def test_pull_skips_gateways_without_a_pull_api_or_settings(ws: object, make_deliveries: Callable[..., list[int]]) -> None:
    make_deliveries(2, gateway="kannel")
    make_deliveries(1, status="in_doubt", gateway="aliyun")
    summary = pull_once(ws, budget=5)  # type: ignore[arg-type]
    notes = {g.gateway: g.note or "" for g in summary.gateways}
    assert "no pull API" in notes["kannel"] and "not configured" in notes["aliyun"]
    assert summary.recorded == 0 and summary.still_in_doubt == 1
