"""``twilio``: Twilio Programmable Messaging (``2010-04-01`` Messages API) over httpx.

**Requests**: one recipient per request, ``POST {endpoint}/2010-04-01/Accounts/{AccountSid}/Messages.json``,
form-encoded, HTTP basic auth ``AccountSid:AuthToken``; ``To``, ``Body``, ``From`` (or
``MessagingServiceSid``), and ``StatusCallback`` = ``BROADCAST_TWILIO_STATUS_CALLBACK`` with our delivery
id appended as ``bc_delivery=<id>`` (so the receipt names the delivery even before the SID is stored).
The provider id is the message ``sid`` (``SM…``). Twilio does not add a signature: broadcast prepends the
message's own (``adds_signature=False``).

**Answer mapping**:

===========================================  =====================================================
201/200 with a ``sid``                       accepted
HTTP 429 or code ``20429``, ``30001``,       retryable (Retry-After honoured)
``21611``, ``63017``
``21211`` (invalid To), ``21265`` (To is a  permanent, a recipient fault (never counted toward
short code), ``21610`` (unsubscribed),       the message's auto-pause); ``21610`` also ``blocked``
``21612`` (To not reachable from this
sender), ``21614`` (not a mobile number)
other 4xx                                    permanent
HTTP 401/403, ``20003`` (authentication),    permanent + ``pause``
``10001`` (account not active), ``20005``
5xx                                          retryable (504: maybe_sent)
2xx without ``sid``                          retryable, ``maybe_sent``
timeouts / transport                         ``transport_error_result``
===========================================  =====================================================

**Receipts**: ``parse_status_callback(params, url)`` turns a StatusCallback POST into a ``Receipt`` (final
statuses only) after the receipts server has checked ``validate_signature(url, params, signature,
auth_token)``; ``fetch_status(sid)`` pulls one message's state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways import http, replies_twilio, twilio_receipts
from broadcast.gateways.base import (
    TRANSPORT_ERRORS,
    Capabilities,
    Gateway,
    Inbound,
    Outcome,
    Receipt,
    SendItem,
    SendResult,
    http_url,
    parse_retry_after,
    timeout_field,
    transport_error_result,
)
from broadcast.gateways.cloud_common import json_body, malformed, snippet
from broadcast.gateways.push import Candidate, Format, InboundFormat, Pull
from broadcast.gateways.signing import validate_twilio_signature

__all__ = ["TwilioGateway", "TwilioSettings", "parse_status_callback", "validate_signature"]

CAPABILITIES = Capabilities(
    name="twilio",
    max_batch=1,
    mixed_texts=True,
    adds_signature=False,
    can_query=True,
    pull_receipts=False,  # per-message fetch: fetch_status(sid)
    description="Twilio Messages API: one form POST per recipient, StatusCallback receipts.",
)

CALLBACK_PARAM = "bc_delivery"  # our delivery id in the StatusCallback URL

_RETRY_CODES = {20429, 30001, 21611, 63017}
_PAUSE_CODES = {20003, 20005, 10001}
_RECIPIENT_CODES = {21211, 21265, 21610, 21612, 21614}  # refusals of the To number alone
UNSUBSCRIBED = 21610  # the person replied STOP to this sender: blocked until they reply START


class TwilioSettings(BaseSettings):
    """``BROADCAST_TWILIO_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_TWILIO_", env_file=".env", extra="ignore", populate_by_name=True)

    account_sid: str = Field(min_length=1, description="Account SID (AC…).")
    auth_token: SecretStr = Field(description="Auth token (also verifies X-Twilio-Signature).")
    from_: str = Field(
        default="",
        validation_alias=AliasChoices("from_", "BROADCAST_TWILIO_FROM"),
        description="Sender number (E.164) or alphanumeric sender id; or set MESSAGING_SERVICE_SID.",
    )
    messaging_service_sid: str = Field(
        default="", validate_default=True, description="Messaging Service SID (MG…), instead of FROM."
    )
    status_callback: str = Field(default="", description="Public URL of `broadcast receipts serve` for Twilio.")
    endpoint: str = Field(default="https://api.twilio.com", description="API base URL (proxy or fake).")
    timeout_s: float = timeout_field()

    @field_validator("endpoint", "status_callback")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        return http_url(value) if value else value

    @field_validator("messaging_service_sid")
    @classmethod
    def _sender(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not (value or info.data.get("from_")):
            raise ValueError("set BROADCAST_TWILIO_FROM or BROADCAST_TWILIO_MESSAGING_SERVICE_SID")
        return value


def validate_signature(url: str, params: Mapping[str, str] | Sequence[tuple[str, str]] | str | bytes, signature: str, auth_token: str) -> bool:
    """Check ``X-Twilio-Signature`` (see ``signing.validate_twilio_signature``): ``url`` is the full
    public URL Twilio called, ``params`` the POST form parameters (or the raw body of a JSON webhook)."""
    return validate_twilio_signature(url, params, signature, auth_token)


class TwilioGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = TwilioSettings
    pull_rate = 20.0

    @classmethod
    def receipt_formats(cls) -> Mapping[str, Format]:
        return twilio_receipts.formats()

    @classmethod
    def inbound_formats(cls) -> Mapping[str, InboundFormat]:
        return {"twilio-mo": replies_twilio.TWILIO_MO}

    async def fetch_inbound(self, since: datetime) -> list[Inbound]:
        """Inbound messages listed by the Messages API since ``since`` (``replies_twilio.fetch_twilio``)."""
        return await replies_twilio.fetch_twilio(self, since)

    async def pull_receipts(self, candidates: Sequence[Candidate], now: datetime, pull: Pull) -> None:
        await twilio_receipts.pull_twilio(self, candidates, now, pull)

    def __init__(
        self,
        settings: TwilioSettings,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(settings, client)
        self.settings: TwilioSettings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        s = settings
        self._base = f"{s.endpoint.rstrip('/')}/2010-04-01/Accounts/{s.account_sid}"

    # -- sending ---------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        return [await self._send_one(item) for item in batch]

    def _form(self, item: SendItem) -> dict[str, str]:
        s = self.settings
        form = {"To": item.phone, "Body": item.text}
        if s.messaging_service_sid:
            form["MessagingServiceSid"] = s.messaging_service_sid
        if s.from_:
            form["From"] = s.from_
        if s.status_callback:
            form["StatusCallback"] = _with_param(s.status_callback, CALLBACK_PARAM, str(item.delivery_id))
        return form

    async def _send_one(self, item: SendItem) -> SendResult:
        try:
            response = await self._client_for().post(
                f"{self._base}/Messages.json", data=self._form(item), auth=self._auth(), timeout=self.timeout
            )
        except TRANSPORT_ERRORS as exc:
            return transport_error_result(item, exc)
        data = json_body(response)
        if response.is_success:
            sid = data.get("sid") if isinstance(data, dict) else None
            if not isinstance(sid, str) or not sid:
                return malformed([item], response, "answer without a sid")[0]
            return SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=sid, code=str(data.get("status") or "queued"))
        return classify_answer(item.delivery_id, response, data)

    def _client_for(self) -> httpx.AsyncClient:
        return self._http()

    def _auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.settings.account_sid, self.settings.auth_token.get_secret_value())

    # -- query and receipts ----------------------------------------------------------------

    async def query(self, items: Sequence[SendItem]) -> list[SendResult | None]:
        """Lists messages to each item's number sent today or yesterday (UTC) and looks for one with
        this exact body (and our sender): found → accepted with its sid; otherwise ``None``."""
        today = self._clock().astimezone(UTC).date()
        out: list[SendResult | None] = []
        for item in items:
            found: SendResult | None = None
            for day in (today, today - timedelta(days=1)):
                params = {"To": item.phone, "DateSent": day.isoformat(), "PageSize": "50"}
                try:
                    response = await self._client_for().get(
                        f"{self._base}/Messages.json", params=params, auth=self._auth(), timeout=self.timeout
                    )
                except TRANSPORT_ERRORS:
                    break
                data = json_body(response)
                rows = data.get("messages") if response.is_success and isinstance(data, dict) else None
                for row in rows if isinstance(rows, list) else []:
                    if not isinstance(row, dict) or row.get("body") != item.text:
                        continue
                    sender = self.settings.from_
                    if sender and row.get("from") not in (None, sender):
                        continue
                    found = SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=str(row.get("sid")), code=str(row.get("status")))
                    break
                if found:
                    break
            out.append(found)
        return out

    async def fetch_status(self, sid: str) -> Receipt | None:
        """``GET …/Messages/{sid}.json`` → a receipt once the message is final, else None.
        Raises LookupError on an error answer and httpx errors on transport failures."""
        response = await self._client_for().get(f"{self._base}/Messages/{sid}.json", auth=self._auth(), timeout=self.timeout)
        data = json_body(response)
        if not response.is_success or not isinstance(data, dict):
            raise LookupError(f"message fetch: HTTP {response.status_code}: {snippet(response)}")
        return status_receipt(None, str(data.get("sid") or sid), data.get("status"), data.get("error_code"), self._clock())

    # -- checks ----------------------------------------------------------------------------

    async def ping(self) -> str | None:
        """``GET /2010-04-01/Accounts/{AccountSid}.json`` (read-only): proves the credentials and
        that the account is active. None = OK."""
        try:
            response = await self._client_for().get(f"{self._base}.json", auth=self._auth(), timeout=self.timeout)
        except TRANSPORT_ERRORS as exc:
            return f"cannot reach {urlsplit(self.settings.endpoint).netloc}: {type(exc).__name__}"
        data = json_body(response)
        if not response.is_success:
            code = data.get("code") if isinstance(data, dict) else None
            message = str(data.get("message") or "") if isinstance(data, dict) else snippet(response, 120)
            return f"HTTP {response.status_code}" + (f" code {code}" if code else "") + (f": {message[:200]}" if message else "")
        status = data.get("status") if isinstance(data, dict) else None
        if status != "active":
            return f"account status is {status!r}, not 'active'"
        return None

    def check(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        if not s.account_sid.startswith("AC"):
            problems.append("BROADCAST_TWILIO_ACCOUNT_SID should start with AC")
        if not s.auth_token.get_secret_value():
            problems.append("BROADCAST_TWILIO_AUTH_TOKEN is empty")
        if s.messaging_service_sid and not s.messaging_service_sid.startswith("MG"):
            problems.append("BROADCAST_TWILIO_MESSAGING_SERVICE_SID should start with MG")
        if not s.status_callback:
            problems.append("BROADCAST_TWILIO_STATUS_CALLBACK is not set: no delivery receipts will arrive")
        elif urlsplit(s.status_callback).scheme != "https":
            problems.append("BROADCAST_TWILIO_STATUS_CALLBACK should be https:// (Twilio signs the exact URL)")
        return problems


def classify_answer(delivery_id: int, response: httpx.Response, data: Any = None) -> SendResult:
    """Classify a non-2xx Messages API answer (``{"code", "message", "more_info", "status"}``)."""
    body_code = data.get("code") if isinstance(data, dict) else None
    try:
        code_num = int(body_code) if body_code is not None else None
    except (TypeError, ValueError):
        code_num = None
    if code_num is None:
        return http.classify_answer(delivery_id, response)
    code = f"{response.status_code}:{code_num}"
    detail = str(data.get("message") or "") or snippet(response) if isinstance(data, dict) else snippet(response)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if response.status_code == 429 or code_num in _RETRY_CODES:
        return SendResult(delivery_id, Outcome.RETRYABLE, code=code, detail=detail, retry_after_s=retry_after)
    if response.status_code in (401, 403) or code_num in _PAUSE_CODES:
        return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=detail, pause=True)
    if code_num in _RECIPIENT_CODES or 400 <= response.status_code < 500:
        return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=detail, recipient_fault=code_num in _RECIPIENT_CODES,
                          blocked=code_num == UNSUBSCRIBED)
    result = http.classify_answer(delivery_id, response)
    return SendResult(delivery_id, result.outcome, code=code, detail=detail, retry_after_s=result.retry_after_s,
                      maybe_sent=result.maybe_sent, pause=result.pause)


