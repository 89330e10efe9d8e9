"""The gateway plugin interface: what every SMS gateway declares, takes and returns.

A gateway is a class with

* ``capabilities`` — what it can do and its declared limits, as data (``Capabilities``), among them
  what it addresses (``Addresses``: a phone for an SMS gateway, an email address, a platform's user
  id, or a group chat reached through its robot), the requests a single address may receive
  (``AddressRate``) and the longest text it takes (``max_text_bytes``);
* ``settings_class`` — a pydantic-settings class read from ``BROADCAST_<NAME>_*`` variables, secrets
  as ``SecretStr``;
* ``send(batch)`` — one request for up to ``capabilities.max_batch`` items (each ``SendItem`` carries
  its recipient: ``item.to``, the ``address`` where one is given, else the ``phone``), returning exactly one
  ``SendResult`` per item, in the same order. It never raises for transport or provider errors: it
  classifies them (``accepted`` / ``retryable`` / ``permanent``). Bugs still raise, and
  ``asyncio.CancelledError`` is never swallowed.
* optionally ``query(items)`` (was this past send made?) and ``fetch_receipts()`` (pull delivery reports);
* its receipts, behind the same door (see ``broadcast.gateways.push``): ``receipt_formats()`` (the
  push formats the receipts endpoint serves for it) and ``pull_receipts(candidates, now, pull)``
  (what ``broadcast receipts pull`` asks it; the default calls ``fetch_receipts`` once when
  ``capabilities.pull_receipts``), paced at ``pull_rate`` requests per second.

Timeouts: one policy for every HTTP gateway. A settings class declares ``timeout_s: float =
timeout_field()`` (``BROADCAST_<NAME>_TIMEOUT_S``, default ``DEFAULT_TIMEOUT_S``); the gateway's
``timeout`` (``request_timeout(timeout_s)``) is passed with every request, and the run's shared client
(``make_client``) is created with the same value (``settings_timeout``).

An *instance* may narrow or widen its capabilities from its settings (the ``http`` gateway's
``max_batch`` is ``BROADCAST_HTTP_BATCH``), so the engine must read ``gateway.capabilities`` from the
instance; the class attribute is the default that ``broadcast gateway list`` shows.

The helpers at the bottom (``make_client``, ``transport_error_result``, ``parse_retry_after``) are the
shared vocabulary of HTTP-based gateways, so that every one of them classifies a timeout the same way.
Each HTTP gateway module names the function that says what a provider's answer means
``classify_answer`` (``http.classify_answer`` maps plain HTTP statuses and is reused by the others).
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings

from broadcast.config import is_local_host
from broadcast.gateways import log_redact

if TYPE_CHECKING:
    from broadcast.gateways.push import Candidate, Format, InboundFormat, Pull

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AddressRate",
    "Addresses",
    "NO_PULL_API",
    "QUERY_ERRORS",
    "TRANSPORT_ERRORS",
    "Capabilities",
    "Gateway",
    "Inbound",
    "Outcome",
    "Receipt",
    "SendItem",
    "SendResult",
    "http_url",
    "is_local_host",
    "make_client",
    "parse_retry_after",
    "request_timeout",
    "settings_timeout",
    "timeout_field",
    "transport_error_result",
]

log_redact.install()  # no gateway's password in httpx's request log (Kannel's is in the URL)

#: Connect/read/write timeout of one provider request, seconds, unless ``BROADCAST_<NAME>_TIMEOUT_S`` says.
DEFAULT_TIMEOUT_S = 10.0
NO_PULL_API = "skipped: this gateway has no pull API (its receipts are pushed)"


def timeout_field(default: float = DEFAULT_TIMEOUT_S) -> Any:
    """The ``timeout_s`` field of a gateway's settings class (one definition for every gateway)."""
    return Field(default=default, gt=0, le=600, description="Connect/read/write timeout per request.")


def request_timeout(timeout_s: float) -> httpx.Timeout:
    """The ``httpx.Timeout`` of one request: connect at most 5 s, read/write/pool ``timeout_s``."""
    return httpx.Timeout(connect=min(timeout_s, 5.0), read=timeout_s, write=timeout_s, pool=timeout_s)


def settings_timeout(settings: object) -> float:
    """A gateway's configured ``timeout_s`` (``DEFAULT_TIMEOUT_S`` for a gateway without one)."""
    return float(getattr(settings, "timeout_s", DEFAULT_TIMEOUT_S))


def http_url(value: str, what: str = "") -> str:
    """A settings URL, stripped: ``ValueError`` unless it is http:// or https:// with a host (the
    one check of every HTTP gateway's URL fields; ``what`` names the URL in the message)."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL" + (f" ({what})" if what else ""))
    return value


class Addresses(StrEnum):
    """What a gateway's recipients are (``Capabilities.addresses``): the ``SendItem.to`` it expects."""

    PHONE = "phone"  # an E.164 mobile number (the SMS gateways)
    EMAIL = "email"  # an email address
    USER_ID = "user_id"  # a user id of the platform (a WeCom userid)
    GROUP_CHAT = "group_chat"  # a group chat, named by its robot in the gateway's settings


