"""The contract kit's cases for the built-in gateways (``broadcast.testing.GatewayCase``), one place for all.

The cloud and Kannel gateways talk to the fakes of ``fakes.py`` behind an ``httpx.MockTransport``
(each fake verifies the signature or password as the provider does); their failing variants are a
transport that resets the connection, a provider answering 5xx (``fail_status``), and a provider
that throttles. Every secret is a recognisable fake, searched for by ``check_no_secret_leaks``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from pydantic import SecretStr

from broadcast.gateways.aliyun import AliyunGateway, AliyunSettings
from broadcast.gateways.base import Gateway, make_client
from broadcast.gateways.cmas import CmasGateway, CmasSettings
from broadcast.gateways.cmpp import CmppGateway, CmppSettings
from broadcast.gateways.console import ConsoleGateway, ConsoleSettings
from broadcast.gateways.dingtalk import DingTalkRobotGateway, DingTalkRobotSettings
from broadcast.gateways.feishu import FeishuRobotGateway, FeishuRobotSettings
from broadcast.gateways.http import HttpGateway, HttpSettings
from broadcast.gateways.kannel import KannelGateway, KannelSettings
from broadcast.gateways.push import Incoming
from broadcast.gateways.signing import twilio_signature
from broadcast.gateways.simulator import SimulatorGateway, SimulatorSettings
from broadcast.gateways.smpp import SmppGateway, SmppSettings
from broadcast.gateways.smtp import EmailGateway, EmailSettings
from broadcast.gateways.tencent import TencentGateway, TencentSettings
from broadcast.gateways.twilio import TwilioGateway, TwilioSettings
from broadcast.gateways.wecom import WeComRobotGateway, WeComRobotSettings
from broadcast.gateways.wecom_app import WeComAppGateway, WeComAppSettings
from broadcast.testing import GatewayCase
from tests.gateways import cmpp_server
from tests.gateways.fake_cmas import FakeCmas
from tests.gateways.fake_robots import FakeDingTalk, FakeFeishu, FakeRobots, FakeWeComRobot
from tests.gateways.fake_smsc import shared
from tests.gateways.fake_smtp import MailServer, free_port, silent_smtp, smtp_server
from tests.gateways.fake_wecom_app import FakeWeComApp
from tests.gateways.fakes import FakeAliyun, FakeKannel, FakeProvider, FakeTencent, FakeTwilio

SECRET = {
    "http": "Bearer kit-http-token-4b7e91",
    "aliyun": "kit-aliyun-secret-9f3b2c",
    "tencent": "kit-tencent-secret-7c1d0a",
    "twilio": "kit-twilio-token-5e2a66",
    "kannel": "kit-kannel-pass-31d8",
    "smpp": "kitpass1",
    "cmpp": "kit-cmpp-secret-1",
    "cmas": "kit-cmas-secret-6a0f42",
    "wecom-app": "kit-wecom-corp-secret-81d2",
    "email": "kit-smtp-auth-code-40c7",
}
CMPP_SP = "901234"
ALIYUN_KEY, TENCENT_ID, TWILIO_SID = "LTAI-kit", "AKID-kit", "AC" + "0" * 31 + "9"
NOW = datetime(2026, 3, 1, 1, 30, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return make_client(2, 4, transport=transport)


def reset(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset by peer", request=request)


def down(fake: FakeProvider, status: int) -> httpx.MockTransport:
    fake.fail_status = status
    return fake.transport()


def answer(status: int, body: dict[str, Any]) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


def variants(name: str, healthy: Callable[[], Gateway], failing: dict[str, Callable[[], Gateway]], **common: Any) -> list[GatewayCase]:
    """One case per failing variant (the first is the plain ``name``)."""
    return [GatewayCase(name, healthy, make, variant="" if i == 0 else label, **common)
            for i, (label, make) in enumerate(failing.items())]


# -- simulator, console ------------------------------------------------------------------------------


async def _instant(_: float) -> None:
    return None


def simulator(**over: Any) -> SimulatorGateway:
    settings = SimulatorSettings(**{"seed": 1, "latency_ms": 0, "failure_rate": 0, **over})
    return SimulatorGateway(settings, sleep=_instant)


SIMULATOR_PUSH = Incoming("POST", [], {"content-type": "application/json"},
                          b'{"delivery_id": 7, "status": "delivered", "code": "DELIVRD", "at": "2026-03-01T01:30:08Z"}')

# -- http ------------------------------------------------------------------------------------------------


def _http_ok(request: httpx.Request) -> httpx.Response:
    assert request.headers["authorization"] == SECRET["http"]
    body = json.loads(request.content)
    if "messages" in body:
        return httpx.Response(200, json={"results": [{"id": m["id"], "status": "accepted", "provider_id": "p" + m["id"]}
                                                     for m in body["messages"]]})
    return httpx.Response(200, json={"id": "p" + body["id"]})


def http(handler: Handler | None = None, batch: int = 1, url: str = "https://sms.example.com/send", timeout_s: float = 2,
         ) -> HttpGateway:
    settings = HttpSettings(url=url, batch=batch, timeout_s=timeout_s, headers=SecretStr(f"Authorization: {SECRET['http']}"))
    return HttpGateway(settings, client(httpx.MockTransport(handler)) if handler else None)


def http_recipients(request: httpx.Request) -> int:
    body = json.loads(request.content)
    return len(body["messages"]) if "messages" in body else 1


# -- aliyun ----------------------------------------------------------------------------------------------


def aliyun(transport: httpx.AsyncBaseTransport | None = None, **over: Any) -> AliyunGateway:
    settings = AliyunSettings(**{"access_key_id": ALIYUN_KEY, "access_key_secret": SecretStr(SECRET["aliyun"]),
                                 "sign_name": "城南新区", "template_code": "SMS_100001",
                                 "endpoint": "https://dysmsapi.example.test/", **over})
    return AliyunGateway(settings, client(transport) if transport else None, clock=lambda: NOW)


def aliyun_recipients(request: httpx.Request) -> int:
    params = dict(parse_qsl(request.content.decode("ascii")))
    if "PhoneNumbers" in params:
        return len(params["PhoneNumbers"].split(","))
    return len(json.loads(params["PhoneNumberJson"])) if "PhoneNumberJson" in params else 0


ALIYUN_PUSH = Incoming("POST", [], {"content-type": "application/json"}, json.dumps([
    {"phone_number": "13800000001", "send_time": "2026-03-01 09:30:00", "report_time": "2026-03-01 09:30:08",
     "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "932702304080415357^0",
     "out_id": "7"}], ensure_ascii=False).encode())

# -- tencent ---------------------------------------------------------------------------------------------


def tencent(transport: httpx.AsyncBaseTransport | None = None, **over: Any) -> TencentGateway:
    settings = TencentSettings(**{"secret_id": TENCENT_ID, "secret_key": SecretStr(SECRET["tencent"]),
                                  "sdk_app_id": "1400006666", "sign_name": "城南新区", "template_id": "449739",
                                  "endpoint": "https://sms.example.test/", **over})
    return TencentGateway(settings, client(transport) if transport else None)


def tencent_recipients(request: httpx.Request) -> int:
    return len(json.loads(request.content).get("PhoneNumberSet", []))


TENCENT_PUSH = Incoming("POST", [], {"content-type": "application/json"}, json.dumps([
    {"user_receive_time": "2026-03-01 09:30:08", "nationcode": "86", "mobile": "13800000000",
     "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "2028:1"}],
    ensure_ascii=False).encode())

# -- twilio ----------------------------------------------------------------------------------------------

TWILIO_PUBLIC = "https://hooks.example.org/receipts"


def twilio(transport: httpx.AsyncBaseTransport | None = None, **over: Any) -> TwilioGateway:
    settings = TwilioSettings(**{"account_sid": TWILIO_SID, "auth_token": SecretStr(SECRET["twilio"]),
                                 "from_": "+15005550006", "status_callback": f"{TWILIO_PUBLIC}/twilio",
                                 "endpoint": "https://api.example.test", **over})
    return TwilioGateway(settings, client(transport) if transport else None, clock=lambda: NOW)


def twilio_recipients(request: httpx.Request) -> int:
    return int(request.method == "POST" and urlsplit(str(request.url)).path.endswith("/Messages.json"))


def _twilio_push() -> Incoming:
    query = "bc_delivery=7"
    params = {"MessageSid": "SM55550100", "MessageStatus": "delivered", "AccountSid": TWILIO_SID, "From": "+15005550006",
              "To": "+14155550100", "ApiVersion": "2010-04-01"}
    signature = twilio_signature(f"{TWILIO_PUBLIC}/twilio?{query}", params, SECRET["twilio"])
    return Incoming("POST", list(parse_qsl(query)) + list(params.items()), {"X-Twilio-Signature": signature},
                    urlencode(params).encode(), path="/twilio", raw_query=query)


#: Twilio's push format reads the auth token (and the public URL it was signed for) from the settings.
TWILIO_ENV = {"BROADCAST_TWILIO_ACCOUNT_SID": TWILIO_SID, "BROADCAST_TWILIO_AUTH_TOKEN": SECRET["twilio"],
              "BROADCAST_TWILIO_FROM": "+15005550006", "BROADCAST_RECEIPTS_PUBLIC_URL": TWILIO_PUBLIC}

# -- kannel ----------------------------------------------------------------------------------------------


def kannel(transport: httpx.AsyncBaseTransport | None = None, **over: Any) -> KannelGateway:
    settings = KannelSettings(**{"url": "http://127.0.0.1:13013/cgi-bin/sendsms", "username": "bc",
                                 "password": SecretStr(SECRET["kannel"]), "sender": "10690", "max_parts": 3,
                                 "receipts_url": "http://127.0.0.1:8787/s3cret", **over})
    return KannelGateway(settings, client(transport) if transport else None)


KANNEL_PUSH = Incoming("GET", [("id", "7"), ("type", "1"), ("ts", "1772328608"), ("to", "+8613800000001"),
                               ("reply", "id:1 sub:001 dlvrd:001 stat:DELIVRD err:000"), ("fid", "kannel-1")], {}, b"")


# -- cmas ------------------------------------------------------------------------------------------------

CMAS_EC, CMAS_AP = "城南新区政务服务中心", "cnxq-api"


def cmas(transport: httpx.AsyncBaseTransport | None = None, **over: Any) -> CmasGateway:
    settings = CmasSettings(**{"url": "https://mas.example.test/sms/", "ec_name": CMAS_EC, "ap_id": CMAS_AP,
                               "secret_key": SecretStr(SECRET["cmas"]), "sign": "wHwvfNuH5", **over})
    return CmasGateway(settings, client(transport) if transport else None)


def cmas_recipients(request: httpx.Request) -> int:
    return len(json.loads(base64.b64decode(request.content))["mobiles"].split(","))


CMAS_PUSH = Incoming("POST", [], {"content-type": "application/json"}, json.dumps(
    {"reportStatus": "DELIVRD", "mobile": "13800000001", "submitDate": "2026-03-01 09:30:00",
     "receiveDate": "2026-03-01 09:30:08", "errorCode": "DELIVRD", "msgGroup": "0301093000001000833076"}).encode())


def fake_cmas() -> FakeCmas:
    return FakeCmas(CMAS_EC, CMAS_AP, SECRET["cmas"])


def fake_aliyun() -> FakeAliyun:
    return FakeAliyun(ALIYUN_KEY, SECRET["aliyun"])


def fake_tencent() -> FakeTencent:
    return FakeTencent(TENCENT_ID, SECRET["tencent"])


def fake_twilio() -> FakeTwilio:
    return FakeTwilio(TWILIO_SID, SECRET["twilio"])


def fake_kannel() -> FakeKannel:
    return FakeKannel("bc", SECRET["kannel"])


@functools.cache
def cmpp_ismg(kind: str) -> cmpp_server.CmppServer:
    """A CMPP test ISMG in a thread of its own, started on first use and kept for the session:
    ``healthy`` (accepts everything), ``reset`` (cuts the link at every submit)."""
    options = {"healthy": {}, "reset": {"cut_after": 1, "cut_repeat": True}}[kind]
    running = cmpp_server.in_thread(accounts={CMPP_SP: SECRET["cmpp"]}, **options)
    _KEPT.append(running)  # a context manager collected would stop its server
    return running.__enter__()


_KEPT: list[contextlib.AbstractContextManager[cmpp_server.CmppServer]] = []


def cmpp(port: int, **kw: Any) -> CmppGateway:
    return CmppGateway(CmppSettings(host="127.0.0.1", port=port, sp_id=CMPP_SP, secret=SecretStr(SECRET["cmpp"]),
                                    src_id="1065712345", service_id="KIT", **kw))


@contextlib.contextmanager
def cmpp_silent() -> Iterator[str]:
    """An ISMG that accepts the login, then answers nothing (neither submits nor heartbeats)."""
    with cmpp_server.in_thread(accounts={CMPP_SP: SECRET["cmpp"]}, silent=True) as srv:
        yield f"cmpp://127.0.0.1:{srv.port}"


def _ms(timeout_s: float) -> dict[str, Any]:
    return {"timeout_s": timeout_s}


def smpp(port: int, password: str = SECRET["smpp"], **over: Any) -> SmppGateway:
    """An SMPP gateway bound to a fake SMSC (tests/gateways/fake_smsc.py) on 127.0.0.1:``port``."""
    settings = SmppSettings(host="127.0.0.1", port=port, system_id="kit", password=SecretStr(password),
                            source_addr="10690", **{"response_timeout_s": 2.0, **over})
    return SmppGateway(settings)


# The SMPP case: a fake SMSC on 127.0.0.1 (its own thread); failing = a refused bind (pauses) and an
# SMSC that refuses every destination. No hanging(): the kit's timeout check expects an HTTP endpoint
# whose silence means "written, never answered"; an SMSC that never answers the bind means "never
# written" for SMPP. test_smpp.py checks the submit that is never answered (in doubt) itself.
SMPP_CASES = variants("smpp", lambda: smpp(shared("ok").port), {
    "bind-refused": lambda: smpp(shared("ok").port, password="wrong1"),
    "refusing": lambda: smpp(shared("refusing", refuse={f"86137{i:08d}" for i in range(200)}).port),
})

# -- the channels: group robots, WeCom application messages, email ------------------------------------

ROBOT_FAKES: dict[str, tuple[type[FakeRobots], type[Gateway], Any, str]] = {
    "wecom-robot": (FakeWeComRobot, WeComRobotGateway, WeComRobotSettings, ""),
    "dingtalk-robot": (FakeDingTalk, DingTalkRobotGateway, DingTalkRobotSettings, "SEC-kit-dingtalk-7a3e91c0"),
    "feishu-robot": (FakeFeishu, FeishuRobotGateway, FeishuRobotSettings, "kit-feishu-secret-52bd"),
}


def robot_key(name: str, n: int) -> str:
    return f"kit-{name.split('-')[0]}-key-{n:04d}-9c1e"


def robot(name: str, transport: httpx.AsyncBaseTransport | None = None, **over: Any) -> Gateway:
    """Three robots, ``branch-0`` … ``branch-2``, each with its key (and secret)."""
    _, cls, settings_cls, secret = ROBOT_FAKES[name]
    robots = {f"branch-{n}": {"url": robot_key(name, n), "secret": secret} for n in range(3)}
    settings = settings_cls(robots=SecretStr(json.dumps(robots)), endpoint=over.pop("endpoint", "https://robot.example"),
                            timeout_s=over.pop("timeout_s", 2), **over)
    return cls(settings, client(transport) if transport else None)  # type: ignore[call-arg]


def fake_robot(name: str) -> FakeRobots:
    fake_cls, _, _, secret = ROBOT_FAKES[name]
    return fake_cls({robot_key(name, n): secret for n in range(3)})


def robot_cases(name: str, throttled: dict[str, Any]) -> list[GatewayCase]:
    _, _, _, secret = ROBOT_FAKES[name]
    return variants(name, lambda: robot(name, fake_robot(name).transport()), {
        "reset": lambda: robot(name, httpx.MockTransport(reset)),
        "down": lambda: robot(name, down(fake_robot(name), 502)),
        "throttled": lambda: robot(name, answer(200, throttled), max_wait_s=0),
    }, hanging=lambda url, t: robot(name, endpoint=url, timeout_s=t), recipients=lambda request: 1,
        address=lambda i: f"branch-{i % 3}", secrets=[robot_key(name, n) for n in range(3)] + [secret] * bool(secret))


WECOM_CORP, WECOM_AGENT = "ww-kit-corp-1", 1000002
WECOM_MEMBERS = {f"user{i:04d}" for i in range(2100)}


def wecom_app(transport: httpx.AsyncBaseTransport | None = None, **over: Any) -> WeComAppGateway:
    settings = WeComAppSettings(corp_id=WECOM_CORP, corp_secret=SecretStr(SECRET["wecom-app"]), agent_id=WECOM_AGENT,
                                endpoint=over.pop("endpoint", "https://qyapi.example"), timeout_s=over.pop("timeout_s", 2), **over)
    return WeComAppGateway(settings, client(transport) if transport else None)


def fake_wecom_app(**over: Any) -> FakeWeComApp:
    fake = FakeWeComApp(WECOM_CORP, SECRET["wecom-app"], WECOM_AGENT, WECOM_MEMBERS)
    for k, v in over.items():
        setattr(fake, k, v)
    return fake


def wecom_recipients(request: httpx.Request) -> int:
    return len(json.loads(request.content)["touser"].split("|")) if request.url.path.endswith("/message/send") else 0


@contextlib.contextmanager
def wecom_silent() -> Iterator[str]:
    """Hands out tokens, takes each message and never answers in time."""
    with fake_wecom_app(hang_send_s=3.0).running() as url:
        yield url


@functools.cache
def shared_smtp(kind: str) -> int:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 for the whole session: ``ok`` (a login), or
    ``refusing`` (451 to every MAIL FROM)."""
    server = MailServer(login=("notice@kit.example.org", SECRET["email"]))
    if kind == "refusing":
        server.refuse_mail = "451 4.3.0 Try again later"
    context = smtp_server(server)
    port = context.__enter__()
    import atexit

    atexit.register(context.__exit__, None, None, None)
    return port


