"""The receipt side of the gateway interface: push formats and pulling, as a gateway declares them.

A gateway that receives delivery reports by callback returns its push formats from
``Gateway.receipt_formats()``: name (the callback URL's last path segment, and the gateway logged in
the ``receipts`` table) -> ``Format`` (a parser of one ``Incoming`` callback, and the answer the
provider expects). The receipts endpoint (``broadcast.receipts.server``) serves every format of every
registered gateway, built-in or installed by entry point.

A gateway with a pull API implements ``Gateway.pull_receipts(candidates, now, pull)``: for the
deliveries still waiting (``Candidate``), it makes its requests through ``pull.call`` (which keeps
the request budget, paces them at ``Gateway.pull_rate`` and counts errors) and hands each report
to ``pull.add``. ``broadcast.receipts.pull`` records and applies them.

Statuses. ``Receipt.status`` is ``delivered`` or ``failed`` (final). Push gateways also report
intermediate steps, carried in the same type with status ``accepted`` (the SMSC took it) or
``buffered`` (the SMSC queued it), built with ``interim``: they are logged, and settle an
``in_doubt`` delivery as sent, but never move a delivery past ``accepted``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

from broadcast.gateways.base import Inbound, Receipt

__all__ = ["STATUSES", "BadCallback", "Candidate", "Forbidden", "Format", "Incoming", "InboundFormat", "Pull", "PullStopped", "interim",
           "json_body_format"]

ReceiptStatus = Literal["delivered", "failed", "accepted", "buffered"]
STATUSES: frozenset[str] = frozenset(("delivered", "failed", "accepted", "buffered"))


class BadCallback(ValueError):
    """The callback cannot be parsed (answered 400; nothing is recorded)."""

    status: int = 400  # the HTTP status answered (Forbidden below: 403)


class Forbidden(BadCallback):
    """The callback's signature does not verify (answered 403; nothing is recorded)."""

    status = 403


@dataclass(frozen=True)
class Incoming:
    """One callback, as the parsers see it (framework-free, so parsers are trivial to test)."""

    method: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # the path and raw query string as received (Twilio signs the exact URL it called)
    path: str = ""
    raw_query: str = ""

    def arg(self, name: str) -> str | None:
        """The first query (or form) value named ``name``."""
        for key, value in self.query:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class Format:
    """A gateway's push format: its parser and the answer the gateway expects."""

    parse: Callable[[Incoming], list[Receipt]]
    ack_body: bytes = b"OK"
    ack_media_type: str = "text/plain"


@dataclass(frozen=True)
class InboundFormat:
    """A gateway's push format for replies (mobile-originated messages): its parser and the answer
    the provider expects. Served by the receipts endpoint beside the receipt formats (the names of
    both kinds share one namespace: ``/<name>``). A parser raises ``BadCallback`` (400) or
    ``Forbidden`` (403) as receipt parsers do; the replies it returns are stored and taken in
    (``broadcast.twoway.intake``) before the answer is sent."""

    parse: Callable[[Incoming], list[Inbound]]
    ack_body: bytes = b"OK"
    ack_media_type: str = "text/plain"


def json_body_format(parse_body: Callable[[bytes], list[Receipt]], label: str, ack: object) -> Format:
    """A push format whose callback is a JSON body parsed by ``parse_body`` (a ``ValueError`` from it
    is a ``BadCallback`` prefixed with ``label``), answered with ``ack`` as compact UTF-8 JSON."""

    def parse(req: Incoming) -> list[Receipt]:
        try:
            return parse_body(req.body)
        except ValueError as exc:
            raise BadCallback(f"{label}: {exc}") from None

    body = json.dumps(ack, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Format(parse, body, "application/json; charset=utf-8")


def interim(delivery_id: int | None, provider_id: str | None, status: Literal["accepted", "buffered"],
            code: str | None, at: datetime) -> Receipt:
    """A non-final report (see the module docstring), in the ``Receipt`` type."""
    return Receipt(delivery_id, provider_id, cast(Any, status), code, at)


@dataclass(frozen=True)
class Candidate:
    """A delivery awaiting a receipt, as a pull sees it."""

    id: int
    gateway: str
    status: str  # "in_doubt" or "accepted"
    provider_id: str | None
    phone: str
    text: str
    sent_at: datetime | None


class PullStopped(Exception):
    """Raised by ``Pull.call`` (or a gateway) when the pull must stop: budget used up, or too many
    errors in a row. ``broadcast.receipts.pull`` catches it; a gateway lets it propagate."""


class Pull(Protocol):
    """What a gateway's ``pull_receipts`` is given (implemented by ``broadcast.receipts.pull``)."""

    @property
    def left(self) -> int:
        """Requests left in the budget."""

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` as one request within the budget; ``None`` on a provider
        (``LookupError``) or transport error, which is counted. Raises ``PullStopped``."""

    def charge(self, requests: int) -> None:
        """Count ``requests`` more requests made by the last ``call`` (one call that paged)."""

    def asked(self, n: int = 1) -> None:
        """Count deliveries asked about."""

    def add(self, receipt: Receipt, raw: dict[str, Any]) -> None:
        """One report, with the provider's data it came from (logged as the raw payload)."""

    def note(self, text: str) -> None:
        """Why this gateway was skipped or stopped (shown in the pull summary)."""
