"""A lane: one gateway as a send pass uses it — its batch size, what a pass may hold, its shared
rate limits, the per-number cap and reply codes — for one channel (``sms``: the SMS gateway in use,
which a failover replaces; or a channel beyond SMS, ``channel_pass``). A dispatcher has the SMS
lane and, while a message on other channels is sent, a lane per channel; their passes run side by
side, each on its own lane."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broadcast.dispatch.cap import apply_cap
from broadcast.dispatch.ledger import Claimed
from broadcast.dispatch.policies import PerNumberCap, effective_rate, effective_request_rate
from broadcast.dispatch.shared_rate import SharedLimiter
from broadcast.gateways.base import Gateway
from broadcast.gateways.reply_codes import extension_code
from broadcast.messages.checks import wrap_signature
from broadcast.workspace import Workspace


@dataclass
class Lane:
    gateway: Gateway
    name: str
    channel: str
    concurrency: int  # requests in flight
    max_batch: int
    hold_limit: int  # claimed and not yet recorded
    rate: float | None
    limiter: SharedLimiter | None
    req_limiter: SharedLimiter | None
    cap: PerNumberCap | None
    extension_digits: int

    @classmethod
    def of(cls, ws: Workspace, gateway: Gateway, concurrency: int, channel: str,
           run_db: Callable[..., Awaitable[Any]]) -> Lane:
        s, caps = ws.settings, gateway.capabilities
        name = caps.name
        max_batch = max(1, caps.max_batch)
        rate = effective_rate(ws, gateway)
        rps = effective_request_rate(ws, gateway)
        digits = s.reply_extension_digits
        return cls(
            gateway, name, channel, concurrency, max_batch,
            # claimed and not yet recorded: in flight (concurrency × batch), plus half as much again
            # of requests waiting for a worker and answers not yet committed: what a crash can leave
            # stranded (of it, only rows stamped as started end in doubt). Less than 1.5x leaves
            # workers idle while a record and the next claim commit.
            concurrency * max_batch * 3 // 2, rate,
            # the send slots come with the start stamps (dispatch.stamps): no take ahead of them
            SharedLimiter(ws.engine, f"{name}:messages", rate, s.burst, run_db=run_db, take_ahead=False) if rate else None,
            SharedLimiter(ws.engine, f"{name}:requests", rps, run_db=run_db, take_ahead=False) if rps else None,
            PerNumberCap.in_force(s, caps),
            # replies told apart by the number they answer: a per-message code after our number,
            # only through a gateway that can append one (and only when the office turned it on)
            digits if 0 < digits <= caps.reply_extension else 0,
        )

    def extension_for(self, message_id: int) -> str:
        """The reply extension code this gateway appends to our number for this message (``""``
        when off or when it cannot): the message id's last digits, so a reply that comes back to
        that number is matched to this message, not to whatever was sent last."""
        return extension_code(message_id, self.extension_digits)

    def text_for(self, text: str, signature: str, frozen_with_signature: bool) -> str:
        """A frozen text as this gateway needs it: the signature is prepended for a gateway that
        does not add it itself, and removed for one that does (``frozen_with_signature``: the
        texts were frozen for a first gateway that does not add it)."""
        adds = self.gateway.capabilities.adds_signature
        if adds != frozen_with_signature:
            return text
        sig = wrap_signature(signature)
        if adds:
            return text[len(sig):] if sig and text.startswith(sig) else text
        return sig + text

    def batches(self, rows: list[Claimed]) -> list[list[Claimed]]:
        """Requests: up to max_batch rows of one message (and one text, unless the gateway mixes)."""
        groups: dict[tuple[int, str], list[Claimed]] = collections.defaultdict(list)
        mixed = self.gateway.capabilities.mixed_texts
        for c in rows:
            groups[(c.message_id, "" if mixed else c.text)].append(c)
        return [g[i:i + self.max_batch] for g in groups.values() for i in range(0, len(g), self.max_batch)]

    def over_cap(self, ws: Workspace, run_id: str, rows: list[Claimed],
                 now: datetime) -> tuple[list[Claimed], list[Claimed]]:
        """The per-number daily cap on claimed rows: (may send, failed with reason ``cap``)."""
        cap = self.cap
        assert cap is not None
        return apply_cap(ws.engine, run_id, self.name, rows, cap.limit, cap.day_start(now), now, cap.reason)
