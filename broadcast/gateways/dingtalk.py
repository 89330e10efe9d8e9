"""``dingtalk-robot``: a DingTalk (钉钉) custom robot (自定义机器人) posts the message into its group chat.

**Requests**: ``POST {BROADCAST_DINGTALK_ROBOT_ENDPOINT}/robot/send?access_token=TOKEN[&timestamp=MS&sign=S]``
with ``{"msgtype": "text", "text": {"content": …}, "at": {"atMobiles": […], "isAtAll": …}}``. A
robot whose security setting is 加签 has a secret (``SEC…``): ``timestamp`` is the time in
milliseconds and ``sign`` = urlencode(base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)))
(``signing.dingtalk_robot_sign``), within an hour of DingTalk's clock. ``SendItem.mentions`` become
``atMobiles`` (``"@all"``: ``isAtAll``).

**Limits**: 20 messages a minute per robot, after which DingTalk throttles the robot for ten
minutes (kept per robot by the gateway, see ``robots``). DingTalk publishes no text limit.

**Answers** (``classify_answer``), HTTP 200 with ``{"errcode", "errmsg"}``:

===============================  ============================================================
``0``                            accepted (no message id)
``130101``, ``410100``           throttled ("send too fast"): the robot is held for ten minutes,
                                 then the post is made again (or the delivery waits that long)
``310000``                       a security setting refused the post: a keyword missing from the
                                 text, a server IP outside the allowlist, a bad signature or
                                 timestamp: pause, with DingTalk's reason
``300001``, ``300005``,          the token is unknown, the robot stopped or removed: pause
``400101``, ``400102``, ``400106``
``400013``                       the group was dissolved: that chat fails alone
``-1``                           system busy: retryable
content refused, others          permanent
===============================  ============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import Addresses, AddressRate, Capabilities, Outcome, SendItem, http_url, timeout_field
from broadcast.gateways.cloud_common import PAUSE, PERMANENT, RETRY, Verdict
from broadcast.gateways.robots import Answer, Robot, RobotGateway, mention_phones, parse_robots, query_param
from broadcast.gateways.signing import dingtalk_robot_sign

THROTTLE_HOLD_S = 600.0
PREFIX = "BROADCAST_DINGTALK_ROBOT_"
_CREDENTIALS = {300001, 300005, 400101, 400102, 400106}

CAPABILITIES = Capabilities(
    name="dingtalk-robot",
    max_batch=1,
    mixed_texts=True,
    addresses=Addresses.GROUP_CHAT,
    per_address_rates=(AddressRate(20, 60.0),),
    description="DingTalk custom robot (自定义机器人): robot/send, 加签 HMAC-SHA256, 20 a minute per robot.",
)


def extract_token(value: str) -> str | None:
    """A robot's access token from its webhook URL (``…/robot/send?access_token=T``), or the bare token."""
    return query_param(value, "access_token", r"[A-Za-z0-9_-]{8,128}")


class DingTalkRobotSettings(BaseSettings):
    """``BROADCAST_DINGTALK_ROBOT_*``"""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    robots: SecretStr = Field(default=SecretStr(""), description='JSON {"robot name": {"url": "webhook URL", "secret": "SEC…"}} (or "webhook URL" '
                                          "for an unsigned robot), or one robot's webhook URL (named default).")
    secret: SecretStr = Field(default=SecretStr(""), description="The signing secret (SEC…) of the single robot named default.")
    endpoint: str = Field(default="https://oapi.dingtalk.com", description="API host (a proxy or a fake for tests).")
    max_wait_s: float = Field(default=120.0, ge=0, le=900, description="Longest wait for a robot's place before the delivery is retried later.")
    timeout_s: float = timeout_field()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_url(value).rstrip("/")

    @field_validator("robots")
    @classmethod
    def _robots(cls, value: SecretStr) -> SecretStr:
        parse_robots(value.get_secret_value(), extract_token, "access token")
        return value


class DingTalkRobotGateway(RobotGateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = DingTalkRobotSettings
    env_prefix = PREFIX

    def robots_from(self, settings: BaseSettings) -> Mapping[str, Robot]:
        assert isinstance(settings, DingTalkRobotSettings)
        return parse_robots(settings.robots.get_secret_value(), extract_token, "access token",
                            settings.secret.get_secret_value())

    def message(self, item: SendItem) -> dict[str, Any]:
        phones = mention_phones(item.mentions)
        return {"msgtype": "text", "text": {"content": item.text},
                "at": {"atMobiles": [p for p in phones if p != "@all"], "isAtAll": "@all" in phones}}

    def request(self, robot: Robot, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        s = self.settings
        assert isinstance(s, DingTalkRobotSettings)
        url = f"{s.endpoint}/robot/send?access_token={robot.key}"
        if robot.secret:
            ms = int(self._clock() * 1000)
            url += f"&timestamp={ms}&sign={dingtalk_robot_sign(robot.secret, ms)}"
        return url, body

    def probe(self) -> dict[str, Any]:
        return {"msgtype": "broadcast_check"}

    @classmethod
    def classify_answer(cls, data: Any) -> Answer | None:
        return classify_answer(data)


def classify_answer(data: Any) -> Answer | None:
    """A DingTalk robot's answer (see the table in the module docstring)."""
    if not isinstance(data, dict) or not isinstance(data.get("errcode"), int):
        return None
    code, detail = data["errcode"], str(data.get("errmsg") or "") or None
    if code == 0:
        return Answer("0")
    if code in (130101, 410100):
        return Answer(str(code), detail, hold_s=THROTTLE_HOLD_S)
    if code == 310000 or code in _CREDENTIALS:  # a missing keyword is no fault of the credentials
        return Answer(str(code), detail, PAUSE, credentials="keyword" not in (detail or "").lower())
    if code == 400013:
        return Answer("400013", detail, Verdict(Outcome.PERMANENT, recipient=True))
    if code == -1:
        return Answer("-1", detail, RETRY)
    return Answer(str(code), detail, PERMANENT)
