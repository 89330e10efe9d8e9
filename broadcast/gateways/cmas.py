"""``cmas``: China Mobile 云MAS (政务短信) HTTP API — ``norsubmit`` (free text) or ``tmpsubmit`` (template).

**Requests.** ``POST {BROADCAST_CMAS_URL}norsubmit`` (or ``tmpsubmit`` when ``BROADCAST_CMAS_TEMPLATE_ID``
is set), ``Content-Type: application/json;charset=UTF-8``, body = **Base64 of the UTF-8 JSON**:

* ``norsubmit``: ``ecName``, ``apId``, ``secretKey``, ``mobiles`` (comma-separated, ≤5,000), ``content``,
  ``sign`` (the signature *code* of the MAS console, e.g. ``wHwvfNuH5``, not the 【】 text), ``addSerial``
  and ``mac`` = lowercase hex MD5 of ``ecName + apId + secretKey + mobiles + content + sign + addSerial``
  (UTF-8, no separators);
* ``tmpsubmit``: ``templateId`` and ``params`` (the compact JSON array string ``["<text>"]``: approve a
  template whose one variable is the whole text) instead of ``content``; ``mac`` = MD5 of ``ecName + apId
  + secretKey + templateId + mobiles + params + sign + addSerial``.

One text per request (``mixed_texts`` False); the platform adds the signature from its code
(``adds_signature``). Numbers are sent as 11 national digits: anything but a mainland mobile
(``+86 1[3-9]xxxxxxxxx``) fails that item alone, permanent, a recipient fault (``not_mainland``), sent nowhere.
The secret key travels inside the body (Base64 is no encryption): ``check()`` flags ``http://`` to a
host other than a local one.

**Provider ids.** One ``msgGroup`` covers a whole request (up to 5,000 numbers) and the status report
names ``msgGroup`` + ``mobile``, so each accepted delivery's provider id is ``"<msgGroup>:<mobile11>"``
(as ``aliyun`` does with its BizId), and a report's provider id is built the same way: every
delivery's provider id is unique and the receipts store matches a report by provider id, unchanged.

**Answer mapping** (``rspcod`` of the JSON answer, ``classify_answer``):

==========================================  =======================================================
``success``                                 accepted, provider id ``<msgGroup>:<mobile11>``
``InvalidUsrOrPwd``, ``IllegalMac``,        permanent + ``pause``: the account (or the
``IllegalSignId``, ``NoSignId``,            signature code, or the caller's IP) is refused, every
``IllegalIpAddress``                        request would be — the engine pauses or fails over
``TooManyMobiles``                          the request is split in halves and each half sent
                                            (the refused request sent nothing); a single number so
                                            refused is permanent, counted
``FlowOverLimit``                           retryable, ``retry_after_s`` 1 (throttled)
``QueueOverLimit``, ``SystemBusy``          retryable, ``retry_after_s`` 10 / 5
``RequestTimeout``                          retryable (an answer with an error code and no
                                            ``msgGroup``: the platform refused the request)
``OverDailyMax``                            retryable **and** ``pause``, ``retry_after_s`` 3,600 — an
                                            account-wide daily cap, as ``aliyun``'s
                                            ``isv.DAY_LIMIT_CONTROL`` and ``tencent``'s
                                            ``LimitExceeded.App*DailyLimit``
``InvalidMessage``                          permanent, counted, no pause: the content is refused,
                                            as ``aliyun``'s ``isv.SMS_CONTENT_ILLEGAL`` (the
                                            error-rate pause catches a text every request refuses)
other codes                                 permanent (retryable with HTTP 5xx)
no ``rspcod``                               2xx: retryable, ``maybe_sent``; otherwise as the
                                            ``http`` gateway maps statuses
timeouts / transport                        ``transport_error_result`` (read timeout → ``maybe_sent``)
==========================================  =======================================================

**No online check.** 云MAS documents no read-only call (every call submits SMS), so the gateway has no
``ping``: ``broadcast gateway check --online`` reports it as unsupported, like ``kannel`` and ``http``.

**Receipts** (push, served as ``…/cmas`` by ``broadcast receipts serve``; point the 云MAS status report
URL there): the JSON body, or Base64 of it, is one report or an array of them: ``reportStatus``
(``DELIVRD`` → delivered; anything else → failed with that code, or ``errorCode`` when it is empty),
``mobile``, ``msgGroup``, ``submitDate``/``receiveDate`` (Beijing time). The answer is HTTP 200 with
the plain text ``success`` (the published integrations only need a 200; the body is what their
samples answer).

**Replies** (上行, push, ``…/cmas-mo``; ``replies.parse_cmas_mo``): the same encoding, ``mobile``,
``smsContent``, ``sendTime``, ``addSerial``. 云MAS documents no blacklist answer code: nothing here
is ``blocked``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways import http
from broadcast.gateways.base import (
    TRANSPORT_ERRORS,
    Capabilities,
    Gateway,
    Outcome,
    Receipt,
    SendItem,
    SendResult,
    http_url,
    is_local_host,
    timeout_field,
    transport_error_result,
)
from broadcast.gateways.cloud_common import (
    PAUSE,
    PERMANENT,
    RETRY,
    SPLIT,
    Split,
    Verdict,
    malformed,
    parse_cst,
    phone_key,
    send_splitting,
    snippet,
    verdict_result,
)
from broadcast.gateways.push import BadCallback, Format, InboundFormat, Incoming
from broadcast.gateways.reply_codes import digits_of

MAX_MOBILES = 5000  # mobiles per request
CONTENT_TYPE = "application/json;charset=UTF-8"
NOT_MAINLAND = "not_mainland"

CAPABILITIES = Capabilities(
    name="cmas",
    max_batch=MAX_MOBILES,
    mixed_texts=False,  # one content (or params) per request
    adds_signature=True,  # from the signature code
    reply_extension=6,  # appended to addSerial (the MAS service code + addSerial: at most 20 digits)
    description="China Mobile 云MAS 政务短信 HTTP: norsubmit/tmpsubmit, Base64 JSON with an MD5 mac, ≤5000 mobiles.",
)

#: What the status report push is answered (HTTP 200).
REPORT_ACK = b"success"


class CmasSettings(BaseSettings):
    """``BROADCAST_CMAS_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_CMAS_", env_file=".env", extra="ignore")

    url: str = Field(description="Base URL of the account's 云MAS HTTP API, e.g. http://112.35.1.155:1992/sms/.")
    ec_name: str = Field(min_length=1, description="ecName: the unit's name exactly as registered.")
    ap_id: str = Field(min_length=1, description="apId: the interface account.")
    secret_key: SecretStr = Field(description="secretKey: the interface password.")
    sign: str = Field(min_length=1, description="The signature code of the MAS console (e.g. wHwvfNuH5), not the 【】 text.")
    add_serial: str = Field(default="", description="addSerial: extension code, empty if none.")
    template_id: str = Field(default="", description="templateId: when set, send tmpsubmit with params [text].")
    timeout_s: float = timeout_field()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        base = http_url(value).rstrip("/")
        for tail in ("/norsubmit", "/tmpsubmit"):  # given the full submit URL: keep its base
            base = base.removesuffix(tail)
        return base + "/"

    @field_validator("sign", "ec_name", "ap_id", "add_serial", "template_id")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