@dataclass(frozen=True)
class AddressRate:
    """At most ``count`` messages to one address (one robot, one user) in any ``per_s`` seconds."""

    count: int
    per_s: float


@dataclass(frozen=True)
class Capabilities:
    """What a gateway can do, and the limits it declares (the engine uses the lower of these and the user's)."""

    name: str
    max_batch: int = 1  # recipients per request
    addresses: Addresses = Addresses.PHONE  # what SendItem.to is for this gateway
    max_text_bytes: int | None = None  # longest text one message may carry, in UTF-8 bytes (None: no limit)
    per_address_rates: tuple[AddressRate, ...] = ()  # limits per address (a robot's 20 a minute); the gateway keeps them
    mixed_texts: bool = False  # may one request carry different texts?
    adds_signature: bool = False  # does the provider add 【签名】 itself?
    max_per_second: float | None = None  # declared message rate limit
    max_requests_per_second: float | None = None
    per_number_daily_cap: int | None = None
    can_query: bool = False  # can it be asked whether a past send happened?
    pull_receipts: bool = False  # does fetch_receipts() return delivery reports?
    description: str = ""
    # operator links (CMPP, SMPP): unacknowledged requests per connection, and connections; the
    # dispatcher keeps window × connections requests in flight (BROADCAST_CONCURRENCY does not cap it)
    window: int | None = None
    connections: int | None = None
    billing: str = "submitted"  # what its provider bills: "submitted" or "delivered" (broadcast.costs.prices)
    # how many digits of a per-message extension code (扩展码) it can append to our number, so
    # that a reply comes back to "our number + code" and is matched to that message
    # (BROADCAST_REPLY_EXTENSION_DIGITS); 0: it cannot
    reply_extension: int = 0


@dataclass(frozen=True)
class SendItem:
    """One recipient of one request. ``delivery_id`` is our correlation id, sent to the provider.

    ``phone`` is the person (the number that identifies a member); ``address`` is where this
    gateway delivers when that is not the phone (an email address, a WeCom userid, a group chat's
    robot name: ``Capabilities.addresses`` says which), and ``to`` is the one to use. ``subject``
    (email), ``name`` (the recipient's, for a personal greeting or a ``To:`` header) and
    ``mentions`` (phones to @ in a group chat, or ``"@all"``) are used by the channels that have
    them and ignored by the rest. ``extension`` is the reply extension code (digits) to append to our
    number for this message, ``""`` for none; only a gateway whose capabilities say
    ``reply_extension`` is given one, and every item of a request carries the same (one message)."""

    delivery_id: int
    phone: str
    text: str
    extension: str = ""
    address: str = ""
    subject: str = ""
    name: str = ""
    mentions: tuple[str, ...] = ()

    @property
    def to(self) -> str:
        """The recipient in this gateway's terms: ``address`` where given, else ``phone``."""
        return self.address or self.phone



class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the provider took it (``provider_id`` when it gave one)
    RETRYABLE = "retryable"  # try again later (throttled, 5xx, timeout, connection error)
    PERMANENT = "permanent"  # will never succeed as is (invalid number, blocked, content rejected)


@dataclass(frozen=True)
class SendResult:
    """The fate of one ``SendItem`` in one attempt.

    ``maybe_sent`` is True when the request may have reached the provider although we got no usable
    answer (read timeout, connection reset after the body was written): the engine treats it as
    in-doubt, never as a plain retry. ``pause`` marks an account-level failure (bad credentials, no
    balance): the engine pauses the whole message instead of burning through the audience.

    ``recipient_fault`` marks a failure that concerns this one recipient only (an invalid, empty,
    unallocated or blacklisted number, a per-number limit): it fails or retries this delivery and
    never counts toward the message's error storm (the auto-pause). Every other failure — and any
    result of a gateway that does not say — is taken to say something about the gateway or the
    account, and counts.

    ``blocked`` (with ``recipient_fault``) says the provider refused the number as on its or the
    carrier's blacklist (the person replied R/TD to some sender of ours): the engine records the
    number as blocked by the carrier, so later sends skip it and report it instead of failing daily.
    """

    delivery_id: int
    outcome: Outcome
    provider_id: str | None = None
    code: str | None = None
    detail: str | None = None
    retry_after_s: float | None = None
    maybe_sent: bool = False
    pause: bool = False
    recipient_fault: bool = False
    blocked: bool = False  # the provider refused the number as on its (or the carrier's) blacklist


