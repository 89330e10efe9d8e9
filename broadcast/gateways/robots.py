"""What the group-chat robots (``wecom-robot``, ``dingtalk-robot``, ``feishu-robot``) share.

A robot posts into one group chat through a webhook whose key is the whole credential. A message
to a group chat names the robot (``SendItem.to`` = the robot's name); the keys and signing secrets
live only in the gateway's settings (one ``SecretStr``, never in a delivery row, the audit trail or a
log line):

* ``ROBOTS`` settings: a JSON object ``{"城南社区党支部": "<key or webhook URL>", "青石村党支部":
  {"url": "<webhook URL>", "secret": "<signing secret>"}}``, or, for a single robot, just its key
  or webhook URL (the robot is then named ``default``). The request goes to the gateway's
  ``ENDPOINT`` with the key taken from the URL (so a test or a proxy can stand in for the provider).

``RobotGateway.send`` posts each item through its robot:

1. an item without a robot name pauses the message (the delivery names no chat: it came from a
   send that addresses phones); an unknown robot name fails that delivery alone, and a text over
   the provider's limit fails it as the message's fault;
2. it waits for the robot's place in its per-robot windows (``pacing.Pacer``, the limits of
   ``capabilities.per_address_rates``), at most ``max_wait_s``; longer, the delivery is given back
   (retryable, ``retry_after_s``: it did not leave, and a throttle wait never counts toward the
   message's auto-pause while it has attempts left);
3. it signs (where the robot has a secret) and posts; a throttle answer (the request was refused,
   nothing posted) holds the robot and is waited out the same way, then the post is made again;
4. the answer is classified by the provider module's ``classify_answer`` (a table in each
   module's docstring). A robot's answer carries no message id: an accepted result has none.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic_settings import BaseSettings

from broadcast.gateways import http, log_redact
from broadcast.gateways.base import (
    TRANSPORT_ERRORS,
    Gateway,
    Outcome,
    SendItem,
    SendResult,
    is_local_host,
    transport_error_result,
)
from broadcast.gateways.cloud_common import Verdict, json_body, snippet, verdict_result
from broadcast.gateways.pacing import Pacer

__all__ = ["Answer", "Robot", "RobotGateway", "parse_robots"]

_NAME_MAX = 64


@dataclass(frozen=True)
class Robot:
    """One robot: its name (the address of its group chat), its key and signing secret (never shown)."""

    name: str
    key: str = field(repr=False)
    secret: str = field(default="", repr=False)


def parse_robots(raw: str, extract: Callable[[str], str | None], what: str, default_secret: str = "") -> dict[str, Robot]:
    """The robots of a ``ROBOTS`` setting (see the module docstring). ``extract`` takes a key out
    of a webhook URL or checks a bare key (None: neither). Raises ValueError naming the robot and
    what is wrong, never a value."""
    raw = raw.strip()
    if not raw:
        return {}
    if not raw.startswith(("{", "[")):
        return {"default": _robot("default", raw, default_secret, extract, what)}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("is neither a key, a webhook URL nor a JSON object of robots") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object: robot name -> key, webhook URL or {\"url\", \"secret\"}")
    robots: dict[str, Robot] = {}
    for name, value in data.items():
        name = str(name).strip()
        if not name or len(name) > _NAME_MAX:
            raise ValueError(f"robot names must be 1 to {_NAME_MAX} characters")
        url = value.get("url", value.get("key")) if isinstance(value, dict) else value
        secret = value.get("secret", "") if isinstance(value, dict) else ""
        if isinstance(url, str) and isinstance(secret, str):
            robots[name] = _robot(name, url, secret, extract, what)
        else:
            raise ValueError(f"robot {name!r}: expected its {what}, its webhook URL, or {{\"url\": …, \"secret\": …}}")
    return robots


def _robot(name: str, value: str, secret: str, extract: Callable[[str], str | None], what: str) -> Robot:
    key = extract(value.strip())
    if not key:
        raise ValueError(f"robot {name!r}: not a {what} nor a webhook URL carrying one")
    return Robot(name, key, secret.strip())


def query_param(value: str, param: str, pattern: str) -> str | None:
    """``value`` as a URL carrying ``param`` (its value), or a bare key matching ``pattern``."""
    if "://" in value:
        found = parse_qs(urlsplit(value).query).get(param)
        value = found[0] if found else ""
    return value if re.fullmatch(pattern, value) else None


@dataclass(frozen=True)
class Answer:
    """A robot's answer: accepted (``verdict`` and ``hold_s`` None), throttled (``hold_s``: the
    robot takes nothing for that long; the request was refused, so it is posted again), or refused
    (``verdict``). ``credentials``: a refusal of the robot's key or signature (``ping`` reports it)."""

    code: str
    detail: str | None = None
    verdict: Verdict | None = None
    hold_s: float | None = None
    credentials: bool = False


