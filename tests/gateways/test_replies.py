"""Reply (上行) push formats against the providers' documented example payloads, the retried-push
provider ids, malformed pushes, the Twilio signature (published example and a wrong one), the names
beside the receipt formats, and the blacklist refusals (``SendResult.blocked``)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import quote_from_bytes, urlencode

import pytest

from broadcast.gateways import registry
from broadcast.gateways.aliyun import AliyunGateway
from broadcast.gateways.aliyun import classify_answer as aliyun_verdict
from broadcast.gateways.base import Inbound
from broadcast.gateways.cloud_common import verdict_result
from broadcast.gateways.cmas import CmasGateway
from broadcast.gateways.kannel import KannelGateway
from broadcast.gateways.push import BadCallback, Forbidden, InboundFormat, Incoming
from broadcast.gateways.replies import e164
from broadcast.gateways.signing import twilio_signature
from broadcast.gateways.simulator import SimulatorGateway
from broadcast.gateways.tencent import TencentGateway
from broadcast.gateways.tencent import classify_answer as tencent_verdict
from broadcast.gateways.twilio import TwilioGateway

RECEIVED = datetime(2026, 3, 1, 1, 30, tzinfo=UTC)
KANNEL = KannelGateway.inbound_formats()["kannel-mo"]
ALIYUN = AliyunGateway.inbound_formats()["aliyun-mo"]
TENCENT = TencentGateway.inbound_formats()["tencent-mo"]
TWILIO = TwilioGateway.inbound_formats()["twilio-mo"]
CMAS = CmasGateway.inbound_formats()["cmas-mo"]
SIMULATOR = SimulatorGateway.inbound_formats()["simulator-mo"]


def post(body: bytes | str, headers: dict[str, str] | None = None, path: str = "/mo") -> Incoming:
    data = body.encode() if isinstance(body, str) else body
    return Incoming("POST", [], headers or {"Content-Type": "application/json"}, data, RECEIVED, path=path)


def get(query: str, path: str = "/s3cret/kannel-mo") -> Incoming:
    return Incoming("GET", [], {}, b"", RECEIVED, path=path, raw_query=query)


# -- Kannel ---------------------------------------------------------------------------------------

UUID = "5f1e6a3c-0b9e-4c53-9a1a-2f6b7c8d9e0f"


def kannel_query(text_bytes: bytes, coding: str, charset: str, uuid: str = UUID) -> str:
    return (f"id={uuid}&from=8613812345678&to=1069012345&text={quote_from_bytes(text_bytes, safe='')}"
            f"&time=1772328600&coding={coding}&charset={charset}&smsc=fake")


def test_kannel_ucs2_reply_arrives_intact() -> None:
    text = "收到，谢谢！  明天准时参加"
    (r,) = KANNEL.parse(get(kannel_query(text.encode("utf-16-be"), "2", "UTF-16BE")))
    assert r == Inbound("kannel", UUID, "+8613812345678", "1069012345", text, datetime(2026, 3, 1, 1, 30, tzinfo=UTC),
                        kannel_query(text.encode("utf-16-be"), "2", "UTF-16BE").encode())
    assert (KANNEL.ack_body, KANNEL.ack_media_type) == (b"", "text/plain")  # no reply SMS


@pytest.mark.parametrize(("data", "coding", "charset"), [
    ("回复TD退订".encode(), "0", "UTF-8"),  # smsbox mo-recode = true
    ("回复TD退订".encode("utf-16-be"), "2", ""),  # UCS-2 without a charset
    (b"\xbb\xd8\xb8\xb4TD\xcd\xcb\xb6\xa9", "1", "GB2312"),  # a charset Python knows
])
def test_kannel_charsets(data: bytes, coding: str, charset: str) -> None:
    (r,) = KANNEL.parse(get(kannel_query(data, coding, charset)))
    assert r.text == "回复TD退订"


def test_kannel_resent_mo_keeps_its_id_and_a_new_mo_gets_another() -> None:
    first = KANNEL.parse(get(kannel_query(b"TD", "0", "UTF-8")))
    again = KANNEL.parse(get(kannel_query(b"TD", "0", "UTF-8")))
    other = KANNEL.parse(get(kannel_query(b"TD", "0", "UTF-8", uuid="0e2c9d7a-1111-4222-8333-444455556666")))
    assert first[0].provider_id == again[0].provider_id == UUID != other[0].provider_id


def test_kannel_post_url() -> None:
    text = "好的 收到"
    req = Incoming("POST", [], {"Content-Type": 'text/plain; charset="UTF-16BE"', "X-Kannel-From": "+8613812345678",
                                "X-Kannel-To": "10690", "X-Kannel-Time": "2026-03-01 01:30:00"},
                   text.encode("utf-16-be"), RECEIVED, path="/kannel-mo", raw_query=f"id={UUID}")
    (r,) = KANNEL.parse(req)
    assert (r.provider_id, r.phone, r.to, r.text, r.at) == (UUID, "+8613812345678", "10690", text, RECEIVED)
    assert r.raw == text.encode("utf-16-be")


@pytest.mark.parametrize(("query", "message"), [
    (f"id={UUID}&from=8613812345678&to=10690", "no 'text'"),
    (f"id={UUID}&from=&to=10690&text=TD&charset=UTF-8", "no sender number"),
    (f"id={UUID}&from=8613812345678&text=TD&charset=KLINGON-9", "unknown charset"),
    (f"id={UUID}&from=8613812345678&text=TD&time=yesterday", "not Unix seconds"),
])
def test_kannel_malformed(query: str, message: str) -> None:
    with pytest.raises(BadCallback, match=message) as info:
        KANNEL.parse(get(query))
    assert info.value.status == 400


# -- Aliyun ---------------------------------------------------------------------------------------

# help.aliyun.com/zh/sms/developer-reference/smsup-http (sequence_id a string), and the older
# knowledge_detail/60127.html (sequence_id a number, with sign_name)
ALIYUN_DOC = '[{"phone_number":"1381111****","content":"内容","send_time":"2017-09-01 00:00:00","dest_code":"1234","sequence_id":"1234567890"}]'
ALIYUN_OLD = ('[ { "phone_number" : "1381111****", "send_time" : "2017-09-01 00:00:00", "content" : "内容", '
              '"sign_name" : "签名", "dest_code" : "1234", "sequence_id" : 1234567890 } ]')


@pytest.mark.parametrize("body", [ALIYUN_DOC, ALIYUN_OLD])
def test_aliyun_documented_examples(body: str) -> None:
    (r,) = ALIYUN.parse(post(body))
    assert (r.gateway, r.provider_id, r.phone, r.to, r.extension, r.text) == (
        "aliyun", "1234567890:1381111", "1381111****", "1234", "1234", "内容")  # the docs mask the number
    assert r.at == datetime(2017, 8, 31, 16, 0, tzinfo=UTC) and r.raw == body.encode()
    assert json.loads(ALIYUN.ack_body) == {"code": 0, "msg": "接收成功"}


def test_aliyun_batch_and_its_retry() -> None:
    body = json.dumps([
        {"phone_number": "13812345678", "content": "TD", "send_time": "2026-03-01 09:30:00", "dest_code": "01", "sequence_id": 77},
        {"phone_number": "8613900001111", "content": "", "send_time": "2026-03-01 09:31:00", "dest_code": "01", "sequence_id": 78},
    ], ensure_ascii=False)
    first, second = ALIYUN.parse(post(body))
    assert (first.phone, first.provider_id, first.text, first.at) == ("+8613812345678", "77:13812345678", "TD", RECEIVED)
    assert (second.phone, second.provider_id, second.text) == ("+8613900001111", "78:13900001111", "")
    assert [r.provider_id for r in ALIYUN.parse(post(body))] == ["77:13812345678", "78:13900001111"]  # pushed again


@pytest.mark.parametrize(("body", "message"), [
    ("not json", "not JSON"),
    ('["a"]', "objects"),
    ('[{"content": "TD"}]', "no sender number"),
    ('[{"phone_number": "13812345678"}]', "no 'content'"),
    ('[{"phone_number": "13812345678", "content": "TD", "send_time": "01/03/2026"}]', "Beijing time"),
])
def test_aliyun_malformed(body: str, message: str) -> None:
    with pytest.raises(BadCallback, match=message):
        ALIYUN.parse(post(body))


# -- Tencent --------------------------------------------------------------------------------------

# cloud.tencent.com/document/api/382/59179 (and the international 382/43548)
TENCENT_DOC = ('{"extend": "扩展码","mobile": "13xxxxxxxxx","nationcode": "86","sign": "短信签名",'
               '"text": "用户回复的内容","time": 1457336869}')


def test_tencent_documented_example() -> None:
    (r,) = TENCENT.parse(post(TENCENT_DOC))
    assert (r.gateway, r.provider_id, r.text, r.extension, r.to) == ("tencent", None, "用户回复的内容", "扩展码", "扩展码")
    assert r.at == datetime(2016, 3, 7, 7, 47, 49, tzinfo=UTC) and r.raw == TENCENT_DOC.encode()
    assert json.loads(TENCENT.ack_body) == {"result": 0, "errmsg": "OK"}


def test_tencent_numbers_from_nationcode() -> None:
    body = {"extend": "", "mobile": "13812345678", "nationcode": "86", "sign": "城南", "text": "TD", "time": 1772328600}
    (r,) = TENCENT.parse(post(json.dumps(body)))
    assert (r.phone, r.at, r.extension) == ("+8613812345678", RECEIVED, "")
    (r,) = TENCENT.parse(post(json.dumps({**body, "mobile": "2025550123", "nationcode": "1"})))
    assert r.phone == "+12025550123"


@pytest.mark.parametrize(("body", "message"), [
    ("[", "not JSON"),
    ('{"mobile": "13812345678", "nationcode": "86", "time": 1}', "no 'text'"),
    ('{"mobile": "13812345678", "text": "TD", "time": "noon"}', "not Unix seconds"),
    ('{"nationcode": "86", "text": "TD", "time": 1}', "no sender number"),
])
def test_tencent_malformed(body: str, message: str) -> None:
    with pytest.raises(BadCallback, match=message):
        TENCENT.parse(post(body))


# -- 云MAS ----------------------------------------------------------------------------------------

CMAS_MO = {"mobile": "13812345678", "smsContent": "收到，谢谢", "sendTime": "2026-03-01 09:30:00", "addSerial": "01"}


@pytest.mark.parametrize("encode", [lambda b: b, base64.b64encode], ids=["json", "base64"])
def test_cmas_json_or_base64(encode: object) -> None:
    raw = encode(json.dumps(CMAS_MO, ensure_ascii=False).encode())  # type: ignore[operator]
    (r,) = CMAS.parse(post(raw))
    assert (r.gateway, r.provider_id, r.phone, r.text, r.at, r.extension, r.raw) == (
        "cmas", None, "+8613812345678", "收到，谢谢", RECEIVED, "01", raw)
    assert CMAS.ack_body == b"success"


def test_cmas_aliases_and_arrays() -> None:
    rows = [{"mobile": "13812345678", "content": "TD", "moTime": "2026-03-01 09:30:00"}, CMAS_MO]
    first, second = CMAS.parse(post(json.dumps(rows, ensure_ascii=False)))
    assert (first.text, first.at, first.extension) == ("TD", RECEIVED, "")
    assert second.text == "收到，谢谢"


@pytest.mark.parametrize(("body", "message"), [(b"%%%", "neither JSON nor Base64"), (b'{"mobile": "13812345678"}', "no 'smsContent'")])
def test_cmas_malformed(body: bytes, message: str) -> None:
    with pytest.raises(BadCallback, match=message):
        CMAS.parse(post(body))


# -- simulator ------------------------------------------------------------------------------------


def test_simulator_format() -> None:
    body = '{"id": "sim-mo-1", "phone": "+8613812345678", "text": "TD", "to": "10690", "at": "2026-03-01T01:30:00Z"}'
    (r,) = SIMULATOR.parse(post(body))
    assert r == Inbound("simulator", "sim-mo-1", "+8613812345678", "10690", "TD", RECEIVED, body.encode())
    (r,) = SIMULATOR.parse(post('[{"phone": "13812345678", "text": "好"}]'))
    assert (r.provider_id, r.phone, r.to, r.at) == (None, "+8613812345678", "", RECEIVED)
    with pytest.raises(BadCallback, match="ISO 8601"):
        SIMULATOR.parse(post('{"phone": "13812345678", "text": "好", "at": "tomorrow"}'))
    with pytest.raises(BadCallback, match="no 'text'"):
        SIMULATOR.parse(post('{"phone": "13812345678"}'))


# -- Twilio ---------------------------------------------------------------------------------------

TOKEN = "unit-twilio-token"
SID = "AC" + "1".ljust(32, "0")
PUBLIC = "https://sms.example.org/receipts"


@pytest.fixture
def twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"BROADCAST_TWILIO_ACCOUNT_SID": SID, "BROADCAST_TWILIO_AUTH_TOKEN": TOKEN,
                 "BROADCAST_TWILIO_FROM": "+15005550006", "BROADCAST_RECEIPTS_PUBLIC_URL": PUBLIC}.items():
        monkeypatch.setenv(k, v)


def twilio_post(params: dict[str, str], path: str = "/s3cret/twilio-mo", query: str = "", signature: str | None = None) -> Incoming:
    url = f"{PUBLIC}{path}" + (f"?{query}" if query else "")
    headers = {"X-Twilio-Signature": signature or twilio_signature(url, params, TOKEN),
               "Content-Type": "application/x-www-form-urlencoded"}
    return Incoming("POST", [], headers, urlencode(params).encode(), RECEIVED, path=path, raw_query=query)


INCOMING = {"ToCountry": "US", "SmsMessageSid": "SM" + "a" * 32, "NumMedia": "0", "SmsSid": "SM" + "a" * 32,
            "SmsStatus": "received", "Body": "Yes, 收到", "To": "+15005550006", "NumSegments": "1",
            "MessageSid": "SM" + "a" * 32, "AccountSid": SID, "From": "+8613812345678", "ApiVersion": "2010-04-01"}


def test_twilio_incoming_message(twilio_env: None) -> None:
    (r,) = TWILIO.parse(twilio_post(INCOMING))
    assert (r.gateway, r.provider_id, r.phone, r.to, r.text, r.at) == (
        "twilio", "SM" + "a" * 32, "+8613812345678", "+15005550006", "Yes, 收到", RECEIVED)
    assert TWILIO.parse(twilio_post(INCOMING))[0].provider_id == r.provider_id  # the same webhook again
    assert (TWILIO.ack_body, TWILIO.ack_media_type) == (b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>', "text/xml")


def test_twilio_published_signature_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The published example (research notes §1): it verifies, so the parser goes on to find no
    MessageSid (400), where a wrong signature is refused (403)."""
    monkeypatch.setenv("BROADCAST_TWILIO_ACCOUNT_SID", SID)
    monkeypatch.setenv("BROADCAST_TWILIO_AUTH_TOKEN", "12345")
    monkeypatch.setenv("BROADCAST_TWILIO_FROM", "+18005551212")
    monkeypatch.setenv("BROADCAST_RECEIPTS_PUBLIC_URL", "https://mycompany.com")
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
              "To": "+18005551212"}
    body = urlencode(params).encode()

    def req(signature: str) -> Incoming:
        return Incoming("POST", [], {"X-Twilio-Signature": signature}, body, RECEIVED, path="/myapp.php", raw_query="foo=1&bar=2")

    with pytest.raises(BadCallback, match="no MessageSid") as info:
        TWILIO.parse(req("0/KCTR6DLpKmkAf8muzZqo1nDgQ="))
    assert info.value.status == 400
    with pytest.raises(Forbidden):
        TWILIO.parse(req("1/KCTR6DLpKmkAf8muzZqo1nDgQ="))


