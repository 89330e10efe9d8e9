"""``aliyun``: Alibaba Cloud SMS (dysmsapi, API version 2017-05-25) over httpx, no vendor SDK.

**Template mapping.** Chinese providers only send pre-approved templates. Approve a template whose
whole text is one variable, e.g. ``${content}`` (type 通知短信), and set ``BROADCAST_ALIYUN_TEMPLATE_CODE``
to its code and ``BROADCAST_ALIYUN_TEMPLATE_PARAM`` to the variable name (default ``content``): each
message's rendered text is sent as ``TemplateParam={"content": "<text>"}``. The provider adds
【``BROADCAST_ALIYUN_SIGN_NAME``】 itself (``adds_signature``), so broadcast does not prepend it.

**Requests** (RPC style, POST form body, signature V1 HMAC-SHA1 — ``signing.aliyun_rpc_signature``;
the endpoint's host is not part of a V1 signature, so any ``BROADCAST_ALIYUN_ENDPOINT`` works):

* recipients sharing one text → ``SendSms`` (``PhoneNumbers``, up to 1,000 per request);
* recipients with their own text → ``SendBatchSms`` (``PhoneNumberJson``/``SignNameJson``/
  ``TemplateParamJson``, up to 100 per request).

``OutId`` carries our delivery id for a one-recipient request, ``"<lowest>-<highest>"`` for a batch.
The provider id of an accepted recipient is ``"<BizId>:<phone>"`` (``phone_key``: 11 digits for
mainland numbers): one ``BizId`` covers a whole request, and receipts carry ``biz_id`` + ``phone_number``.

**Answer mapping** (``Code`` in the JSON answer; see ``classify_answer``). Only codes naming one number are
recipient faults (never counted toward the message's auto-pause); every other failure counts:

=========================================  ============================================================
``OK``                                     accepted
flow control: ``isv.BUSINESS_LIMIT_CONTROL``  retryable, ``retry_after_s`` 60 (3,600 for a day-level
``Throttling*``                            limit), a recipient fault (per number); ``Throttling*`` retryable
account caps: ``isv.DAY_LIMIT_CONTROL``,   retryable **and** ``pause`` (every number would hit it)
``isv.MONTH_LIMIT_CONTROL``
bad number: ``isv.MOBILE_NUMBER_ILLEGAL``, permanent for that number, a recipient fault; in a
blacklist codes (``*BLACK*`` other than    multi-number request the batch is bisected and resent so
the keyword one; also ``blocked``)         the good numbers still go (the rejected request sent nothing)
``isv.MOBILE_COUNT_OVER_LIMIT``,           bisected; permanent for a single number, and counted: the
``isv.PHONENUMBERS_OVER_LIMIT``,           count of numbers, or an international template sent to
``isv.DOMESTIC_NUMBER_NOT_SUPPORTED``      mainland numbers, is the request's fault, not the number's
balance/account: ``isv.AMOUNT_NOT_ENOUGH``, permanent + ``pause``
``isv.OUT_OF_SERVICE``, auth/signature
(``SignatureDoesNotMatch``,
``InvalidAccessKeyId*``, ``Forbidden*``,
``isp.RAM_PERMISSION_DENY``,
``InvalidTimeStamp.Expired``), sign/
template configuration
``SignatureNonceUsed``, ``isp.SYSTEM_ERROR``, retryable
``ServiceUnavailable``, ``InternalError``,
other codes with HTTP 5xx
content (``isv.SMS_CONTENT_ILLEGAL``,      permanent (the engine's error-rate pause catches a text
``isv.BLACK_KEY_CONTROL_LIMIT``, …),       every number rejects)
other codes
non-JSON answer                            2xx: retryable, ``maybe_sent``; otherwise as the ``http``
                                           gateway maps statuses
timeouts / transport                       ``transport_error_result`` (read timeout → ``maybe_sent``)
=========================================  ============================================================

Aliyun's send API is not idempotent: a timed-out send is in doubt, and ``query()`` settles it with
``QuerySendDetails`` (one number, one day per call) before anything is resent.

**Receipts** (``aliyun_receipts``): ``parse_sms_report`` (push), ``parse_send_details`` (pull) → ``Receipt``.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways import aliyun_receipts, http, replies
from broadcast.gateways.base import (
    QUERY_ERRORS,
    TRANSPORT_ERRORS,
    Capabilities,
    Gateway,
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
    CST,
    PAUSE,
    PER_NUMBER,
    PERMANENT,
    RETRY,
    SPLIT,
    Split,
    Verdict,
    correlation_tag,
    json_body,
    load_json_items,
    malformed,
    parse_cst,
    phone_key,
    send_splitting,
    snippet,
    tag_covers,
    tag_delivery_id,
    verdict_result,
)
from broadcast.gateways.push import Candidate, Format, InboundFormat, Pull
from broadcast.gateways.signing import aliyun_percent_encode, aliyun_rpc_signature

API_VERSION = "2017-05-25"
SEND_SMS_MAX = 1000  # PhoneNumbers per SendSms
SEND_BATCH_MAX = 100  # PhoneNumberJson entries per SendBatchSms

CAPABILITIES = Capabilities(
    name="aliyun",
    max_batch=SEND_SMS_MAX,
    mixed_texts=True,  # split by text inside send(): SendSms per text, SendBatchSms for the rest
    adds_signature=True, billing="delivered",  # 运营商回执失败不计费 (carrier-failed parts are not billed)
    max_requests_per_second=5000.0,
    per_number_daily_cap=50,  # per (signature, template, number) for 通知/推广 templates
    can_query=True,
    pull_receipts=False,  # QuerySendDetails is per number and day: see receipts_for()
    description="Alibaba Cloud SMS (dysmsapi 2017-05-25): SendSms ≤1000 / SendBatchSms ≤100, template ${content}.",
)

#: What the SmsReport push endpoint must answer (HTTP 200): anything else is retried 1, 5, 10 min later.
SMS_REPORT_ACK: dict[str, Any] = {"code": 0, "msg": "成功"}


class AliyunSettings(BaseSettings):
    """``BROADCAST_ALIYUN_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_ALIYUN_", env_file=".env", extra="ignore")

    access_key_id: str = Field(min_length=1, description="AccessKey ID (RAM user with AliyunDysmsFullAccess).")
    access_key_secret: SecretStr = Field(description="AccessKey secret.")
    sign_name: str = Field(min_length=1, description="Approved signature text, without 【】.")
    template_code: str = Field(min_length=1, description="Approved template code, e.g. SMS_123456789.")
    template_param: str = Field(
        default="content", min_length=1, description="The template variable that carries the whole message text."
    )
    endpoint: str = Field(default="https://dysmsapi.aliyuncs.com/", description="API endpoint (region, proxy or fake).")
    region_id: str = Field(default="cn-hangzhou", description="RegionId parameter.")
    timeout_s: float = timeout_field()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return http_url(value)

    @field_validator("sign_name")
    @classmethod
    def _sign_name(cls, value: str) -> str:
        return value.strip().removeprefix("【").removesuffix("】")


