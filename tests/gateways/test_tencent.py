"""The tencent gateway against an httpx.MockTransport playing the SMS API 3.0 (it re-derives our TC3
signature from the received request, as Tencent does) (the contract kit runs over it in test_contract.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from broadcast.errors import ConfigError
from broadcast.gateways import registry
from broadcast.gateways.base import Outcome, SendItem, SendResult, make_client
from broadcast.gateways.signing import tc3_authorization
from broadcast.gateways.tencent import (
    CALLBACK_ACK,
    TencentGateway,
    TencentSettings,
    classify_answer,
    parse_callback,
    parse_pull_status,
)

SECRET = "fake-tencent-secret-7c1d"
NOW = 1772328600  # 2026-03-01 01:30:00 UTC
Handler = Callable[[str, dict[str, Any]], httpx.Response]


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry.BUILTINS, "tencent", "broadcast.gateways.tencent:TencentGateway")
    yield


def settings(**over: Any) -> TencentSettings:
    base: dict[str, Any] = dict(
        secret_id="AKID-test", secret_key=SecretStr(SECRET), sdk_app_id="1400006666", sign_name="城南新区",
        template_id="449739", endpoint="https://sms.example.test/",
    )
    return TencentSettings(**{**base, **over})


def provider(handler: Handler, seen: list[httpx.Request] | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """The fake API: checks headers and the TC3 signature like Tencent, then asks ``handler``."""

    def transport(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        h = request.headers
        assert request.method == "POST" and h["x-tc-version"] == "2021-01-11" and h["x-tc-region"]
        assert h["content-type"] == "application/json; charset=utf-8"
        assert h["host"] == request.url.netloc.decode()
        expected = tc3_authorization(
            "AKID-test", SECRET, service="sms", host=h["host"], content_type=h["content-type"], payload=request.content,
            timestamp=int(h["x-tc-timestamp"]), extra_headers={"X-TC-Action": h["x-tc-action"]},
        )
        if h["authorization"] != expected:
            return httpx.Response(200, json={"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}, "RequestId": "r"}})
        return handler(h["x-tc-action"], json.loads(request.content))

    return transport


def ok(action: str, body: dict[str, Any]) -> httpx.Response:
    if action == "SendSms":
        rows = [
            {"SerialNo": f"2028:{phone[-4:]}", "PhoneNumber": phone, "Fee": 1, "SessionContext": body["SessionContext"],
             "Code": "Ok", "Message": "send success", "IsoCode": "CN"}
            for phone in body["PhoneNumberSet"]
        ]
        return httpx.Response(200, json={"Response": {"SendStatusSet": rows, "RequestId": "r"}})
    return httpx.Response(200, json={"Response": {"PullSmsSendStatusSet": [], "RequestId": "r"}})


def gateway(handler: Handler, seen: list[httpx.Request] | None = None, **over: Any) -> TencentGateway:
    client = make_client(2, 4, transport=httpx.MockTransport(provider(handler, seen)))
    return TencentGateway(settings(**over), client, clock=lambda: NOW)


def raiser(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)  # type: ignore[call-arg]

    return handler


def run(coro_fn: Callable[[TencentGateway], Any], gw: TencentGateway) -> Any:
    async def go() -> Any:
        try:
            return await coro_fn(gw)
        finally:
            await gw.aclose()

    return asyncio.run(go())


def run_send(gw: TencentGateway, items: list[SendItem]) -> list[SendResult]:
    return run(lambda g: g.send(items), gw)  # type: ignore[no-any-return]


def same_text(n: int, text: str = "今日早餐：豆浆油条") -> list[SendItem]:
    return [SendItem(100 + i, f"+86138{i:08d}", text) for i in range(n)]


def error(code: str, message: str = "msg") -> Handler:
    return lambda a, b: httpx.Response(200, json={"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "r"}})


# -- request shape ----------------------------------------------------------------------------------


def test_send_sms_request_body_and_headers() -> None:
    seen: list[httpx.Request] = []
    results = run_send(gateway(ok, seen), same_text(3))
    (request,) = seen
    body = json.loads(request.content)
    assert body == {
        "PhoneNumberSet": ["+8613800000000", "+8613800000001", "+8613800000002"],
        "SmsSdkAppId": "1400006666", "SignName": "城南新区", "TemplateId": "449739",
        "TemplateParamSet": ["今日早餐：豆浆油条"], "SessionContext": "100-102",
    }
    assert "今日早餐".encode() in request.content
    h = request.headers
    assert h["x-tc-action"] == "SendSms" and h["x-tc-timestamp"] == str(NOW) and h["x-tc-region"] == "ap-guangzhou"
    assert h["authorization"].startswith("TC3-HMAC-SHA256 Credential=AKID-test/2026-03-01/sms/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=")
    assert [r.provider_id for r in results] == ["2028:0000", "2028:0001", "2028:0002"]
    assert all(r.outcome is Outcome.ACCEPTED for r in results)


def test_template_params_setting_and_single_session_context() -> None:
    seen: list[httpx.Request] = []
    run_send(gateway(ok, seen, template_params='["城南新区", "{text}"]'), [SendItem(42, "+8613800000000", "早安")])
    body = json.loads(seen[0].content)
    assert body["TemplateParamSet"] == ["城南新区", "早安"] and body["SessionContext"] == "42"


def test_batches_are_at_most_200_and_one_text_each() -> None:
    seen: list[httpx.Request] = []
    items = same_text(401) + [SendItem(9000, "+8613900000000", "other")]
    results = run_send(gateway(ok, seen), items)
    assert [len(json.loads(r.content)["PhoneNumberSet"]) for r in seen] == [200, 200, 1, 1]
    assert [r.delivery_id for r in results] == [i.delivery_id for i in items]


def test_custom_endpoint_is_signed_for_its_own_host_and_port() -> None:
    seen: list[httpx.Request] = []
    (r,) = run_send(gateway(ok, seen, endpoint="http://127.0.0.1:8099/"), same_text(1))
    assert r.outcome is Outcome.ACCEPTED
    assert seen[0].headers["host"] == "127.0.0.1:8099" and str(seen[0].url) == "http://127.0.0.1:8099/"


def test_wrong_key_is_a_signature_failure_and_pauses() -> None:
    client = make_client(2, 4, transport=httpx.MockTransport(provider(ok)))
    gw = TencentGateway(settings(secret_key=SecretStr("wrong")), client, clock=lambda: NOW)
    results = run_send(gw, same_text(2))
    assert all(r.outcome is Outcome.PERMANENT and r.pause and r.code == "AuthFailure.SignatureFailure" for r in results)


# -- per-number results and error mapping -------------------------------------------------------------


def test_partial_failure_maps_each_number() -> None:
    codes = {
        "+8613800000001": ("InvalidParameterValue.IncorrectPhoneNumber", "incorrect number format"),
        "+8613800000002": ("FailedOperation.PhoneNumberInBlacklist", "blacklisted"),
        "+8613800000003": ("LimitExceeded.PhoneNumberThirtySecondLimit", "30s"),
        "+8613800000004": ("LimitExceeded.PhoneNumberDailyLimit", "daily"),
        "+8613800000005": ("FailedOperation.ContainSensitiveWord", "sensitive"),
    }

    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        rows = []
        for phone in reversed(body["PhoneNumberSet"]):  # order is not relied upon
            code, msg = codes.get(phone, ("Ok", "send success"))
            rows.append({"SerialNo": "s" + phone[-1], "PhoneNumber": phone, "Code": code, "Message": msg, "Fee": 1})
        return httpx.Response(200, json={"Response": {"SendStatusSet": rows, "RequestId": "r"}})

    r0, r1, r2, r3, r4, r5 = run_send(gateway(handler), same_text(6))
    assert r0.outcome is Outcome.ACCEPTED and r0.provider_id == "s0"
    assert r1.outcome is Outcome.PERMANENT and r1.code == "InvalidParameterValue.IncorrectPhoneNumber" and not r1.pause
    assert r2.outcome is Outcome.PERMANENT and r2.code == "FailedOperation.PhoneNumberInBlacklist"
    assert r3.outcome is Outcome.RETRYABLE and r3.retry_after_s == 30.0
    assert r4.outcome is Outcome.RETRYABLE and r4.retry_after_s == 3600.0
    assert r5.outcome is Outcome.PERMANENT and not r5.pause
    assert r5.provider_id is None


def test_missing_status_entry_is_in_doubt() -> None:
    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        phone = body["PhoneNumberSet"][0]
        rows = [{"SerialNo": "s", "PhoneNumber": phone, "Code": "Ok"}]
        return httpx.Response(200, json={"Response": {"SendStatusSet": rows, "RequestId": "r"}})

    first, second = run_send(gateway(handler), same_text(2))
    assert first.outcome is Outcome.ACCEPTED
    assert second.outcome is Outcome.RETRYABLE and second.maybe_sent and second.code == "missing_result"


@pytest.mark.parametrize(
    "code",
    ["FailedOperation.InsufficientBalanceInSmsPackage", "UnauthorizedOperation.SerivceSuspendDueToArrears",
     "AuthFailure.SecretIdNotFound", "AuthFailure.SignatureExpire", "FailedOperation.SignatureIncorrectOrUnapproved",
     "FailedOperation.TemplateIncorrectOrUnapproved", "UnauthorizedOperation.SmsSdkAppIdVerifyFail"],
)
def test_account_errors_pause(code: str) -> None:
    results = run_send(gateway(error(code)), same_text(2))
    assert all(r.outcome is Outcome.PERMANENT and r.pause and r.code == code for r in results)


@pytest.mark.parametrize(
    ("code", "pause"),
    [("RequestLimitExceeded", False), ("LimitExceeded.DeliveryFrequencyLimit", False),
     ("LimitExceeded.AppDailyLimit", True), ("LimitExceeded.AppMainlandChinaDailyLimit", True),
     ("InternalError.Timeout", False), ("InternalError.RequestTimeException", False)],
)
def test_request_level_throttling_and_internal_errors_are_retryable(code: str, pause: bool) -> None:
    results = run_send(gateway(error(code)), same_text(2))
    assert all(r.outcome is Outcome.RETRYABLE and r.pause is pause for r in results)
    assert all(r.maybe_sent is (code == "InternalError.Timeout") for r in results)


def test_request_level_bad_number_splits_the_batch() -> None:
    bad = "+8613800000006"
    delivered: list[str] = []

    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        if bad in body["PhoneNumberSet"]:
            return error("InvalidParameterValue.IncorrectPhoneNumber")(action, body)
        delivered.extend(body["PhoneNumberSet"])
        return ok(action, body)

    items = same_text(9)
    results = run_send(gateway(handler), items)
    assert [r.outcome for r in results].count(Outcome.ACCEPTED) == 8
    assert results[6].outcome is Outcome.PERMANENT and results[6].code == "InvalidParameterValue.IncorrectPhoneNumber"
    assert sorted(delivered) == sorted(i.phone for i in items if i.phone != bad)


def test_classify_table() -> None:
    assert classify_answer("LimitExceeded.PhoneNumberCountLimit").split
    assert classify_answer("UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber").split
    assert classify_answer("FailedOperation.MarketingSendTimeConstraint").outcome is Outcome.RETRYABLE
    assert classify_answer("InvalidParameterValue.ContentLengthLimit").outcome is Outcome.PERMANENT


# -- transport and malformed answers ------------------------------------------------------------------


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError])
def test_timeouts_are_in_doubt(exc: type[Exception]) -> None:
    gw = TencentGateway(settings(), make_client(2, 4, transport=httpx.MockTransport(raiser(exc))))
    assert all(r.outcome is Outcome.RETRYABLE and r.maybe_sent for r in run_send(gw, same_text(3)))


def test_connect_errors_are_plain_retries() -> None:
    gw = TencentGateway(settings(), make_client(2, 4, transport=httpx.MockTransport(raiser(httpx.ConnectError))))
    assert all(r.outcome is Outcome.RETRYABLE and not r.maybe_sent for r in run_send(gw, same_text(3)))


@pytest.mark.parametrize("body", [b"nope", b"{}", b'{"Response": "x"}', b'{"Response": {"RequestId": "r"}}', b"[1]"])
def test_malformed_answers_are_in_doubt(body: bytes) -> None:
    results = run_send(gateway(lambda a, b: httpx.Response(200, content=body)), same_text(2))
    assert all(r.outcome is Outcome.RETRYABLE and r.maybe_sent for r in results)


def test_http_errors_follow_the_http_mapping() -> None:
    (r,) = run_send(gateway(lambda a, b: httpx.Response(503, text="busy")), same_text(1))
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent
    (r,) = run_send(gateway(lambda a, b: httpx.Response(401)), same_text(1))
    assert r.outcome is Outcome.PERMANENT and r.pause


# -- query and receipts -------------------------------------------------------------------------------


def test_query_by_phone_number_matches_session_context() -> None:
    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        assert action == "PullSmsSendStatusByPhoneNumber"
        assert body["SmsSdkAppId"] == "1400006666" and body["EndTime"] == NOW and body["Limit"] == 100
        rows = {
            "+8613800000000": [{"SerialNo": "s1", "SessionContext": "100", "ReportStatus": "SUCCESS"}],
            "+8613800000001": [{"SerialNo": "s2", "SessionContext": "90-120", "ReportStatus": "FAIL"}],
            "+8613800000002": [{"SerialNo": "s3", "SessionContext": "5", "ReportStatus": "SUCCESS"}],
        }.get(body["PhoneNumber"], [])
        return httpx.Response(200, json={"Response": {"PullSmsSendStatusSet": rows, "RequestId": "r"}})

    a, b, c, d = run(lambda g: g.query(same_text(4)), gateway(handler))
    assert a is not None and a.provider_id == "s1" and a.outcome is Outcome.ACCEPTED
    assert b is not None and b.provider_id == "s2"
    assert c is None and d is None
    assert run(lambda g: g.query(same_text(1)), gateway(error("InternalError.Timeout"))) == [None]


def test_fetch_receipts_pulls_when_enabled() -> None:
    calls: list[str] = []

    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        calls.append(action)
        assert body == {"SmsSdkAppId": "1400006666", "Limit": 100}
        rows = [{"UserReceiveTime": 1772328608, "CountryCode": "86", "SubscriberNumber": "13800000000",
                 "PhoneNumber": "+8613800000000", "SerialNo": "2028:1", "ReportStatus": "SUCCESS",
                 "Description": "DELIVRD", "SessionContext": "100"}]
        return httpx.Response(200, json={"Response": {"PullSmsSendStatusSet": rows, "RequestId": "r"}})

    assert run(lambda g: g.fetch_receipts(), gateway(handler)) == [] and calls == []
    gw = gateway(handler, pull_receipts=True)
    assert gw.capabilities.pull_receipts and not TencentGateway.capabilities.pull_receipts
    (receipt,) = run(lambda g: g.fetch_receipts(), gw)
    assert calls == ["PullSmsSendStatus"]
    assert (receipt.delivery_id, receipt.provider_id, receipt.status, receipt.code) == (100, "2028:1", "delivered", "DELIVRD")
    assert receipt.at == datetime(2026, 3, 1, 1, 30, 8, tzinfo=UTC)
    assert run(lambda g: g.fetch_receipts(), gateway(error("FailedOperation.NotEnabled"), pull_receipts=True)) == []


def test_parse_pull_status() -> None:
    data = {"Response": {"PullSmsSendStatusSet": [
        {"UserReceiveTime": 1772328608, "SerialNo": "a", "ReportStatus": "FAIL", "Description": "UNDELIV", "SessionContext": "1-9"},
        {"UserReceiveTime": "x", "SerialNo": "b", "ReportStatus": "SUCCESS", "SessionContext": ""},
        {"SerialNo": "c", "ReportStatus": "PENDING"},
    ], "RequestId": "r"}}
    a, b = parse_pull_status(json.dumps(data))
    assert (a.delivery_id, a.provider_id, a.status, a.code) == (None, "a", "failed", "UNDELIV")
    assert b.status == "delivered" and b.code == "SUCCESS" and b.at.tzinfo is not None
    with pytest.raises(ValueError):
        parse_pull_status(b"<html>")


def test_parse_callback_push() -> None:
    body = json.dumps([
        {"user_receive_time": "2026-03-01 09:30:08", "nationcode": "86", "mobile": "13800000000",
         "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "2028:1"},
        {"user_receive_time": "2026-03-01 09:31:00", "nationcode": "86", "mobile": "13800000001",
         "report_status": "FAIL", "errmsg": "MK:0005", "description": "失败", "sid": "2028:2"},
        {"report_status": "SUCCESS"},
    ], ensure_ascii=False)
    a, b = parse_callback(body)
    assert (a.provider_id, a.status, a.code, a.at) == ("2028:1", "delivered", "DELIVRD", datetime(2026, 3, 1, 1, 30, 8, tzinfo=UTC))
    assert (b.provider_id, b.status, b.code) == ("2028:2", "failed", "MK:0005")
    assert CALLBACK_ACK == {"result": 0, "errmsg": "OK"}
    with pytest.raises(ValueError):
        parse_callback("not json")


# -- settings -----------------------------------------------------------------------------------------


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="BROADCAST_TENCENT_"):
        registry.create("tencent")
    for k, v in {"SECRET_ID": "AKID-env", "SECRET_KEY": SECRET, "SDK_APP_ID": "1400006666", "SIGN_NAME": "城南新区",
                 "TEMPLATE_ID": "1", "REGION": "ap-beijing"}.items():
        monkeypatch.setenv(f"BROADCAST_TENCENT_{k}", v)
    gw = registry.create("tencent")
    assert isinstance(gw, TencentGateway) and gw.settings.region == "ap-beijing"
    assert gw.settings.endpoint == "https://sms.tencentcloudapi.com/" and gw.check() == []
    assert SECRET not in repr(gw.settings)
    monkeypatch.setenv("BROADCAST_TENCENT_TEMPLATE_PARAMS", "{text}")
    with pytest.raises(ConfigError, match="BROADCAST_TENCENT_TEMPLATE_PARAMS"):
        registry.create("tencent")
    monkeypatch.setenv("BROADCAST_TENCENT_TEMPLATE_PARAMS", '["fixed"]')
    assert any("TEMPLATE_PARAMS" in p for p in registry.create("tencent").check())


# -- recipient faults: a refused number never counts toward the auto-pause ------------------------------

ROW_CODES = {
    "+8613800000001": "InvalidParameterValue.IncorrectPhoneNumber",
    "+8613800000002": "FailedOperation.PhoneNumberInBlacklist",
    "+8613800000003": "LimitExceeded.PhoneNumberDailyLimit",
    "+8613800000004": "LimitExceeded.DeliveryFrequencyLimit",
    "+8613800000005": "FailedOperation.ContainSensitiveWord",  # the text, not the number
    "+8613800000006": "FailedOperation.InsufficientBalanceInSmsPackage",  # the account
}


def test_per_number_rows_are_recipient_faults_only_when_they_name_the_number() -> None:
    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        rows = [{"SerialNo": "s" + p[-1], "PhoneNumber": p, "Code": ROW_CODES.get(p, "Ok"), "Message": "m", "Fee": 1}
                for p in body["PhoneNumberSet"]]
        return httpx.Response(200, json={"Response": {"SendStatusSet": rows, "RequestId": "r"}})

    results = run_send(gateway(handler), same_text(7))
    assert [r.recipient_fault for r in results] == [False, True, True, True, True, False, False]
    assert results[6].pause and results[0].outcome is Outcome.ACCEPTED


@pytest.mark.parametrize(
    ("code", "recipient"),
    [("InvalidParameterValue.IncorrectPhoneNumber", True), ("FailedOperation.PhoneNumberInBlacklist", True),
     ("LimitExceeded.PhoneNumberThirtySecondLimit", True), ("LimitExceeded.PhoneNumberCountLimit", False),
     ("RequestLimitExceeded", False), ("LimitExceeded.AppDailyLimit", False), ("AuthFailure.SignatureFailure", False),
     ("FailedOperation.SignatureIncorrectOrUnapproved", False), ("FailedOperation.TemplateIncorrectOrUnapproved", False),
     ("InternalError.Timeout", False), ("FailedOperation.ContainSensitiveWord", False)],
)
def test_request_level_codes_for_one_number(code: str, recipient: bool) -> None:
    (r,) = run_send(gateway(error(code)), same_text(1))
    assert r.code == code and r.recipient_fault is recipient, r


def test_request_level_bad_number_of_a_batch_is_the_only_recipient_fault() -> None:
    bad = "+8613800000003"

    def handler(action: str, body: dict[str, Any]) -> httpx.Response:
        if bad in body["PhoneNumberSet"]:
            return error("InvalidParameterValue.IncorrectPhoneNumber")(action, body)
        return ok(action, body)

    results = run_send(gateway(handler), same_text(8))
    assert [r.delivery_id for r in results if r.recipient_fault] == [103]
    assert sum(r.outcome is Outcome.ACCEPTED for r in results) == 7


def test_a_server_error_for_the_whole_request_is_no_recipient_fault() -> None:
    results = run_send(gateway(lambda a, b: httpx.Response(500, text="<html>500</html>")), same_text(3))
    assert all(r.outcome is Outcome.RETRYABLE and not r.recipient_fault for r in results)
