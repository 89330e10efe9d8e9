"""Budgets in force: a message whose cost would take a group over its month is held.

**The budget** of a group (``broadcast group budget GROUP --monthly 300``) covers the group and all
its sub-groups: a parent's budget counts its branches' spend as well as its own, and a branch with
a budget of its own must keep within both.

**The month** of a message is the local calendar month it goes out in: when it is approved, the
month of the moment it may first be sent (``send_after``: each message of a daily series counts
in its own month); when it starts sending, the month it starts (its deliveries count in that
month in every report too).

**When it is checked**, for every budgeted group the message reaches (through any of its groups):

1. at approval (``message approve``, ``schedule approve``): the month's spend (billed, and in flight)
   + the estimates of the approved messages of that month due to go out before it + its own
   estimate must stay within the budget;
2. again when sending starts (``run``, ``worker``, ``send``): the month's spend + its exact cost
   (the parts just frozen, × the price of the gateway sending it) must stay within.

Otherwise it becomes ``held`` with the reason, and nothing of it is sent. It is released by a budget
change that makes room (every held message is checked again, in send order), or by another operator
than its author approving the overrun (``message approve ID --over-budget``), after which no budget
check holds it again. A budget that cannot be checked because a gateway's price is unknown holds the
message too, naming the setting. Every hold, release and approved overrun is in the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.clock import now as clock_now
from broadcast.config import Settings
from broadcast.costs.estimate import Estimate, estimate_in, first_gateway
from broadcast.costs.money import ZERO, exact, fen_to_yuan, month_of, yuan
from broadcast.costs.prices import PriceBook, price_var
from broadcast.costs.spend import GroupTree, Spend, any_budget, load_budgets, month_spend
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.db.models import Message
from broadcast.db.types import table
from broadcast.errors import ConflictError, StateError
from broadcast.messages.actions import approve_message
from broadcast.messages.states import transition
from broadcast.messages.store import MessageInfo, _info, _require
from broadcast.workspace import Workspace

__all__ = ["BudgetCheck", "Overrun", "after_approval", "any_budget", "approve", "approve_over_budget", "check_at_start",
           "held_among", "hold", "load_budgets", "recheck_held",
           "release_hint"]

messages_t = table(Message)
_BUDGET_LOCK_CLASS = 0x62630002  # "bc" 2: the advisory-lock namespace of budget decisions (1: the per-number cap)


@dataclass
class Overrun:
    group: str
    month: str  # 2026-12
    budget: Decimal
    spent: Decimal  # billed and in flight this month (messages that started)
    committed: Decimal  # approved messages of the month due before this one (at approval only)
    this: Decimal  # this message's share of the group
    problem: str | None = None  # a price is missing: the budget cannot be checked

    @property
    def over_by(self) -> Decimal:
        return self.spent + self.committed + self.this - self.budget

    def text(self) -> str:
        if self.problem:
            return f"cannot check the budget of {self.group} for {self.month}: {self.problem}"
        parts = [f"spent {yuan(self.spent)}"]
        if self.committed:
            parts.append(f"approved before it {yuan(self.committed)}")
        parts.append(f"this message {yuan(self.this)}")
        return (f"over budget: {self.group} {self.month}: " + " + ".join(parts)
                + f" > {yuan(self.budget, approx=False)} (over by {yuan(self.over_by)})")

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {k: exact(v) if isinstance(v, Decimal) else v for k, v in asdict(self).items()}
        data["over_by"] = exact(self.over_by)
        return data


def reason_for(overruns: list[Overrun]) -> str:
    """The held message's ``status_reason``: every budget it would overrun."""
    return "; ".join(o.text() for o in overruns)


def release_hint(message_id: int) -> str:
    return (f"raise the budget (broadcast group budget GROUP --monthly N) or have another operator than its author "
            f"approve the overrun (broadcast message approve {message_id} --over-budget)")


