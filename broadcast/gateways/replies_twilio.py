"""Twilio replies: the incoming-message webhook (``twilio-mo``) and the pull (``fetch_inbound``).

**Webhook.** Set the number's (or the Messaging Service's) "A message comes in" webhook to
``https://HOST/<secret>/twilio-mo`` (HTTP POST). The form carries ``MessageSid`` (the provider id: a
webhook Twilio sends again has the same one), ``From``, ``To``, ``Body``, ``NumMedia``…; it is checked
with ``X-Twilio-Signature`` exactly as the StatusCallback is (``twilio_receipts.verified_form``: the
auth token from the settings, the URL as ``BROADCAST_RECEIPTS_PUBLIC_URL`` says Twilio called it); a
bad or missing signature is answered 403 and nothing is recorded. The answer is an empty TwiML
``<Response/>``: no reply SMS. Twilio sends no time: the reply is dated when it arrived.

**Pull.** ``GET …/Messages.json?DateSent>=<day>`` (``To`` = ``BROADCAST_TWILIO_FROM`` when it is a
number), following ``next_page_uri`` up to ``pages`` pages, keeping ``direction == "inbound"`` rows
sent at or after ``since`` (``date_sent``, RFC 2822).
"""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broadcast.gateways.base import Inbound
from broadcast.gateways.cloud_common import json_body, snippet
from broadcast.gateways.push import BadCallback, InboundFormat, Incoming
from broadcast.gateways.replies import MAX_ID, e164

if TYPE_CHECKING:
    from broadcast.gateways.twilio import TwilioGateway

__all__ = ["EMPTY_TWIML", "TWILIO_MO", "fetch_twilio", "parse_twilio_mo"]

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def parse_twilio_mo(req: Incoming) -> list[Inbound]:
    """An incoming-message webhook, signature verified, → one reply."""
    from broadcast.gateways.twilio_receipts import verified_form

    params, _url = verified_form(req, "incoming message webhook")
    form = dict(params)
    sid = (form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or "").strip()
    if not sid:
        raise BadCallback("Twilio incoming message: no MessageSid")
    if "Body" not in form:
        raise BadCallback("Twilio incoming message: no Body")
    return [Inbound("twilio", sid[:MAX_ID], e164(form.get("From")), (form.get("To") or "").strip(), form["Body"],
                    req.received_at, req.body)]


TWILIO_MO = InboundFormat(parse_twilio_mo, EMPTY_TWIML, "text/xml")


def _sent_at(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def twilio_reply(row: dict[str, Any], since: datetime) -> Inbound | None:
    """One row of the Messages list: a reply when it is inbound, sent at or after ``since``."""
    if row.get("direction") != "inbound" or not row.get("sid") or not row.get("from"):
        return None
    at = _sent_at(row.get("date_sent")) or _sent_at(row.get("date_created"))
    if at is None or at < since:
        return None
    raw = json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return Inbound("twilio", str(row["sid"])[:MAX_ID], e164(row["from"]), str(row.get("to") or ""), str(row.get("body") or ""),
                   at, raw)


async def fetch_twilio(gw: TwilioGateway, since: datetime, pages: int = 10) -> list[Inbound]:
    """Inbound messages since ``since`` (see the module docstring). Raises ``LookupError`` on an error
    answer and the httpx errors on a transport failure."""
    since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
    first = {"DateSent>": since.date().isoformat(), "PageSize": "100"}
    if gw.settings.from_.startswith("+"):
        first["To"] = gw.settings.from_
    params: dict[str, str] | None = first
    url: str | None = f"{gw._base}/Messages.json"
    out: list[Inbound] = []
    for _ in range(pages):
        if url is None:
            break
        response = await gw._http().get(url, params=params, auth=gw._auth(), timeout=gw.timeout)
        data = json_body(response)
        if not response.is_success or not isinstance(data, dict):
            raise LookupError(f"Messages list: HTTP {response.status_code}: {snippet(response)}")
        rows = data.get("messages")
        out += [r for r in (twilio_reply(row, since) for row in rows if isinstance(row, dict))
                if r is not None] if isinstance(rows, list) else []
        following = data.get("next_page_uri")
        url = f"{gw.settings.endpoint.rstrip('/')}{following}" if isinstance(following, str) and following else None
        params = None  # the next page's URI carries the filters (an empty dict would strip them)
    return out
