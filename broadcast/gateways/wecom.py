"""``wecom-robot``: a WeCom (企业微信) group robot (群机器人) posts the message into its group chat.

**Requests**: ``POST {BROADCAST_WECOM_ROBOT_ENDPOINT}/cgi-bin/webhook/send?key=KEY`` with
``{"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": […]}}`` (``BROADCAST_WECOM_ROBOT_MSGTYPE=markdown``:
``{"msgtype": "markdown", "markdown": {"content": …}}``, which cannot @ anyone). The key is the
whole credential: there is no signature. ``SendItem.mentions`` become ``mentioned_mobile_list``
(mainland numbers as 11 digits, ``"@all"`` for everyone).

**Limits** (developer.work.weixin.qq.com/document/path/91770): 20 messages a minute per robot
(kept per robot by the gateway, see ``robots``); text content at most 2,048 bytes, markdown 4,096.

**Answers** (``classify_answer``), HTTP 200 with ``{"errcode", "errmsg"}``:

=========================  ==============================================================
``0``                      accepted (a robot's answer carries no message id)
``45009``                  throttled: the robot is held for 60 s, then the post is made again
``93000``                  the key is invalid (the robot was removed): pause
``-1``                     system busy: retryable
``40008``, ``44004``,      the content was refused (bad type, empty, too long): permanent
``40058``, others
no errcode                 as the ``http`` gateway maps statuses; a 200 without one: in doubt
=========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import Addresses, AddressRate, Capabilities, SendItem, http_url, timeout_field
from broadcast.gateways.cloud_common import PAUSE, PERMANENT, RETRY
from broadcast.gateways.robots import Answer, Robot, RobotGateway, mention_phones, parse_robots, query_param

TEXT_BYTES, MARKDOWN_BYTES = 2048, 4096
THROTTLE_HOLD_S = 60.0
PREFIX = "BROADCAST_WECOM_ROBOT_"

CAPABILITIES = Capabilities(
    name="wecom-robot",
    max_batch=1,
    mixed_texts=True,
    addresses=Addresses.GROUP_CHAT,
    max_text_bytes=TEXT_BYTES,
    per_address_rates=(AddressRate(20, 60.0),),
    description="WeCom group robot (群机器人): webhook/send?key=…, text or markdown, 20 a minute per robot.",
)


def extract_key(value: str) -> str | None:
    """A robot's key from its webhook URL (``…/webhook/send?key=KEY``), or the bare key."""
    return query_param(value, "key", r"[A-Za-z0-9-]{8,128}")


class WeComRobotSettings(BaseSettings):
    """``BROADCAST_WECOM_ROBOT_*``"""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    robots: SecretStr = Field(default=SecretStr(""), description='JSON {"robot name": "webhook URL or key"}, or one robot\'s webhook URL (named default).')
    msgtype: Literal["text", "markdown"] = Field(default="text", description="text (can @ by phone) or markdown.")
    endpoint: str = Field(default="https://qyapi.weixin.qq.com", description="API host (a proxy or a fake for tests).")
    max_wait_s: float = Field(default=120.0, ge=0, le=900, description="Longest wait for a robot's place before the delivery is retried later.")
    timeout_s: float = timeout_field()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_url(value).rstrip("/")

    @field_validator("robots")
    @classmethod
    def _robots(cls, value: SecretStr) -> SecretStr:
        parse_robots(value.get_secret_value(), extract_key, "key")
        return value


class WeComRobotGateway(RobotGateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = WeComRobotSettings
    env_prefix = PREFIX

    def robots_from(self, settings: BaseSettings) -> Mapping[str, Robot]:
        assert isinstance(settings, WeComRobotSettings)
        if settings.msgtype == "markdown":
            from dataclasses import replace

            self.capabilities = replace(CAPABILITIES, max_text_bytes=MARKDOWN_BYTES)  # type: ignore[misc]
        return parse_robots(settings.robots.get_secret_value(), extract_key, "key")

    def message(self, item: SendItem) -> dict[str, Any]:
        s = self.settings
        assert isinstance(s, WeComRobotSettings)
        if s.msgtype == "markdown":
            return {"msgtype": "markdown", "markdown": {"content": item.text}}
        text: dict[str, Any] = {"content": item.text}
        mentions = mention_phones(item.mentions)
        if mentions:
            text["mentioned_mobile_list"] = mentions
        return {"msgtype": "text", "text": text}

    def request(self, robot: Robot, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        s = self.settings
        assert isinstance(s, WeComRobotSettings)
        return f"{s.endpoint}/cgi-bin/webhook/send?key={robot.key}", body

    def probe(self) -> dict[str, Any]:
        return {"msgtype": "broadcast_check"}

    @classmethod
    def classify_answer(cls, data: Any) -> Answer | None:
        return classify_answer(data)


def classify_answer(data: Any) -> Answer | None:
    """A WeCom robot's answer (see the table in the module docstring)."""
    if not isinstance(data, dict) or not isinstance(data.get("errcode"), int):
        return None
    code, detail = data["errcode"], str(data.get("errmsg") or "") or None
    if code == 0:
        return Answer("0")
    if code == 45009:
        return Answer("45009", detail, hold_s=THROTTLE_HOLD_S)
    if code == 93000:
        return Answer("93000", detail, PAUSE, credentials=True)
    if code == -1:
        return Answer("-1", detail, RETRY)
    return Answer(str(code), detail, PERMANENT)
