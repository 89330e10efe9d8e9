"""``tencent``: Tencent Cloud SMS (API 3.0, version 2021-01-11) over httpx, TC3-HMAC-SHA256 signed.

**Template mapping.** Approve a template whose text is one variable, ``{1}``, and set
``BROADCAST_TENCENT_TEMPLATE_ID``. ``TemplateParamSet`` is ``BROADCAST_TENCENT_TEMPLATE_PARAMS`` (a JSON
array of strings, default ``["{text}"]``) with every element equal to ``{text}`` replaced by the
message's rendered text — so a template ``{1}，{2}`` can be fed ``["城南新区", "{text}"]``. Tencent adds
【``BROADCAST_TENCENT_SIGN_NAME``】 itself.

**Requests**: ``POST`` JSON to ``BROADCAST_TENCENT_ENDPOINT`` with ``X-TC-Action/Version/Timestamp/Region``
and ``Authorization`` (``signing.tc3_authorization``; ``host`` is the endpoint's ``host[:port]`` and is
sent as the ``Host`` header exactly as signed, credential scope ``<UTC date>/sms/tc3_request``). Up to
200 numbers per request, one text per request. ``SessionContext`` carries our delivery id (one
recipient) or ``"<lowest>-<highest>"``; each recipient's provider id is its ``SerialNo``.

**Answer mapping**: the request-level ``Response.Error.Code`` applies to every item; otherwise each
``SendStatusSet`` element (matched by phone number) gives that recipient's fate (``Code == "Ok"`` →
accepted), so one request can partly fail. Codes (``classify_answer``), wherever they appear; only those
naming one number are recipient faults (never counted toward the message's auto-pause):

===============================================  =====================================================
``Ok``                                           accepted (provider id ``SerialNo``)
``RequestLimitExceeded*``                        retryable with ``retry_after_s`` 1 s
``LimitExceeded.DeliveryFrequencyLimit``,        retryable with ``retry_after_s`` (30 s, 1 h), a
``LimitExceeded.PhoneNumber*Limit``              recipient fault (that number's frequency limit)
``LimitExceeded.App*DailyLimit``                 retryable **and** ``pause`` (account-wide cap)
``InvalidParameterValue.IncorrectPhoneNumber``,  permanent for that number, a recipient fault
``FailedOperation.PhoneNumberInBlacklist``       (request-level: the batch is bisected so the good
                                                 numbers still go); the blacklist one also ``blocked``
``LimitExceeded.PhoneNumberCountLimit``,         bisected; for a single number permanent, and counted
``UnsupportedOperation.ContainDomesticAnd…``
balance (``FailedOperation.InsufficientBalance…``, permanent + ``pause``
``UnauthorizedOperation.*``), ``AuthFailure.*``,
sign/template not approved, ``MissingParameter*``
``InternalError*``                               retryable (``InternalError.Timeout`` also maybe_sent)
content and other codes                          permanent
HTTP ≠ 200                                       as the ``http`` gateway maps statuses
unreadable 200 answer, missing recipient         retryable, ``maybe_sent``
===============================================  =====================================================

**Receipts** (parsed in ``tencent_receipts``): ``parse_pull_status`` (a ``PullSmsSendStatus``/``…ByPhoneNumber`` answer) and
``parse_callback`` (the push callback: a JSON array; answer ``CALLBACK_ACK``). ``fetch_receipts``
calls ``PullSmsSendStatus`` when ``BROADCAST_TENCENT_PULL_RECEIPTS=true`` (Tencent must enable it for
the account). ``query()`` uses ``PullSmsSendStatusByPhoneNumber`` (receipts of the last 7 days).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways import http, replies, tencent_receipts
from broadcast.gateways.base import (
    QUERY_ERRORS,
    TRANSPORT_ERRORS,
    Capabilities,
    Gateway,
    Inbound,
    Outcome,
    Receipt,
    SendItem,
    SendResult,
    http_url,
    timeout_field,
    transport_error_result,
)
from broadcast.gateways.cloud_common import (
    BLOCKED,
    PAUSE,
    PER_NUMBER,
    PERMANENT,
    SPLIT,
    Split,
    Verdict,
    correlation_tag,
    json_body,
    malformed,
    phone_key,
    send_splitting,
    snippet,
    tag_covers,
    verdict_result,
)
from broadcast.gateways.push import Candidate, Format, InboundFormat, Pull
from broadcast.gateways.reply_codes import digits_of
from broadcast.gateways.signing import tc3_authorization
from broadcast.gateways.tencent_receipts import parse_callback as parse_callback
from broadcast.gateways.tencent_receipts import parse_pull_status

API_VERSION = "2021-01-11"
SERVICE = "sms"
MAX_NUMBERS = 200
CONTENT_TYPE = "application/json; charset=utf-8"

CAPABILITIES = Capabilities(
    name="tencent",
    max_batch=MAX_NUMBERS,
    mixed_texts=False,  # TemplateParamSet is per request
    adds_signature=True,
    max_requests_per_second=3000.0,
    can_query=True,
    pull_receipts=False,  # per instance: BROADCAST_TENCENT_PULL_RECEIPTS
    reply_extension=6,  # ExtendCode, digits (enabled per account by Tencent; the docs give no length)
    description="Tencent Cloud SMS (2021-01-11, TC3-HMAC-SHA256): SendSms ≤200 numbers, template {1}.",
)

#: What the push callback endpoint must answer.
CALLBACK_ACK: dict[str, Any] = {"result": 0, "errmsg": "OK"}


class TencentSettings(BaseSettings):
    """``BROADCAST_TENCENT_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_TENCENT_", env_file=".env", extra="ignore")

    secret_id: str = Field(min_length=1, description="API key SecretId.")
    secret_key: SecretStr = Field(description="API key SecretKey.")
    sdk_app_id: str = Field(min_length=1, description="SmsSdkAppId, e.g. 1400006666.")
    sign_name: str = Field(min_length=1, description="Approved signature text, without 【】.")
    template_id: str = Field(min_length=1, description="Approved template id.")
    template_params: str = Field(
        default='["{text}"]', description='JSON array for TemplateParamSet; "{text}" is replaced by the message.'
    )
    region: str = Field(default="ap-guangzhou", description="X-TC-Region.")
    endpoint: str = Field(default="https://sms.tencentcloudapi.com/", description="API endpoint (region, proxy or fake).")
    pull_receipts: bool = Field(default=False, description="Pull receipts with PullSmsSendStatus (enabled by Tencent on request).")
    timeout_s: float = timeout_field()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_url(value)

    @field_validator("template_params")
    @classmethod
    def _template_params(cls, value: str) -> str:
        try:
            data = json.loads(value)
        except ValueError:
            raise ValueError('must be a JSON array of strings, e.g. ["{text}"]') from None
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise ValueError('must be a JSON array of strings, e.g. ["{text}"]')
        return value

    @field_validator("sign_name")
    @classmethod
    def _sign_name(cls, value: str) -> str:
        return value.strip().removeprefix("【").removesuffix("】")

    def param_set(self, text: str) -> list[str]:
        return [text if p == "{text}" else p for p in json.loads(self.template_params)]


