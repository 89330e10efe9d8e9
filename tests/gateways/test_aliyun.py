"""The aliyun gateway against an httpx.MockTransport playing dysmsapi (it verifies our signature the way
Aliyun does) (the contract kit runs over it in test_contract.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from broadcast.errors import ConfigError
from broadcast.gateways import registry
from broadcast.gateways.aliyun import (
    SMS_REPORT_ACK,
    AliyunGateway,
    AliyunSettings,
    classify_answer,
    parse_send_details,
    parse_sms_report,
)
from broadcast.gateways.base import Outcome, SendItem, SendResult, make_client
from broadcast.gateways.signing import aliyun_rpc_signature

SECRET = "fake-aliyun-secret-9f3b"
NOW = datetime(2026, 3, 1, 1, 30, tzinfo=UTC)  # 09:30 in Beijing
Handler = Callable[[dict[str, str]], httpx.Response]


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Until pyproject.toml declares the entry point, register the gateway for the registry checks."""
    monkeypatch.setitem(registry.BUILTINS, "aliyun", "broadcast.gateways.aliyun:AliyunGateway")
    yield


def settings(**over: Any) -> AliyunSettings:
    base: dict[str, Any] = dict(
        access_key_id="LTAI-test", access_key_secret=SecretStr(SECRET), sign_name="城南新区", template_code="SMS_100001",
        endpoint="https://dysmsapi.example.test/",
    )
    return AliyunSettings(**{**base, **over})


