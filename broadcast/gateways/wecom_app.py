"""``wecom-app``: a WeCom (企业微信) application message (应用消息) to members by their userid.

**Token**: ``GET {BROADCAST_WECOM_APP_ENDPOINT}/cgi-bin/gettoken?corpid=ID&corpsecret=SECRET`` gives
an ``access_token`` valid for ``expires_in`` (7,200) seconds. It is cached that long (less a
minute) and shared by concurrent sends (one fetch at a time); when a send is answered 40014
(invalid) or 42001 (expired) it is fetched again once and the send made again (the refused request
sent nothing); a second refusal pauses the message.

**Requests**: ``POST …/cgi-bin/message/send?access_token=T`` with ``{"touser": "U1|U2|…", "msgtype":
"text", "agentid": N, "text": {"content": …}, "enable_duplicate_check": 1, "duplicate_check_interval":
1800}``: up to 1,000 userids, one text per request. With ``BROADCAST_WECOM_APP_DUPLICATE_CHECK_S``
(default 1800, 0 = off) WeCom drops the same request repeated within that time, so a send resent
after an answer that never came does not reach anyone twice within it. A userid must be 1–64 of
``A-Z a-z 0-9 - _ . @``: another fails that delivery before anything is sent (``|`` would add recipients).

**Limits** (document/path/90236, 90454): 30 messages a minute and 1,000 an hour to one member
(kept per userid by the gateway; WeCom drops the excess silently); text at most 2,048 bytes.

**Answers** (``classify_answer``), ``{"errcode", "errmsg", "invaliduser", "unlicenseduser", "msgid"}``:

==============================================  ===============================================
``0``                                           accepted, provider id ``msgid``, except the
                                                userids in ``invaliduser`` / ``unlicenseduser``:
                                                those fail alone (recipient faults)
``81013``                                       every recipient invalid: each fails alone
``40014``, ``42001``                            token refused: fetched again once, then pause
``45009``, ``45033``                            throttled: wait 60 s and send again (or later)
``40001``, ``40013``, ``40056``, ``60011``,     the secret, corp id, agent id, the app's
``60020``, ``48002``, ``41001``                 rights or this server's IP refused: pause
``-1``                                          system busy: retryable
content refused (``40008``, ``44004``,          permanent
``40058``), others
==============================================  ===============================================
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways import http
from broadcast.gateways.base import (
    TRANSPORT_ERRORS,
    Addresses,
    AddressRate,
    Capabilities,
    Gateway,
    Outcome,
    SendItem,
    SendResult,
    http_url,
    is_local_host,
    timeout_field,
    transport_error_result,
)
from broadcast.gateways.cloud_common import PAUSE, PERMANENT, RETRY, Verdict, json_body, malformed, verdict_result
from broadcast.gateways.pacing import Pacer

MAX_USERS = 1000
TEXT_BYTES = 2048
TOKEN_MARGIN_S = 60.0
THROTTLE_HOLD_S = 60.0
USERID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_TOKEN_REFUSED = {40014, 42001}
_PAUSE_CODES = {40001, 40013, 40056, 60011, 60020, 48002, 41001}
RECIPIENT = Verdict(Outcome.PERMANENT, recipient=True)

CAPABILITIES = Capabilities(
    name="wecom-app",
    max_batch=MAX_USERS,
    mixed_texts=False,
    addresses=Addresses.USER_ID,
    max_text_bytes=TEXT_BYTES,
    per_address_rates=(AddressRate(30, 60.0), AddressRate(1000, 3600.0)),
    description="WeCom application message (应用消息): message/send to ≤1,000 userids, cached access token.",
)


class WeComAppSettings(BaseSettings):
    """``BROADCAST_WECOM_APP_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_WECOM_APP_", env_file=".env", extra="ignore")

    corp_id: str = Field(min_length=1, description="The corp id (企业ID), ww…")
    corp_secret: SecretStr = Field(description="The application's Secret.")
    agent_id: int = Field(description="The application's AgentId.")
    endpoint: str = Field(default="https://qyapi.weixin.qq.com", description="API host (a proxy or a fake for tests).")
    duplicate_check_s: int = Field(default=1800, ge=0, le=14400, description="WeCom drops a repeated request within this time (0: off).")
    max_wait_s: float = Field(default=120.0, ge=0, le=900, description="Longest wait for a member's or a throttled app's place before retrying later.")
    timeout_s: float = timeout_field()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_url(value).rstrip("/")