# -- error codes --------------------------------------------------------------------------------

_PER_NUMBER_CODES = {"InvalidParameterValue.IncorrectPhoneNumber"}
#: Bisected, but not a number's fault: too many numbers, or domestic and international ones mixed.
_SPLIT_CODES = {"LimitExceeded.PhoneNumberCountLimit", "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"}
_PAUSE_CODES = {
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.MissingSignature",
    "FailedOperation.MissingTemplateToModify",
    "InvalidParameterValue.SdkAppIdNotExist",
    "InvalidParameterValue.TemplateParameterFormatError",
}
_RETRY_AFTER = {  # the frequency limits of one number
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
    "LimitExceeded.DeliveryFrequencyLimit": 30.0,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
    "LimitExceeded.PhoneNumberDailyLimit": 3600.0,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": 3600.0,
}


def classify_answer(code: str) -> Verdict:
    """The verdict for a Tencent error code (request-level or per number; anything but ``Ok``)."""
    if code.startswith("RequestLimitExceeded"):
        return Verdict(Outcome.RETRYABLE, retry_after_s=1.0)
    if code in _RETRY_AFTER:
        return Verdict(Outcome.RETRYABLE, retry_after_s=_RETRY_AFTER[code], recipient=True)
    if code.startswith("LimitExceeded.App") or code.startswith("LimitExceeded.Global"):
        return Verdict(Outcome.RETRYABLE, pause=True, retry_after_s=3600.0)
    if code in _SPLIT_CODES:
        return SPLIT
    if "Blacklist" in code:  # FailedOperation.PhoneNumberInBlacklist: the person unsubscribed (免打扰)
        return BLOCKED
    if code in _PER_NUMBER_CODES:
        return PER_NUMBER
    if code in _PAUSE_CODES or code.startswith(("AuthFailure", "UnauthorizedOperation", "MissingParameter")):
        return PAUSE
    if code.startswith("InternalError"):
        return Verdict(Outcome.RETRYABLE, maybe_sent=code == "InternalError.Timeout")
    if code == "FailedOperation.MarketingSendTimeConstraint":
        return Verdict(Outcome.RETRYABLE, retry_after_s=3600.0)
    return PERMANENT


# -- gateway ------------------------------------------------------------------------------------


class TencentGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = TencentSettings
    pull_rate = 15.0

    @classmethod
    def receipt_formats(cls) -> Mapping[str, Format]:
        return tencent_receipts.formats()

    @classmethod
    def inbound_formats(cls) -> Mapping[str, InboundFormat]:
        return {"tencent-mo": replies.TENCENT_MO}

    async def fetch_inbound(self, since: datetime) -> list[Inbound]:
        return await replies.pull_tencent(self, since)  # PullSmsReplyStatus (a queue, enabled on request)

    async def pull_receipts(self, candidates: Sequence[Candidate], now: datetime, pull: Pull) -> None:
        await tencent_receipts.pull_tencent(self, candidates, now, pull)

    def __init__(
        self,
        settings: TencentSettings,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(settings, client)
        self.settings: TencentSettings = settings
        self.capabilities = replace(CAPABILITIES, pull_receipts=settings.pull_receipts)  # type: ignore[misc]
        self._clock = clock or time.time
        s = settings
        parts = urlsplit(s.endpoint)
        self._host = parts.netloc.rpartition("@")[2].lower()

    def reply_address(self, extension: str) -> str:
        return digits_of(extension)  # a reply's ``extend`` is the ExtendCode the message was sent with

    # -- sending ---------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        by_text: dict[tuple[str, str], list[int]] = defaultdict(list)  # text, reply code
        for index, item in enumerate(batch):
            by_text[(item.text, item.extension)].append(index)
        results: dict[int, SendResult] = {}
        for indexes in by_text.values():
            for start in range(0, len(indexes), MAX_NUMBERS):
                chunk = indexes[start : start + MAX_NUMBERS]
                answers = await send_splitting([batch[i] for i in chunk], self._send_request)
                results.update(zip(chunk, answers))
        return [results[i] for i in range(len(batch))]

    async def _send_request(self, items: Sequence[SendItem]) -> list[SendResult] | Split:
        s = self.settings
        body = {
            "PhoneNumberSet": [i.phone for i in items],
            "SmsSdkAppId": s.sdk_app_id,
            "SignName": s.sign_name,
            "TemplateId": s.template_id,
            "TemplateParamSet": s.param_set(items[0].text),
            "SessionContext": correlation_tag(items),
        }
        if items[0].extension:  # the message's reply code (扩展码; enabled for the account by Tencent)
            body["ExtendCode"] = items[0].extension
        try:
            response = await self._call("SendSms", body)
        except TRANSPORT_ERRORS as exc:
            return [transport_error_result(i, exc) for i in items]
        if response.status_code != 200:
            return [http.classify_answer(i.delivery_id, response) for i in items]
        data = json_body(response)
        envelope = data.get("Response") if isinstance(data, dict) else None
        if not isinstance(envelope, dict):
            return malformed(items, response, "answer without a Response object")
        error = envelope.get("Error")
        if isinstance(error, dict):
            code = str(error.get("Code") or "error")
            detail = str(error.get("Message") or "") or None
            verdict = classify_answer(code)
            if verdict.split and len(items) > 1:
                return Split(code, detail, verdict)
            return [verdict_result(i.delivery_id, verdict, code, detail) for i in items]
        rows = envelope.get("SendStatusSet")
        if not isinstance(rows, list):
            return malformed(items, response, "answer without a SendStatusSet")
        by_phone: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if isinstance(row, dict):
                by_phone[phone_key(row.get("PhoneNumber", ""))].append(row)
        if not by_phone and len(rows) == len(items):  # no phone numbers echoed: trust the order
            by_phone = {phone_key(i.phone): [r] for i, r in zip(items, rows) if isinstance(r, dict)}
        out = []
        for item in items:
            candidates = by_phone.get(phone_key(item.phone))
            out.append(_status_result(item, candidates.pop(0) if candidates else None))
        return out

    async def _call(self, action: str, body: dict[str, Any]) -> httpx.Response:
        """One signed API 3.0 POST. Raises the transport errors the callers classify."""
        s = self.settings
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = int(self._clock())
        authorization = tc3_authorization(
            s.secret_id,
            s.secret_key.get_secret_value(),
            service=SERVICE,
            host=self._host,
            content_type=CONTENT_TYPE,
            payload=payload,
            timestamp=timestamp,
            extra_headers={"X-TC-Action": action},
        )
        headers = {
            "Authorization": authorization,
            "Content-Type": CONTENT_TYPE,
            "Host": self._host,
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": s.region,
        }
        client = self._http()
        return await client.post(s.endpoint, content=payload, headers=headers, timeout=self.timeout)

    async def api(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call ``action`` and return ``Response``; LookupError on an error answer."""
        response = await self._call(action, body)
        data = json_body(response)
        envelope = data.get("Response") if isinstance(data, dict) else None
        if response.status_code != 200 or not isinstance(envelope, dict):
            raise LookupError(f"{action}: HTTP {response.status_code}: {snippet(response)}")
        error = envelope.get("Error")
        if isinstance(error, dict):
            raise LookupError(f"{action}: {error.get('Code')}: {error.get('Message')}")
        return envelope

    # -- query and receipts ----------------------------------------------------------------

    async def query(self, items: Sequence[SendItem]) -> list[SendResult | None]:
        """``PullSmsSendStatusByPhoneNumber`` over the last 7 days: a report whose ``SessionContext``
        names the delivery (or is a batch range containing it) means the send happened. Only sends
        that already have a delivery report are found: otherwise, and on any error, ``None``."""
        now = int(self._clock())
        out: list[SendResult | None] = []
        for item in items:
            body = {
                "BeginTime": now - 7 * 86400 + 60,
                "EndTime": now,
                "Offset": 0,
                "Limit": 100,
                "PhoneNumber": item.phone,
                "SmsSdkAppId": self.settings.sdk_app_id,
            }
            try:
                envelope = await self.api("PullSmsSendStatusByPhoneNumber", body)
            except QUERY_ERRORS:
                out.append(None)
                continue
            found = None
            rows = envelope.get("PullSmsSendStatusSet")
            for row in rows if isinstance(rows, list) else []:
                if isinstance(row, dict) and tag_covers(row.get("SessionContext"), item.delivery_id) is not False:
                    # a range match is enough here: one message reaches a phone once
                    found = SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=_str(row.get("SerialNo")), code="Ok")
                    break
            out.append(found)
        return out

    async def fetch_receipts(self) -> list[Receipt]:
        """``PullSmsSendStatus`` (queue semantics: each report once), up to 10 × 100 per call; [] when
        not enabled by ``BROADCAST_TENCENT_PULL_RECEIPTS`` or on error (the push callback is the main path)."""
        if not self.settings.pull_receipts:
            return []
        receipts: list[Receipt] = []
        for _ in range(10):
            try:
                envelope = await self.api("PullSmsSendStatus", {"SmsSdkAppId": self.settings.sdk_app_id, "Limit": 100})
            except QUERY_ERRORS:
                break
            batch = parse_pull_status(envelope)
            receipts += batch
            rows = envelope.get("PullSmsSendStatusSet")
            if not isinstance(rows, list) or len(rows) < 100:
                break
        return receipts

    # -- checks ----------------------------------------------------------------------------

    async def ping(self) -> str | None:
        """``DescribeSmsTemplateList`` for the configured template (read-only): proves the keys, the
        signature and the endpoint, and that the template is approved. None = OK."""
        s = self.settings
        if not s.template_id.isdigit():
            return "BROADCAST_TENCENT_TEMPLATE_ID should be digits"
        try:
            envelope = await self.api("DescribeSmsTemplateList",
                                       {"International": 0, "TemplateIdSet": [int(s.template_id)]})
        except TRANSPORT_ERRORS as exc:
            return f"cannot reach {self._host}: {type(exc).__name__}"
        except LookupError as exc:
            return str(exc)[:300]
        rows = envelope.get("DescribeTemplateStatusSet")
        row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None
        if row is None:
            return f"template {s.template_id} not found in this account"
        status = row.get("StatusCode")
        if status not in (0, "0"):
            reason = row.get("ReviewReply") or ""
            return f"template {s.template_id} is not approved (StatusCode {status}{': ' + str(reason) if reason else ''})"
        return None

    def check(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        if not s.secret_key.get_secret_value():
            problems.append("BROADCAST_TENCENT_SECRET_KEY is empty")
        if not s.sdk_app_id.isdigit():
            problems.append("BROADCAST_TENCENT_SDK_APP_ID should be digits, e.g. 1400006666")
        if "{text}" not in s.param_set("{text}"):
            problems.append('BROADCAST_TENCENT_TEMPLATE_PARAMS has no "{text}": the message text would not be sent')
        parts = urlsplit(s.endpoint)
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            problems.append("BROADCAST_TENCENT_ENDPOINT is plain http:// to a remote host")
        return problems


def _str(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _status_result(item: SendItem, row: dict[str, Any] | None) -> SendResult:
    if row is None:
        return SendResult(
            item.delivery_id, Outcome.RETRYABLE, code="missing_result",
            detail="no SendStatusSet entry for this number", maybe_sent=True,
        )
    code = str(row.get("Code") or "")
    if code.lower() == "ok":
        return SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=_str(row.get("SerialNo")), code="Ok")
    verdict = classify_answer(code or "unknown")
    return verdict_result(item.delivery_id, replace(verdict, split=False), code or "unknown", _str(row.get("Message")))