def provider(handler: Handler, seen: list[dict[str, str]] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """The fake dysmsapi: decodes the form body, checks the V1 signature like Aliyun, then asks ``handler``."""

    def transport(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        params = dict(parse_qsl(request.content.decode("ascii"), keep_blank_values=True))
        if seen is not None:
            seen.append(params)
        signature = params.pop("Signature")
        if signature != aliyun_rpc_signature(params, SECRET, "POST"):
            return httpx.Response(400, json={"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"})
        return handler(params)

    return transport


def ok(params: dict[str, str]) -> httpx.Response:
    if params["Action"] == "QuerySendDetails":
        return httpx.Response(200, json={"Code": "OK", "TotalCount": 0, "SmsSendDetailDTOs": {"SmsSendDetailDTO": []}})
    return httpx.Response(200, json={"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "r1"})


def gateway(handler: Handler, seen: list[dict[str, str]] | None = None, **over: Any) -> AliyunGateway:
    client = make_client(2, 4, transport=httpx.MockTransport(provider(handler, seen)))
    counter = iter(range(10**9))
    return AliyunGateway(settings(**over), client, clock=lambda: NOW, nonce=lambda: f"nonce-{next(counter)}")


def raiser(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)  # type: ignore[call-arg]

    return handler


def run_send(gw: AliyunGateway, items: list[SendItem]) -> list[SendResult]:
    async def go() -> list[SendResult]:
        try:
            return await gw.send(items)
        finally:
            await gw.aclose()

    return asyncio.run(go())


def same_text(n: int, text: str = "今日早餐：豆浆油条") -> list[SendItem]:
    return [SendItem(100 + i, f"+86138{i:08d}", text) for i in range(n)]


def own_texts(n: int) -> list[SendItem]:
    return [SendItem(200 + i, f"+86139{i:08d}", f"第{i}条 message") for i in range(n)]


# -- request shape ----------------------------------------------------------------------------------


def test_same_text_uses_send_sms_with_template_param_and_out_id() -> None:
    seen: list[dict[str, str]] = []
    results = run_send(gateway(ok, seen), same_text(3))
    (params,) = seen
    assert params["Action"] == "SendSms" and params["Version"] == "2017-05-25" and params["Format"] == "JSON"
    assert params["PhoneNumbers"] == "+8613800000000,+8613800000001,+8613800000002"
    assert params["SignName"] == "城南新区" and params["TemplateCode"] == "SMS_100001"
    assert json.loads(params["TemplateParam"]) == {"content": "今日早餐：豆浆油条"}
    assert params["OutId"] == "100-102"
    assert params["Timestamp"] == "2026-03-01T01:30:00Z" and params["SignatureNonce"] == "nonce-0"
    assert params["AccessKeyId"] == "LTAI-test" and params["SignatureMethod"] == "HMAC-SHA1" and params["SignatureVersion"] == "1.0"
    assert [r.provider_id for r in results] == [f"900619746936498440^0:1380000000{i}" for i in range(3)]
    assert all(r.outcome is Outcome.ACCEPTED for r in results)


def test_single_recipient_out_id_is_the_delivery_id() -> None:
    seen: list[dict[str, str]] = []
    run_send(gateway(ok, seen, template_param="body"), [SendItem(42, "13800000000", "hi")])
    assert seen[0]["OutId"] == "42" and json.loads(seen[0]["TemplateParam"]) == {"body": "hi"}


def test_personalised_texts_use_send_batch_sms_in_hundreds() -> None:
    seen: list[dict[str, str]] = []
    items = own_texts(150) + same_text(2)
    results = run_send(gateway(ok, seen), items)
    actions = [p["Action"] for p in seen]
    assert sorted(actions) == ["SendBatchSms", "SendBatchSms", "SendSms"]
    batch = [p for p in seen if p["Action"] == "SendBatchSms"]
    assert [len(json.loads(p["PhoneNumberJson"])) for p in batch] == [100, 50]
    first = batch[0]
    assert json.loads(first["SignNameJson"]) == ["城南新区"] * 100
    assert json.loads(first["TemplateParamJson"])[:2] == [{"content": "第0条 message"}, {"content": "第1条 message"}]
    assert "TemplateParam" not in first and "PhoneNumbers" not in first
    assert [r.delivery_id for r in results] == [i.delivery_id for i in items]


def test_more_than_1000_same_text_is_chunked() -> None:
    seen: list[dict[str, str]] = []
    results = run_send(gateway(ok, seen), same_text(2001))
    assert [len(p["PhoneNumbers"].split(",")) for p in seen] == [1000, 1000, 1]
    assert len(results) == 2001


def test_endpoint_setting_is_used_and_host_needs_no_signing() -> None:
    urls: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return provider(ok)(request)

    client = make_client(2, 4, transport=httpx.MockTransport(transport))
    gw = AliyunGateway(settings(endpoint="http://127.0.0.1:8765/"), client, clock=lambda: NOW)
    (result,) = run_send(gw, same_text(1))
    assert urls == ["http://127.0.0.1:8765/"] and result.outcome is Outcome.ACCEPTED


# -- error mapping ----------------------------------------------------------------------------------


def answer(code: str, message: str = "", status: int = 200) -> Handler:
    return lambda p: httpx.Response(status, json={"Code": code, "Message": message, "RequestId": "r"})


@pytest.mark.parametrize(
    ("code", "message", "retry_after"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1", 60.0),
        ("isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:10", 3600.0),
        ("Throttling.User", "Request was denied due to user flow control.", 1.0),
    ],
)
def test_flow_control_is_retryable_with_backoff(code: str, message: str, retry_after: float) -> None:
    (r,) = run_send(gateway(answer(code, message)), same_text(1))
    assert r.outcome is Outcome.RETRYABLE and r.retry_after_s == retry_after and not r.pause and not r.maybe_sent
    assert r.code == code and r.detail == message


@pytest.mark.parametrize("code", ["isv.DAY_LIMIT_CONTROL", "isv.MONTH_LIMIT_CONTROL"])
def test_account_caps_are_retryable_but_pause(code: str) -> None:
    results = run_send(gateway(answer(code)), same_text(3))
    assert all(r.outcome is Outcome.RETRYABLE and r.pause for r in results)


@pytest.mark.parametrize(
    "code",
    ["isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE", "InvalidAccessKeyId.NotFound", "isp.RAM_PERMISSION_DENY",
     "InvalidTimeStamp.Expired", "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_TEMPLATE_ILLEGAL", "Forbidden.RAM"],
)
def test_account_and_configuration_errors_pause(code: str) -> None:
    results = run_send(gateway(answer(code, status=400 if "." in code else 403)), same_text(2))
    assert all(r.outcome is Outcome.PERMANENT and r.pause and r.code == code for r in results)


def test_wrong_secret_is_signature_does_not_match_and_pauses() -> None:
    client = make_client(2, 4, transport=httpx.MockTransport(provider(ok)))
    gw = AliyunGateway(settings(access_key_secret=SecretStr("wrong")), client)
    (r,) = run_send(gw, same_text(1))
    assert r.outcome is Outcome.PERMANENT and r.pause and r.code == "SignatureDoesNotMatch"
    assert "wrong" not in repr(r) and SECRET not in repr(r)


def test_content_errors_are_permanent_without_pause() -> None:
    for code in ("isv.SMS_CONTENT_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.PARAM_LENGTH_LIMIT"):
        results = run_send(gateway(answer(code)), same_text(2))
        assert all(r.outcome is Outcome.PERMANENT and not r.pause for r in results), code


def test_transient_provider_errors_are_retryable() -> None:
    (r,) = run_send(gateway(answer("isp.SYSTEM_ERROR", status=500)), same_text(1))
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent
    (r,) = run_send(gateway(answer("SignatureNonceUsed", status=400)), same_text(1))
    assert r.outcome is Outcome.RETRYABLE
    (r,) = run_send(gateway(answer("SomethingNew", status=503)), same_text(1))
    assert r.outcome is Outcome.RETRYABLE


def test_one_bad_number_splits_the_batch_so_the_good_ones_go() -> None:
    bad = "+8613800000005"
    sent: list[list[str]] = []

    def handler(params: dict[str, str]) -> httpx.Response:
        numbers = params["PhoneNumbers"].split(",") if "PhoneNumbers" in params else json.loads(params["PhoneNumberJson"])
        if bad in numbers:
            return httpx.Response(200, json={"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"})
        sent.append(numbers)
        return ok(params)

    items = same_text(10)
    results = run_send(gateway(handler), items)
    by_id = {r.delivery_id: r for r in results}
    assert [r.delivery_id for r in results] == [i.delivery_id for i in items]
    assert by_id[105].outcome is Outcome.PERMANENT and by_id[105].code == "isv.MOBILE_NUMBER_ILLEGAL" and not by_id[105].pause
    assert all(r.outcome is Outcome.ACCEPTED for r in results if r.delivery_id != 105)
    delivered = [n for batch in sent for n in batch]
    assert sorted(delivered) == sorted(i.phone for i in items if i.phone != bad)  # each good number exactly once
    assert len(sent) <= 2 * 4  # bisection, not one request per number


def refusing(bad: set[str]) -> Handler:
    """Aliyun refusing any request (SendSms or SendBatchSms) that carries one of ``bad``."""

    def handler(params: dict[str, str]) -> httpx.Response:
        numbers = json.loads(params["PhoneNumberJson"]) if "PhoneNumberJson" in params else params["PhoneNumbers"].split(",")
        if bad & set(numbers):
            return httpx.Response(200, json={"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"})
        return ok(params)

    return handler


def test_split_also_works_for_send_batch_sms_and_two_bad_numbers() -> None:
    results = run_send(gateway(refusing({"+8613900000003", "+8613900000011"})), own_texts(16))
    failed = {r.delivery_id for r in results if r.outcome is Outcome.PERMANENT}
    assert failed == {203, 211}
    assert sum(r.outcome is Outcome.ACCEPTED for r in results) == 14


def test_single_bad_number_is_permanent() -> None:
    (r,) = run_send(gateway(answer("isv.MOBILE_NUMBER_ILLEGAL")), same_text(1))
    assert r.outcome is Outcome.PERMANENT and not r.pause


# -- transport and malformed answers -----------------------------------------------------------------


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError])
def test_timeouts_after_sending_are_in_doubt(exc: type[Exception]) -> None:
    gw = AliyunGateway(settings(), make_client(2, 4, transport=httpx.MockTransport(raiser(exc))))
    results = run_send(gw, same_text(3))
    assert all(r.outcome is Outcome.RETRYABLE and r.maybe_sent for r in results)


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout])
def test_connect_failures_are_plain_retries(exc: type[Exception]) -> None:
    gw = AliyunGateway(settings(), make_client(2, 4, transport=httpx.MockTransport(raiser(exc))))
    results = run_send(gw, same_text(2))
    assert all(r.outcome is Outcome.RETRYABLE and not r.maybe_sent for r in results)


