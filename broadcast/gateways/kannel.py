"""``kannel``: the Kannel SMS gateway, through smsbox's ``sendsms`` HTTP interface.

Kannel fronts an operator's SMSC over SMPP, EMI/UCP, CIMD, OIS, SEMA or an AT modem (mainline
Kannel has no CMPP, SGIP or SMGP: for China Mobile's CMPP use the ``cmpp`` gateway); broadcast talks to
its smsbox (research notes: ../shared/research/gateway-protocols.md §4). One request per recipient:

``GET BROADCAST_KANNEL_URL?username=…&password=…&to=<phone>&text=<UTF-8>&charset=UTF-8``
``[&coding=2][&from=<sender>][&dlr-mask=31&dlr-url=<receipts url>]``

* ``coding=2`` (UCS-2) is sent whenever the text is not pure GSM-7 (``broadcast.messages.segments``),
  always with ``charset=UTF-8``: without ``charset`` Kannel reads a ``coding=2`` text as UTF-16BE, and
  without ``coding`` it squeezes Chinese into 7-bit ``?`` — and answers 202 either way.
* ``dlr-url`` points at ``broadcast receipts serve`` (``BROADCAST_RECEIPTS_URL`` + ``/kannel``) and
  carries our delivery id plus Kannel's escapes ``%d`` (report type), ``%T`` (Unix time), ``%p``
  (the handset, in a DLR), ``%A`` (SMSC reply) and ``%F`` (SMSC message id). ``dlr-mask=31`` asks
  for delivered (1), undelivered (2), buffered (4), SMSC accepted (8) and SMSC rejected (16).
* A text needing more parts than ``BROADCAST_KANNEL_MAX_PARTS`` (Kannel's ``max-messages``, default
  1, above which smsbox silently truncates) is not sent: retryable with ``pause``, code
  ``too_many_parts``, so the message pauses until the configuration is fixed.

Answer mapping (smsbox answers with a status and a one-line text, ``gw/smsbox.c``):

=====================================  =====================================================
202 ``0: Accepted for delivery``       accepted (provider id ``kannel-<delivery id>``: Kannel
202 ``3: Queued for later delivery``   gives none; its DLRs carry our id back)
other 2xx                              retryable, maybe_sent (not an smsbox answer we know)
401, 403 ``Authorization failed…``     permanent, ``pause`` (credentials / allowed IPs)
400 ``Sender missing…``                permanent, ``pause`` (set BROADCAST_KANNEL_SENDER)
400 ``Number(s) has/have been denied   permanent, a recipient fault (the number is refused by a
by white- and/or black-lists.``        white/black list or has characters ``to`` may not hold):
                                       never counted toward the message's auto-pause
403 ``Not routable…``, other 4xx       permanent, counted (bearerbox found no SMSC to take it:
                                       said of a number outside every SMSC's prefixes, but also of
                                       a Kannel with no SMSC at all; a malformed field)
408, 429                               retryable (Retry-After honoured)
503 ``Temporal failure…``, other 5xx   retryable; 504 (a proxy gave up waiting) also maybe_sent
3xx                                    permanent, ``pause`` (redirects are not followed)
connect error/timeout, pool timeout    retryable, not maybe_sent
read/write timeout or error, reset     retryable, maybe_sent (``base.transport_error_result``)
=====================================  =====================================================

Kannel's 202 is not delivery: deliveries become ``delivered`` when its DLR reaches the receipts
endpoint (``broadcast.receipts``).

Replies come through an ``sms-service`` group whose ``get-url`` calls the receipts endpoint's
``/kannel-mo`` (``replies.KANNEL_GET_URL``; the group for kannel.conf is in docs/replies.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

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
from broadcast.gateways.reply_codes import digits_of
from broadcast.messages.segments import count_segments

if TYPE_CHECKING:
    from broadcast.gateways.push import Format, InboundFormat

CAPABILITIES = Capabilities(
    name="kannel",
    max_batch=1,
    mixed_texts=True,
    description="Kannel smsbox sendsms over HTTP (SMPP/EMI/CIMD/modems behind it); receipts via dlr-url.",
)

#: Report types Kannel sets in ``%d`` and that ``dlr-mask=31`` asks for.
DLR_MASK = 1 | 2 | 4 | 8 | 16
#: The dlr-url query after our delivery id (Kannel expands the escapes, URL-encoded).
DLR_ESCAPES = "type=%d&ts=%T&to=%p&reply=%A&fid=%F"


class KannelSettings(BaseSettings):
    """``BROADCAST_KANNEL_*`` (and ``BROADCAST_RECEIPTS_URL``)"""

    model_config = SettingsConfigDict(
        env_prefix="BROADCAST_KANNEL_", env_file=".env", extra="ignore", populate_by_name=True
    )

    url: str = Field(description="smsbox sendsms URL, e.g. http://127.0.0.1:13013/cgi-bin/sendsms")
    username: str = Field(description="A sendsms-user of smsbox.")
    password: SecretStr = Field(description="That sendsms-user's password.")
    sender: str = Field(default="", description="'from' of every SMS; empty: Kannel's global-sender.")
    max_parts: int = Field(
        default=1, ge=1, le=255,
        description="Parts Kannel may send per SMS: its sendsms-user 'max-messages' (Kannel's default is 1).",
    )
    receipts_url: str = Field(
        default="",
        validation_alias="BROADCAST_RECEIPTS_URL",
        description="Base URL at which Kannel reaches 'broadcast receipts serve' (secret path included); "
        "empty: no delivery reports are asked for.",
    )
    dlr_mask: int = Field(default=DLR_MASK, ge=0, le=63, description="Kannel dlr-mask (31: every final and SMSC report).")
    timeout_s: float = timeout_field()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = http_url(value, "smsbox's sendsms URL")
        if urlsplit(value).query:
            raise ValueError("must not carry a query; credentials go in BROADCAST_KANNEL_USERNAME/_PASSWORD")
        return value

    @field_validator("receipts_url")
    @classmethod
    def _receipts_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(http_url(value))
        if parts.query or parts.fragment:
            raise ValueError("must be a base URL without '?' or '#'")
        return value.rstrip("/")


def dlr_url(receipts_url: str, delivery_id: int) -> str:
    """The callback Kannel fetches for each report of this delivery."""
    return f"{receipts_url}/kannel?id={delivery_id}&{DLR_ESCAPES}"


class KannelGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = KannelSettings

    @classmethod
    def receipt_formats(cls) -> Mapping[str, Format]:
        from broadcast.gateways.push import Format
        from broadcast.gateways.simple_receipts import parse_kannel

        return {"kannel": Format(parse_kannel)}

    @classmethod
    def inbound_formats(cls) -> Mapping[str, InboundFormat]:
        from broadcast.gateways.replies import KANNEL_MO

        return {"kannel-mo": KANNEL_MO}

    def __init__(self, settings: KannelSettings, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client)
        self.settings: KannelSettings = settings
        # a numeric sender can carry a message's reply code after it (if the SMSC lets it through)
        room = max(0, 20 - len(settings.sender)) if settings.sender.lstrip("+").isdigit() else 0
        self.capabilities = replace(CAPABILITIES, reply_extension=room)  # type: ignore[misc]

    def reply_address(self, extension: str) -> str:
        return digits_of(self.settings.sender + extension) if self.capabilities.reply_extension else ""

    # -- sending ---------------------------------------------------------------------------

    def params(self, item: SendItem) -> list[tuple[str, str]]:
        """The sendsms query of one item, in a stable order (tests assert it)."""
        s = self.settings
        q = [
            ("username", s.username),
            ("password", s.password.get_secret_value()),
            ("to", item.phone),
            ("text", item.text),
            ("charset", "UTF-8"),
        ]
        if count_segments(item.text).encoding == "UCS-2":
            q.append(("coding", "2"))
        if s.sender:
            q.append(("from", s.sender + item.extension))  # our number + the message's reply code
        if s.receipts_url and s.dlr_mask:
            q += [("dlr-mask", str(s.dlr_mask)), ("dlr-url", dlr_url(s.receipts_url, item.delivery_id))]
        return q

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        return [await self._send_one(item) for item in batch]

    async def _send_one(self, item: SendItem) -> SendResult:
        parts = count_segments(item.text).parts
        if parts > self.settings.max_parts:
            return SendResult(
                item.delivery_id, Outcome.RETRYABLE, code="too_many_parts", pause=True,
                detail=f"needs {parts} parts but BROADCAST_KANNEL_MAX_PARTS={self.settings.max_parts} "
                "(Kannel would truncate it): raise max-messages in smsbox's sendsms-user and the setting",
            )
        client = self._http()
        # urlencode, not httpx's params: one explicit encoding (space -> '+', '%' -> '%25') for
        # the query, so the dlr-url escapes reach Kannel as '%d', never pre-expanded.
        url = f"{self.settings.url}?{urlencode(self.params(item))}"
        try:
            response = await client.get(url, timeout=self.timeout)
        except TRANSPORT_ERRORS as exc:
            return transport_error_result(item, exc)
        return classify_answer(item.delivery_id, response)

    # -- checks ----------------------------------------------------------------------------

    def check(self) -> list[str]:
        s = self.settings
        problems: list[str] = []
        needed = _configured_max_parts()
        if s.max_parts < needed:
            problems.append(
                f"BROADCAST_KANNEL_MAX_PARTS={s.max_parts} is below the {needed} parts a long message may need "
                f"(BROADCAST_MAX_PARTS): set 'max-messages = {needed}' (and 'concatenation = true') in smsbox's "
                f"sendsms-user group, then BROADCAST_KANNEL_MAX_PARTS={needed}; longer messages are held, not truncated"
            )
        if not s.receipts_url:
            problems.append("BROADCAST_RECEIPTS_URL is empty: Kannel will send no delivery reports, "
                            "deliveries stay 'accepted' (run 'broadcast receipts serve' and set it)")
        elif not (s.dlr_mask & 1 and s.dlr_mask & 2):
            problems.append(f"BROADCAST_KANNEL_DLR_MASK={s.dlr_mask} does not ask for final reports (1 and 2)")
        host = urlsplit(s.url).hostname or ""
        if urlsplit(s.url).scheme == "http" and not is_local_host(host):
            problems.append("BROADCAST_KANNEL_URL is plain http:// to a remote host: the sendsms password travels unencrypted")
        if not s.password.get_secret_value():
            problems.append("BROADCAST_KANNEL_PASSWORD is empty")
        return problems


def classify_answer(delivery_id: int, response: httpx.Response) -> SendResult:
    """Classify smsbox's answer (see the table in the module docstring)."""
    status = response.status_code
    body = response.content[:400].decode("utf-8", "replace").strip()
    code = f"{status}:{body.split(':', 1)[0]}" if body[:1].isdigit() and ":" in body[:4] else str(status)
    detail = body or response.reason_phrase
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    lowered = body.lower()
    if 200 <= status < 300:
        if body.startswith(("0:", "3:")):
            return SendResult(delivery_id, Outcome.ACCEPTED, provider_id=f"kannel-{delivery_id}", code=code, detail=detail)
        return SendResult(delivery_id, Outcome.RETRYABLE, code=f"{status}:unexpected", detail=detail, maybe_sent=True)
    if status in (408, 429):
        return SendResult(delivery_id, Outcome.RETRYABLE, code=code, detail=detail, retry_after_s=retry_after)
    if status >= 500:
        return SendResult(delivery_id, Outcome.RETRYABLE, code=code, detail=detail, retry_after_s=retry_after,
                          maybe_sent=status == 504)
    if 300 <= status < 400:
        where = response.headers.get("Location", "?")
        return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=f"redirected to {where}", pause=True)
    if status == 401 or "authorization failed" in lowered or "sender missing" in lowered:
        return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=detail, pause=True)
    denied = status == 400 and "denied by white- and/or black-lists" in lowered
    return SendResult(delivery_id, Outcome.PERMANENT, code=code, detail=detail, recipient_fault=denied)


def _configured_max_parts() -> int:
    """``BROADCAST_MAX_PARTS`` (the longest message broadcast lets through without a warning)."""
    from broadcast.config import load_settings
    from broadcast.errors import ConfigError

    try:
        return load_settings().max_parts
    except ConfigError:
        return 3

