"""Twilio's receipts: the StatusCallback push format (signed with ``X-Twilio-Signature``: a bad or
missing signature is answered 403, nothing recorded) and the pull (``GET Messages/{sid}.json`` per
delivery with a sid; without one, in doubt, the messages to its number with its exact body:
found means it was sent).

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

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from broadcast.gateways.base import Outcome, Receipt, SendItem
from broadcast.gateways.push import BadCallback, Candidate, Forbidden, Format, Incoming, Pull, PullStopped, interim

if TYPE_CHECKING:
    from broadcast.gateways.twilio import TwilioGateway

__all__ = ["TwilioNotConfigured", "formats", "parse_twilio", "pull_twilio", "twilio_public_url", "verified_form"]

log = logging.getLogger("broadcast.receipts")

SIGNATURE_HEADER = "x-twilio-signature"
_TWILIO_INTERIM = {"queued", "sending", "sent", "accepted", "scheduled"}


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
    from broadcast.gateways.receipts_settings import load_receipts_settings

    return load_receipts_settings().public_url


def verified_form(req: Incoming, what: str = "status callback") -> tuple[list[tuple[str, str]], str]:
    """A Twilio webhook's form parameters and the URL it signed, once ``X-Twilio-Signature`` verifies
    (``Forbidden`` when it is missing or does not match; ``BadCallback`` for anything but a POST).
    Shared by the StatusCallback and the incoming-message webhook (``replies_twilio``)."""
    from broadcast.gateways.twilio import validate_signature

    if req.method != "POST":
        raise BadCallback(f"Twilio {what}s are POSTed")
    signature = next((v for k, v in req.headers.items() if k.lower() == SIGNATURE_HEADER), "")
    if not signature:
        raise Forbidden("no X-Twilio-Signature")
    params = parse_qsl(req.body.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    url = twilio_public_url(req, _public_base())
    if not validate_signature(url, params, signature, _twilio_auth_token()):
        log.warning("twilio %s with a bad signature refused (URL checked: %s)", what, url.split("?")[0])
        raise Forbidden("X-Twilio-Signature does not match")
    return params, url


def parse_twilio(req: Incoming) -> list[Receipt]:
    """A Twilio StatusCallback: verify ``X-Twilio-Signature`` (403 when it does not match), then one
    receipt (final status) or an interim ``accepted`` (intermediate status)."""
    from broadcast.gateways.twilio import CALLBACK_PARAM, parse_status_callback

    params, url = verified_form(req)
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


def formats() -> dict[str, Format]:
    return {"twilio": Format(parse_twilio, b"", "text/plain")}


async def pull_twilio(gw: TwilioGateway, cands: Sequence[Candidate], now: datetime, pull: Pull) -> None:
    from broadcast.gateways.twilio import status_receipt

    for c in cands:
        pull.asked()
        if c.provider_id:
            receipt = await pull.call(gw.fetch_status, c.provider_id)
            if receipt is not None:
                pull.add(replace(receipt, delivery_id=c.id), {"pulled": "Messages/{sid}", "sid": c.provider_id,
                                                              "status": receipt.code})
            continue
        if pull.left < 2:  # query may list two days
            raise PullStopped
        answers = await pull.call(gw.query, [SendItem(c.id, c.phone, c.text)])
        pull.charge(1)
        found = answers[0] if answers else None
        if found is None or found.outcome is not Outcome.ACCEPTED:
            continue
        status = found.code or ""
        raw = {"pulled": "Messages?To=", "sid": found.provider_id, "status": status}
        receipt = status_receipt(c.id, found.provider_id, status, None, now)
        if receipt is not None:
            pull.add(receipt, raw)
        else:
            pull.add(interim(c.id, found.provider_id, "accepted", status or "sent", now), raw)