@pytest.mark.parametrize("body", [b"<xml>OK</xml>", b"{}", b'{"Code": ""}', b"[]", b'{"Code": "O'])
def test_malformed_success_answers_are_in_doubt(body: bytes) -> None:
    results = run_send(gateway(lambda p: httpx.Response(200, content=body)), same_text(2))
    assert all(r.outcome is Outcome.RETRYABLE and r.maybe_sent and r.code == "malformed_response" for r in results)


def test_non_json_error_statuses_follow_the_http_mapping() -> None:
    (r,) = run_send(gateway(lambda p: httpx.Response(502, text="bad gateway")), same_text(1))
    assert r.outcome is Outcome.RETRYABLE
    (r,) = run_send(gateway(lambda p: httpx.Response(504)), same_text(1))
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent
    (r,) = run_send(gateway(lambda p: httpx.Response(403, text="denied")), same_text(1))
    assert r.outcome is Outcome.PERMANENT and r.pause


def test_classify_table() -> None:
    assert classify_answer("isv.MOBILE_NUMBER_ILLEGAL").split
    assert classify_answer("isv.MOBILE_COUNT_OVER_LIMIT").split
    assert classify_answer("isv.BLACK_KEY_CONTROL_LIMIT").outcome is Outcome.PERMANENT and not classify_answer("isv.BLACK_KEY_CONTROL_LIMIT").split
    assert classify_answer("isv.SOMETHING", http_status=500).outcome is Outcome.RETRYABLE
    assert classify_answer("isv.SOMETHING").outcome is Outcome.PERMANENT


