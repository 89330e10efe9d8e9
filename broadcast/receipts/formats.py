"""Push formats: one parser per gateway's delivery-report callback, registered by name.

A format turns one HTTP callback (``Incoming``: method, query, headers, body — already bounded in
size by the server) into ``Receipt`` objects, and says what to answer. ``FORMATS`` maps the name
that appears in the callback URL (``/<name>`` or ``/<secret>/<name>``) to its ``Format``; the name
is also the gateway name logged in the ``receipts`` table. Every registered gateway (built-in or
installed by entry point) contributes its ``Gateway.receipt_formats()``; ``register`` adds more.

Statuses. ``Receipt.status`` is ``delivered`` or ``failed`` (final). Push gateways also report
intermediate steps, carried in the same type with status ``accepted`` (the SMSC took it, Kannel
type 8) or ``buffered`` (the SMSC queued it, Kannel types 4 and 32): they are logged, and settle
an ``in_doubt`` delivery as sent, but never move a delivery past ``accepted``.

A parser raises ``BadCallback`` for a request it cannot understand (answered 400, nothing logged).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from broadcast.gateways.push import (
    STATUSES,
    BadCallback,
    Forbidden,
    Format,
    InboundFormat,
    Incoming,
    ReceiptStatus,
    interim,
)
from broadcast.gateways.simple_receipts import KANNEL_TYPES, parse_kannel, parse_simulator

__all__ = ["FORMATS", "INBOUND_FORMATS", "KANNEL_TYPES", "STATUSES", "BadCallback", "Forbidden", "Format", "InboundFormat",
           "Incoming", "ReceiptStatus", "gateway_formats", "gateway_inbound_formats", "interim", "parse_kannel",
           "parse_simulator", "register"]

_EXTRA: dict[str, Format] = {}
_CACHE: dict[tuple[tuple[str, str], ...], dict[str, Format]] = {}


def gateway_formats() -> dict[str, Format]:
    """name -> Format of every registered gateway that loads (cached per set of registered gateways)."""
    from broadcast.errors import ConfigError
    from broadcast.gateways import registry

    key = tuple(sorted(registry.targets().items()))
    if key not in _CACHE:
        out: dict[str, Format] = {}
        for name in registry.names():
            try:
                out.update(registry.load(name).receipt_formats())
            except ConfigError:
                continue
        _CACHE.clear()
        _CACHE[key] = out
    return _CACHE[key]


_INBOUND_CACHE: dict[tuple[tuple[str, str], ...], dict[str, InboundFormat]] = {}


def gateway_inbound_formats() -> dict[str, InboundFormat]:
    """name -> InboundFormat (replies) of every registered gateway that loads; a name that is
    also a receipt format's is refused (one URL, one meaning)."""
    from broadcast.errors import ConfigError
    from broadcast.gateways import registry

    key = tuple(sorted(registry.targets().items()))
    if key not in _INBOUND_CACHE:
        out: dict[str, InboundFormat] = {}
        for name in registry.names():
            try:
                out.update(registry.load(name).inbound_formats())
            except ConfigError:
                continue
        clash = sorted(set(out) & set(gateway_formats()))
        if clash:
            raise ConfigError(f"reply format names also used by receipt formats: {', '.join(clash)}")
        _INBOUND_CACHE.clear()
        _INBOUND_CACHE[key] = out
    return _INBOUND_CACHE[key]


class _InboundFormats(Mapping[str, InboundFormat]):
    def __getitem__(self, name: str) -> InboundFormat:
        return gateway_inbound_formats()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(gateway_inbound_formats())

    def __len__(self) -> int:
        return len(gateway_inbound_formats())


#: format name (the callback URL's last path segment) -> InboundFormat, for replies.
INBOUND_FORMATS: Mapping[str, InboundFormat] = _InboundFormats()


class _Formats(Mapping[str, Format]):
    """The gateways' formats, then the ones added by ``register`` (which win)."""

    def _all(self) -> dict[str, Format]:
        return {**gateway_formats(), **_EXTRA}

    def __getitem__(self, name: str) -> Format:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: format name (the callback URL's last path segment, and the gateway logged) -> Format.
FORMATS: Mapping[str, Format] = _Formats()


def register(name: str, fmt: Format) -> None:
    """Add (or replace) a push format outside any gateway."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,49}", name):
        raise ValueError(f"invalid format name {name!r}")
    _EXTRA[name] = fmt
