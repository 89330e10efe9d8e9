"""``feishu-robot``: a Feishu / Lark (飞书) custom bot (自定义机器人) posts the message into its group chat.

**Requests**: ``POST {BROADCAST_FEISHU_ROBOT_ENDPOINT}/open-apis/bot/v2/hook/HOOK`` with
``{"msg_type": "text", "content": {"text": …}}``. A bot whose security setting is 签名校验 has a
secret: the body also carries ``"timestamp"`` (seconds, as a string) and ``"sign"`` =
base64(HMAC-SHA256(key = timestamp + "\\n" + secret, message = empty))
(``signing.feishu_robot_sign``), within an hour of Feishu's clock. A custom bot cannot @ anyone
by phone: ``SendItem.mentions`` of ``"@all"`` becomes ``<at user_id="all">所有人</at>``, phones
are ignored.

**Limits** (open.larkoffice.com, 自定义机器人使用指南): 100 requests a minute and 5 a second per
bot (kept per bot by the gateway, see ``robots``); a request body at most 20 KB.

**Answers** (``classify_answer``): ``{"code", "msg", "data"}`` (older bots also ``StatusCode``):

===================  ===================================================================
``0``                accepted (no message id)
``19001``            param invalid: when about the webhook's token, the hook id is not a
                     bot's (removed, mistyped): pause; otherwise permanent
``11232``            throttled: the bot is held for 10 s, then the post is made again
``19021``            bad signature or a timestamp more than an hour off: pause
``19022``            this server's IP is outside the bot's allowlist: pause
``19024``            a keyword is missing from the text: pause
``9499``, others     the request was refused (bad body, too large): permanent
===================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import Addresses, AddressRate, Capabilities, SendItem, http_url, timeout_field
from broadcast.gateways.cloud_common import PAUSE, PERMANENT
from broadcast.gateways.robots import Answer, Robot, RobotGateway, parse_robots
from broadcast.gateways.signing import feishu_robot_sign

THROTTLE_HOLD_S = 10.0
BODY_BYTES = 20 * 1024
PREFIX = "BROADCAST_FEISHU_ROBOT_"

CAPABILITIES = Capabilities(
    name="feishu-robot",
    max_batch=1,
    mixed_texts=True,
    addresses=Addresses.GROUP_CHAT,
    max_text_bytes=BODY_BYTES - 512,  # the body's 20 KB, less its envelope
    per_address_rates=(AddressRate(5, 1.0), AddressRate(100, 60.0)),
    description="Feishu custom bot (自定义机器人): bot/v2/hook, 签名校验 in the body, 100 a minute and 5 a second per bot.",
)


def extract_hook(value: str) -> str | None:
    """A bot's hook id from its webhook URL (``…/open-apis/bot/v2/hook/ID``), or the bare id."""
    import re
    from urllib.parse import urlsplit

    if "://" in value:
        path = urlsplit(value).path
        value = path.rsplit("/hook/", 1)[1] if "/hook/" in path else ""
    return value if re.fullmatch(r"[A-Za-z0-9-]{8,128}", value) else None


class FeishuRobotSettings(BaseSettings):
    """``BROADCAST_FEISHU_ROBOT_*``"""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore")

    robots: SecretStr = Field(default=SecretStr(""), description='JSON {"robot name": {"url": "webhook URL", "secret": "…"}} (or "webhook URL" '
                                          "for an unsigned bot), or one bot's webhook URL (named default).")
    secret: SecretStr = Field(default=SecretStr(""), description="The signing secret of the single bot named default.")
    endpoint: str = Field(default="https://open.feishu.cn", description="API host (open.larksuite.com for Lark, a fake for tests).")
    max_wait_s: float = Field(default=120.0, ge=0, le=900, description="Longest wait for a bot's place before the delivery is retried later.")
    timeout_s: float = timeout_field()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_url(value).rstrip("/")

    @field_validator("robots")
    @classmethod
    def _robots(cls, value: SecretStr) -> SecretStr:
        parse_robots(value.get_secret_value(), extract_hook, "hook id")
        return value


class FeishuRobotGateway(RobotGateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = FeishuRobotSettings
    env_prefix = PREFIX

    def robots_from(self, settings: BaseSettings) -> Mapping[str, Robot]:
        assert isinstance(settings, FeishuRobotSettings)
        return parse_robots(settings.robots.get_secret_value(), extract_hook, "hook id", settings.secret.get_secret_value())

    def message(self, item: SendItem) -> dict[str, Any]:
        text = item.text
        if "@all" in item.mentions:
            text = '<at user_id="all">所有人</at> ' + text
        return {"msg_type": "text", "content": {"text": text}}

    def request(self, robot: Robot, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        s = self.settings
        assert isinstance(s, FeishuRobotSettings)
        if robot.secret:
            ts = int(self._clock())
            body = {"timestamp": str(ts), "sign": feishu_robot_sign(robot.secret, ts), **body}
        return f"{s.endpoint}/open-apis/bot/v2/hook/{robot.key}", body

    def probe(self) -> dict[str, Any]:
        return {"msg_type": "broadcast_check", "content": {}}

    @classmethod
    def classify_answer(cls, data: Any) -> Answer | None:
        return classify_answer(data)


def classify_answer(data: Any) -> Answer | None:
    """A Feishu bot's answer (see the table in the module docstring)."""
    if not isinstance(data, dict):
        return None
    code = data.get("code", data.get("StatusCode"))
    if not isinstance(code, int):
        return None
    detail = str(data.get("msg") or data.get("StatusMessage") or "") or None
    if code == 0:
        return Answer("0")
    if code == 11232:
        return Answer("11232", detail, hold_s=THROTTLE_HOLD_S)
    if code in (19021, 19022) or (code == 19001 and "token" in (detail or "").lower()):
        return Answer(str(code), detail, PAUSE, credentials=True)
    if code == 19024:
        return Answer("19024", detail, PAUSE)
    return Answer(str(code), detail, PERMANENT)
