"""Every provider's reply push, as documented, against the real endpoint (uvicorn on 127.0.0.1,
the formats of the registered gateways): answered as the provider expects, stored and taken in,
and the same push again (the provider's retry) stored once; a Twilio webhook with a wrong
signature refused with 403 and nothing stored."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote_from_bytes, urlencode

import httpx
import pytest
import sqlalchemy as sa

from broadcast.gateways.signing import twilio_signature
from broadcast.receipts.server import ReceiptsSettings, running
from broadcast.twoway import intake
from tests.gateways.test_replies import ALIYUN_OLD, TENCENT_DOC

SECRET = "s3cret"
TOKEN = "endpoint-twilio-token"
PUBLIC = "https://sms.example.org/hooks"


@pytest.fixture
def endpoint(setup, monkeypatch):
    for k, v in {"BROADCAST_TWILIO_ACCOUNT_SID": "AC" + "1".ljust(32, "0"), "BROADCAST_TWILIO_AUTH_TOKEN": TOKEN,
                 "BROADCAST_TWILIO_FROM": "+15005550006", "BROADCAST_RECEIPTS_PUBLIC_URL": PUBLIC}.items():
        monkeypatch.setenv(k, v)
    settings = ReceiptsSettings(secret=SECRET)  # type: ignore[arg-type]
    with running(setup.engine, settings, rules=intake.Rules.of(setup.settings)) as base:
        yield base, setup


def stored(ws) -> list[tuple[str, str, str, str]]:
    with ws.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("select gateway, phone, text, kind from inbound order by id"))]


KANNEL_Q = ("id=5f1e6a3c-0b9e-4c53-9a1a-2f6b7c8d9e0f&from=8613800000001&to=10690&time=1772328600&coding=2"
            "&charset=UTF-16BE&smsc=fake&text=" + quote_from_bytes("路灯不亮".encode("utf-16-be"), safe=""))
TWILIO_FORM = {"MessageSid": "SM" + "b" * 32, "AccountSid": "AC" + "1".ljust(32, "0"), "From": "+8613800000003",
               "To": "+15005550006", "Body": "STOP", "NumMedia": "0", "NumSegments": "1"}
CASES = {
    "kannel": ("GET", f"/{SECRET}/kannel-mo?{KANNEL_Q}", None, {}, b"", ("kannel", "+8613800000001", "路灯不亮", "feedback")),
    "aliyun": ("POST", f"/{SECRET}/aliyun-mo", ALIYUN_OLD.replace("1381111****", "13800000002").encode(),
               {"Content-Type": "application/json"}, '{"code":0,"msg":"接收成功"}'.encode(),
               ("aliyun", "+8613800000002", "内容", "feedback")),
    "tencent": ("POST", f"/{SECRET}/tencent-mo", TENCENT_DOC.replace("13xxxxxxxxx", "13800000004").encode(),
                {"Content-Type": "application/json"}, b'{"result":0,"errmsg":"OK"}',
                ("tencent", "+8613800000004", "用户回复的内容", "feedback")),
    "cmas": ("POST", f"/{SECRET}/cmas-mo", base64.b64encode(json.dumps(
        {"mobile": "13800000005", "smsContent": "退订", "sendTime": "2026-11-27 09:59:00"}, ensure_ascii=False).encode()),
        {"Content-Type": "text/plain"}, b"success", ("cmas", "+8613800000005", "退订", "optout")),
    "twilio": ("POST", f"/{SECRET}/twilio-mo", urlencode(TWILIO_FORM).encode(),
               {"Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": twilio_signature(f"{PUBLIC}/{SECRET}/twilio-mo", TWILIO_FORM, TOKEN)},
               b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
               ("twilio", "+8613800000003", "STOP", "optout")),
    "simulator": ("POST", f"/{SECRET}/simulator-mo", '{"id": "s1", "phone": "13800000006", "text": "好"}'.encode(),
                  {"Content-Type": "application/json"}, b'{"ok":true}', ("simulator", "+8613800000006", "好", "feedback")),
}


@pytest.mark.parametrize("provider", sorted(CASES))
def test_a_documented_push_is_answered_stored_and_its_retry_stored_once(endpoint, provider) -> None:
    base, ws = endpoint
    method, path, body, headers, ack, row = CASES[provider]
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(2):  # the provider's retry of the same push
            r = client.request(method, path, content=body, headers=headers)
            assert r.status_code == 200, r.text
            assert r.content == ack
    assert stored(ws) == [row]


def test_a_twilio_reply_with_a_wrong_signature_is_refused_and_not_stored(endpoint) -> None:
    base, ws = endpoint
    method, path, body, headers, _, _ = CASES["twilio"]
    with httpx.Client(base_url=base, timeout=10) as client:
        r = client.request(method, path, content=body, headers={**headers, "X-Twilio-Signature": "AAAA" + "=" * 24})
        assert r.status_code == 403
        assert client.request(method, path, content=body.replace(b"STOP", b"START"), headers=headers).status_code == 403
    assert stored(ws) == []