# -- error codes --------------------------------------------------------------------------------

_RETRY_CODES = {
    "isp.SYSTEM_ERROR": RETRY,
    "ServiceUnavailable": RETRY,
    "InternalError": RETRY,
    "SignatureNonceUsed": RETRY,  # a fresh nonce is drawn on the next attempt
    "isv.DAY_LIMIT_CONTROL": Verdict(Outcome.RETRYABLE, pause=True, retry_after_s=3600.0),
    "isv.MONTH_LIMIT_CONTROL": Verdict(Outcome.RETRYABLE, pause=True, retry_after_s=3600.0),
}
_PER_NUMBER_CODES = {"isv.MOBILE_NUMBER_ILLEGAL"}
#: Bisected, but not the number's fault: too many numbers, or a template for another region.
_SPLIT_CODES = {"isv.MOBILE_COUNT_OVER_LIMIT", "isv.PHONENUMBERS_OVER_LIMIT", "isv.DOMESTIC_NUMBER_NOT_SUPPORTED"}
_PAUSE_CODES = {
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.PRODUCT_UNSUBSCRIBE",
    "isv.DENY_IP_RANGE",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_SIGN_ILLEGAL",
    "isv.SIGN_STATE_ILLEGAL",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.INVALID_JSON_PARAM",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidTimeStamp.Expired",
    "InvalidTimeStamp.Format",
    "isp.RAM_PERMISSION_DENY",
    "InvalidVersion",
    "InvalidAction.NotFound",
    "MissingParameter",
}


