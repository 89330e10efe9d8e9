"""Monthly budgets of groups: set, remove, show, and a month's spend against them.

``broadcast group budget GROUP --monthly 300`` sets what GROUP and all its sub-groups may spend in
one local calendar month (in yuan, kept in fen); ``--remove`` takes it away. Every change is
audited (``budget.set``, ``budget.remove``) and checks the held messages again in the same
transaction (``guard.recheck_held``): those that fit now are released.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.clock import now as clock_now
from broadcast.costs.money import exact, fen_to_yuan, month_of, parse_budget, yuan
from broadcast.costs.prices import PriceBook
from broadcast.costs.spend import GroupTree, Spend, budgets_t, load_budgets, month_spend
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.errors import InputError
from broadcast.recipients.groups import clean_group_name, group_id
from broadcast.workspace import Workspace

__all__ = ["BudgetLine", "BudgetSet", "budget_lines", "group_month_spend", "list_budgets", "remove_budget",
           "set_budget", "show_budget", "yuan"]


@dataclass
class BudgetLine:
    """A group's spend in one month against its budget (its sub-groups' spend included)."""

    group: str
    month: str  # 2026-12
    monthly: Decimal | None  # yuan; None: no budget
    spent: Spend
    subgroups: int = 0

    @property
    def left(self) -> Decimal | None:
        return None if self.monthly is None else self.monthly - self.spent.total

    @property
    def percent(self) -> float | None:
        if not self.monthly:
            return None
        return round(float(100 * self.spent.total / self.monthly), 1)

    def text(self) -> str:
        spent = self.spent.text()
        if self.monthly is None:
            return f"{self.group} {self.month}: spent {spent}; no budget"
        left = self.left or Decimal(0)
        state = f"{yuan(left)} left" if left >= 0 else f"OVER by {yuan(-left)}"
        return (f"{self.group} {self.month}: spent {spent} of {yuan(self.monthly, approx=False)}"
                + (f" ({self.percent:.1f} %)" if self.percent is not None else "") + f"; {state}")

    def to_dict(self) -> dict[str, object]:
        return {"group": self.group, "month": self.month, "monthly": exact(self.monthly), "spent": self.spent.to_dict(),
                "left": exact(self.left), "percent": self.percent, "subgroups": self.subgroups, "text": self.text()}


@dataclass
class BudgetSet:
    line: BudgetLine
    previous: Decimal | None
    released: list[int] = field(default_factory=list)  # held messages released by the change

    def to_dict(self) -> dict[str, object]:
        return {**self.line.to_dict(), "previous": exact(self.previous), "released": self.released}


def budget_lines(conn: Connection, book: PriceBook, month: date, only: list[int] | None = None,
                 budgeted: bool = True, spent_by_name: dict[str, Spend] | None = None) -> list[BudgetLine]:
    """Each budgeted group's (or each of ``only``'s) spend in ``month`` against its budget.
    ``spent_by_name``: the month's spend per group reached through, when the caller has it already."""
    budgets = load_budgets(conn)
    if only is None and budgeted and not budgets:
        return []
    tree = GroupTree.load(conn)
    spent = tree.roll_up(month_spend(conn, book, month) if spent_by_name is None else spent_by_name)
    ids = only if only is not None else (list(budgets) if budgeted else list(tree.names))
    label = month.strftime("%Y-%m")
    lines = [BudgetLine(tree.names[g], label, fen_to_yuan(budgets[g]) if g in budgets else None,
                        spent.get(g, Spend()), len(tree.below(g))) for g in ids if g in tree.names]
    return sorted(lines, key=lambda b: b.group)


def group_month_spend(ws: Workspace, month: date) -> dict[str, BudgetLine]:
    """Every group's spend in the local ``month`` (its sub-groups included), with its budget if any:
    group name -> line. For a month plan or a dashboard."""
    with transaction(ws.engine) as conn:
        return {b.group: b for b in budget_lines(conn, PriceBook(ws.settings), month, budgeted=False)}


def show_budget(ws: Workspace, group: str, month: date | None = None) -> BudgetLine:
    name = clean_group_name(group)
    month = month or month_of(clock_now(ws.settings), ws.settings.timezone)
    with transaction(ws.engine) as conn:
        return budget_lines(conn, PriceBook(ws.settings), month, only=[group_id(conn, name)])[0]


def list_budgets(ws: Workspace, month: date | None = None) -> list[BudgetLine]:
    """Every budgeted group's spend in ``month`` (default: the current local month) against its budget."""
    month = month or month_of(clock_now(ws.settings), ws.settings.timezone)
    with transaction(ws.engine) as conn:
        return budget_lines(conn, PriceBook(ws.settings), month)


def set_budget(ws: Workspace, group: str, monthly: str) -> BudgetSet:
    """Set GROUP's monthly budget (yuan, as typed: ``300``, ``300.50``); held messages that fit now are released."""
    fen = parse_budget(monthly)
    return _change(ws, group, fen)


def remove_budget(ws: Workspace, group: str) -> BudgetSet:
    return _change(ws, group, None)


def _change(ws: Workspace, group: str, fen: int | None) -> BudgetSet:
    name = clean_group_name(group)
    now = clock_now(ws.settings)
    with transaction(ws.engine, write=True) as conn:
        gid = group_id(conn, name)
        old = conn.execute(sa.select(budgets_t.c.monthly_fen).where(budgets_t.c.group_id == gid)).scalar()
        previous = None if old is None else fen_to_yuan(old)
        if fen is None:
            if old is None:
                raise InputError(f"group {name!r} has no budget to remove", hint=f"see 'broadcast group budget {name}'")
            conn.execute(budgets_t.delete().where(budgets_t.c.group_id == gid))
            note(conn, ws.operator, "budget.remove", f"group:{name}", previous=exact(previous))
            why = f"budget of {name} removed by {ws.operator}"
        else:
            values = dict(monthly_fen=fen, set_by=ws.operator, set_at=now)
            if old is None:
                conn.execute(budgets_t.insert().values(group_id=gid, **values))
            else:
                conn.execute(budgets_t.update().where(budgets_t.c.group_id == gid).values(**values))
            note(conn, ws.operator, "budget.set", f"group:{name}", monthly=exact(fen_to_yuan(fen)),
                 previous=exact(previous))
            why = f"budget of {name} set to {yuan(fen_to_yuan(fen), approx=False)} by {ws.operator}"
        from broadcast.costs.guard import recheck_held  # the checks: only when a budget changes

        released = recheck_held(conn, ws, why)
        line = budget_lines(conn, PriceBook(ws.settings), month_of(now, ws.settings.timezone), only=[gid])[0]
    return BudgetSet(line, previous, released)
