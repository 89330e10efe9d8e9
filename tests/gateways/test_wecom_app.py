"""``wecom-app`` against its local fake on 127.0.0.1 (``fake_wecom_app.py``): the token cached and
refreshed once, invaliduser failing those users only, the documented refusals, the throttle wait,
the pace per member, and the secret kept out of what it says."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from broadcast.gateways.base import Outcome, SendItem, SendResult, make_client
from broadcast.gateways.wecom_app import WeComAppGateway, WeComAppSettings
from tests.gateways.fake_wecom_app import FakeWeComApp
from tests.helpers.clocks import ManualClock

CORP, SECRET, AGENT = "ww6a1c9b4e2d0f7a35", "kit-wecom-corp-secret-3f9a7c", 1000002
MEMBERS = {f"user{i:03d}" for i in range(40)} | {"ZhangSan", "li.si@chengnan"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeWeComApp]:
    yield FakeWeComApp(CORP, SECRET, AGENT, MEMBERS, clock)


@pytest.fixture
def url(fake: FakeWeComApp) -> Iterator[str]:
    with fake.running() as url:
        yield url


def gateway(url: str, clock: ManualClock, **over: Any) -> WeComAppGateway:
    settings = WeComAppSettings(corp_id=over.pop("corp_id", CORP), corp_secret=SecretStr(over.pop("secret", SECRET)),
                                agent_id=over.pop("agent_id", AGENT), endpoint=url, timeout_s=2, **over)
    return WeComAppGateway(settings, make_client(2, 8, backend="httpx"), monotonic=clock, sleep=clock.sleep)


def items(*users: str, text: str = "【城南新区】今天下午三点在党群服务中心开会", start: int = 1) -> list[SendItem]:
    return [SendItem(start + n, "", text, address=u) for n, u in enumerate(users)]


def run(gw: WeComAppGateway, *batches: list[SendItem]) -> list[list[SendResult]]:
    async def go() -> list[list[SendResult]]:
        try:
            return [await gw.send(b) for b in batches]
        finally:
            await gw.aclose()
            if gw._client is not None:
                await gw._client.aclose()

    return asyncio.run(go())


def test_one_request_for_many_members_one_cached_token(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    gw = gateway(url, clock)
    first, second = run(gw, items("user001", "user002", "ZhangSan"), items("li.si@chengnan", text="第二条", start=10))
    assert {r.outcome for r in first + second} == {Outcome.ACCEPTED}
    assert first[0].provider_id and first[0].provider_id == first[2].provider_id  # one msgid per request
    assert fake.token_requests == 1 and gw.token_fetches == 1
    assert sorted(u for u, _, _ in fake.delivered) == ["ZhangSan", "li.si@chengnan", "user001", "user002"]


def test_concurrent_sends_share_one_token_fetch(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    gw = gateway(url, clock)

    async def go() -> list[list[SendResult]]:
        try:
            return list(await asyncio.gather(*(gw.send(items(f"user{n:03d}", start=n)) for n in range(8))))
        finally:
            await gw.aclose()
            await gw._client.aclose()  # type: ignore[union-attr]

    results = asyncio.run(go())
    assert all(r.outcome is Outcome.ACCEPTED for rs in results for r in rs)
    assert fake.token_requests == 1


def test_the_token_lives_its_7200_seconds(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    gw = gateway(url, clock)

    async def go() -> None:
        await gw.send(items("user001"))
        clock.now += 7000  # still cached (7,200 less a minute's margin)
        await gw.send(items("user002", start=2))
        assert fake.token_requests == 1
        clock.now += 200  # past 7,140: fetched again before it expires
        await gw.send(items("user003", start=3))
        assert fake.token_requests == 2
        await gw.aclose()
        await gw._client.aclose()  # type: ignore[union-attr]

    asyncio.run(go())
    assert len(fake.delivered) == 3 and 42001 not in fake.answers


@pytest.mark.parametrize("refusal", ["expire", "revoke"])
def test_a_refused_token_is_fetched_again_once(url: str, fake: FakeWeComApp, clock: ManualClock, refusal: str) -> None:
    gw = gateway(url, clock)

    async def go() -> list[SendResult]:
        await gw.send(items("user001"))
        fake.expire_tokens() if refusal == "expire" else fake.revoke_tokens()  # WeCom ended it early
        out = await gw.send(items("user002", start=2))
        await gw.aclose()
        await gw._client.aclose()  # type: ignore[union-attr]
        return out

    (r,) = asyncio.run(go())
    assert r.outcome is Outcome.ACCEPTED
    assert fake.token_requests == 2
    assert (42001 if refusal == "expire" else 40014) in fake.answers
    assert [u for u, _, _ in fake.delivered] == ["user001", "user002"]  # each once


def test_a_token_refused_twice_pauses(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    gw = gateway(url, clock)
    fake.expires_in = 0  # every token it issues is already expired
    ((r,),) = run(gw, items("user001"))
    assert r.outcome is Outcome.PERMANENT and r.pause and r.code == "42001"
    assert fake.token_requests == 2 and fake.delivered == []


def test_invaliduser_fails_those_users_only(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    fake.unlicensed = {"user003"}
    ((a, b, c, d),) = run(gateway(url, clock), items("user001", "left.the.party", "user002", "user003"))
    assert a.outcome is c.outcome is Outcome.ACCEPTED and a.provider_id
    assert b.outcome is Outcome.PERMANENT and b.code == "invaliduser" and b.recipient_fault and not b.pause
    assert d.outcome is Outcome.PERMANENT and d.code == "unlicenseduser" and d.recipient_fault
    assert sorted(u for u, _, _ in fake.delivered) == ["user001", "user002"]


def test_all_recipients_invalid_is_81013_each_alone(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    ((a, b),) = run(gateway(url, clock), items("nobody1", "nobody2"))
    for r in (a, b):
        assert r.outcome is Outcome.PERMANENT and r.code == "81013" and r.recipient_fault and not r.pause


def test_a_userid_that_could_add_recipients_never_leaves(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    ((a, b, c),) = run(gateway(url, clock), items("user001|@all", "", "user002"))
    assert a.code == "invalid_userid" and a.recipient_fault and b.code == "invalid_userid"
    assert c.outcome is Outcome.ACCEPTED and [u for u, _, _ in fake.delivered] == ["user002"]


@pytest.mark.parametrize(("over", "code"), [({"secret": "not-the-secret-0000"}, "40001"),
                                             ({"corp_id": "ww0000000000000000"}, "40013"),
                                             ({"agent_id": 1000099}, "40056")])
def test_account_refusals_pause(url: str, fake: FakeWeComApp, clock: ManualClock, over: dict[str, Any], code: str) -> None:
    ((r,),) = run(gateway(url, clock, **over), items("user001"))
    assert r.outcome is Outcome.PERMANENT and r.pause and r.code == code and fake.delivered == []


def test_throttling_is_waited_out_not_failed(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    fake.throttle = 1
    ((r,),) = run(gateway(url, clock), items("user001"))
    assert r.outcome is Outcome.ACCEPTED and 45009 in fake.answers and sum(clock.slept) >= 60
    fake.throttle = 3  # longer than max_wait_s: given back, retryable, never in doubt
    ((r,),) = run(gateway(url, clock, max_wait_s=90), items("user002", start=2))
    assert r.outcome is Outcome.RETRYABLE and r.code == "45009" and r.retry_after_s == 60 and not r.maybe_sent


def test_a_member_gets_at_most_30_a_minute(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    gw = gateway(url, clock, duplicate_check_s=0)
    start = clock.now
    results = run(gw, *[items("ZhangSan", text=f"第{n}条", start=n) for n in range(31)])
    assert all(r.outcome is Outcome.ACCEPTED for rs in results for r in rs)
    assert fake.dropped == 0 and len(fake.delivered) == 31  # WeCom would have dropped the 31st silently
    assert clock.now - start >= 60


def test_duplicate_check_is_asked_for(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    same = items("user001")
    run(gateway(url, clock), same, same)  # a resend after an answer that never came, within 30 minutes
    assert len(fake.delivered) == 1 and fake.duplicates == 1
    fake2_requests: list[dict[str, Any]] = []

    def capture(request: httpx.Request) -> httpx.Response:
        import json

        if request.method == "POST":
            fake2_requests.append(json.loads(request.content))
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "access_token": "t", "expires_in": 7200, "msgid": "m"})

    settings = WeComAppSettings(corp_id=CORP, corp_secret=SecretStr(SECRET), agent_id=AGENT, endpoint="https://qyapi.example",
                                duplicate_check_s=0)
    gw = WeComAppGateway(settings, make_client(2, transport=httpx.MockTransport(capture)))
    run(gw, items("user001"))
    assert "enable_duplicate_check" not in fake2_requests[-1]


def test_transport_failures(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    fake.fail_status = 503
    ((r,),) = run(gateway(url, clock), items("user001"))
    assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent  # gettoken failed: nothing was sent

    calls = []

    def reset_on_send(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("gettoken"):
            return httpx.Response(200, json={"errcode": 0, "access_token": "t", "expires_in": 7200})
        raise httpx.ReadError("connection reset by peer", request=request)

    settings = WeComAppSettings(corp_id=CORP, corp_secret=SecretStr(SECRET), agent_id=AGENT, endpoint="https://qyapi.example")
    ((r,),) = run(WeComAppGateway(settings, make_client(2, transport=httpx.MockTransport(reset_on_send))), items("user001"))
    assert r.outcome is Outcome.RETRYABLE and r.maybe_sent  # message/send may have arrived: in doubt


def test_ping(url: str, fake: FakeWeComApp, clock: ManualClock) -> None:
    assert asyncio.run(gateway(url, clock).ping()) is None
    problem = asyncio.run(gateway(url, clock, agent_id=7).ping())
    assert problem is not None and "40056" in problem
    problem = asyncio.run(gateway(url, clock, secret="wrong-secret-1234").ping())
    assert problem is not None and "40001" in problem
    assert fake.delivered == []


def test_the_secret_and_tokens_stay_out_of_logs(url: str, fake: FakeWeComApp, clock: ManualClock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gw = gateway(url, clock)
    results = run(gw, items("user001", "nobody"))
    assert "gettoken" in caplog.text and SECRET not in caplog.text + repr(results) + repr(gw.settings)
    assert "tok-" not in caplog.text  # the access token is masked in httpx's request lines