# -- receipts -----------------------------------------------------------------------------------

_DELIVERED = {"delivered", "read"}
_FAILED = {"undelivered", "failed", "canceled"}


def status_receipt(delivery_id: int | None, sid: str | None, status: object, error_code: object, at: datetime) -> Receipt | None:
    state = str(status or "").lower()
    if state in _DELIVERED:
        kind = "delivered"
    elif state in _FAILED:
        kind = "failed"
    else:
        return None
    if delivery_id is None and not sid:
        return None
    code = str(error_code) if error_code not in (None, "", 0, "0") else state
    return Receipt(delivery_id, sid or None, kind, code, at)  # type: ignore[arg-type]


def parse_status_callback(params: Mapping[str, str], url: str | None = None, received_at: datetime | None = None) -> Receipt | None:
    """A StatusCallback POST (form ``MessageSid``, ``MessageStatus``, ``ErrorCode``…) → a receipt for
    final statuses (``delivered``/``read`` → delivered; ``undelivered``/``failed``/``canceled`` →
    failed); None for intermediate ones (``queued``, ``sent``…). ``url`` (the callback URL, with
    ``bc_delivery=<id>``) gives the delivery id. Validate the signature first."""
    delivery_id = None
    if url:
        query = dict(parse_qsl(urlsplit(url).query))
        raw = query.get(CALLBACK_PARAM, "")
        delivery_id = int(raw) if raw.isdigit() else None
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    return status_receipt(delivery_id, sid, status, params.get("ErrorCode"), received_at or datetime.now(UTC))


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name] + [(name, value)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