class BudgetCheck:
    """The budgets, the groups and the month's spend, read once for the checks of one transaction."""

    def __init__(self, conn: Connection, settings: Settings) -> None:
        self.conn, self.settings = conn, settings
        if conn.dialect.name == "postgresql" and any_budget(conn):
            # one budget decision at a time across processes (SQLite: the write lock already): two
            # workers starting two messages at once each see the other's frozen deliveries
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": _BUDGET_LOCK_CLASS})
        self.budgets = load_budgets(conn)
        self.tree = GroupTree.load(conn) if self.budgets else GroupTree({}, {})
        self.book = PriceBook(settings)
        self._spent: dict[date, dict[int, Spend]] = {}
        self._queue: dict[date, list[tuple[datetime, int]]] | None = None  # approved, not started: (send_after, id)
        self._estimates: dict[int, Estimate] = {}
        self.held: set[int] = set()  # held during this check: no longer counted as approved

    @property
    def active(self) -> bool:
        return bool(self.budgets)

    def shares(self, est: Estimate) -> dict[int, int]:
        """Budgeted group id -> the parts of ``est`` that count toward its budget."""
        out: dict[int, int] = {}
        for name, parts in est.by_group.items():
            for gid in self.tree.up(self.tree.id_of(name)):
                if gid in self.budgets:
                    out[gid] = out.get(gid, 0) + parts
        return out

    def spent(self, month: date) -> dict[int, Spend]:
        if month not in self._spent:
            self._spent[month] = self.tree.roll_up(month_spend(self.conn, self.book, month))
        return self._spent[month]

    def _approved(self) -> dict[date, list[tuple[datetime, int]]]:
        """Approved, unstarted messages by month: (send_after, id), read once."""
        if self._queue is None:
            self._queue = {}
            m = messages_t
            for mid, after in self.conn.execute(
                sa.select(m.c.id, m.c.send_after).where(m.c.status == "approved", m.c.started_at.is_(None),
                                                        m.c.send_after.is_not(None))
            ):
                self._queue.setdefault(month_of(after, self.settings.timezone), []).append((after, mid))
        return self._queue

    def released(self, message_id: int, at: datetime) -> None:
        """A held message approved again during this check: it counts for the ones after it."""
        queue = self._approved().setdefault(month_of(at, self.settings.timezone), [])
        if (at, message_id) not in queue:
            queue.append((at, message_id))

    def committed(self, month: date, before: tuple[datetime, int]) -> dict[int, Decimal]:
        """Budgeted group id -> estimates of the approved, unstarted messages of ``month`` due before ``before``."""
        out: dict[int, Decimal] = {}
        for key in self._approved().get(month, []):
            if key >= before or key[1] in self.held or key[1] == before[1]:
                continue
            est = self._estimates.get(key[1])
            if est is None:
                est = self._estimates[key[1]] = estimate_in(self.conn, self.settings, key[1])
            for gid, parts in self.shares(est).items():
                out[gid] = out.get(gid, ZERO) + (est.cost_of(parts) or ZERO)
        return out

    def check(self, message_id: int, month: date, est: Estimate, before: tuple[datetime, int] | None) -> list[Overrun]:
        """The budgets ``est`` would overrun in ``month`` (empty: it fits). ``before``: also count the
        approved messages due before this key (the approval check); None: only what started."""
        self._estimates[message_id] = est
        shares = self.shares(est)
        if not shares:
            return []
        spent = self.spent(month)
        committed = self.committed(month, before) if before is not None else {}
        label = month.strftime("%Y-%m")
        out = []
        for gid, parts in sorted(shares.items(), key=lambda kv: self.tree.names.get(kv[0], "")):
            budget = fen_to_yuan(self.budgets[gid])
            s = spent.get(gid, Spend())
            problem = s.missing_prices()
            if est.price is None:
                problem = f"the price of gateway {est.gateway} is not set ({price_var(est.gateway)})"
            over = Overrun(self.tree.names[gid], label, budget, s.total, committed.get(gid, ZERO),
                           est.cost_of(parts) or ZERO, problem)
            if problem or over.over_by > 0:
                out.append(over)
        return out


def hold(conn: Connection, ws: Workspace, message_id: int, overruns: list[Overrun], stage: str) -> str:
    """Move an approved message to ``held`` with the reason, audited; returns the reason."""
    reason = reason_for(overruns)
    transition(conn, message_id, "held", reason=reason, updated_at=clock_now(ws.settings))
    note(conn, ws.operator, "message.hold", f"message:{message_id}", stage=stage,
         overruns=[o.to_dict() for o in overruns])
    return reason


def _approved_in_order(conn: Connection, ids: list[int]) -> list[Any]:
    m = messages_t
    return list(conn.execute(sa.select(m.c.id, m.c.send_after, m.c.over_budget_by)
                        .where(m.c.id.in_(ids), m.c.status == "approved")
                        .order_by(m.c.send_after, m.c.id)))


def after_approval(ws: Workspace) -> Callable[[Connection, list[int]], None]:
    """The check at approval, for ``approve_message(then=...)`` and ``approve_schedule(then=...)``:
    each approved message that would overrun a budget of its month is held, in send order."""
    def then(conn: Connection, ids: list[int]) -> None:
        check = BudgetCheck(conn, ws.settings)
        if not check.active:
            return
        now = clock_now(ws.settings)
        for mid, after, override in _approved_in_order(conn, ids):
            if override:
                continue
            at = after or now
            est = estimate_in(conn, ws.settings, mid)
            over = check.check(mid, month_of(at, ws.settings.timezone), est, (at, mid))
            if over:
                hold(conn, ws, mid, over, "approval")
                check.held.add(mid)
    return then