def test_twilio_refusals(twilio_env: None) -> None:
    with pytest.raises(Forbidden):
        TWILIO.parse(twilio_post(INCOMING, signature=twilio_signature(f"{PUBLIC}/s3cret/twilio-mo", INCOMING, "forged")))
    with pytest.raises(Forbidden):  # signed for another URL
        TWILIO.parse(twilio_post(INCOMING, signature=twilio_signature("http://127.0.0.1:8787/twilio-mo", INCOMING, TOKEN)))
    with pytest.raises(Forbidden):
        TWILIO.parse(Incoming("POST", [], {}, urlencode(INCOMING).encode(), path="/twilio-mo"))
    with pytest.raises(BadCallback, match="POSTed"):
        TWILIO.parse(Incoming("GET", [], {}, b"", path="/twilio-mo"))
    with pytest.raises(BadCallback, match="no Body"):
        TWILIO.parse(twilio_post({k: v for k, v in INCOMING.items() if k != "Body"}))


# -- names, numbers -------------------------------------------------------------------------------


def test_names_do_not_collide_with_receipt_formats() -> None:
    receipt_names: list[str] = []
    inbound: dict[str, InboundFormat] = {}
    for name in registry.names():
        cls = registry.load(name)
        receipt_names += list(cls.receipt_formats())
        for key, fmt in cls.inbound_formats().items():
            assert key not in inbound, f"{key} declared twice"
            assert isinstance(fmt, InboundFormat)
            inbound[key] = fmt
    assert not set(inbound) & set(receipt_names)
    assert {"kannel-mo", "aliyun-mo", "tencent-mo", "twilio-mo", "cmas-mo", "simulator-mo"} <= set(inbound)