# -- answer codes -------------------------------------------------------------------------------

_VERDICTS: dict[str, Verdict] = {
    "InvalidUsrOrPwd": PAUSE,
    "IllegalMac": PAUSE,
    "IllegalSignId": PAUSE,
    "NoSignId": PAUSE,
    "IllegalIpAddress": PAUSE,
    "TooManyMobiles": SPLIT,
    "FlowOverLimit": Verdict(Outcome.RETRYABLE, retry_after_s=1.0),
    "QueueOverLimit": Verdict(Outcome.RETRYABLE, retry_after_s=10.0),
    "SystemBusy": Verdict(Outcome.RETRYABLE, retry_after_s=5.0),
    "RequestTimeout": RETRY,
    "OverDailyMax": Verdict(Outcome.RETRYABLE, pause=True, retry_after_s=3600.0),
    # Content refused: permanent and counted, no pause — by analogy with aliyun's content codes.
    "InvalidMessage": PERMANENT,
}

_MEANINGS = {
    "InvalidUsrOrPwd": "ecName/apId/secretKey refused (BROADCAST_CMAS_EC_NAME, _AP_ID, _SECRET_KEY)",
    "IllegalMac": "the mac does not verify (check BROADCAST_CMAS_EC_NAME/_AP_ID/_SECRET_KEY/_SIGN/_ADD_SERIAL)",
    "IllegalSignId": "the signature code is not valid (BROADCAST_CMAS_SIGN)",
    "NoSignId": "no signature code given (BROADCAST_CMAS_SIGN)",
    "IllegalIpAddress": "this machine's IP address is not on the account's allowed list",
    "TooManyMobiles": "more than 5000 mobiles in one request",
    "FlowOverLimit": "rate limit exceeded",
    "QueueOverLimit": "the platform's queue is full",
    "SystemBusy": "the platform is busy",
    "RequestTimeout": "the platform timed out handling the request",
    "OverDailyMax": "the account's daily maximum is reached",
    "InvalidMessage": "the message content was refused",
}