# -- query (in-doubt sends) ----------------------------------------------------------------------------


def details(*rows: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"Code": "OK", "TotalCount": len(rows), "SmsSendDetailDTOs": {"SmsSendDetailDTO": list(rows)}})


def test_query_finds_sends_by_out_id_and_by_range_plus_content() -> None:
    seen: list[dict[str, str]] = []

    def handler(params: dict[str, str]) -> httpx.Response:
        assert params["Action"] == "QuerySendDetails" and params["PageSize"] == "50"
        if params["PhoneNumber"] == "+8613800000001":
            return details({"PhoneNum": "13800000001", "SendStatus": 3, "OutId": "7", "Content": "【城南新区】a"})
        if params["PhoneNumber"] == "+8613800000002":
            return details({"PhoneNum": "13800000002", "SendStatus": 1, "OutId": "5-9", "Content": "【城南新区】早安"})
        if params["PhoneNumber"] == "+8613800000003":
            return details({"PhoneNum": "13800000003", "SendStatus": 3, "OutId": "5-9", "Content": "【城南新区】别的"})
        return details()

    items = [SendItem(7, "+8613800000001", "a"), SendItem(8, "+8613800000002", "早安"),
             SendItem(9, "+8613800000003", "早安"), SendItem(10, "+8613800000004", "x")]

    async def go() -> list[SendResult | None]:
        gw = gateway(handler, seen)
        try:
            return await gw.query(items)
        finally:
            await gw.aclose()

    a, b, c, d = asyncio.run(go())
    assert a is not None and a.outcome is Outcome.ACCEPTED and a.delivery_id == 7
    assert b is not None and b.outcome is Outcome.ACCEPTED
    assert c is None and d is None
    assert {p["SendDate"] for p in seen} == {"20260301", "20260228"}  # today and yesterday, Beijing dates


def test_query_errors_mean_cannot_tell() -> None:
    async def go(handler: Handler) -> list[SendResult | None]:
        gw = gateway(handler)
        try:
            return await gw.query(same_text(2))
        finally:
            await gw.aclose()

    assert asyncio.run(go(answer("isp.SYSTEM_ERROR", status=500))) == [None, None]
    assert asyncio.run(go(lambda p: httpx.Response(200, content=b"garbage"))) == [None, None]