@dataclass(frozen=True)
class Receipt:
    """A delivery report: the handset got it (``delivered``) or the network gave up (``failed``).

    At least one of ``delivery_id`` / ``provider_id`` is set; ``at`` is timezone-aware (UTC).
    """

    delivery_id: int | None
    provider_id: str | None
    status: Literal["delivered", "failed"]
    code: str | None
    at: datetime


@dataclass(frozen=True)
class Inbound:
    """A mobile-originated message (a reply), as it arrived, before ``broadcast.twoway.intake``
    matches it to a member and a message.

    ``provider_id`` is the provider's id of the message (``None`` where it gives none: intake then
    derives one from the content, so a redelivered push is still stored once). ``to`` is our number
    it was sent to (service number + extension); ``extension`` the extension alone, where the provider
    reports it separately. ``raw`` is the payload as received (a PDU, a callback's body; the parts'
    PDUs of a reply joined from parts). ``incomplete``: parts of it never came (``mo_join``)."""

    gateway: str
    provider_id: str | None
    phone: str  # the sender, E.164 where it could be told
    to: str
    text: str
    at: datetime  # when the provider says it was sent (else when it arrived), UTC
    raw: bytes
    extension: str = ""
    incomplete: bool = False


class Gateway(abc.ABC):
    """Base class of every gateway. Subclasses set ``capabilities`` and ``settings_class``.

    The constructor takes validated settings and, optionally, the run's shared ``httpx.AsyncClient``.
    A gateway that needs HTTP and got no client creates its own with ``make_client`` and closes it in
    ``aclose``; a client passed in belongs to the caller and is never closed here.
    """

    capabilities: ClassVar[Capabilities]
    settings_class: ClassVar[type[BaseSettings]]
    #: requests per second a receipts pull makes to this provider
    pull_rate: ClassVar[float] = 10.0

    def __init__(self, settings: BaseSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client
        self._owns_client = False
        self.timeout_s = settings_timeout(settings)
        self.timeout = request_timeout(self.timeout_s)

    def _http(self, max_in_flight: int = 8) -> httpx.AsyncClient:
        """The shared client, or a private one created on first use (closed by ``aclose``)."""
        if self._client is None:
            self._client = make_client(self.timeout_s, max_in_flight)
            self._owns_client = True
        return self._client

    @abc.abstractmethod
    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        """Send one request; exactly one result per item, same order. Never raises for
        transport or provider errors. ``len(batch) <= capabilities.max_batch`` is expected; a
        gateway given more splits the batch itself."""

    async def query(self, items: Sequence[SendItem]) -> list[SendResult | None]:
        """Ask the provider whether these past sends happened. ``None`` = cannot tell."""
        return [None] * len(items)

    async def fetch_receipts(self) -> list[Receipt]:
        """Delivery reports that became available since the last call (pull gateways)."""
        return []

    @classmethod
    def receipt_formats(cls) -> Mapping[str, Format]:
        """Push formats served for this gateway by the receipts endpoint: URL name -> ``Format``."""
        return {}

    @classmethod
    def inbound_formats(cls) -> Mapping[str, InboundFormat]:
        """Push formats of replies (mobile-originated messages) served for this gateway by the
        receipts endpoint: URL name -> ``InboundFormat``. Names must differ from receipt formats'."""
        return {}

    @classmethod
    def pulls_inbound(cls) -> bool:
        """Whether the provider offers replies only (or also) by a pull API (``fetch_inbound``)."""
        return cls.fetch_inbound is not Gateway.fetch_inbound

    async def fetch_inbound(self, since: datetime) -> list[Inbound]:
        """Replies received by the provider since ``since`` (a pull API; ``broadcast inbox pull``).
        Returning one already stored is harmless: replies are deduplicated by provider id."""
        return []

    @classmethod
    def pulls_receipts(cls) -> bool:
        """Whether ``broadcast receipts pull`` has anything to ask this gateway."""
        return cls.capabilities.pull_receipts or cls.pull_receipts is not Gateway.pull_receipts

    async def pull_receipts(self, candidates: Sequence[Candidate], now: datetime, pull: Pull) -> None:
        """Ask the provider about ``candidates`` (in-doubt first, then oldest), every request through
        ``pull.call``, every report to ``pull.add``. The default calls ``fetch_receipts`` once."""
        if not self.capabilities.pull_receipts:
            pull.note(NO_PULL_API)
            return
        receipts = await pull.call(self.fetch_receipts)
        for r in receipts or []:
            pull.add(r, {"pulled": "fetch_receipts", "delivery_id": r.delivery_id, "provider_id": r.provider_id,
                         "status": r.status, "code": r.code})

    def listen(self, sink: Callable[[list[Receipt], list[Any]], Awaitable[None]]) -> None:
        """A gateway whose status reports and replies arrive on its own connection (CMPP, SMPP)
        hands them to ``sink`` (the dispatcher records them) before it acknowledges them to the
        server. HTTP gateways receive nothing on their own: the default ignores the sink."""
        return None

    def reply_address(self, extension: str) -> str:
        """Where a reply comes back to a message sent with the reply extension code ``extension``,
        as the provider reports it on the reply (digits only): our number + the code where the reply
        names the number it was sent to (Kannel ``%P``, CMPP ``Dest_Id``, SMPP ``destination_addr``),
        the extension field itself where the provider reports it apart (Tencent ``extend``, 云MAS
        ``addSerial``). ``""``: this gateway appends no code (``capabilities.reply_extension`` is 0)."""
        return ""

    def check(self) -> list[str]:
        """Problems found without sending anything; an empty list means OK."""
        return []

    async def ping(self) -> str | None:
        """One harmless authenticated call (``broadcast gateway check --online``): None when it
        succeeds, else the problem, in words (never a secret). The default has nothing to call."""
        return None

    async def aclose(self) -> None:
        """Release resources; idempotent."""
        if self._owns_client and self._client is not None:
            client, self._client, self._owns_client = self._client, None, False
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------------------------------------
# Shared helpers for HTTP gateways


def make_client(
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_in_flight: int = 8,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    backend: str = "aiohttp",
) -> httpx.AsyncClient:
    """The one ``httpx.AsyncClient`` of a run: explicit connect/read/write/pool timeouts and a
    connection pool of ``max_in_flight``.

    ``backend="aiohttp"`` (the default, BROADCAST_HTTP_TRANSPORT) puts ``aio_transport.AiohttpTransport``
    under the httpx API: httpx 0.28's own pool spends more CPU per request the more are in flight
    and stops keeping up above ~30 (see ``aio_transport``); ``"httpx"`` keeps httpx's own transport. Bound
    concurrency in the caller either way. ``transport`` is for tests (``httpx.MockTransport``).
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be > 0")
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    timeout = request_timeout(timeout_s)
    limits = httpx.Limits(
        max_connections=max_in_flight, max_keepalive_connections=max_in_flight, keepalive_expiry=30.0
    )
    if transport is None and backend == "aiohttp":
        from broadcast.gateways.aio_transport import AiohttpTransport

        transport = AiohttpTransport(max_in_flight, keepalive_s=30.0)
    elif transport is None and backend != "httpx":
        raise ValueError(f"backend must be 'aiohttp' or 'httpx', not {backend!r}")
    return _Client(timeout=timeout, limits=limits, transport=transport, follow_redirects=False)


class _NoCookies(httpx.Cookies):
    """An SMS API needs no cookies: nothing is kept from answers (httpx would otherwise build a
    urllib cookie-jar request for every answer, a measurable share of a send's CPU)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Client(httpx.AsyncClient):
    """``httpx.AsyncClient`` that keeps no cookies."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("the run's HTTP client keeps no cookies")


# The request certainly did not reach the provider: safe to retry.
_NOT_SENT: tuple[type[BaseException], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Configuration errors: no request can ever succeed.
_CONFIG: tuple[type[BaseException], ...] = (httpx.UnsupportedProtocol, httpx.InvalidURL)


def transport_error_result(item: SendItem, exc: BaseException) -> SendResult:
    """Classify an exception raised while sending ``item``.

    * connect error / connect timeout / pool timeout → retryable, ``maybe_sent=False``;
    * unsupported scheme / invalid URL → permanent with ``pause`` (fix the configuration);
    * anything else (read/write timeout, read/write error, connection reset, server hung up,
      an answer that cannot be decoded, unknown ``OSError``) → retryable with ``maybe_sent=True``:
      the provider may have the request.
    """
    code = type(exc).__name__
    detail = str(exc) or code
    if isinstance(exc, _NOT_SENT):
        return SendResult(item.delivery_id, Outcome.RETRYABLE, code=code, detail=detail)
    if isinstance(exc, _CONFIG):
        return SendResult(item.delivery_id, Outcome.PERMANENT, code=code, detail=detail, pause=True)
    return SendResult(item.delivery_id, Outcome.RETRYABLE, code=code, detail=detail, maybe_sent=True)


#: Exceptions a gateway's ``send`` catches and classifies with ``transport_error_result``
#: (``httpx.RequestError`` covers transport errors and an undecodable answer body).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.RequestError, httpx.InvalidURL, OSError, asyncio.TimeoutError)

#: ``TRANSPORT_ERRORS`` and an error answer (``LookupError``) of a query or pull request.
QUERY_ERRORS: tuple[type[Exception], ...] = (LookupError, *TRANSPORT_ERRORS)

def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    ``now`` is the current Unix time (for tests). Returns None when absent or unparsable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