def classify_answer(code: str, message: str = "", http_status: int = 200) -> Verdict:
    """The verdict for an Aliyun ``Code`` (any code but ``OK``)."""
    if code == "isv.BUSINESS_LIMIT_CONTROL":  # per (signature, template, number) frequency limit
        day = "天级" in message or "day" in message.lower()
        return Verdict(Outcome.RETRYABLE, retry_after_s=3600.0 if day else 60.0, recipient=True)
    if code.startswith("Throttling"):
        return Verdict(Outcome.RETRYABLE, retry_after_s=1.0)
    if code in _RETRY_CODES:
        return _RETRY_CODES[code]
    if "BLACK" in code.upper() and code != "isv.BLACK_KEY_CONTROL_LIMIT":  # a number's blacklist, not a keyword's
        return BLOCKED
    if code in _PER_NUMBER_CODES:
        return PER_NUMBER
    if code in _SPLIT_CODES:
        return SPLIT
    if code in _PAUSE_CODES or code.startswith(("InvalidAccessKeyId", "Forbidden", "InvalidAccessKey")):
        return PAUSE
    if http_status >= 500:
        return RETRY
    return PERMANENT


# -- gateway ------------------------------------------------------------------------------------


class AliyunGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = AliyunSettings
    pull_rate = 50.0

    @classmethod
    def receipt_formats(cls) -> Mapping[str, Format]:
        return aliyun_receipts.formats()

    @classmethod
    def inbound_formats(cls) -> Mapping[str, InboundFormat]:
        return {"aliyun-mo": replies.ALIYUN_MO}

    async def pull_receipts(self, candidates: Sequence[Candidate], now: datetime, pull: Pull) -> None:
        await aliyun_receipts.pull_aliyun(self, candidates, now, pull)

    def __init__(
        self,
        settings: AliyunSettings,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        nonce: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(settings, client)
        self.settings: AliyunSettings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._nonce = nonce or (lambda: str(uuid.uuid4()))

    # -- sending ---------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        by_text: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(batch):
            by_text[item.text].append(index)
        plan: list[tuple[str, list[int]]] = []
        loners: list[int] = []
        for indexes in by_text.values():
            if len(indexes) == 1:
                loners.append(indexes[0])
            else:
                plan += [("SendSms", indexes[i : i + SEND_SMS_MAX]) for i in range(0, len(indexes), SEND_SMS_MAX)]
        if len(loners) == 1:
            plan.append(("SendSms", loners))
        elif loners:
            loners.sort()
            plan += [("SendBatchSms", loners[i : i + SEND_BATCH_MAX]) for i in range(0, len(loners), SEND_BATCH_MAX)]
        results: dict[int, SendResult] = {}
        for action, indexes in plan:
            items = [batch[i] for i in indexes]

            async def request(part: Sequence[SendItem], action: str = action) -> list[SendResult] | Split:
                return await self._send_request(action, part)

            for index, result in zip(indexes, await send_splitting(items, request)):
                results[index] = result
        return [results[i] for i in range(len(batch))]

    def _send_params(self, action: str, items: Sequence[SendItem]) -> dict[str, str]:
        s = self.settings
        params = {"TemplateCode": s.template_code, "OutId": correlation_tag(items)}
        if action == "SendSms":
            params["PhoneNumbers"] = ",".join(i.phone for i in items)
            params["SignName"] = s.sign_name
            params["TemplateParam"] = _compact({s.template_param: items[0].text})
        else:
            params["PhoneNumberJson"] = _compact([i.phone for i in items])
            params["SignNameJson"] = _compact([s.sign_name] * len(items))
            params["TemplateParamJson"] = _compact([{s.template_param: i.text} for i in items])
        return params

    async def _send_request(self, action: str, items: Sequence[SendItem]) -> list[SendResult] | Split:
        try:
            response = await self._call(action, self._send_params(action, items))
        except TRANSPORT_ERRORS as exc:
            return [transport_error_result(i, exc) for i in items]
        data = json_body(response)
        code = data.get("Code") if isinstance(data, dict) else None
        if not isinstance(code, str) or not code:
            if response.is_success:
                return malformed(items, response, "answer without a Code")
            return [http.classify_answer(i.delivery_id, response) for i in items]
        assert isinstance(data, dict)
        if code == "OK":
            biz_id = data.get("BizId")
            return [
                SendResult(
                    i.delivery_id,
                    Outcome.ACCEPTED,
                    provider_id=f"{biz_id}:{phone_key(i.phone)}" if biz_id else None,
                    code="OK",
                )
                for i in items
            ]
        message = str(data.get("Message") or "")
        verdict = classify_answer(code, message, response.status_code)
        detail = message or snippet(response)
        if verdict.split and len(items) > 1:
            return Split(code, detail, verdict)
        return [verdict_result(i.delivery_id, verdict, code, detail) for i in items]

    async def _call(self, action: str, params: dict[str, str]) -> httpx.Response:
        """One signed RPC POST (form body). Raises the transport errors the callers classify."""
        s = self.settings
        full = {
            "AccessKeyId": s.access_key_id,
            "Action": action,
            "Format": "JSON",
            "RegionId": s.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(),
            "SignatureVersion": "1.0",
            "Timestamp": self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            **params,
        }
        full["Signature"] = aliyun_rpc_signature(full, s.access_key_secret.get_secret_value(), "POST")
        body = "&".join(f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}" for k, v in full.items())
        client = self._http()
        return await client.post(
            s.endpoint,
            content=body.encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            timeout=self.timeout,
        )

    # -- query -----------------------------------------------------------------------------

    async def query(self, items: Sequence[SendItem]) -> list[SendResult | None]:
        """``QuerySendDetails`` for each item's phone, today and yesterday (China time): a record whose
        ``OutId`` is the delivery id — or a batch range containing it, with the text in ``Content`` —
        means the send happened (accepted). Not found, or any error: ``None`` (cannot tell; records
        can lag the send)."""
        today = self._clock().astimezone(CST).date()
        out: list[SendResult | None] = []
        for item in items:
            found: SendResult | None = None
            for day in (today, today - timedelta(days=1)):
                try:
                    rows = await self.send_details(item.phone, day.strftime("%Y%m%d"))
                except QUERY_ERRORS:
                    rows = []
                for row in rows:
                    covers = tag_covers(row.get("OutId"), item.delivery_id)
                    if covers is None:
                        covers = item.text in str(row.get("Content") or "")
                    if covers:
                        found = SendResult(item.delivery_id, Outcome.ACCEPTED, code=f"SendStatus:{row.get('SendStatus')}")
                        break
                if found:
                    break
            out.append(found)
        return out

    async def send_details(self, phone: str, send_date: str, biz_id: str | None = None, max_pages: int = 5) -> list[dict[str, Any]]:
        """Every ``SmsSendDetailDTO`` for one number and day (``yyyyMMdd``); LookupError on an error answer."""
        rows: list[dict[str, Any]] = []
        for page in range(1, max_pages + 1):
            params = {"PhoneNumber": phone, "SendDate": send_date, "PageSize": "50", "CurrentPage": str(page)}
            if biz_id:
                params["BizId"] = biz_id
            response = await self._call("QuerySendDetails", params)
            data = json_body(response)
            if not isinstance(data, dict) or data.get("Code") != "OK":
                raise LookupError(f"QuerySendDetails: {snippet(response)}")
            batch = _detail_rows(data)
            rows += batch
            try:
                total = int(data.get("TotalCount") or 0)
            except (TypeError, ValueError):
                total = 0
            if len(batch) < 50 or len(rows) >= total:
                break
        return rows

    async def receipts_for(self, phone: str, send_date: str, biz_id: str | None = None) -> list[Receipt]:
        """Receipts of one number and day (``yyyyMMdd``, China time) by ``QuerySendDetails``. Raises LookupError / httpx errors."""
        rows = await self.send_details(phone, send_date, biz_id)
        return parse_send_details({"Code": "OK", "SmsSendDetailDTOs": {"SmsSendDetailDTO": rows}}, biz_id=biz_id)

    # -- checks ----------------------------------------------------------------------------

    async def ping(self) -> str | None:
        """``QuerySendDetails`` for a dummy number today (read-only, free): proves the AccessKey, signature, endpoint. None = OK."""
        params = {"PhoneNumber": "13800000000", "SendDate": self._clock().astimezone(CST).strftime("%Y%m%d"),
                  "PageSize": "1", "CurrentPage": "1"}
        try:
            response = await self._call("QuerySendDetails", params)
        except TRANSPORT_ERRORS as exc:
            return f"cannot reach {urlsplit(self.settings.endpoint).netloc}: {type(exc).__name__}"
        data = json_body(response)
        code = data.get("Code") if isinstance(data, dict) else None
        if code == "OK":
            return None
        if not isinstance(data, dict) or not code:
            return f"unexpected answer (HTTP {response.status_code}): {snippet(response, 120)}"
        return f"{code}: {str(data.get('Message') or '')[:200]}"

    def check(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        if not s.access_key_secret.get_secret_value():
            problems.append("BROADCAST_ALIYUN_ACCESS_KEY_SECRET is empty")
        if not 2 <= len(s.sign_name) <= 12:
            problems.append(f"BROADCAST_ALIYUN_SIGN_NAME should be 2-12 characters (got {len(s.sign_name)})")
        if not s.template_code.startswith("SMS_"):
            problems.append("BROADCAST_ALIYUN_TEMPLATE_CODE usually looks like SMS_123456789")
        if urlsplit(s.endpoint).scheme == "http" and urlsplit(s.endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
            problems.append("BROADCAST_ALIYUN_ENDPOINT is plain http:// to a remote host")
        return problems


# -- receipts -----------------------------------------------------------------------------------


def _compact(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _detail_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    dtos = data.get("SmsSendDetailDTOs")
    rows = dtos.get("SmsSendDetailDTO") if isinstance(dtos, dict) else dtos
    if isinstance(rows, dict):
        rows = [rows]
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def parse_sms_report(body: bytes | str | list[Any]) -> list[Receipt]:
    """The SmsReport HTTP push (a JSON array of ``{phone_number, send_time, report_time, success,
    err_code, err_msg, sms_size, biz_id, out_id}``) → receipts. Rows without ``biz_id`` and usable
    ``out_id`` are skipped. Raises ValueError when the body is not a JSON array/object.

    ``provider_id`` is ``"<biz_id>:<phone>"`` (as the send recorded it); ``delivery_id`` comes from an
    ``out_id`` naming one delivery. Receipts are not idempotent: the caller dedupes.
    """
    receipts: list[Receipt] = []
    for row in load_json_items(body):
        biz_id = row.get("biz_id")
        delivery_id = tag_delivery_id(row.get("out_id"))
        phone = row.get("phone_number")
        provider_id = f"{biz_id}:{phone_key(phone)}" if biz_id and phone else None
        if provider_id is None and delivery_id is None:
            continue
        success = row.get("success")
        ok = success is True or str(success).lower() == "true"
        at = parse_cst(row.get("report_time")) or parse_cst(row.get("send_time")) or datetime.now(UTC)
        code = row.get("err_code") or ("DELIVERED" if ok else None)
        receipts.append(Receipt(delivery_id, provider_id, "delivered" if ok else "failed", None if code is None else str(code), at))
    return receipts


def parse_send_details(data: dict[str, Any] | bytes | str, biz_id: str | None = None) -> list[Receipt]:
    """A ``QuerySendDetails`` answer → receipts for its final states (``SendStatus`` 3 delivered,
    2 failed; 1 = still waiting, skipped). Pass the ``biz_id`` that was queried to get provider ids."""
    if not isinstance(data, dict):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
    receipts: list[Receipt] = []
    for row in _detail_rows(data):
        status = str(row.get("SendStatus", ""))
        if status not in ("2", "3"):
            continue
        delivery_id = tag_delivery_id(row.get("OutId"))
        phone = row.get("PhoneNum")
        provider_id = f"{biz_id}:{phone_key(phone)}" if biz_id and phone else None
        if provider_id is None and delivery_id is None:
            continue
        at = parse_cst(row.get("ReceiveDate")) or parse_cst(row.get("SendDate")) or datetime.now(UTC)
        code = row.get("ErrCode")
        receipts.append(Receipt(delivery_id, provider_id, "delivered" if status == "3" else "failed", None if code is None else str(code), at))
    return receipts
