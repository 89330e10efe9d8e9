"""Message states and the one table of allowed transitions.

::

    draft ─▶ pending_approval ─▶ approved ─▶ sending ─▶ sent
               │    ▲                │  ▲       │  ▲
               ▼    │ (edit)         ▼  │       ▼  │
            rejected                 paused ◀───┘  │   (resume: paused → approved or sending)
                                        └──────────┘
    cancelled  from draft, pending_approval, approved, held, paused, sending (stops what has not left)
    expired    from pending_approval, approved, held, paused (too late: BROADCAST_MAX_LATENESS)
    held       from approved: its estimated cost would take a group over its monthly budget
               (``broadcast.costs.guard``, at approval and again when sending starts); back to
               approved when a budget change makes room or another operator approves the overrun,
               or to pending_approval by an edit

``sent``, ``cancelled`` and ``expired`` are final. Every status change goes through
:func:`transition`, a compare-and-set ``UPDATE``: a concurrent change makes it fail cleanly.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from broadcast.clock import now as clock_now
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.errors import ConflictError, NotFoundError, StateError

__all__ = ["ACTIVE", "FINAL", "STATES", "TRANSITIONS", "can_transition", "set_status", "transition"]

messages_t = table(Message)

TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"pending_approval", "approved", "cancelled"}),
    "pending_approval": frozenset({"approved", "rejected", "cancelled", "expired", "pending_approval"}),
    "rejected": frozenset({"pending_approval", "approved", "cancelled"}),
    "approved": frozenset({"sending", "held", "paused", "cancelled", "expired"}),
    "held": frozenset({"approved", "pending_approval", "cancelled", "expired"}),
    "sending": frozenset({"sent", "paused", "cancelled"}),
    "paused": frozenset({"approved", "sending", "cancelled", "expired"}),
    "sent": frozenset(),
    "cancelled": frozenset(),
    "expired": frozenset(),
}
"""status -> statuses it may move to (``pending_approval → pending_approval``: an edit resubmits)."""

STATES: tuple[str, ...] = tuple(TRANSITIONS)
FINAL: frozenset[str] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE: frozenset[str] = frozenset(STATES) - FINAL

_VERBS = {
    "cancelled": "cancel", "approved": "approve", "rejected": "reject", "expired": "expire",
    "sending": "start sending", "sent": "mark as sent", "paused": "pause", "pending_approval": "submit",
    "held": "hold",
}


def can_transition(current: str, to: str) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def transition(conn: Connection, message_id: int, to: str, *, reason: str | None = None, **values: Any) -> str:
    """Move message ``message_id`` to status ``to`` inside the caller's transaction, setting
    ``status_reason`` (when given) and any other ``values``. Returns the previous status.
    Raises NotFoundError, StateError (not allowed from the current status) or ConflictError
    (the status changed under us)."""
    if to not in TRANSITIONS:
        raise ValueError(f"unknown message status {to!r}")
    current = conn.execute(sa.select(messages_t.c.status).where(messages_t.c.id == message_id)).scalar_one_or_none()
    if current is None:
        raise NotFoundError(f"no message {message_id}", hint="see 'broadcast message list'")
    if not can_transition(current, to):
        raise StateError(
            f"cannot {_VERBS.get(to, to)} message {message_id}: it is {current}"
            + (f" (from {current} it can become: {', '.join(sorted(TRANSITIONS[current]))})" if TRANSITIONS[current] else ""),
            hint=f"see 'broadcast message show {message_id}'",
        )
    if reason is not None:
        values["status_reason"] = reason
    values.setdefault("updated_at", clock_now())
    done = conn.execute(
        messages_t.update()
        .where(messages_t.c.id == message_id, messages_t.c.status == current)
        .values(status=to, **values)
    ).rowcount
    if done != 1:
        raise ConflictError(f"message {message_id} changed while being updated; try again")
    return str(current)


def set_status(engine: Engine, message_id: int, to: str, *, reason: str | None = None, **values: Any) -> str:
    """:func:`transition` in its own write transaction."""
    with transaction(engine, write=True) as conn:
        return transition(conn, message_id, to, reason=reason, **values)