def email_gateway(port: int, **over: Any) -> EmailGateway:
    settings = EmailSettings(host="127.0.0.1", port=port, security="none", username="notice@kit.example.org",
                             password=SecretStr(SECRET["email"]), from_address="城南新区 <notice@kit.example.org>",
                             timeout_s=over.pop("timeout_s", 3), **over)
    return EmailGateway(settings)


CASES: list[GatewayCase] = [
    GatewayCase("simulator", simulator, lambda: simulator(failure_rate=0.5, throttle_rate=0.5),
                push_samples={"simulator": SIMULATOR_PUSH}),
    GatewayCase("console", lambda: ConsoleGateway(ConsoleSettings(), writer=lambda line: None)),
    *variants("http", lambda: http(_http_ok), {"reset": lambda: http(reset), "down": lambda: http(lambda r: httpx.Response(503))},
              hanging=lambda url, t: http(url=url + "/send", timeout_s=t), recipients=http_recipients,
              secrets=[SECRET["http"].split()[1]]),
    *variants("http", lambda: http(_http_ok, batch=25), {"batch": lambda: http(reset, batch=25)},
              hanging=lambda url, t: http(url=url + "/send", batch=25, timeout_s=t), recipients=http_recipients),
    *variants("aliyun", lambda: aliyun(fake_aliyun().transport()), {
        "reset": lambda: aliyun(httpx.MockTransport(reset)),
        "down": lambda: aliyun(down(fake_aliyun(), 500)),
        "throttled": lambda: aliyun(answer(200, {"Code": "Throttling.User", "Message": "Request was denied due to user flow control."})),
    }, hanging=lambda url, t: aliyun(endpoint=url + "/", **_ms(t)), recipients=aliyun_recipients,
        push_samples={"aliyun": ALIYUN_PUSH}),
    *variants("tencent", lambda: tencent(fake_tencent().transport()), {
        "reset": lambda: tencent(httpx.MockTransport(reset)),
        "down": lambda: tencent(down(fake_tencent(), 503)),
        "throttled": lambda: tencent(answer(200, {"Response": {"Error": {"Code": "RequestLimitExceeded", "Message": "m"}, "RequestId": "r"}})),
    }, hanging=lambda url, t: tencent(endpoint=url + "/", **_ms(t)), recipients=tencent_recipients,
        push_samples={"tencent": TENCENT_PUSH}),
    *variants("twilio", lambda: twilio(fake_twilio().transport()), {
        "reset": lambda: twilio(httpx.MockTransport(reset)),
        "down": lambda: twilio(down(fake_twilio(), 500)),
        "throttled": lambda: twilio(answer(429, {"code": 20429, "message": "Too Many Requests", "status": 429})),
    }, hanging=lambda url, t: twilio(endpoint=url, **_ms(t)), recipients=twilio_recipients,
        push_samples={"twilio": _twilio_push()}, env=TWILIO_ENV),
    *variants("kannel", lambda: kannel(fake_kannel().transport()), {
        "reset": lambda: kannel(httpx.MockTransport(reset)),
        "down": lambda: kannel(down(fake_kannel(), 503)),
    }, hanging=lambda url, t: kannel(url=url + "/cgi-bin/sendsms", **_ms(t)), recipients=lambda request: 1,
        push_samples={"kannel": KANNEL_PUSH}),
    *SMPP_CASES,
    *variants("cmpp", lambda: cmpp(cmpp_ismg("healthy").port), {"reset": lambda: cmpp(cmpp_ismg("reset").port)},
              hanging=lambda url, t: cmpp(int(url.rsplit(":", 1)[1]), timeout_s=t), silent_server=cmpp_silent),
    *variants("cmas", lambda: cmas(fake_cmas().transport()), {
        "reset": lambda: cmas(httpx.MockTransport(reset)),
        "down": lambda: cmas(down(fake_cmas(), 500)),
        "throttled": lambda: cmas(answer(200, {"rspcod": "FlowOverLimit", "msgGroup": "", "success": False})),
    }, hanging=lambda url, t: cmas(url=url + "/sms/", **_ms(t)), recipients=cmas_recipients,
        push_samples={"cmas": CMAS_PUSH}),
    *robot_cases("wecom-robot", {"errcode": 45009, "errmsg": "api freq out of limit"}),
    *robot_cases("dingtalk-robot", {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
    *robot_cases("feishu-robot", {"code": 11232, "msg": "frequency limited", "data": {}}),
    *variants("wecom-app", lambda: wecom_app(fake_wecom_app().transport()), {
        "reset": lambda: wecom_app(httpx.MockTransport(reset)),
        "down": lambda: wecom_app(down(fake_wecom_app(), 503)),
        "throttled": lambda: wecom_app(fake_wecom_app(throttle=10**6).transport(), max_wait_s=0),
    }, hanging=lambda url, t: wecom_app(endpoint=url, timeout_s=t), silent_server=wecom_silent,
        recipients=wecom_recipients, address=lambda i: f"user{i:04d}"),
    *variants("email", lambda: email_gateway(shared_smtp("ok")), {
        "refusing": lambda: email_gateway(shared_smtp("refusing")),
        "down": lambda: email_gateway(free_port()),
    }, hanging=lambda url, t: email_gateway(int(url.rsplit(":", 1)[1]), timeout_s=t), silent_server=silent_smtp,
        address=lambda i: f"member{i}@kit.example.org"),
]

_: Callable[..., Awaitable[None]] = _instant