def classify_answer(code: str, http_status: int = 200) -> Verdict:
    """The verdict for a 云MAS ``rspcod`` (any code but ``success``)."""
    if code in _VERDICTS:
        return _VERDICTS[code]
    return RETRY if http_status >= 500 else PERMANENT


def compute_mac(*parts: str) -> str:
    """Lowercase hex MD5 of the parts concatenated (UTF-8, no separators)."""
    return hashlib.md5("".join(parts).encode("utf-8")).hexdigest()


_MAINLAND = re.compile(r"1[3-9]\d{9}")


def mainland_mobile(phone: str) -> str | None:
    """The 11 national digits of a mainland China mobile number (``+86…``, ``0086…``, ``86…`` or
    national), else None."""
    text = re.sub(r"[\s-]", "", phone)
    for prefix in ("+86", "0086"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    else:
        if text.startswith("86") and len(text) == 13:
            text = text[2:]
    return text if _MAINLAND.fullmatch(text) else None


def decode_json(body: bytes) -> Any:
    """JSON, or Base64 of JSON (how 云MAS may send both its answers and its reports); None if neither."""
    text = body.strip()
    if not text:
        return None
    if text[:1] not in (b"{", b"["):
        try:
            text = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            return None
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None


# -- gateway ------------------------------------------------------------------------------------


class CmasGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = CmasSettings

    @classmethod
    def receipt_formats(cls) -> Mapping[str, Format]:
        return {"cmas": Format(parse_push, REPORT_ACK, "text/plain")}

    @classmethod
    def inbound_formats(cls) -> Mapping[str, InboundFormat]:
        from broadcast.gateways.replies import CMAS_MO

        return {"cmas-mo": CMAS_MO}

    def __init__(self, settings: CmasSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        self.settings: CmasSettings = settings
        self.endpoint = settings.url + ("tmpsubmit" if settings.template_id else "norsubmit")

    def reply_address(self, extension: str) -> str:
        return digits_of(self.settings.add_serial + extension)  # a reply's ``addSerial``

    # -- sending ---------------------------------------------------------------------------

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        by_text: dict[tuple[str, str], list[int]] = defaultdict(list)  # text, reply code
        for index, item in enumerate(batch):
            if mainland_mobile(item.phone) is None:
                results[index] = SendResult(item.delivery_id, Outcome.PERMANENT, code=NOT_MAINLAND,
                                            detail="云MAS sends to mainland China mobile numbers only", recipient_fault=True)
            else:
                by_text[(item.text, item.extension)].append(index)
        size = max(1, min(self.capabilities.max_batch, MAX_MOBILES))
        for indexes in by_text.values():
            for start in range(0, len(indexes), size):
                chunk = indexes[start : start + size]
                results.update(zip(chunk, await send_splitting([batch[i] for i in chunk], self._send_request)))
        return [results[i] for i in range(len(batch))]

    def request_body(self, items: Sequence[SendItem]) -> dict[str, str]:
        """The JSON object of one request (before Base64), ``mac`` included."""
        s = self.settings
        secret = s.secret_key.get_secret_value()
        mobiles = ",".join(mainland_mobile(i.phone) or "" for i in items)
        text = items[0].text
        serial = s.add_serial + items[0].extension  # our fixed code, then the message's reply code
        if s.template_id:
            params = json.dumps([text], ensure_ascii=False, separators=(",", ":"))
            mac = compute_mac(s.ec_name, s.ap_id, secret, s.template_id, mobiles, params, s.sign, serial)
            return {"ecName": s.ec_name, "apId": s.ap_id, "secretKey": secret, "templateId": s.template_id,
                    "mobiles": mobiles, "params": params, "sign": s.sign, "addSerial": serial, "mac": mac}
        mac = compute_mac(s.ec_name, s.ap_id, secret, mobiles, text, s.sign, serial)
        return {"ecName": s.ec_name, "apId": s.ap_id, "secretKey": secret, "mobiles": mobiles, "content": text,
                "sign": s.sign, "addSerial": serial, "mac": mac}

    async def _send_request(self, items: Sequence[SendItem]) -> list[SendResult] | Split:
        payload = json.dumps(self.request_body(items), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            response = await self._http().post(self.endpoint, content=base64.b64encode(payload),
                                                headers={"Content-Type": CONTENT_TYPE}, timeout=self.timeout)
        except TRANSPORT_ERRORS as exc:
            return [transport_error_result(i, exc) for i in items]
        data = decode_json(response.content)
        code = data.get("rspcod") if isinstance(data, dict) else None
        if not isinstance(code, str) or not code:
            if response.is_success:
                return malformed(items, response, "answer without a rspcod")
            return [http.classify_answer(i.delivery_id, response) for i in items]
        assert isinstance(data, dict)
        if code == "success":
            group = str(data.get("msgGroup") or "")
            return [SendResult(i.delivery_id, Outcome.ACCEPTED, code=code,
                               provider_id=f"{group}:{mainland_mobile(i.phone)}" if group else None)
                    for i in items]
        verdict = classify_answer(code, response.status_code)
        detail = _MEANINGS.get(code) or snippet(response)
        if verdict.split and len(items) > 1:
            return Split(code, detail, verdict)
        return [verdict_result(i.delivery_id, verdict, code, detail) for i in items]

    # -- checks ----------------------------------------------------------------------------

    def check(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        if not s.secret_key.get_secret_value():
            problems.append("BROADCAST_CMAS_SECRET_KEY is empty")
        parts = urlsplit(s.url)
        if parts.scheme == "http" and not is_local_host(parts.hostname or ""):
            problems.append("BROADCAST_CMAS_URL is plain http:// to a remote host: the secretKey travels in the body "
                            "unencrypted (Base64 is no encryption); use the https:// address of your province if it has one")
        if "【" in s.sign or "】" in s.sign or not s.sign.isascii():
            problems.append("BROADCAST_CMAS_SIGN should be the signature code of the MAS console (e.g. wHwvfNuH5), "
                            "not the 【】 text")
        if s.add_serial and not s.add_serial.isdigit():
            problems.append("BROADCAST_CMAS_ADD_SERIAL should be digits (an extension code) or empty")
        return problems


# -- receipts -----------------------------------------------------------------------------------


def parse_report(body: bytes, received_at: datetime | None = None) -> list[Receipt]:
    """A status report push (JSON or Base64 JSON; one object or an array) → receipts. Rows without
    ``msgGroup`` or ``mobile`` cannot be matched and are skipped. Raises ValueError when the body is
    neither. ``received_at`` (aware) stands in for a report without a usable date."""
    data = decode_json(body)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("expected a JSON object or array (or Base64 of one)")
    receipts: list[Receipt] = []
    for row in data:
        if not isinstance(row, dict):
            continue
        group, mobile = row.get("msgGroup"), row.get("mobile")
        if not group or not mobile:
            continue
        status = str(row.get("reportStatus") or "").strip()
        ok = status.upper() == "DELIVRD"
        code = status or str(row.get("errorCode") or "") or "undelivered"
        at = parse_cst(row.get("receiveDate")) or parse_cst(row.get("submitDate")) or received_at
        if at is None:
            raise ValueError("a report without receiveDate or submitDate")
        receipts.append(Receipt(None, f"{group}:{phone_key(mobile)}", "delivered" if ok else "failed", code, at))
    return receipts


def parse_push(req: Incoming) -> list[Receipt]:
    """The ``cmas`` push format's parser (a bad body is a ``BadCallback``: answered 400)."""
    try:
        return parse_report(req.body, req.received_at)
    except ValueError as exc:
        raise BadCallback(f"云MAS report: {exc}") from None
