"""The cmas gateway (China Mobile 云MAS) against ``FakeCmas`` (it decodes the Base64 body and recomputes
the mac as the platform does): the request shapes, the mac against a worked example computed here,
every ``rspcod``, splitting, the status report push through the real receipts endpoint, and a real
send of 12,000 and a failover to aliyun through the dispatcher (the contract kit runs over it in
test_contract.py; the dead-number and storm tests in test_dead_numbers.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr, ValidationError

from broadcast.dispatch import probe
from broadcast.gateways.base import Outcome, SendItem, SendResult, make_client
from broadcast.gateways.cmas import REPORT_ACK, CmasGateway, CmasSettings, classify_answer, parse_push, parse_report
from broadcast.gateways.push import BadCallback, Incoming
from tests.gateways.fake_cmas import FakeCmas

EC, AP, SECRET, SIGN = "城南新区政务服务中心", "cnxq-api", "test-cmas-secret-1234", "wHwvfNuH5"


def settings(**over: Any) -> CmasSettings:
    return CmasSettings(**{"url": "https://mas.example.test/sms/", "ec_name": EC, "ap_id": AP,
                           "secret_key": SecretStr(SECRET), "sign": SIGN, **over})


def fake() -> FakeCmas:
    return FakeCmas(EC, AP, SECRET, SIGN)


def gateway(transport: httpx.AsyncBaseTransport, **over: Any) -> CmasGateway:
    return CmasGateway(settings(**over), make_client(2, 4, transport=transport))


def run_send(gw: CmasGateway, items: list[SendItem]) -> list[SendResult]:
    async def go() -> list[SendResult]:
        try:
            return await gw.send(items)
        finally:
            await gw.aclose()

    return asyncio.run(go())


def items(n: int, text: str = "明天上午九点开会", start: int = 0) -> list[SendItem]:
    return [SendItem(100 + i, f"+86138{start + i:08d}", text) for i in range(n)]


def capture(answer: dict[str, Any] | None = None, status: int = 200) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=answer or {"rspcod": "success", "msgGroup": "0927152506001000833076", "success": True})

    return seen, httpx.MockTransport(handler)


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(base64.b64decode(request.content, validate=True).decode("utf-8"))  # type: ignore[no-any-return]


# -- request shape ------------------------------------------------------------------------------------


def test_mac_matches_a_worked_example_computed_independently() -> None:
    mobiles, content = "13800000000,13800000001", "明天上午九点开会"
    expected = hashlib.md5((EC + AP + SECRET + mobiles + content + SIGN + "").encode("utf-8")).hexdigest()
    assert expected == "e99002393ac7c73f7c263bf5d387042c"  # pinned: the example itself cannot drift
    seen, transport = capture()
    run_send(gateway(transport), [SendItem(1, "+8613800000000", content), SendItem(2, "+8613800000001", content)])
    (request,) = seen
    assert body_of(request)["mac"] == expected


def test_norsubmit_body_is_base64_json_with_national_mobiles() -> None:
    seen, transport = capture()
    results = run_send(gateway(transport, add_serial="01"), items(3))
    (request,) = seen
    assert str(request.url) == "https://mas.example.test/sms/norsubmit"
    assert request.headers["content-type"] == "application/json;charset=UTF-8"
    body = body_of(request)
    mobiles = "13800000000,13800000001,13800000002"
    assert body == {"ecName": EC, "apId": AP, "secretKey": SECRET, "mobiles": mobiles, "content": "明天上午九点开会",
                    "sign": SIGN, "addSerial": "01",
                    "mac": hashlib.md5(f"{EC}{AP}{SECRET}{mobiles}明天上午九点开会{SIGN}01".encode()).hexdigest()}
    assert [(r.outcome, r.provider_id) for r in results] == [
        (Outcome.ACCEPTED, f"0927152506001000833076:1380000000{i}") for i in range(3)]


def test_tmpsubmit_body_carries_template_id_and_params() -> None:
    seen, transport = capture()
    run_send(gateway(transport, template_id="a1b2c3d4"), items(2, text='停水通知："周六"'))
    (request,) = seen
    assert str(request.url) == "https://mas.example.test/sms/tmpsubmit"
    body = body_of(request)
    params = '["停水通知：\\"周六\\""]'  # the compact JSON array string, UTF-8 as is
    assert json.loads(params) == ['停水通知："周六"']
    mobiles = "13800000000,13800000001"
    assert body == {"ecName": EC, "apId": AP, "secretKey": SECRET, "templateId": "a1b2c3d4", "mobiles": mobiles,
                    "params": params, "sign": SIGN, "addSerial": "",
                    "mac": hashlib.md5(f"{EC}{AP}{SECRET}a1b2c3d4{mobiles}{params}{SIGN}".encode()).hexdigest()}


def test_the_fake_verifies_what_the_gateway_sends_in_both_modes() -> None:
    for over in ({}, {"template_id": "a1b2c3d4"}):
        f = fake()
        results = run_send(gateway(f.transport(), **over), items(3))
        assert all(r.outcome is Outcome.ACCEPTED for r in results) and f.rejected == 0
        assert [s.text for s in f.sent] == ["明天上午九点开会"] * 3


@pytest.mark.parametrize("url", ["http://112.35.1.155:1992/sms", "http://112.35.1.155:1992/sms/",
                                 "http://112.35.1.155:1992/sms/norsubmit", "http://112.35.1.155:1992/sms/tmpsubmit/"])
def test_url_is_the_base_of_both_submit_urls(url: str) -> None:
    assert settings(url=url).url == "http://112.35.1.155:1992/sms/"
    assert CmasGateway(settings(url=url, template_id="t1")).endpoint == "http://112.35.1.155:1992/sms/tmpsubmit"


def test_url_must_be_http_or_https() -> None:
    with pytest.raises(ValidationError):
        settings(url="ftp://mas.example.test/sms/")


def test_numbers_that_are_not_mainland_mobiles_fail_alone() -> None:
    seen, transport = capture()
    batch = [SendItem(1, "+8613800000000", "t"), SendItem(2, "+85251234567", "t"), SendItem(3, "+14155550100", "t"),
             SendItem(4, "+8601088886666", "t"), SendItem(5, "+8613900000009", "t")]
    results = run_send(gateway(transport), batch)
    assert body_of(seen[0])["mobiles"] == "13800000000,13900000009"
    bad = [r for r in results if r.outcome is not Outcome.ACCEPTED]
    assert [r.delivery_id for r in bad] == [2, 3, 4]
    assert all(r.outcome is Outcome.PERMANENT and r.recipient_fault and not r.pause and r.code == "not_mainland" for r in bad)


def test_one_request_per_text_at_most_5000_mobiles() -> None:
    f = fake()
    results = run_send(gateway(f.transport()), items(5001) + items(2, text="另一条", start=6000))
    assert sorted(f.batches) == [1, 2, 5000] and all(r.outcome is Outcome.ACCEPTED for r in results)


def test_too_many_mobiles_at_a_lower_limit_splits_and_loses_nothing() -> None:
    f = fake()
    f.max_mobiles = 700
    batch = items(2500)
    results = run_send(gateway(f.transport()), batch)
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert max(f.batches) <= 700 and sum(f.batches) == 2500
    assert Counter(s.phone for s in f.sent) == Counter(i.phone[3:] for i in batch)  # each number once
    assert f.requests.count("norsubmit") > len(f.batches)  # the refused requests, then their halves


# -- answers ----------------------------------------------------------------------------------------------

#: rspcod -> (outcome, pause, retry_after_s)
TABLE = {
    "InvalidUsrOrPwd": (Outcome.PERMANENT, True, None),
    "IllegalMac": (Outcome.PERMANENT, True, None),
    "IllegalSignId": (Outcome.PERMANENT, True, None),
    "NoSignId": (Outcome.PERMANENT, True, None),
    "IllegalIpAddress": (Outcome.PERMANENT, True, None),
    "TooManyMobiles": (Outcome.PERMANENT, False, None),  # a single number so refused: nothing left to split
    "FlowOverLimit": (Outcome.RETRYABLE, False, 1.0),
    "QueueOverLimit": (Outcome.RETRYABLE, False, 10.0),
    "SystemBusy": (Outcome.RETRYABLE, False, 5.0),
    "RequestTimeout": (Outcome.RETRYABLE, False, None),
    "OverDailyMax": (Outcome.RETRYABLE, True, 3600.0),
    "InvalidMessage": (Outcome.PERMANENT, False, None),
    "SomethingNew": (Outcome.PERMANENT, False, None),
}


@pytest.mark.parametrize("code", sorted(TABLE))
def test_every_rspcod_is_mapped(code: str) -> None:
    f = fake()
    f.script = [code]
    (r,) = run_send(gateway(f.transport()), items(1))
    assert (r.outcome, r.pause, r.retry_after_s) == TABLE[code]
    assert r.code == code and not r.maybe_sent and not r.recipient_fault and r.detail
    assert f.sent == []


def test_the_fake_answers_bad_credentials_mac_and_signature_as_the_platform() -> None:
    for over, code in (({"secret_key": SecretStr("wrong-secret-000")}, "InvalidUsrOrPwd"),
                       ({"ap_id": "someone-else"}, "InvalidUsrOrPwd"), ({"sign": "XXXXXXXXX"}, "IllegalSignId")):
        results = run_send(gateway(fake().transport(), **over), items(2))
        assert {(r.code, r.pause) for r in results} == {(code, True)}
    f = fake()
    f.sign = "OtherCode1"  # the account's signature code is another one
    results = run_send(gateway(f.transport()), items(1))
    assert results[0].code == "IllegalSignId"


def test_unknown_codes_with_5xx_are_retryable() -> None:
    assert classify_answer("Whatever", 503).outcome is Outcome.RETRYABLE
    assert classify_answer("Whatever", 200).outcome is Outcome.PERMANENT


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError])
def test_timeouts_after_sending_are_in_doubt(exc: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)  # type: ignore[call-arg]

    (r,) = run_send(gateway(httpx.MockTransport(handler)), items(1))
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent


def test_connect_failures_are_plain_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    (r,) = run_send(gateway(httpx.MockTransport(handler)), items(1))
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent


@pytest.mark.parametrize("body", [b"<html>ok</html>", b"", b'{"success": true}', b"[1, 2]"])
def test_unreadable_2xx_answers_are_in_doubt(body: bytes) -> None:
    (r,) = run_send(gateway(httpx.MockTransport(lambda request: httpx.Response(200, content=body))), items(1))
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent and r.code == "malformed_response"


def test_non_json_error_statuses_follow_the_http_mapping() -> None:
    (r,) = run_send(gateway(httpx.MockTransport(lambda request: httpx.Response(502, content=b"<html>bad gateway</html>"))), items(1))
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent and r.code == "502"


def test_a_base64_answer_is_read_too() -> None:
    answer = base64.b64encode(b'{"rspcod":"success","msgGroup":"g-1","success":true}')
    (r,) = run_send(gateway(httpx.MockTransport(lambda request: httpx.Response(200, content=answer))), items(1))
    assert (r.outcome, r.provider_id) == (Outcome.ACCEPTED, "g-1:13800000000")


# -- checks and secrets ---------------------------------------------------------------------------------


def test_check_flags_plain_http_to_a_remote_host_and_a_sign_text() -> None:
    assert CmasGateway(settings()).check() == []
    assert CmasGateway(settings(url="http://127.0.0.1:1992/sms/")).check() == []
    problems = CmasGateway(settings(url="http://112.35.1.155:1992/sms/", sign="【城南新区】")).check()
    assert any("plain http://" in p for p in problems) and any("signature code" in p for p in problems)
    assert all(SECRET not in p for p in problems)


def test_no_online_check_is_claimed() -> None:
    assert not probe.can_ping(CmasGateway(settings()))  # 云MAS has no read-only call: "unsupported"


def test_settings_from_the_environment_hide_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"URL": "https://mas.example.test/sms", "EC_NAME": EC, "AP_ID": AP, "SECRET_KEY": SECRET,
                       "SIGN": SIGN}.items():
        monkeypatch.setenv(f"BROADCAST_CMAS_{key}", value)
    from broadcast.gateways import registry

    gw = registry.create("cmas")
    assert isinstance(gw, CmasGateway) and gw.endpoint == "https://mas.example.test/sms/norsubmit"
    assert SECRET not in repr(gw.settings) and SECRET not in str(gw.settings)
    f = fake()
    f.secret = "another-secret-999"
    results = run_send(gateway(f.transport()), items(2))
    assert all(SECRET not in repr(r) for r in results)


# -- receipts -----------------------------------------------------------------------------------------------

REPORT = {"reportStatus": "DELIVRD", "mobile": "13800000001", "submitDate": "2026-03-01 09:30:00",
          "receiveDate": "2026-03-01 09:30:08", "errorCode": "DELIVRD", "msgGroup": "0301093000001000833076"}


def test_parse_report_object_array_and_base64() -> None:
    failed = {**REPORT, "mobile": "8613800000002", "reportStatus": "CM:0001", "errorCode": "CM:0001"}
    no_status = {**REPORT, "mobile": "13800000003", "reportStatus": "", "errorCode": "MK:0005"}
    one = json.dumps(REPORT).encode()
    many = json.dumps([REPORT, failed, no_status, {"mobile": "13800000004"}], ensure_ascii=False).encode()
    assert parse_report(one) == parse_report(base64.b64encode(one))
    got = parse_report(base64.b64encode(many))
    assert parse_report(many) == got
    assert [(r.delivery_id, r.provider_id, r.status, r.code) for r in got] == [
        (None, "0301093000001000833076:13800000001", "delivered", "DELIVRD"),
        (None, "0301093000001000833076:13800000002", "failed", "CM:0001"),
        (None, "0301093000001000833076:13800000003", "failed", "MK:0005"),
    ]
    assert got[0].at.isoformat() == "2026-03-01T01:30:08+00:00"  # Beijing time, stored as UTC


@pytest.mark.parametrize("body", [b"not json", b"", b"12", base64.b64encode(b"not json either")])
def test_a_bad_report_body_is_refused(body: bytes) -> None:
    with pytest.raises(BadCallback):
        parse_push(Incoming("POST", [], {}, body))


def test_the_push_format_is_served_and_answers_success() -> None:
    from broadcast.receipts.formats import FORMATS

    fmt = FORMATS["cmas"]
    assert (fmt.ack_body, fmt.ack_media_type) == (REPORT_ACK, "text/plain") == (b"success", "text/plain")


def _deliveries(engine: sa.Engine) -> dict[tuple[int, str], tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select message_id, phone, status, error_code, provider_id from deliveries")).all()
    return {(m, p): (s, c, pid) for m, p, s, c, pid in rows}


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_pushed_reports_settle_each_delivery_by_msg_group_and_mobile(ws: Any, monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """Two messages to the same four members: every phone has two deliveries, one per msgGroup. Reports
    in JSON (first message) and in Base64 JSON (second) settle exactly the delivery they name; the
    same pushes again change nothing and flag nothing."""
    from broadcast.dispatch.dispatcher import Dispatcher
    from broadcast.receipts.server import ReceiptsSettings, running
    from tests.helpers.receipt_rows import receipt_rows
    from tests.helpers.sending import approved_message, open_workspace, populate

    w = open_workspace(monkeypatch)
    phones = populate(w, 4, tmp_path)
    first, second = approved_message(w, "第一条通知"), approved_message(w, "第二条通知")
    f = fake()

    async def send() -> None:
        async with make_client(5, 8, transport=f.transport()) as client:
            d = Dispatcher(w, CmasGateway(settings(), client))
            try:
                await d.run_pass(wait_for_retries=False)
            finally:
                d.close()

    asyncio.run(send())
    groups = {s.text: s.provider_id for s in f.sent}
    assert len(f.batches) == 2 and len(set(groups.values())) == 2
    a, b, c, _ = phones
    for s in f.sent:  # the first message: a delivered, b failed; the second: a failed, c delivered
        if (s.text, "+86" + s.phone) in {("第一条通知", a), ("第二条通知", c)}:
            s.status, s.code = "delivered", "DELIVRD"
        elif (s.text, "+86" + s.phone) in {("第一条通知", b), ("第二条通知", a)}:
            s.status, s.code = "failed", "CM:0001" if s.text == "第一条通知" else "MK:0005"
    expected = {(first, a): ("delivered", "success"), (first, b): ("failed", "CM:0001"),
                (second, a): ("failed", "MK:0005"), (second, c): ("delivered", "success")}
    engine = w.engine
    with running(engine, ReceiptsSettings(apply_interval_s=0.05)) as base:
        for _ in range(2):
            first_push = f.push(f"{base}/cmas", [a, b], b64=False)  # json: both messages' reports for a and b…
            assert (first_push.status_code, first_push.content) == (200, b"success")
            assert f.push(f"{base}/cmas", [c], b64=True).status_code == 200  # …and base64 for c
            assert httpx.post(f"{base}/cmas", content=b"<xml/>").status_code == 400
            _wait(lambda: all(_deliveries(engine)[k][:2] == v for k, v in expected.items()), "the reports applied")
    rows = _deliveries(engine)
    for key, (status, code, provider_id) in rows.items():
        if key not in expected:
            assert (status, code) == ("accepted", "success"), key
        group = groups["第一条通知" if key[0] == first else "第二条通知"]
        assert provider_id == f"{group}:{key[1][3:]}"
    logged = receipt_rows(engine)
    assert len(logged) == 8 and {x.gateway for x in logged} == {"cmas"}  # 4 reports, pushed twice
    assert {x.applied for x in logged} == {1}  # applied or duplicates: none flagged, none unknown


# -- through the dispatcher -------------------------------------------------------------------------------


def test_12000_recipients_go_in_requests_of_at_most_5000(ws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from broadcast.dispatch.dispatcher import Dispatcher
    from tests.helpers.sending import approved_message, open_workspace, populate

    w = open_workspace(monkeypatch)
    phones = populate(w, 12_000, tmp_path)
    mid = approved_message(w)
    f = fake()

    async def send() -> Any:
        async with make_client(5, 8, transport=f.transport()) as client:
            d = Dispatcher(w, CmasGateway(settings(), client))
            try:
                return await d.run_pass(wait_for_retries=False)
            finally:
                d.close()

    report = asyncio.run(send())
    assert report.completed == [mid] and not report.paused
    assert sorted(f.batches) == [2000, 5000, 5000] and f.rejected == 0
    assert Counter("+86" + s.phone for s in f.sent) == Counter(phones)  # everyone once
    rows = _deliveries(w.engine)
    assert {s for s, _, _ in rows.values()} == {"accepted"}
    assert len({pid for _, _, pid in rows.values()}) == 12_000  # msgGroup:mobile, unique per delivery


def test_failover_to_aliyun_when_cmas_refuses_the_account(ws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """BROADCAST_GATEWAYS=cmas,aliyun and 云MAS answers InvalidUsrOrPwd: the requests already refused
    fail with that code on cmas (nothing was sent), the rest goes through aliyun, every member is
    tried exactly once, and aliyun takes each number at most once."""
    from broadcast.dispatch import service
    from tests.gateways.fakes import FakeAliyun
    from tests.helpers.sending import approved_message, open_workspace, populate

    cm, ali = fake(), FakeAliyun("LTAI-failover", "failover-aliyun-secret")
    with cm.running() as cm_url, ali.running() as ali_url:
        for key, value in {"GATEWAYS": "cmas,aliyun", "CMAS_URL": cm_url + "/sms/", "CMAS_EC_NAME": EC, "CMAS_AP_ID": AP,
                           "CMAS_SECRET_KEY": "not-the-right-secret", "CMAS_SIGN": SIGN,
                           "ALIYUN_ACCESS_KEY_ID": "LTAI-failover", "ALIYUN_ACCESS_KEY_SECRET": "failover-aliyun-secret",
                           "ALIYUN_SIGN_NAME": "城南新区", "ALIYUN_TEMPLATE_CODE": "SMS_100001",
                           "ALIYUN_ENDPOINT": ali_url + "/", "HTTP_TRANSPORT": "httpx"}.items():
            monkeypatch.setenv(f"BROADCAST_{key}", value)
        w = open_workspace(monkeypatch)
        phones = populate(w, 40, tmp_path)
        mid = approved_message(w, "{name}同志：明天上午九点开会。")  # a text each: one request per member on cmas
        report = service.run_once(w)
    assert report.failovers and report.failovers[0]["from"] == "cmas" and report.failovers[0]["to"] == "aliyun"
    assert "InvalidUsrOrPwd" in report.failovers[0]["reason"]
    assert report.completed == [mid] and not report.paused
    with w.engine.connect() as conn:
        rows = conn.execute(sa.text("select phone, status, gateway, error_code from deliveries")).all()
        tries = conn.execute(sa.text("select delivery_id, count(*) from delivery_attempts group by delivery_id")).all()
    refused = {p for p, s, g, c in rows if (s, g, c) == ("failed", "cmas", "InvalidUsrOrPwd")}
    through = {p for p, s, g, _ in rows if (s, g) == ("accepted", "aliyun")}
    assert refused | through == set(phones) and not refused & through
    assert 0 < len(refused) <= 8 < len(through)  # at most a concurrency's worth were in flight on cmas
    assert {n for _, n in tries} == {1}  # every member tried exactly once
    assert cm.sent == [] and Counter(s.phone for s in ali.sent) == Counter(through)  # aliyun gets E.164