def check_at_start(conn: Connection, ws: Workspace, message_id: int, est: Estimate, now: datetime) -> list[Overrun]:
    """The check when sending starts (its exact estimate from the frozen deliveries): the month's
    spend + this message within every budget it reaches? A message whose overrun was approved passes."""
    override = conn.execute(sa.select(messages_t.c.over_budget_by).where(messages_t.c.id == message_id)).scalar()
    if override:
        return []
    check = BudgetCheck(conn, ws.settings)
    return check.check(message_id, month_of(now, ws.settings.timezone), est, None) if check.active else []


def recheck_held(conn: Connection, ws: Workspace, why: str) -> list[int]:
    """Check every held message again, in send order, as at approval: those that fit now are
    approved again (audited as released, with ``why``); the others keep an up-to-date reason."""
    m = messages_t
    rows = conn.execute(sa.select(m.c.id, m.c.send_after).where(m.c.status == "held")
                        .order_by(m.c.send_after, m.c.id)).all()
    if not rows:
        return []
    check = BudgetCheck(conn, ws.settings)
    now = clock_now(ws.settings)
    released = []
    for mid, after in rows:
        at = after or now
        over = check.check(mid, month_of(at, ws.settings.timezone), estimate_in(conn, ws.settings, mid), (at, mid))
        if over:
            check.held.add(mid)
            conn.execute(m.update().where(m.c.id == mid).values(status_reason=reason_for(over)))
            continue
        transition(conn, mid, "approved", reason=f"released: {why}", updated_at=now)
        check.released(mid, at)
        note(conn, ws.operator, "message.release", f"message:{mid}", why=why)
        released.append(mid)
    return released


def held_among(ws: Workspace, ids: list[int]) -> dict[int, str]:
    """Which of these messages are held, and why."""
    m = messages_t
    with transaction(ws.engine) as conn:
        return {mid: reason or "" for mid, reason in conn.execute(
            sa.select(m.c.id, m.c.status_reason).where(m.c.id.in_(ids), m.c.status == "held").order_by(m.c.id))}


def approve(ws: Workspace, message_id: int) -> MessageInfo:
    """``message approve``: the two-person approval, then the budget check (it may hold the message)."""
    with transaction(ws.engine) as conn:
        row = _require(conn, message_id)
    if row.status == "held":
        raise StateError(f"message {message_id} is already approved and held: {row.status_reason}",
                         hint=release_hint(message_id))
    return approve_message(ws, message_id, then=after_approval(ws))


def approve_over_budget(ws: Workspace, message_id: int) -> MessageInfo:
    """``message approve ID --over-budget``: another operator than the author lets the message go
    over its budgets. A held message is approved again; a pending one is approved with it; an
    approved one keeps it for the check when sending starts. Audited as ``message.over_budget``."""
    now = clock_now(ws.settings)
    with transaction(ws.engine) as conn:
        row = _require(conn, message_id)
    if row.status == "pending_approval":  # the approval and the overrun at once, in one transaction
        def mark(conn: Connection, ids: list[int]) -> None:
            _mark_override(conn, ws, message_id, row.author, None, now)

        return approve_message(ws, message_id, then=mark)
    with transaction(ws.engine, write=True) as conn:
        row = _require(conn, message_id)
        if row.status not in ("held", "approved"):
            raise StateError(f"cannot approve message {message_id} over budget: it is {row.status}",
                             hint=f"see 'broadcast message show {message_id}'")
        _mark_override(conn, ws, message_id, row.author, row.status_reason if row.status == "held" else None, now)
        if row.status == "held":
            transition(conn, message_id, "approved", reason=f"overrun approved by {ws.operator}", updated_at=now)
        return _info(conn, _require(conn, message_id))


def _mark_override(conn: Connection, ws: Workspace, message_id: int, author: str, held: str | None,
                   now: datetime) -> None:
    if author == ws.operator:
        raise ConflictError(
            f"{ws.operator} wrote message {message_id} and cannot approve its overrun: a different operator must "
            "(two-person rule)",
            hint="the approver runs the command with their own BROADCAST_OPERATOR",
        )
    est = estimate_in(conn, ws.settings, message_id, first_gateway(ws.settings))
    conn.execute(messages_t.update().where(messages_t.c.id == message_id)
                 .values(over_budget_by=ws.operator, over_budget_at=now))
    note(conn, ws.operator, "message.over_budget", f"message:{message_id}", author=author, held=held,
         estimate=est.to_dict())
