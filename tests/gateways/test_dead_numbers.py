"""Dead numbers first, through every built-in gateway and a fake of its provider, in the real send
loop (``Dispatcher.run_pass``).

A message to 200 members whose first ten numbers the provider refuses as invalid once paused after
~17 attempts, 183 members never tried. Now, for each gateway refusing them its own way (the http
webhook with ``"fault": "recipient"``, smsbox's black-list, Aliyun's ``isv.MOBILE_NUMBER_ILLEGAL``,
Tencent's ``InvalidParameterValue.IncorrectPhoneNumber`` for the request or per number, Twilio's
21211, the simulator's 空号; cmas, which 云MAS cannot send to, refuses ten numbers that are not
mainland mobiles itself): the ten fail with the provider's reason, everyone else is sent once,
the message is not paused. And a real storm — every request failing (500, or smsbox's 503), bad
credentials, or throttling past the retry budget — still pauses within the window, most of the
audience untouched. (``console`` accepts everything: it has nothing to refuse.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from broadcast.config import load_settings
from broadcast.dispatch import ledger
from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.dispatch.policies import MIN_PAUSE_SAMPLES
from broadcast.gateways.aliyun import AliyunGateway, AliyunSettings
from broadcast.gateways.base import Gateway, make_client
from broadcast.gateways.cmas import CmasGateway, CmasSettings
from broadcast.gateways.http import HttpGateway, HttpSettings
from broadcast.gateways.kannel import KannelGateway, KannelSettings
from broadcast.gateways.mockserver import start_in_thread
from broadcast.gateways.simulator import SimulatorGateway, SimulatorSettings
from broadcast.gateways.tencent import TencentGateway, TencentSettings
from broadcast.gateways.twilio import TwilioGateway, TwilioSettings
from broadcast.messages.actions import approve_message
from broadcast.messages.store import create_message
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member
from broadcast.workspace import Workspace
from tests.gateways.fake_cmas import FakeCmas
from tests.gateways.fakes import FakeAliyun, FakeKannel, FakeProvider, FakeTencent, FakeTwilio

N = 200
PHONES = [f"+861380000{i:04d}" for i in range(N)]
DEAD = PHONES[:10]
FOREIGN = [f"+8525123{i:04d}" for i in range(10)]  # Hong Kong mobiles: no 云MAS can send to them
CONCURRENCY = 8  # the default BROADCAST_CONCURRENCY
PERSONAL = "{name}同志：明天上午九点开会。"  # a text per member: one recipient per request where texts cannot mix
SAME = "明天上午九点开会。"
TWILIO_SID = "AC" + "d".ljust(32, "0")


Taken = Callable[[], list[str]]  # the numbers of the messages the provider (or the mock) took


@dataclass(frozen=True)
class Case:
    name: str
    code: str  # the error code a dead number's delivery ends with
    text: str = PERSONAL


DEAD_CASES = [
    Case("simulator", "EMPTY_NUMBER"),
    Case("http", "400:INVALID_NUMBER"),
    Case("http-batch", "INVALID_NUMBER"),
    Case("kannel", "400"),
    Case("aliyun", "isv.MOBILE_NUMBER_ILLEGAL"),  # one number per request: SendSms refused
    Case("aliyun-batch", "isv.MOBILE_NUMBER_ILLEGAL"),  # SendBatchSms of 100 refused, bisected
    Case("tencent", "InvalidParameterValue.IncorrectPhoneNumber"),  # per-number SendStatusSet row
    Case("tencent-request", "InvalidParameterValue.IncorrectPhoneNumber"),  # Response.Error
    Case("tencent-batch", "InvalidParameterValue.IncorrectPhoneNumber", SAME),  # 200 numbers, 10 rows refused
    Case("tencent-batch-request", "InvalidParameterValue.IncorrectPhoneNumber", SAME),  # refused, bisected
    Case("twilio", "400:21211"),
]


def one_per_request(gateway: Gateway) -> Gateway:
    gateway.capabilities = replace(gateway.capabilities, max_batch=1)  # type: ignore[misc]
    return gateway


@contextlib.contextmanager
def provider(name: str, fault: str, tmp_path: Path) -> Iterator[tuple[Callable[[httpx.AsyncClient], Gateway], Taken]]:
    """A fake of ``name``'s provider refusing DEAD (``fault="dead"``), failing every send
    (``"500"``), or rejecting the credentials the gateway is given (``"credentials"``); yields a
    gateway factory (given the run's client) and what the fake took."""
    base = name.split("-")[0]
    secret = "wrong-secret" if fault == "credentials" else "right-secret"
    if base == "simulator":
        settings = SimulatorSettings(seed=1, latency_ms=0, failure_rate=0, undelivered_rate=0, dead_numbers=",".join(DEAD),
                                     throttle_rate=1.0 if fault == "500" else 0.0)
        gateways: list[SimulatorGateway] = []
        sent: dict[int, str] = {}  # delivery id -> phone, of every item it was given

        class Simulator(SimulatorGateway):
            async def send(self, batch):  # type: ignore[no-untyped-def]
                sent.update((i.delivery_id, i.phone) for i in batch)
                return await super().send(batch)

        def simulator(client: httpx.AsyncClient) -> Gateway:
            gateways.append(Simulator(settings, client))
            return one_per_request(gateways[-1])

        yield simulator, lambda: [sent[d] for g in gateways for d in g._accepted]
        return
    if base == "http":
        batch = name == "http-batch"
        options: dict[str, Any] = {"fail_every": 1} if fault == "500" else {"reject_suffix": tuple(DEAD), "batch": batch}
        port, stop = start_in_thread(tmp_path / "mock.jsonl", **options)
        try:
            def http(client: httpx.AsyncClient) -> Gateway:
                return HttpGateway(HttpSettings(url=f"http://127.0.0.1:{port}/sms", batch=20 if batch else 1), client)

            yield http, lambda: _mock_phones(tmp_path / "mock.jsonl")
        finally:
            stop()
        return
    fake: FakeProvider
    if base == "kannel":
        fake = FakeKannel("bc", "right-secret")
    elif base == "aliyun":
        fake = FakeAliyun("LTAI-dead", "right-secret")
    elif base == "cmas":
        fake = FakeCmas("城南新区政务服务中心", "cnxq-dead", "right-secret")
    elif base == "tencent":
        fake = FakeTencent("AKID-dead", "right-secret")
        fake.dead_request_level = name.endswith("request")
    else:
        fake = FakeTwilio(TWILIO_SID, "right-secret")
    if fault == "dead":
        fake.dead = {p[3:] for p in DEAD}  # phone_key: national digits
    elif fault == "500":
        fake.fail_status = 503 if base == "kannel" else 500  # smsbox's "Temporal failure" when bearerbox is down
    with fake.running() as url:
        def cloud(client: httpx.AsyncClient) -> Gateway:
            if base == "kannel":
                return KannelGateway(KannelSettings(url=f"{url}/cgi-bin/sendsms", username="bc", password=secret), client)
            if base == "aliyun":
                gw: Gateway = AliyunGateway(AliyunSettings(access_key_id="LTAI-dead", access_key_secret=secret, sign_name="城南新区",
                                                           template_code="SMS_100001", endpoint=url + "/"), client)
                return gw if name == "aliyun-batch" else one_per_request(gw)
            if base == "cmas":
                return CmasGateway(CmasSettings(url=url + "/sms/", ec_name="城南新区政务服务中心", ap_id="cnxq-dead",
                                                secret_key=secret, sign="wHwvfNuH5"), client)
            if base == "tencent":
                return TencentGateway(TencentSettings(secret_id="AKID-dead", secret_key=secret, sdk_app_id="1400006666",
                                                      sign_name="城南新区", template_id="449739", endpoint=url + "/"), client)
            return TwilioGateway(TwilioSettings(account_sid=TWILIO_SID, auth_token=secret, from_="+15005550006", endpoint=url), client)

        yield cloud, lambda: [s.phone if s.phone.startswith("+") else "+86" + s.phone for s in fake.sent]


def _mock_phones(record: Path) -> list[str]:
    import json

    return [json.loads(line)["to"] for line in record.read_text(encoding="utf-8").splitlines()] if record.exists() else []


def enrol(ws: Workspace, monkeypatch: pytest.MonkeyPatch, phones: list[str]) -> Workspace:
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    monkeypatch.setenv("BROADCAST_RETRY_BASE_S", "600")  # no retry comes due within the pass
    add_group(ws, "一支部")
    for i, phone in enumerate(phones):
        add_member(ws, f"人{i}", phone[3:] if phone.startswith("+86") else phone, ["一支部"])
    return ws


@pytest.fixture
def members(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return enrol(ws, monkeypatch, PHONES)


def message(ws: Workspace, text: str) -> int:
    m = create_message(Workspace(load_settings(operator="office"), ws.engine), text=text, groups=["一支部"]).id
    approve_message(Workspace(load_settings(operator="leader"), ws.engine), m)
    return m


def run_pass(ws: Workspace, make: Callable[[httpx.AsyncClient], Gateway]) -> Any:
    async def go() -> Any:
        async with make_client(5, CONCURRENCY) as client:
            gateway = make(client)
            d = Dispatcher(Workspace(load_settings(), ws.engine), gateway)
            try:
                return await d.run_pass(wait_for_retries=False)
            finally:
                d.close()
                await gateway.aclose()

    return asyncio.run(go())


def deliveries(ws: Workspace, mid: int) -> dict[str, tuple[str, str | None]]:
    with ws.engine.connect() as conn:
        rows = conn.execute(sa.text("select phone, status, error_code from deliveries where message_id = :m"), {"m": mid}).all()
    return {phone: (status, code) for phone, status, code in rows}


INNER_LOOP = {"http", "http-500", "aliyun-credentials"}  # the rest of each grid runs in the whole suite


def grid(ids: list[str], values: list[object]) -> list[object]:
    return [v if i in INNER_LOOP else pytest.param(*(v if isinstance(v, tuple) else (v,)), marks=pytest.mark.slow)
            for i, v in zip(ids, values)]


@pytest.mark.parametrize("case", grid([c.name for c in DEAD_CASES], list(DEAD_CASES)), ids=[c.name for c in DEAD_CASES])
def test_dead_numbers_first_fail_alone_and_the_rest_is_sent(case: Case, members: Workspace, tmp_path: Path) -> None:
    mid = message(members, case.text)
    with provider(case.name, "dead", tmp_path) as (make, taken):
        report = run_pass(members, make)
        took = taken()
    assert not report.paused, report.paused
    assert report.completed == [mid]
    rows = deliveries(members, mid)
    assert {p: r for p, r in rows.items() if r[0] == "failed"} == {p: ("failed", case.code) for p in DEAD}
    assert len(rows) == N and all(status in ("accepted", "delivered") for p, (status, _) in rows.items() if p not in DEAD)
    assert sorted(took) == sorted(PHONES[10:])  # everyone else reached the provider, once


@pytest.mark.parametrize("text", [PERSONAL, SAME], ids=["a-text-each", "one-text"])
def test_cmas_fails_the_numbers_it_cannot_send_alone(text: str, ws: Workspace, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """云MAS sends to mainland mobiles only: ten Hong Kong numbers first fail as ``not_mainland``
    (recipient faults, never sent), the other 190 go out once (in one request when they share a text)."""
    w = enrol(ws, monkeypatch, FOREIGN + PHONES[10:])
    mid = message(w, text)
    with provider("cmas", "dead", tmp_path) as (make, taken):
        report = run_pass(w, make)
        took = taken()
    assert not report.paused, report.paused
    assert report.completed == [mid]
    rows = deliveries(w, mid)
    assert {p: r for p, r in rows.items() if r[0] == "failed"} == {p: ("failed", "not_mainland") for p in FOREIGN}
    assert sorted(took) == sorted(PHONES[10:])


STORMS = [(name, "500") for name in ("simulator", "http", "kannel", "aliyun", "tencent", "twilio", "cmas")] + [
    (name, "credentials") for name in ("kannel", "aliyun", "tencent", "twilio", "cmas")]


@pytest.mark.parametrize(("name", "fault"), grid([f"{n}-{f}" for n, f in STORMS], list(STORMS)),
                         ids=[f"{n}-{f}" for n, f in STORMS])
def test_a_real_storm_still_pauses_within_the_window(name: str, fault: str, members: Workspace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "simulator":  # the simulator cannot fail a request: it throttles, past the retry budget
        monkeypatch.setenv("BROADCAST_MAX_ATTEMPTS", "1")
    mid = message(members, PERSONAL)
    with provider(name, fault, tmp_path) as (make, taken):
        report = run_pass(members, make)
        took = taken()
    assert mid in report.paused, report
    reason = report.paused[mid]
    assert ("refused the account" if fault == "credentials" else "attempts failed") in reason, reason
    assert took == []
    with members.engine.connect() as conn:
        counts = ledger.counts(conn, mid)
    assert counts.get("queued", 0) >= N - (MIN_PAUSE_SAMPLES + 2 * CONCURRENCY), counts  # not the whole audience