# -- receipts ----------------------------------------------------------------------------------------


def test_parse_sms_report_push() -> None:
    body = json.dumps([
        {"phone_number": "13800000001", "send_time": "2026-03-01 09:30:00", "report_time": "2026-03-01 09:30:08",
         "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "932702304080415357^0",
         "out_id": "7"},
        {"phone_number": "13800000002", "send_time": "2026-03-01 09:30:00", "report_time": "2026-03-01 09:31:00",
         "success": False, "err_code": "MK:0001", "err_msg": "", "sms_size": "2", "biz_id": "932702304080415357^0",
         "out_id": "5-9"},
        {"phone_number": "13800000003", "success": True},  # neither biz_id nor out_id: cannot be matched
    ], ensure_ascii=False).encode()
    first, second = parse_sms_report(body)
    assert first.delivery_id == 7 and first.provider_id == "932702304080415357^0:13800000001"
    assert first.status == "delivered" and first.code == "DELIVERED"
    assert first.at == datetime(2026, 3, 1, 1, 30, 8, tzinfo=UTC)
    assert second.delivery_id is None and second.status == "failed" and second.code == "MK:0001"
    assert second.provider_id == "932702304080415357^0:13800000002"
    assert SMS_REPORT_ACK == {"code": 0, "msg": "成功"}


def test_receipt_provider_id_matches_the_send_provider_id() -> None:
    (result,) = run_send(gateway(ok), [SendItem(1, "+8613800000001", "x")])
    (receipt,) = parse_sms_report([{"phone_number": "13800000001", "biz_id": "900619746936498440^0", "success": "true",
                                    "report_time": "2026-03-01 09:30:08", "err_code": "DELIVERED"}])
    assert receipt.provider_id == result.provider_id


