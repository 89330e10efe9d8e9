"""Push formats of the cloud SMS providers (issue 6), registered in ``formats.FORMATS``:

==========  ====================================================  ==================================
name        what the provider POSTs                               what it must be answered
==========  ====================================================  ==================================
``aliyun``  SmsReport HTTP batch push: a JSON array of reports     200 ``{"code":0,"msg":"成功"}``
            (``aliyun.parse_sms_report``)                          (else retried after 1, 5, 10 min)
``tencent`` the delivery-report callback: a JSON array             200 ``{"result":0,"errmsg":"OK"}``
            (``tencent.parse_callback``)
``twilio``  a StatusCallback form POST, signed with                200, empty body; a bad or missing
            ``X-Twilio-Signature`` (``twilio.parse_status_callback``)  signature: 403, nothing recorded
==========  ====================================================  ==================================

Twilio signs the exact URL it called. Behind a reverse proxy that is not the URL this process sees,
so the URL checked is ``BROADCAST_RECEIPTS_PUBLIC_URL`` (the endpoint's base URL as Twilio sees it,
e.g. ``https://sms.example.org/receipts``) + the path received (``/twilio`` or ``/<secret>/twilio``)
+ the query string as received. Unset, it is rebuilt from ``X-Forwarded-Proto``/``Host``. The auth
token is read with ``registry.load_settings`` on each callback (so a rotated token in ``.env`` is
picked up without a restart); it never appears in an answer or a log line.

Twilio's intermediate statuses (``queued``, ``sending``, ``sent``, ``accepted``, ``scheduled``) are
logged as interim ``accepted`` reports: they settle an ``in_doubt`` delivery as sent and never move
a delivery past ``accepted``.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl, urlsplit

from broadcast.gateways.aliyun import SMS_REPORT_ACK, parse_sms_report
from broadcast.gateways.base import Receipt
from broadcast.gateways.tencent import CALLBACK_ACK, parse_callback
from broadcast.receipts.formats import BadCallback, Forbidden, Format, Incoming, interim

__all__ = ["PROVIDER_FORMATS", "parse_aliyun", "parse_tencent", "parse_twilio", "twilio_public_url"]

log = logging.getLogger("broadcast.receipts")

SIGNATURE_HEADER = "x-twilio-signature"
_TWILIO_INTERIM = {"queued", "sending", "sent", "accepted", "scheduled"}


def _ack(data: dict[str, object]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_aliyun(req: Incoming) -> list[Receipt]:
    """Aliyun's SmsReport push (POST, JSON array)."""
    try:
        return parse_sms_report(req.body)
    except ValueError as exc:
        raise BadCallback(f"SmsReport: {exc}") from None


def parse_tencent(req: Incoming) -> list[Receipt]:
    """Tencent Cloud's delivery-report callback (POST, JSON array)."""
    try:
        return parse_callback(req.body)
    except ValueError as exc:
        raise BadCallback(f"Tencent callback: {exc}") from None


class TwilioNotConfigured(BadCallback):
    """The Twilio settings (auth token) cannot be loaded: answered 500, so the operator sees it."""

    status = 500


def twilio_public_url(req: Incoming, public_base: str) -> str:
    """The URL Twilio called, as it signed it (see the module docstring)."""
    if public_base:
        base = public_base.rstrip("/")
    else:
        headers = {k.lower(): v for k, v in req.headers.items()}
        proto = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
        host = (headers.get("x-forwarded-host") or headers.get("host") or "localhost").split(",")[0].strip()
        base = f"{proto}://{host}"
    url = base + (req.path or "/twilio")
    return f"{url}?{req.raw_query}" if req.raw_query else url


def _twilio_auth_token() -> str:
    from broadcast.errors import ConfigError
    from broadcast.gateways import registry

    try:
        cls = registry.load("twilio")
        settings = registry.load_settings(cls)
    except ConfigError as exc:
        log.warning("twilio status callback refused: %s", exc.message)
        raise TwilioNotConfigured("the twilio gateway is not configured on this server") from None
    return settings.auth_token.get_secret_value()  # type: ignore[attr-defined, no-any-return]


def _public_base() -> str:
    from broadcast.receipts.server import load_receipts_settings

    return load_receipts_settings().public_url


def parse_twilio(req: Incoming) -> list[Receipt]:
    """A Twilio StatusCallback: verify ``X-Twilio-Signature`` (403 when it does not match), then one
    receipt (final status) or an interim ``accepted`` (intermediate status)."""
    from broadcast.gateways.twilio import (
        CALLBACK_PARAM,
        parse_status_callback,
        validate_signature,
    )

    if req.method != "POST":
        raise BadCallback("Twilio status callbacks are POSTed")
    signature = next((v for k, v in req.headers.items() if k.lower() == SIGNATURE_HEADER), "")
    if not signature:
        raise Forbidden("no X-Twilio-Signature")
    params = parse_qsl(req.body.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    url = twilio_public_url(req, _public_base())
    if not validate_signature(url, params, signature, _twilio_auth_token()):
        log.warning("twilio status callback with a bad signature refused (URL checked: %s)", url.split("?")[0])
        raise Forbidden("X-Twilio-Signature does not match")
    form = dict(params)
    receipt = parse_status_callback(form, url, received_at=req.received_at)
    if receipt is not None:
        return [receipt]
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    sid = form.get("MessageSid") or form.get("SmsSid") or None
    raw_id = dict(parse_qsl(urlsplit(url).query)).get(CALLBACK_PARAM, "")
    delivery_id = int(raw_id) if raw_id.isdigit() else None
    if status in _TWILIO_INTERIM and (sid or delivery_id is not None):
        return [interim(delivery_id, sid, "accepted", status, req.received_at)]
    return []


#: name -> Format, registered by ``broadcast.receipts.formats``.
PROVIDER_FORMATS: dict[str, Format] = {
    "aliyun": Format(parse_aliyun, _ack(SMS_REPORT_ACK), "application/json; charset=utf-8"),
    "tencent": Format(parse_tencent, _ack(CALLBACK_ACK), "application/json; charset=utf-8"),
    "twilio": Format(parse_twilio, b"", "text/plain"),
}
