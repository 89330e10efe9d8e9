"""Review and changes of existing messages: approve, reject (the two-person rule), cancel, edit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.clock import local
from broadcast.clock import now as clock_now
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.errors import ConflictError, InputError, StateError
from broadcast.messages.compose import freeze
from broadcast.messages.states import transition
from broadcast.messages.store import (
    EDITABLE,
    Created,
    MessageInfo,
    _info,
    _local_day,
    _require,
    category_of,
    check_for,
    initial_status,
    resolve_targets,
    source_text,
    targets_t,
)
from broadcast.messages.timing import first_send_time
from broadcast.workspace import Workspace

__all__ = ["approve_message", "cancel_message", "edit_message", "reject_message"]


AfterApproval = Callable[[Connection, list[int]], None]
"""Run in the approval's own transaction with the approved message ids (the budget check of
``broadcast.costs.guard``, which may hold them)."""


def approve_message(ws: Workspace, message_id: int, *, then: AfterApproval | None = None) -> MessageInfo:
    """Approve a pending message; the approver must not be its author. ``then``: more work in the
    same transaction, after the approval (it may hold the message)."""
    now = clock_now(ws.settings)
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, message_id)
        _two_person(ws, row, "approve")
        values: dict[str, object] = {"approver": ws.operator, "updated_at": now}
        if row.scheduled_at is None:  # as soon as possible: from now, past quiet hours
            values["send_after"] = first_send_time(ws.settings, now)
        transition(conn, message_id, "approved", **values)  # type: ignore[arg-type]
        note(conn, ws.operator, "message.approve", f"message:{message_id}", author=row.author,
             send_after=values.get("send_after") or row.send_after)
        if then is not None:
            then(conn, [message_id])
        return _info(conn, _require(conn, message_id))


def _two_person(ws: Workspace, row: sa.Row[Any], verb: str) -> None:
    if row.status != "pending_approval":
        raise StateError(
            f"cannot {verb} message {row.id}: it is {row.status}, not pending_approval",
            hint=f"see 'broadcast message show {row.id}'",
        )
    if row.author == ws.operator:
        raise ConflictError(
            f"{ws.operator} wrote message {row.id} and cannot {verb} it: a different operator must (two-person rule)",
            hint="the approver runs the command with their own BROADCAST_OPERATOR",
        )


def reject_message(ws: Workspace, message_id: int, reason: str) -> MessageInfo:
    reason = reason.strip()
    if not reason:
        raise InputError("give the reason for rejecting with --reason TEXT")
    now = clock_now(ws.settings)
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, message_id)
        _two_person(ws, row, "reject")
        transition(conn, message_id, "rejected", reason=f"rejected by {ws.operator}",
                   approver=ws.operator, reject_reason=reason, updated_at=now)
        note(conn, ws.operator, "message.reject", f"message:{message_id}", reason=reason)
        return _info(conn, _require(conn, message_id))


def cancel_message(ws: Workspace, message_id: int, reason: str | None = None) -> MessageInfo:
    with transaction(ws.engine, write=True) as conn:
        _require(conn, message_id)
        why = f"cancelled by {ws.operator}" + (f": {reason.strip()}" if reason and reason.strip() else "")
        previous = transition(conn, message_id, "cancelled", reason=why, updated_at=clock_now(ws.settings))
        note(conn, ws.operator, "message.cancel", f"message:{message_id}", was=previous,
             reason=(reason or "").strip())
        return _info(conn, _require(conn, message_id))


def edit_message(
    ws: Workspace,
    message_id: int,
    *,
    text: str | None = None,
    template: str | None = None,
    groups: Sequence[str] = (),
    all_: bool = False,
    at: datetime | None = None,
    category: str | None = None,
) -> Created:
    """Change a message before approval; the editor becomes its author and it goes (back) to
    pending_approval (approved directly when approval is not required)."""
    now = clock_now(ws.settings)
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, message_id)
        if row.status not in EDITABLE:
            raise StateError(
                f"cannot edit message {message_id}: it is {row.status} (only {', '.join(EDITABLE)} messages can be edited)",
                hint=f"cancel it with 'broadcast message cancel {message_id}' and create a new one",
            )
        if at is not None and at < now:
            raise InputError(f"--at {local(at, ws.settings.timezone):%Y-%m-%d %H:%M} is in the past")
        scheduled_at = at if at is not None else row.scheduled_at
        kind = category_of(category) if category else row.category
        values: dict[str, object] = {"author": ws.operator, "approver": None, "reject_reason": None,
                                     "over_budget_by": None, "over_budget_at": None,
                                     "category": kind, "scheduled_at": scheduled_at, "updated_at": now,
                                     "signature": ws.settings.signature}
        if text is not None or template is not None:
            source, tname = source_text(ws.settings, text, template)
            day = _local_day(ws, scheduled_at or now)
            values["body"] = freeze(source, day, source=f"template {tname!r}" if tname else "--text")
            values["template"] = tname
        if groups or all_:
            gids = resolve_targets(conn, groups, all_)
            conn.execute(targets_t.delete().where(targets_t.c.message_id == message_id))
            if gids:
                conn.execute(targets_t.insert(), [{"message_id": message_id, "group_id": g} for g in gids])
            values["target_all"] = all_
            values["to_phone"] = None  # new groups replace a message's one phone (an inbox reply)
        to = initial_status(ws)
        if scheduled_at is not None:
            values["send_after"] = first_send_time(ws.settings, scheduled_at)
        else:
            values["send_after"] = first_send_time(ws.settings, now) if to == "approved" else None
        transition(conn, message_id, to, reason=f"edited by {ws.operator}", **values)
        new = _require(conn, message_id)
        note(conn, ws.operator, "message.edit", f"message:{message_id}", status=to,
             changed=sorted(k for k in values if k not in ("updated_at", "author", "approver", "reject_reason",
                                                           "over_budget_by", "over_budget_at")),
             body=new.body, targets=list(groups), all=all_)
    return Created(message_id, to, check_for(ws.settings, new.body, new.category, new.signature))