@pytest.mark.parametrize(("number", "cc", "expected"), [
    ("13812345678", None, "+8613812345678"), ("8613812345678", None, "+8613812345678"),
    ("008613812345678", None, "+8613812345678"), ("+8613812345678", "86", "+8613812345678"),
    ("13812345678", "86", "+8613812345678"), ("10690", None, "10690"), ("138****1111", None, "138****1111"),
])
def test_numbers(number: str, cc: str | None, expected: str) -> None:
    assert e164(number, cc) == expected


# -- blacklist refusals ---------------------------------------------------------------------------


def test_tencent_blacklist_is_blocked() -> None:
    result = verdict_result(1, tencent_verdict("FailedOperation.PhoneNumberInBlacklist"), "FailedOperation.PhoneNumberInBlacklist", None)
    assert (result.outcome.value, result.recipient_fault, result.blocked) == ("permanent", True, True)
    other = verdict_result(1, tencent_verdict("InvalidParameterValue.IncorrectPhoneNumber"), "x", None)
    assert (other.recipient_fault, other.blocked) == (True, False)


def test_aliyun_number_blacklist_is_blocked_the_keyword_one_is_not() -> None:
    assert aliyun_verdict("isv.MOBILE_NUMBER_BLACKLIST").blocked and aliyun_verdict("isv.MOBILE_NUMBER_BLACKLIST").recipient
    assert not aliyun_verdict("isv.BLACK_KEY_CONTROL_LIMIT").blocked  # content (a keyword), not a number
    assert not aliyun_verdict("isv.MOBILE_NUMBER_ILLEGAL").blocked