class TokenRefused(Exception):
    """gettoken answered an error: ``code``, ``detail``, ``verdict``."""

    def __init__(self, code: str, detail: str | None, verdict: Verdict) -> None:
        super().__init__(f"{code} {detail or ''}".strip())
        self.code, self.detail, self.verdict = code, detail, verdict


class WeComAppGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = WeComAppSettings

    def __init__(self, settings: WeComAppSettings, client: httpx.AsyncClient | None = None, *,
                 monotonic: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        super().__init__(settings, client)
        self.settings: WeComAppSettings = settings
        self.pacer = Pacer(CAPABILITIES.per_address_rates, monotonic or time.monotonic, sleep or asyncio.sleep)
        self._token: tuple[str, float] | None = None  # (token, expires at, monotonic)
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    # -- token -----------------------------------------------------------------------------------

    async def token(self, stale: str | None = None) -> str:
        """The cached access token, fetched when there is none, it expired, or it is ``stale`` (the
        one a send was refused with: fetched again unless another send already did)."""
        async with self._token_lock:
            now = self.pacer.clock()
            if self._token is not None and self._token[1] > now and self._token[0] != stale:
                return self._token[0]
            s = self.settings
            response = await self._http().get(f"{s.endpoint}/cgi-bin/gettoken", timeout=self.timeout,
                                              params={"corpid": s.corp_id, "corpsecret": s.corp_secret.get_secret_value()})
            self.token_fetches += 1
            data = json_body(response)
            if not isinstance(data, dict) or not isinstance(data.get("errcode", 0), int):
                raise TokenRefused(f"http_{response.status_code}", "gettoken: not WeCom's answer",
                                   RETRY if response.status_code >= 500 else PAUSE)
            code = data.get("errcode", 0)
            if code != 0 or not isinstance(data.get("access_token"), str):
                verdict = classify_answer(code) if code else PAUSE
                raise TokenRefused(str(code), f"gettoken: {data.get('errmsg') or ''}".strip(), verdict)
            expires_in = float(data.get("expires_in") or 7200)
            self._token = (data["access_token"], self.pacer.clock() + max(1.0, expires_in - TOKEN_MARGIN_S))
            return self._token[0]

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        by_text: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(batch):
            if not item.address or not USERID.fullmatch(item.address):
                results[index] = SendResult(item.delivery_id, Outcome.PERMANENT, code="invalid_userid", recipient_fault=True,
                                            detail=f"not a WeCom userid: {item.address!r}" if item.address else "no userid")
            elif len(item.text.encode("utf-8")) > TEXT_BYTES:
                results[index] = SendResult(item.delivery_id, Outcome.PERMANENT, code="text_too_long",
                                            detail=f"over WeCom's {TEXT_BYTES} bytes")
            else:
                by_text[item.text].append(index)
        for indexes in by_text.values():
            for start in range(0, len(indexes), MAX_USERS):
                chunk = indexes[start:start + MAX_USERS]
                results.update(zip(chunk, await self._send_request([batch[i] for i in chunk])))
        return [results[i] for i in range(len(batch))]

    async def _send_request(self, items: Sequence[SendItem]) -> list[SendResult]:
        """One message/send for these items: paced per member, a fresh token once, throttles waited out."""
        users = list(dict.fromkeys(i.address for i in items))
        deadline = self.pacer.clock() + self.settings.max_wait_s
        stale: str | None = None
        while True:
            wait, taken = await self.pacer.acquire(users, max(0.0, deadline - self.pacer.clock()))
            if wait is not None:
                return [SendResult(i.delivery_id, Outcome.RETRYABLE, code="member_rate", retry_after_s=wait,
                                   detail="a member's 30 a minute / 1,000 an hour would be exceeded") for i in items]
            try:
                answer = await self._attempt(items, users, stale)
            finally:
                self.pacer.settle(users, taken)
            if isinstance(answer, list):
                return answer
            code, token = answer
            if code in _TOKEN_REFUSED:  # the refused request sent nothing: a fresh token, once
                stale = token
                continue
            for user in users:  # 45009/45033: throttled, nothing sent
                self.pacer.hold(user, THROTTLE_HOLD_S)
            if self.pacer.clock() + THROTTLE_HOLD_S > deadline:
                return [SendResult(i.delivery_id, Outcome.RETRYABLE, code=str(code), retry_after_s=THROTTLE_HOLD_S,
                                   detail="WeCom throttled the application (api freq out of limit)") for i in items]

    async def _attempt(self, items: Sequence[SendItem], users: list[str], stale: str | None) -> list[SendResult] | tuple[int, str]:
        """The results, or (code, token) of an answer to try again: a refused token (the first
        time), a throttle."""
        try:
            token = await self.token(stale)
        except TokenRefused as exc:
            return [verdict_result(i.delivery_id, exc.verdict, exc.code, exc.detail) for i in items]
        except TRANSPORT_ERRORS as exc:  # gettoken sends no message: never in doubt
            return [SendResult(i.delivery_id, Outcome.RETRYABLE, code=type(exc).__name__, detail="gettoken failed")
                    for i in items]
        try:
            response = await self._http().post(f"{self.settings.endpoint}/cgi-bin/message/send",
                                               params={"access_token": token}, json=self._body(users, items[0].text),
                                               timeout=self.timeout)
        except TRANSPORT_ERRORS as exc:
            return [transport_error_result(i, exc) for i in items]
        data = json_body(response)
        if not isinstance(data, dict) or not isinstance(data.get("errcode"), int):
            if not response.is_success:
                return [http.classify_answer(i.delivery_id, response) for i in items]
            return malformed(items, response, "not WeCom's answer")
        code = data["errcode"]
        if (code in _TOKEN_REFUSED and stale is None) or code in (45009, 45033):
            return code, token
        return _results(items, data)

    def _body(self, users: Sequence[str], text: str) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {"touser": "|".join(users), "msgtype": "text", "agentid": s.agent_id,
                                "text": {"content": text}, "safe": 0}
        if s.duplicate_check_s:
            body |= {"enable_duplicate_check": 1, "duplicate_check_interval": s.duplicate_check_s}
        return body

    # -- checks ----------------------------------------------------------------------------------

    async def ping(self) -> str | None:
        """gettoken, then ``agent/get`` for the configured agent (both read-only)."""
        try:
            token = await self.token()
            response = await self._http().get(f"{self.settings.endpoint}/cgi-bin/agent/get", timeout=self.timeout,
                                              params={"access_token": token, "agentid": self.settings.agent_id})
        except TokenRefused as exc:
            return str(exc)
        except TRANSPORT_ERRORS as exc:
            return f"cannot reach {self.settings.endpoint}: {type(exc).__name__}"
        data = json_body(response)
        if not isinstance(data, dict) or data.get("errcode") != 0:
            code = data.get("errcode") if isinstance(data, dict) else f"HTTP {response.status_code}"
            msg = data.get("errmsg", "") if isinstance(data, dict) else ""
            return f"agent/get for agent {self.settings.agent_id}: {code} {msg}".strip()
        return None

    def check(self) -> list[str]:
        problems = []
        host = httpx.URL(self.settings.endpoint).host
        if self.settings.endpoint.startswith("http://") and not is_local_host(host):
            problems.append("BROADCAST_WECOM_APP_ENDPOINT is plain http:// to a remote host: the secret travels unencrypted")
        if not self.settings.corp_secret.get_secret_value():
            problems.append("BROADCAST_WECOM_APP_CORP_SECRET is empty")
        return problems


def classify_answer(code: int) -> Verdict:
    """What a WeCom error code means for a send (see the table in the module docstring)."""
    if code == 81013:
        return RECIPIENT
    if code in _TOKEN_REFUSED or code in _PAUSE_CODES:
        return PAUSE
    if code in (-1, 45009, 45033):
        return RETRY
    return PERMANENT


def _results(items: Sequence[SendItem], data: dict[str, Any]) -> list[SendResult]:
    """Per item: accepted unless WeCom named its userid invalid or unlicensed, or refused the request."""
    code = data["errcode"]
    detail = str(data.get("errmsg") or "") or None
    invalid = {u for key in ("invaliduser", "unlicenseduser") for u in str(data.get(key) or "").split("|") if u}
    if code not in (0, 81013):
        return [verdict_result(i.delivery_id, classify_answer(code), str(code), detail) for i in items]
    msgid = str(data.get("msgid") or "") or None
    out = []
    for item in items:
        if item.address in invalid or code == 81013:
            which = "unlicenseduser" if item.address in str(data.get("unlicenseduser") or "").split("|") else "invaliduser"
            out.append(SendResult(item.delivery_id, Outcome.PERMANENT, code=which if code == 0 else "81013",
                                  detail=f"WeCom refused userid {item.address!r} ({which})", recipient_fault=True))
        else:
            out.append(SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=msgid, code="0"))
    return out