class RobotGateway(Gateway):
    """Base of the robot gateways. A subclass sets ``capabilities``, ``settings_class`` and
    ``key_name`` (what its settings call a key), and implements ``robots_from``, ``request`` and
    ``classify_answer``."""

    key_name: ClassVar[str] = "key"
    env_prefix: ClassVar[str] = ""

    def __init__(self, settings: BaseSettings, client: httpx.AsyncClient | None = None, *,
                 clock: Callable[[], float] | None = None, monotonic: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        super().__init__(settings, client)
        self._clock = clock or time.time  # wall time, for the signatures' timestamps
        self.pacer = Pacer(self.capabilities.per_address_rates, monotonic or time.monotonic, sleep or asyncio.sleep)
        self.robots: Mapping[str, Robot] = self.robots_from(settings)
        self.max_wait_s = float(getattr(settings, "max_wait_s", 120.0))

    # -- what a provider module supplies -------------------------------------------------------

    def robots_from(self, settings: BaseSettings) -> Mapping[str, Robot]:
        raise NotImplementedError

    def request(self, robot: Robot, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The URL to post to and the JSON body (signed where the robot has a secret)."""
        raise NotImplementedError

    def message(self, item: SendItem) -> dict[str, Any]:
        """The provider's JSON body for one text (without signature)."""
        raise NotImplementedError

    def probe(self) -> dict[str, Any]:
        """A body the provider refuses for its content after checking the credentials (``ping``)."""
        raise NotImplementedError

    @classmethod
    def classify_answer(cls, data: Any) -> Answer | None:
        """A decoded answer body → ``Answer``; None when it is not the provider's answer shape."""
        raise NotImplementedError

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        return [await self._send_one(item) for item in batch]

    def _refusal(self, item: SendItem) -> SendResult | None:
        """Why this item cannot be posted at all, else None."""
        if not item.address:
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="no_address", pause=True,
                              detail=f"{self.capabilities.name} posts to group chats: this delivery names no robot")
        if item.address not in self.robots:
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="unknown_robot", recipient_fault=True,
                              detail=f"no robot named {item.address!r} in {self.env_prefix}ROBOTS")
        limit = self.capabilities.max_text_bytes
        size = len(item.text.encode("utf-8"))
        if limit is not None and size > limit:
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="text_too_long",
                              detail=f"{size} bytes, over {self.capabilities.name}'s {limit}")
        return None

    async def _send_one(self, item: SendItem) -> SendResult:
        refusal = self._refusal(item)
        if refusal is not None:
            return refusal
        robot = self.robots[item.address]
        body = self.message(item)
        deadline = self.pacer.clock() + self.max_wait_s
        while True:
            # paced by its key, not its name: two groups whose chats share one robot share its 20 a minute
            wait, taken = await self.pacer.acquire([robot.key], max(0.0, deadline - self.pacer.clock()))
            if wait is not None:
                return SendResult(item.delivery_id, Outcome.RETRYABLE, code="robot_busy", retry_after_s=wait,
                                  detail=f"robot {robot.name!r} is at its limit for {wait:.0f} s more")
            try:
                result, answer = await self._post(item, robot, body)
            finally:
                self.pacer.settle([robot.key], taken)
            if answer is None or answer.hold_s is None:
                return result
            self.pacer.hold(robot.key, answer.hold_s)
            if self.pacer.clock() + answer.hold_s > deadline:
                return SendResult(item.delivery_id, Outcome.RETRYABLE, code=answer.code, retry_after_s=answer.hold_s,
                                  detail=f"robot {robot.name!r} throttled: {answer.detail or answer.code}")

    async def _post(self, item: SendItem, robot: Robot, body: dict[str, Any]) -> tuple[SendResult, Answer | None]:
        url, signed = self.request(robot, body)
        try:
            response = await self._http().post(url, content=_dumps(signed), timeout=self.timeout,
                                               headers={"Content-Type": "application/json; charset=utf-8"})
        except TRANSPORT_ERRORS as exc:
            r = transport_error_result(item, exc)
            return SendResult(r.delivery_id, r.outcome, code=r.code, detail=self._clean(r.detail),
                              maybe_sent=r.maybe_sent, pause=r.pause), None
        answer = self.classify_answer(json_body(response))
        if answer is None:
            if not response.is_success:
                r = http.classify_answer(item.delivery_id, response)
                return SendResult(r.delivery_id, r.outcome, code=r.code, detail=self._clean(r.detail),
                                  retry_after_s=r.retry_after_s, maybe_sent=r.maybe_sent, pause=r.pause), None
            return SendResult(item.delivery_id, Outcome.RETRYABLE, code="malformed_response", maybe_sent=True,
                              detail=self._clean(f"{response.status_code} not a robot's answer: {snippet(response)}")), None
        if answer.hold_s is not None:
            return SendResult(item.delivery_id, Outcome.RETRYABLE, code=answer.code, retry_after_s=answer.hold_s), answer
        if answer.verdict is None:
            return SendResult(item.delivery_id, Outcome.ACCEPTED, code=answer.code), answer
        return verdict_result(item.delivery_id, answer.verdict, answer.code, self._clean(answer.detail)), answer

    def _clean(self, text: str | None) -> str | None:
        """A provider's or a transport's words, without any robot key or secret in them."""
        if text is None:
            return None
        text = log_redact.mask(text)
        for robot in self.robots.values():
            for secret in (robot.key, robot.secret):
                if secret:
                    text = text.replace(secret, "****")
        return text

    # -- checks ----------------------------------------------------------------------------------

    async def ping(self) -> str | None:
        """Each robot is sent a body of an unknown message type: the provider checks the key (and
        the signature) before the content, so a refusal of the content proves the credentials and
        posts nothing. Problems are named per robot."""
        if not self.robots:
            return f"no robot configured ({self.env_prefix}ROBOTS)"
        problems = []
        for robot in self.robots.values():
            url, signed = self.request(robot, self.probe())
            try:
                response = await self._http().post(url, content=_dumps(signed), timeout=self.timeout,
                                                   headers={"Content-Type": "application/json; charset=utf-8"})
            except TRANSPORT_ERRORS as exc:
                problems.append(f"robot {robot.name!r}: cannot reach {urlsplit(url).hostname}: {type(exc).__name__}")
                continue
            answer = self.classify_answer(json_body(response))
            if answer is None:
                problems.append(f"robot {robot.name!r}: HTTP {response.status_code}, not a robot's answer")
            elif answer.credentials:
                problems.append(f"robot {robot.name!r}: {answer.code} {self._clean(answer.detail) or ''}".strip())
            elif answer.verdict is None and answer.hold_s is None:
                problems.append(f"robot {robot.name!r}: the check message was accepted (it may have been posted)")
        return "; ".join(problems) or None

    def check(self) -> list[str]:
        problems = []
        if not self.robots:
            problems.append(f"{self.env_prefix}ROBOTS names no robot")
        endpoint = str(getattr(self.settings, "endpoint", ""))
        parts = urlsplit(endpoint)
        if parts.scheme == "http" and not is_local_host(parts.hostname or ""):
            problems.append(f"{self.env_prefix}ENDPOINT is plain http:// to a remote host: the robots' keys travel unencrypted")
        return problems


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def mention_phones(mentions: Sequence[str]) -> list[str]:
    """Phones to @ as the robots take them (mainland numbers as 11 digits; ``@all`` kept)."""
    from broadcast.gateways.cloud_common import phone_key

    return [m if m == "@all" else phone_key(m) for m in mentions if m.strip()]
