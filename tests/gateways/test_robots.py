"""The group-chat robots (``wecom-robot``, ``dingtalk-robot``, ``feishu-robot``) against their local
fakes on 127.0.0.1 (``fake_robots.py``), which check the key and the signature independently and
keep the documented limits: every answer the modules document, the pace per robot, the throttle
waits, and the robots' keys kept out of every result and log line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from broadcast.gateways.base import Gateway, Outcome, SendItem, SendResult, make_client
from broadcast.gateways.dingtalk import DingTalkRobotGateway, DingTalkRobotSettings
from broadcast.gateways.feishu import FeishuRobotGateway, FeishuRobotSettings
from broadcast.gateways.robots import RobotGateway
from broadcast.gateways.wecom import WeComRobotGateway, WeComRobotSettings
from tests.gateways.fake_robots import FakeDingTalk, FakeFeishu, FakeRobots, FakeWeComRobot
from tests.helpers.clocks import ManualClock, ScaledClock

BRANCH = "城南社区党支部"


@dataclass(frozen=True)
class Kind:
    name: str
    fake: type[FakeRobots]
    gateway: type[RobotGateway]
    settings: Any
    key: str
    secret: str
    webhook: Callable[[str], str]  # key -> the webhook URL an operator copies
    throttle: str
    credentials_code: str

    def make_fake(self, robots: dict[str, str] | None = None, clock: Callable[[], float] = time.time) -> FakeRobots:
        return self.fake(robots if robots is not None else {self.key: self.secret}, clock)

    def robots(self, names: dict[str, str] | None = None, secret: str | None = None) -> str:
        names = names or {BRANCH: self.key}
        return json.dumps({n: {"url": self.webhook(k), "secret": self.secret if secret is None else secret}
                           for n, k in names.items()}, ensure_ascii=False)


WECOM = Kind("wecom-robot", FakeWeComRobot, WeComRobotGateway, WeComRobotSettings, "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa", "",
             lambda k: f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={k}", "45009", "93000")
DINGTALK = Kind("dingtalk-robot", FakeDingTalk, DingTalkRobotGateway, DingTalkRobotSettings,
                "98975521a1b23c02cdd1a9a08c69511ddf5fa9d2ae387813d1c5348fb", "SEC19dd84be8c7f3cf71761974f1ed3ef77c1451906",
                lambda k: f"https://oapi.dingtalk.com/robot/send?access_token={k}", "130101", "300005")
FEISHU = Kind("feishu-robot", FakeFeishu, FeishuRobotGateway, FeishuRobotSettings, "5e3d587e-d78e-4a07-bd07-265f269f86fd",
              "nIMtb7r3N9pkXyXdtAbx6e", lambda k: f"https://open.feishu.cn/open-apis/bot/v2/hook/{k}", "11232", "19001")
KINDS = [WECOM, DINGTALK, FEISHU]
SIGNED = [DINGTALK, FEISHU]


def gateway(kind: Kind, url: str, robots: str | None = None, *, clock: Any = None, **over: Any) -> RobotGateway:
    settings = kind.settings(robots=SecretStr(robots or kind.robots()), endpoint=url, timeout_s=over.pop("timeout_s", 2), **over)
    if clock is None:
        return kind.gateway(settings, make_client(2, 8, backend="httpx"))
    wall = clock.wall if isinstance(clock, ScaledClock) else clock
    mono = clock.monotonic if isinstance(clock, ScaledClock) else clock
    return kind.gateway(settings, make_client(2, 8, backend="httpx"), clock=wall, monotonic=mono, sleep=clock.sleep)


def send(gw: Gateway, *items: SendItem) -> list[SendResult]:
    async def go() -> list[SendResult]:
        try:
            return await gw.send(list(items))
        finally:
            await gw.aclose()
            if gw._client is not None:
                await gw._client.aclose()

    return asyncio.run(go())


def item(n: int = 1, text: str = "精神早餐：今日学习 第一课", to: str = BRANCH, **kw: Any) -> SendItem:
    return SendItem(n, "", text, address=to, **kw)


@contextlib.contextmanager
def served(fake: FakeRobots) -> Iterator[str]:
    with fake.running() as url:
        yield url


# -- accepted, with each provider's body ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_post_reaches_the_group_chat_signed(kind: Kind) -> None:
    fake = kind.make_fake()
    with served(fake) as url:
        (r,) = send(gateway(kind, url), item(7, mentions=("+8613805141234", "@all")))
    assert r.outcome is Outcome.ACCEPTED and r.provider_id is None and not r.maybe_sent
    assert fake.texts() == ["精神早餐：今日学习 第一课"] or fake.texts() == ['<at user_id="all">所有人</at> 精神早餐：今日学习 第一课']
    body = fake.posts[0].body
    if kind is WECOM:
        assert body["text"]["mentioned_mobile_list"] == ["13805141234", "@all"]
    elif kind is DINGTALK:
        assert body["at"] == {"atMobiles": ["13805141234"], "isAtAll": True}
    else:
        assert body["sign"] and body["timestamp"].isdigit()


def test_a_webhook_url_or_a_bare_key_names_the_single_robot_default() -> None:
    fake = WECOM.make_fake()
    with served(fake) as url:
        for robots in (WECOM.webhook(WECOM.key), WECOM.key):
            (r,) = send(gateway(WECOM, url, robots), item(to="default"))
            assert r.outcome is Outcome.ACCEPTED
    assert len(fake.posts) == 2


def test_markdown_and_an_unsigned_dingtalk_robot() -> None:
    fake = WECOM.make_fake()
    with served(fake) as url:
        (r,) = send(gateway(WECOM, url, msgtype="markdown"), item(text="**早安**"))
    assert r.outcome is Outcome.ACCEPTED and fake.posts[0].body == {"msgtype": "markdown", "markdown": {"content": "**早安**"}}
    ding = DINGTALK.make_fake({DINGTALK.key: ""})
    with served(ding) as url:
        (r,) = send(gateway(DINGTALK, url, DINGTALK.robots(secret="")), item())
    assert r.outcome is Outcome.ACCEPTED


# -- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SIGNED, ids=lambda k: k.name)
def test_a_bad_signature_or_a_stale_timestamp_pauses(kind: Kind) -> None:
    fake = kind.make_fake()
    with served(fake) as url:
        (wrong,) = send(gateway(kind, url, kind.robots(secret="SEC-not-the-robots-secret")), item())
        late = ManualClock(time.time() - 2 * 3600)  # our clock two hours slow
        (stale,) = send(gateway(kind, url, clock=late), item())
    for r in (wrong, stale):
        assert r.outcome is Outcome.PERMANENT and r.pause and not r.recipient_fault
    assert {wrong.code, stale.code} == ({"310000"} if kind is DINGTALK else {"19021"})
    if kind is DINGTALK:
        assert wrong.detail == "sign not match" and stale.detail == "invalid timestamp"
    assert fake.posts == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_an_unknown_key_pauses(kind: Kind) -> None:
    fake = kind.make_fake({"someone-elses-key-0000": ""})
    with served(fake) as url:
        (r,) = send(gateway(kind, url), item())
    assert r.outcome is Outcome.PERMANENT and r.pause and r.code == kind.credentials_code
    assert kind.key not in (r.detail or "")


@pytest.mark.parametrize("kind", SIGNED, ids=lambda k: k.name)
def test_keyword_and_ip_allowlist_refusals_pause_with_the_reason(kind: Kind) -> None:
    fake = kind.make_fake()
    fake.keywords = {"通知"}
    with served(fake) as url:
        (keyword,) = send(gateway(kind, url), item(text="今日学习"))
        (ok,) = send(gateway(kind, url), item(text="通知：今日学习"))
        fake.ip_refused = True
        (ip,) = send(gateway(kind, url), item(text="通知：今日学习"))
    assert ok.outcome is Outcome.ACCEPTED
    assert keyword.pause and ip.pause and keyword.outcome is ip.outcome is Outcome.PERMANENT
    if kind is DINGTALK:
        assert (keyword.code, keyword.detail) == ("310000", "keywords not in content")
        assert ip.code == "310000" and "not in whitelist" in (ip.detail or "")
    else:
        assert (keyword.code, ip.code) == ("19024", "19022")


def test_what_cannot_be_posted_never_leaves() -> None:
    fake = WECOM.make_fake()
    with served(fake) as url:
        gw = gateway(WECOM, url)
        no_robot, unknown, long = send(gw, SendItem(1, "+8613805141234", "早安"), item(2, to="青石村党支部"),
                                       item(3, text="长" * 700))
    assert no_robot.outcome is Outcome.PERMANENT and no_robot.pause and no_robot.code == "no_address"
    assert unknown.code == "unknown_robot" and unknown.recipient_fault and not unknown.pause
    assert long.code == "text_too_long" and not long.recipient_fault and "2100 bytes" in (long.detail or "")
    assert fake.answers == []


def test_a_refused_body_is_permanent_and_a_dissolved_group_fails_alone() -> None:
    from broadcast.gateways import dingtalk, wecom

    assert wecom.classify_answer({"errcode": 40058, "errmsg": "too long"}).verdict.outcome is Outcome.PERMANENT  # type: ignore[union-attr]
    assert wecom.classify_answer({"errcode": -1, "errmsg": "busy"}).verdict.outcome is Outcome.RETRYABLE  # type: ignore[union-attr]
    gone = dingtalk.classify_answer({"errcode": 400013, "errmsg": "群已被解散"})
    assert gone is not None and gone.verdict is not None and gone.verdict.recipient and not gone.verdict.pause
    assert dingtalk.classify_answer({"errcode": 410100, "errmsg": "发送速度太快而限流"}).hold_s == 600  # type: ignore[union-attr]
    assert wecom.classify_answer({"no": "errcode"}) is None


# -- transport and HTTP failures -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_transport_failures_are_classified(kind: Kind) -> None:
    fake = kind.make_fake()
    fake.fail_status = 502
    with served(fake) as url:
        (down,) = send(gateway(kind, url), item())
    (refused,) = send(gateway(kind, url), item())  # the server is gone: connection refused
    assert down.outcome is Outcome.RETRYABLE and down.code == "502" and not down.maybe_sent
    assert refused.outcome is Outcome.RETRYABLE and not refused.maybe_sent

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    settings = kind.settings(robots=SecretStr(kind.robots()), endpoint="https://robot.example")
    (in_doubt,) = send(kind.gateway(settings, make_client(2, transport=httpx.MockTransport(reset))), item())
    assert in_doubt.outcome is Outcome.RETRYABLE and in_doubt.maybe_sent


# -- throttling: wait, never fail ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_throttled_robot_is_waited_for_and_posted_once(kind: Kind) -> None:
    clock = ManualClock(time.time())
    fake = kind.make_fake(clock=clock)
    for _ in range(100):  # another process filled the robot's windows a moment ago
        fake.over_limit(kind.key, clock.now)
    with served(fake) as url:
        (r,) = send(gateway(kind, url, clock=clock, max_wait_s=900), item())
    assert r.outcome is Outcome.ACCEPTED and len(fake.posts) == 1
    assert fake.answers[0] == kind.throttle and fake.answers[-1] == "0"
    assert sum(clock.slept) >= {"45009": 60, "130101": 600, "11232": 10}[kind.throttle]


def test_a_throttle_longer_than_max_wait_gives_the_delivery_back() -> None:
    clock = ManualClock(time.time())
    fake = DINGTALK.make_fake(clock=clock)
    for _ in range(20):
        fake.over_limit(DINGTALK.key, clock.now)
    with served(fake) as url:
        (r,) = send(gateway(DINGTALK, url, clock=clock), item())  # max_wait_s 120 < DingTalk's ten minutes
    assert r.outcome is Outcome.RETRYABLE and r.code == "130101" and r.retry_after_s == 600
    assert not r.maybe_sent and not r.pause and fake.posts == []


def concurrent(gw: RobotGateway, items: list[SendItem], in_flight: int = 8) -> list[SendResult]:
    """Items sent as the dispatcher does: one request each, ``in_flight`` at a time."""

    async def go() -> list[SendResult]:
        gate = asyncio.Semaphore(in_flight)

        async def one(i: SendItem) -> SendResult:
            async with gate:
                (r,) = await gw.send([i])
                return r

        try:
            return list(await asyncio.gather(*(one(i) for i in items)))
        finally:
            await gw.aclose()
            if gw._client is not None:
                await gw._client.aclose()

    return asyncio.run(go())


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_65_posts_through_one_robot_keep_its_limit_and_finish(kind: Kind) -> None:
    """65 branches' notices through one robot, 8 in flight, over a real socket on a clock 100× fast:
    the fake never throttles (its windows are the documented ones) and each text arrives once."""
    clock = ScaledClock(100, time.time())
    fake = kind.make_fake(clock=clock.wall)
    with served(fake) as url:
        results = concurrent(gateway(kind, url, clock=clock), [item(n, f"第{n}支部：今日学习") for n in range(65)])
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert sorted(fake.texts()) == sorted(f"第{n}支部：今日学习" for n in range(65))
    assert set(fake.answers) == {"0"}
    times = [p.at for p in fake.posts]
    per_minute = 20 if kind is not FEISHU else 100
    assert max(sum(1 for u in times if t <= u < t + 60) for t in times) <= per_minute
    if kind is not FEISHU:
        assert max(times) - min(times) >= 3 * 60  # 65 at 20 a minute: three full windows


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_65_branches_each_with_its_robot_go_at_once(kind: Kind) -> None:
    keys = {f"branch-{n:02d}": f"{kind.key[:-6]}{n:06d}" for n in range(65)}
    fake = kind.make_fake({k: kind.secret for k in keys.values()})
    with served(fake) as url:
        started = time.monotonic()
        results = concurrent(gateway(kind, url, kind.robots(keys)), [item(n, f"{name}：早安", to=name)
                                                                      for n, name in enumerate(keys)])
        elapsed = time.monotonic() - started
    assert {r.outcome for r in results} == {Outcome.ACCEPTED} and set(fake.answers) == {"0"}
    assert {p.robot for p in fake.posts} == set(keys.values()) and len(fake.posts) == 65
    assert elapsed < 20  # no robot waited for another's window


# -- settings, ping, secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_bad_robot_settings_name_the_robot_never_the_value(kind: Kind) -> None:
    for raw, words in [('{"城南": "https://example.com/nothing-here"}', "robot '城南'"),
                       ('{"城南": 42}', "robot '城南'"), ("not a key!", "robot 'default'"), ("[1, 2]", "JSON object")]:
        with pytest.raises(ValidationError) as info:
            kind.settings(robots=SecretStr(raw))
        assert words in str(info.value) and "nothing-here" not in str(info.value)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_ping_proves_the_credentials_without_posting(kind: Kind) -> None:
    good = kind.make_fake()
    with served(good) as url:
        assert asyncio.run(gateway(kind, url).ping()) is None
        bad = asyncio.run(gateway(kind, url, kind.robots({BRANCH: "wrong-key-00000000"})).ping())
        if kind in SIGNED:
            unsigned = asyncio.run(gateway(kind, url, kind.robots(secret="SEC-wrong")).ping())
            assert unsigned is not None and BRANCH in unsigned
    assert good.posts == []
    assert bad is not None and BRANCH in bad and kind.credentials_code in bad and "wrong-key" not in bad


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_keys_stay_out_of_results_reprs_and_httpx_logs(kind: Kind, caplog: pytest.LogCaptureFixture) -> None:
    fake = kind.make_fake()
    caplog.set_level(logging.DEBUG)
    with served(fake) as url:
        gw = gateway(kind, url)
        text = repr(gw.robots) + repr(gw.settings) + str(gw.check())
        results = send(gw, item(1), item(2, to="nobody"))
        fake.fail_status = 500
        results += send(gateway(kind, url), item(3))
    text += repr(results) + caplog.text
    assert "HTTP Request" in caplog.text  # httpx logged the URLs, masked
    for secret in (kind.key, kind.secret):
        if secret:
            assert secret not in text