@pytest.mark.parametrize("body", [b"not json", b'"a string"', b"42"])
def test_parse_sms_report_rejects_malformed_bodies(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_sms_report(body)


def test_parse_send_details_pull() -> None:
    data = {"Code": "OK", "TotalCount": 3, "SmsSendDetailDTOs": {"SmsSendDetailDTO": [
        {"PhoneNum": "13800000001", "SendStatus": 3, "ErrCode": "DELIVERED", "OutId": "7",
         "SendDate": "2026-03-01 09:30:00", "ReceiveDate": "2026-03-01 09:30:05", "Content": "【城南新区】早安"},
        {"PhoneNum": "13800000002", "SendStatus": 2, "ErrCode": "MN:0001", "OutId": "", "ReceiveDate": "2026-03-01 09:31:00"},
        {"PhoneNum": "13800000003", "SendStatus": 1, "ErrCode": "", "OutId": "9"},
    ]}}
    a, b = parse_send_details(data, biz_id="B1")
    assert (a.delivery_id, a.provider_id, a.status, a.code) == (7, "B1:13800000001", "delivered", "DELIVERED")
    assert a.at == datetime(2026, 3, 1, 1, 30, 5, tzinfo=UTC)
    assert (b.delivery_id, b.provider_id, b.status) == (None, "B1:13800000002", "failed")
    assert parse_send_details(json.dumps(data), biz_id=None)[0].delivery_id == 7
    with pytest.raises(ValueError):
        parse_send_details(b"nope")


def test_receipts_for_pulls_one_number() -> None:
    def handler(params: dict[str, str]) -> httpx.Response:
        assert params["BizId"] == "B1" and params["SendDate"] == "20260301"
        return details({"PhoneNum": "13800000001", "SendStatus": 3, "ErrCode": "DELIVERED", "OutId": "7",
                        "ReceiveDate": "2026-03-01 09:30:05"})

    async def go() -> list[Any]:
        gw = gateway(handler)
        try:
            return await gw.receipts_for("+8613800000001", "20260301", "B1")
        finally:
            await gw.aclose()

    (receipt,) = asyncio.run(go())
    assert receipt.delivery_id == 7 and receipt.provider_id == "B1:13800000001"


# -- settings ----------------------------------------------------------------------------------------


def test_settings_from_environment_and_secrets_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="BROADCAST_ALIYUN_ACCESS_KEY_ID"):
        registry.create("aliyun")
    monkeypatch.setenv("BROADCAST_ALIYUN_ACCESS_KEY_ID", "LTAI-env")
    monkeypatch.setenv("BROADCAST_ALIYUN_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("BROADCAST_ALIYUN_SIGN_NAME", "【城南新区】")
    monkeypatch.setenv("BROADCAST_ALIYUN_TEMPLATE_CODE", "SMS_1")
    gw = registry.create("aliyun")
    assert isinstance(gw, AliyunGateway) and gw.settings.sign_name == "城南新区"
    assert gw.settings.endpoint == "https://dysmsapi.aliyuncs.com/" and gw.settings.template_param == "content"
    assert SECRET not in repr(gw.settings) and SECRET not in str(gw.settings.model_dump())
    assert gw.check() == []
    monkeypatch.setenv("BROADCAST_ALIYUN_ENDPOINT", "ftp://x")
    with pytest.raises(ConfigError, match="BROADCAST_ALIYUN_ENDPOINT") as info:
        registry.create("aliyun")
    assert SECRET not in info.value.message


def test_check_flags_suspicious_settings() -> None:
    gw = AliyunGateway(settings(template_code="12345", sign_name="X", endpoint="http://sms.example.org/"))
    problems = gw.check()
    assert any("TEMPLATE_CODE" in p for p in problems) and any("SIGN_NAME" in p for p in problems)
    assert any("ENDPOINT" in p for p in problems)


# -- recipient faults: a refused number never counts toward the auto-pause ------------------------------


@pytest.mark.parametrize(
    ("code", "message", "status", "recipient"),
    [
        ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号", 200, True),
        ("isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:10", 200, True),  # that number's frequency limit
        ("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制", 200, False),  # the request's count, not the number
        ("isv.DOMESTIC_NUMBER_NOT_SUPPORTED", "国际/港澳台消息模板不支持发送境内号码", 200, False),  # the template
        ("isv.AMOUNT_NOT_ENOUGH", "账户余额不足", 200, False),
        ("SignatureDoesNotMatch", "Specified signature is not matched", 400, False),
        ("isv.SMS_SIGNATURE_ILLEGAL", "签名不合法", 200, False),
        ("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法", 200, False),
        ("isv.SMS_CONTENT_ILLEGAL", "内容违规", 200, False),
        ("isv.BLACK_KEY_CONTROL_LIMIT", "黑名单关键字", 200, False),  # the text's keywords
        ("isv.DAY_LIMIT_CONTROL", "日发送限额", 200, False),
        ("Throttling.User", "flow control", 200, False),
        ("isp.SYSTEM_ERROR", "系统错误", 500, False),
    ],
)
def test_only_codes_naming_one_number_are_recipient_faults(code: str, message: str, status: int, recipient: bool) -> None:
    (r,) = run_send(gateway(answer(code, message, status)), same_text(1))
    assert r.code == code and r.recipient_fault is recipient, r


def test_the_bad_number_of_a_bisected_batch_is_the_only_recipient_fault() -> None:
    results = run_send(gateway(refusing({"+8613900000002", "+8613900000013"})), own_texts(16))
    assert {r.delivery_id for r in results if r.recipient_fault} == {202, 213}
    assert all(r.outcome is Outcome.ACCEPTED for r in results if not r.recipient_fault)


def test_too_many_numbers_bisects_but_a_single_number_so_refused_counts() -> None:
    def handler(params: dict[str, str]) -> httpx.Response:
        if len(params["PhoneNumbers"].split(",")) > 4:
            return httpx.Response(200, json={"Code": "isv.MOBILE_COUNT_OVER_LIMIT", "Message": "手机号码数量超过限制"})
        return ok(params)

    results = run_send(gateway(handler), same_text(10))
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    (r,) = run_send(gateway(answer("isv.MOBILE_COUNT_OVER_LIMIT")), same_text(1))
    assert r.outcome is Outcome.PERMANENT and not r.recipient_fault and not r.pause
