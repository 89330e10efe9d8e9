"""Replies that arrive in parts: joined into one before they are handed on (CMPP DELIVER, SMPP deliver_sm).

A handset splits a long reply into SMS parts, each carrying a concatenation element in its user
data header — ``00 03 ref total n`` (8-bit reference) or ``08 04 ref ref total n`` (16-bit) — or, in
SMPP, the ``sar_msg_ref_num`` / ``sar_total_segments`` / ``sar_segment_seqnum`` TLVs. The link
answers every part at once (the server must not wait for the handset's other parts); the parts are
held here, keyed by (sender, our number, reference, total), and handed on as one ``Inbound`` when
the last one arrives: the text joined in part order, the raw PDUs joined in the same order (each
PDU carries its own length, so they can be told apart again), the provider id of the first part.

Parts that never complete are not dropped: after ``timeout_s`` from the first part, what arrived is
handed on with ``incomplete`` set and each missing part shown as ``[…]`` in the text. Parts are held
in memory only: a process that dies while holding some loses those (the server was answered) — the
window is the join timeout, ten seconds unless set.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broadcast.gateways.base import Inbound

__all__ = ["MISSING", "Joiner", "MoPart", "concatenation"]

MISSING = "[…]"  # where a part that never came would be


@dataclass(frozen=True)
class MoPart:
    """One part of a concatenated reply: ``inbound`` is the part alone (its text, its raw PDU)."""

    inbound: Inbound
    ref: int
    total: int
    number: int  # 1-based


def concatenation(udh: bytes) -> tuple[int, int, int] | None:
    """``(ref, total, number)`` from a user data header (its length octet first), or None when it has
    no well-formed concatenation element (IEI 0x00, 8-bit reference; 0x08, 16-bit reference)."""
    if not udh:
        return None
    end, i = min(len(udh), 1 + udh[0]), 1
    while i + 2 <= end:
        iei, size = udh[i], udh[i + 1]
        value = udh[i + 2:i + 2 + size]
        if len(value) < size:
            return None
        if (iei, size) == (0x00, 3):
            ref, total, number = value[0], value[1], value[2]
        elif (iei, size) == (0x08, 4):
            ref, total, number = (value[0] << 8 | value[1]) | 0x10000, value[2], value[3]  # its own namespace
        else:
            i += 2 + size
            continue
        return (ref, total, number) if 1 <= number <= total else None
    return None


@dataclass
class _Held:
    first_at: float
    parts: dict[int, Inbound] = field(default_factory=dict)


class Joiner:
    """The parts held for one link's gateway (``SessionGateway``)."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s, self.clock = timeout_s, clock
        self._held: dict[tuple[str, str, int, int], _Held] = {}
        self._done: dict[tuple[str, str, int, int], float] = {}  # joined lately: a part sent again is not a new reply

    def __len__(self) -> int:
        return len(self._held)

    def add(self, part: MoPart) -> Inbound | None:
        """The whole reply when ``part`` completes it, else None (held; a repeated part is ignored)."""
        if part.total <= 1:
            return part.inbound
        key = (part.inbound.phone, part.inbound.to, part.ref, part.total)
        if key in self._done and key not in self._held:
            if self._done[key] > self.clock() - self.timeout_s:
                return None  # the server sent a part again (its answer was lost): the reply is already whole
            del self._done[key]
        held = self._held.setdefault(key, _Held(self.clock()))
        held.parts.setdefault(part.number, part.inbound)
        if len(held.parts) < part.total:
            return None
        del self._held[key]
        self._done[key] = self.clock()
        return _joined(held, part.total)

    def expired(self) -> list[Inbound]:
        """Replies whose first part came ``timeout_s`` ago or more: handed on as they are (incomplete)."""
        due = self.clock() - self.timeout_s
        for k in [k for k, at in self._done.items() if at <= due]:
            del self._done[k]
        keys = [k for k, h in self._held.items() if h.first_at <= due]
        return [_joined(self._held.pop(k), k[3]) for k in keys]

    def next_due(self) -> float | None:
        """When (on ``clock``) the oldest held reply is due, if any is held."""
        return min((h.first_at for h in self._held.values()), default=None) if self._held else None

    def drain(self) -> list[Inbound]:
        """Everything held, handed on now (the link is closing)."""
        out = [_joined(h, k[3]) for k, h in self._held.items()]
        self._held.clear()
        return out


def _joined(held: _Held, total: int) -> Inbound:
    numbers = sorted(held.parts)
    first = held.parts[numbers[0]]
    text = "".join(held.parts[n].text if n in held.parts else MISSING for n in range(1, total + 1))
    raw = b"".join(held.parts[n].raw for n in numbers)
    return dataclasses.replace(first, text=text, raw=raw, incomplete=len(numbers) < total)
