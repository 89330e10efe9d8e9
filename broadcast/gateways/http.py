"""``http``: a generic JSON webhook, for any HTTP SMS API that can be put behind it.

Requests (POST ``BROADCAST_HTTP_URL``, ``Content-Type: application/json; charset=utf-8``, plus
``BROADCAST_HTTP_HEADERS``):

* one recipient per request (``BROADCAST_HTTP_BATCH=1``, the default): ``{"id": "<delivery id>", "to": "+86…", "text": "…"}``
* ``BROADCAST_HTTP_BATCH=N`` (N > 1): ``{"messages": [{"id", "to", "text"}, …]}`` (up to N), answered by
  ``{"results": [{"id", "status": "accepted"|"failed", "provider_id"?, "error"?}]}``

**Refusing one number.** A webhook says that it refuses a recipient alone (an invalid, unallocated
or blacklisted number), not the request, with ``"fault": "recipient"``:

* single: a 4xx answer (not 401, 408 or 429) ``{"error": "invalid number", "code": "INVALID_NUMBER",
  "fault": "recipient"}``;
* batch: that recipient's result ``{"id": "7", "status": "failed", "error": "INVALID_NUMBER", "fault": "recipient"}``.

Such a refusal fails that delivery alone, reported by its code, and never counts toward the
message's auto-pause: a list whose first numbers are dead keeps sending. Every other failure —
any answer without ``"fault": "recipient"``, and any non-2xx answer to a batch, which is about the
whole request — says something about the gateway or the account, and counts.

Answer mapping (per item, or for every item of a batch when the request itself fails):

=====================================  =====================================================
2xx, single                            accepted; provider id = JSON ``id`` if any (a 2xx with a
                                       malformed body is still accepted, without provider id)
2xx, batch                             per result: ``accepted`` → accepted, ``failed`` → permanent
                                       (code/detail from ``error``; a recipient fault with
                                       ``"fault": "recipient"``); an id with no result, an
                                       unknown status, or a malformed body → retryable, maybe_sent
4xx, single, ``"fault": "recipient"``  permanent, a recipient fault (not for 401, 408, 429)
429                                    retryable, ``retry_after_s`` from Retry-After (seconds or date)
408                                    retryable (the server gave up reading the request)
401, 403                               permanent, ``pause`` (credentials: pause the message)
other 4xx                              permanent
3xx                                    permanent, ``pause`` (redirects are not followed: fix the URL)
5xx                                    retryable (Retry-After honoured); 504 also maybe_sent, since
                                       a proxy timed out waiting for an upstream that may have sent
connect error/timeout, pool timeout    retryable, not maybe_sent
read/write timeout or error, reset,    retryable, maybe_sent
server hung up
=====================================  =====================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import (
    TRANSPORT_ERRORS,
    Capabilities,
    Gateway,
    Outcome,
    SendItem,
    SendResult,
    http_url,
    is_local_host,
    parse_retry_after,
    timeout_field,
    transport_error_result,
)

CAPABILITIES = Capabilities(
    name="http",
    max_batch=1,  # per instance: BROADCAST_HTTP_BATCH
    mixed_texts=True,
    description="Generic JSON webhook: POST {id,to,text} (or a batch of them) to BROADCAST_HTTP_URL.",
)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_headers(raw: str) -> dict[str, str]:
    """``{"K": "V"}`` (a JSON object) or ``K: V; K2: V2`` → dict. Raises ValueError (without
    repeating the values, which are often secrets)."""
    raw = raw.strip()
    if not raw:
        return {}
    pairs: dict[str, str]
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("not a valid JSON object") from None
        if not isinstance(data, dict) or not all(isinstance(v, (str, int, float)) for v in data.values()):
            raise ValueError("must be a JSON object of strings")
        pairs = {str(k): str(v) for k, v in data.items()}
    else:
        pairs = {}
        for part in raw.split(";"):
            if not part.strip():
                continue
            name, sep, value = part.partition(":")
            if not sep:
                raise ValueError("expected 'Name: value; Name2: value2' or a JSON object")
            pairs[name.strip()] = value.strip()
    for name, value in pairs.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
    return pairs


class HttpSettings(BaseSettings):
    """``BROADCAST_HTTP_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_HTTP_", env_file=".env", extra="ignore")

    url: str = Field(description="Where to POST, e.g. https://sms.example.com/send")
    headers: SecretStr = Field(
        default=SecretStr(""), description="Extra headers: JSON object or 'Authorization: Bearer …; X-Key: …'"
    )
    batch: int = Field(default=1, ge=1, le=10_000, description="Recipients per request; > 1 uses the batch body.")
    timeout_s: float = timeout_field()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: SecretStr) -> SecretStr:
        parse_headers(value.get_secret_value())
        return value

    def header_map(self) -> dict[str, str]:
        return parse_headers(self.headers.get_secret_value())


class HttpGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = HttpSettings

    def __init__(self, settings: HttpSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        self.settings: HttpSettings = settings
        self.capabilities = replace(CAPABILITIES, max_batch=settings.batch)  # type: ignore[misc]
        self._headers = {"Content-Type": "application/json; charset=utf-8", **settings.header_map()}
        try:
            self._url: httpx.URL | str = httpx.URL(settings.url)  # parsed once, not per request
        except httpx.InvalidURL:
            self._url = settings.url  # refused at send time, classified there (pause)

    # -- sending ---------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        size = self.settings.batch
        results: list[SendResult] = []
        if size == 1:
            for item in batch:
                results.append(await self._send_one(item))
        else:
            for start in range(0, len(batch), size):
                results.extend(await self._send_many(batch[start : start + size]))
        return results

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        client = self._http()
        return await client.post(self._url, content=content, headers=self._headers, timeout=self.timeout)

    async def _send_one(self, item: SendItem) -> SendResult:
        try:
            response = await self._post({"id": str(item.delivery_id), "to": item.phone, "text": item.text})
        except TRANSPORT_ERRORS as exc:
            return transport_error_result(item, exc)
        if not response.is_success:
            return _recipient_refusal(item.delivery_id, response) or classify_answer(item.delivery_id, response)
        data = _json(response)
        provider_id = data.get("id") if isinstance(data, dict) else None
        return SendResult(
            item.delivery_id,
            Outcome.ACCEPTED,
            provider_id=None if provider_id is None or isinstance(provider_id, (dict, list)) else str(provider_id),
            code=str(response.status_code),
        )

    async def _send_many(self, items: Sequence[SendItem]) -> list[SendResult]:
        body = {"messages": [{"id": str(i.delivery_id), "to": i.phone, "text": i.text} for i in items]}
        try:
            response = await self._post(body)
        except TRANSPORT_ERRORS as exc:
            return [transport_error_result(i, exc) for i in items]
        if not response.is_success:
            return [classify_answer(i.delivery_id, response) for i in items]
        data = _json(response)
        rows = data.get("results") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            detail = f"{response.status_code} without a 'results' list: {_snippet(response)}"
            return [
                SendResult(i.delivery_id, Outcome.RETRYABLE, code="malformed_response", detail=detail, maybe_sent=True)
                for i in items
            ]
        by_id = {str(r.get("id")): r for r in rows if isinstance(r, dict)}
        return [_batch_row_result(i.delivery_id, by_id.get(str(i.delivery_id))) for i in items]

    # -- checks ----------------------------------------------------------------------------

    def check(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        parts = urlsplit(s.url)
        if parts.scheme == "http" and not is_local_host(parts.hostname or "") and s.headers.get_secret_value():
            problems.append("BROADCAST_HTTP_URL is plain http:// to a remote host: BROADCAST_HTTP_HEADERS travel unencrypted")
        if parts.username or parts.password:
            problems.append("BROADCAST_HTTP_URL contains credentials; put them in BROADCAST_HTTP_HEADERS instead")
        if s.timeout_s < 1:
            problems.append(f"BROADCAST_HTTP_TIMEOUT_S={s.timeout_s} is very short: slow answers become in-doubt sends")
        return problems


def classify_answer(delivery_id: int, response: httpx.Response) -> SendResult:
    """Classify a non-2xx answer (see the table in the module docstring)."""
    status = response.status_code
    code, detail = _error_fields(response)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        return SendResult(delivery_id, Outcome.RETRYABLE, code=code, detail=detail, retry_after_s=retry_after)
    if status == 408:
        return SendResult(delivery_id, Outcome.RETRYABLE, code=code, detail=detail)
    if status >= 500:
        return SendResult(
            delivery_id, Outcome.RETRYABLE, code=code, detail=detail, retry_after_s=retry_after, maybe_sent=status == 504
        )
    if status in (401, 403):
        return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=detail, pause=True)
    if 300 <= status < 400:
        where = response.headers.get("Location", "?")
        return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=f"redirected to {where}", pause=True)
    return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=detail)


def _recipient_refusal(delivery_id: int, response: httpx.Response) -> SendResult | None:
    """A single request's 4xx answer refusing the number alone (``"fault": "recipient"``), else None."""
    if not 400 <= response.status_code < 500 or response.status_code in (401, 408, 429):
        return None
    data = _json(response)
    if not isinstance(data, dict) or data.get("fault") != "recipient":
        return None
    code, detail = _error_fields(response)
    return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=detail, recipient_fault=True)


def _batch_row_result(delivery_id: int, row: dict[str, Any] | None) -> SendResult:
    if row is None:
        return SendResult(
            delivery_id, Outcome.RETRYABLE, code="missing_result", detail="no result for this id in the batch answer",
            maybe_sent=True,
        )
    status = row.get("status")
    error = row.get("error")
    error_text = None if error is None else str(error)
    if status == "accepted":
        pid = row.get("provider_id")
        return SendResult(delivery_id, Outcome.ACCEPTED, provider_id=None if pid is None else str(pid), code="accepted")
    if status == "failed":
        return SendResult(
            delivery_id, Outcome.PERMANENT, code=(error_text or "failed")[:64], detail=error_text,
            recipient_fault=row.get("fault") == "recipient",
        )
    return SendResult(
        delivery_id, Outcome.RETRYABLE, code="unknown_status", detail=f"status {status!r}", maybe_sent=True
    )


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    text = response.content[: limit * 4].decode("utf-8", "replace")
    return text[:limit] + ("…" if len(text) > limit else "")


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    """code: the HTTP status, plus the body's ``code`` if any ("400:INVALID_NUMBER"); detail: the
    body's ``error``/``message`` or the start of the body."""
    data = _json(response)
    code = str(response.status_code)
    detail = _snippet(response) or response.reason_phrase
    if isinstance(data, dict):
        body_code = data.get("code")
        if isinstance(body_code, (str, int)) and str(body_code):
            code = f"{code}:{str(body_code)[:64]}"
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                detail = data[key]
                break
    return code, detail

