"""What was spent: billed parts × the price of the gateway that carried each delivery.

A delivery's parts count as

* **billed** when the provider accepted it (``accepted``, ``delivered``), and also when a carrier
  reported it undelivered afterwards if the provider bills ``submitted`` parts (see ``prices``);
* **open** while it may still be billed: ``queued``, ``retry_wait``, ``sending``, ``in_doubt``
  (budgets count these too: they are money about to be spent, or perhaps already spent);
* nothing when the provider never accepted it (failed at submit, expired, over the cap).

Test sends (``send --test-to``) are not counted, as in every report. A delivery counts in the
local month (day, …) its message started sending, and toward the group it was reached through
(the group name it records, as ``report --by group`` shows it) and every group above that one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.costs.money import ZERO, exact, month_range, yuan
from broadcast.costs.prices import PriceBook, price_var
from broadcast.db.audit_models import AuditEntry
from broadcast.db.cost_models import Budget
from broadcast.db.dispatch_models import (
    ACCEPTED,
    DELIVERED,
    FAILED,
    IN_DOUBT,
    QUEUED,
    RETRY_WAIT,
    SENDING,
    Delivery,
)
from broadcast.db.models import Group, Message
from broadcast.db.types import table
from broadcast.messages.channels import CHANNEL_GATEWAYS

__all__ = ["GroupTree", "PartsRow", "Spend", "any_budget", "load_budgets", "month_spend", "parts_rows", "spend_by",
           "undelivered_parts"]

deliveries_t = table(Delivery)
messages_t = table(Message)
groups_t = table(Group)
audit_t = table(AuditEntry)
budgets_t = table(Budget)

TAKEN = (ACCEPTED, DELIVERED)
OPEN = (QUEUED, RETRY_WAIT, SENDING, IN_DOUBT)


@dataclass(frozen=True)
class PartsRow:
    """SMS parts of one (group reached through, message, gateway)."""

    group: str
    message_id: int
    gateway: str
    taken: int  # accepted or delivered
    undelivered: int  # accepted, then reported undelivered by the carrier
    open: int  # queued, retrying, sending, in doubt


@dataclass
class Spend:
    billed_parts: int = 0
    cost: Decimal = ZERO  # of the billed parts through gateways with a price
    open_parts: int = 0
    open_cost: Decimal = ZERO
    unpriced_parts: int = 0  # billed or open through a gateway without a price
    unpriced_gateways: set[str] = field(default_factory=set)

    def add(self, row: PartsRow, book: PriceBook) -> None:
        billed = book.billed(row.gateway, row.taken, row.undelivered)
        self.billed_parts += billed
        self.open_parts += row.open
        price = book.price(row.gateway)
        if price is None:
            if billed or row.open:
                self.unpriced_parts += billed + row.open
                self.unpriced_gateways.add(row.gateway)
        else:
            self.cost += billed * price
            self.open_cost += row.open * price

    def merge(self, other: Spend) -> None:
        self.billed_parts += other.billed_parts
        self.cost += other.cost
        self.open_parts += other.open_parts
        self.open_cost += other.open_cost
        self.unpriced_parts += other.unpriced_parts
        self.unpriced_gateways |= other.unpriced_gateways

    @property
    def total(self) -> Decimal:
        """Billed and open: what a budget counts as spent."""
        return self.cost + self.open_cost

    def missing_prices(self) -> str | None:
        """``the price of gateway aliyun is not set (BROADCAST_PRICE_ALIYUN)`` or None."""
        if not self.unpriced_gateways:
            return None
        names = sorted(self.unpriced_gateways)
        return ("the price of gateway " + ", ".join(names) + " is not set ("
                + ", ".join(price_var(n) for n in names) + ")")

    def to_dict(self) -> dict[str, object]:
        return {"billed_sms": self.billed_parts, "cost": exact(self.cost), "open_sms": self.open_parts,
                "open_cost": exact(self.open_cost), "unpriced_sms": self.unpriced_parts,
                "unpriced_gateways": sorted(self.unpriced_gateways), "cost_text": self.text()}

    def text(self) -> str:
        out = yuan(self.cost) if self.billed_parts or not self.unpriced_parts else "cost unknown"
        if self.open_parts:
            out += f" (+ {yuan(self.open_cost)} in flight)"
        if self.unpriced_parts:
            out += f"; {self.unpriced_parts:,} SMS at no known price"
        return out


def undelivered_parts(conn: Connection, conds: Sequence[Any]) -> dict[tuple[str, int, str], int]:
    """(group, message, gateway) -> parts of deliveries the provider accepted and a carrier then
    reported undelivered (``failed`` with a ``sent_at``; a delivery refused at submit has none)."""
    d = deliveries_t
    dims = (d.c.group_name, d.c.message_id, d.c.gateway)
    rows = conn.execute(sa.select(*dims, sa.func.sum(d.c.parts))
                        .where(*conds, d.c.gateway.not_in(CHANNEL_GATEWAYS), d.c.status == FAILED, d.c.sent_at.is_not(None)).group_by(*dims))
    return {(g, m, gw): int(n or 0) for g, m, gw, n in rows}


def parts_rows(conn: Connection, conds: Sequence[Any], *, many: bool = False) -> list[PartsRow]:
    """The parts of the deliveries matching ``conds`` (real ones only), by (group, message, gateway).
    ``many``: a month's worth of messages: SQLite reads the covering report index (a lookup per
    row through the message index is 4× slower there)."""
    d = deliveries_t
    conds = [d.c.kind == "real", d.c.gateway.not_in(CHANNEL_GATEWAYS), *conds]  # channels beyond SMS cost nothing
    dims = (d.c.group_name, d.c.message_id, d.c.gateway)
    acc: dict[tuple[str, int, str], list[int]] = {}
    query = sa.select(*dims, d.c.status, sa.func.sum(d.c.parts)).where(*conds).group_by(*dims, d.c.status)
    if many:
        query = query.with_hint(d, "INDEXED BY ix_deliveries_report", "sqlite")
    for g, m, gw, status, n in conn.execute(query):
        slot = acc.setdefault((g, m, gw), [0, 0, 0])
        if status in TAKEN:
            slot[0] += int(n or 0)
        elif status in OPEN:
            slot[2] += int(n or 0)
    for key, n in undelivered_parts(conn, conds).items():
        acc.setdefault(key, [0, 0, 0])[1] += n
    return [PartsRow(g, m, gw, *v) for (g, m, gw), v in acc.items()]


def spend_by(rows: Iterable[PartsRow], book: PriceBook, key: Any) -> dict[Any, Spend]:
    """Fold parts rows into spend per ``key(row)``."""
    out: dict[Any, Spend] = {}
    for r in rows:
        out.setdefault(key(r), Spend()).add(r, book)
    return out


def started_in(month: date, tz: str) -> Any:
    """The ids of messages that started sending in the local ``month`` (a subquery)."""
    lo, hi = month_range(month, tz)
    m = messages_t
    return sa.select(m.c.id).where(m.c.started_at >= lo, m.c.started_at < hi)


def month_spend(conn: Connection, book: PriceBook, month: date) -> dict[str, Spend]:
    """Group reached through (name) -> spend of the deliveries of messages that started in ``month``."""
    rows = parts_rows(conn, [deliveries_t.c.message_id.in_(started_in(month, book.settings.timezone))], many=True)
    return spend_by(rows, book, lambda r: r.group)


def load_budgets(conn: Connection) -> dict[int, int]:
    """The budgets in force: group id -> monthly budget in fen."""
    return {int(g): int(f) for g, f in conn.execute(sa.select(budgets_t.c.group_id, budgets_t.c.monthly_fen))}


def any_budget(conn: Connection) -> bool:
    """Is any budget set? (Without one, nothing is checked: no cost to a send.)"""
    return conn.execute(sa.select(budgets_t.c.group_id).limit(1)).first() is not None


@dataclass
class GroupTree:
    """The groups as they are now: names, parents, and what lies above each. A delivery records the
    name its group had when it was sent; ``renamed`` (old name -> the name it was given, from the
    audit trail's ``group.rename`` entries) finds the group a renamed one became, so renaming a
    group mid-month does not take its spend out of its budget or its parent's."""

    names: dict[int, str]
    parents: dict[int, int | None]
    renamed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection) -> GroupTree:
        rows = conn.execute(sa.select(groups_t.c.id, groups_t.c.name, groups_t.c.parent_id)).all()
        renamed: dict[str, str] = {}
        for (details,) in conn.execute(sa.select(audit_t.c.details).where(audit_t.c.action == "group.rename")
                                       .order_by(audit_t.c.id)):
            d = json.loads(details)
            if isinstance(d, dict) and isinstance(d.get("old"), str) and isinstance(d.get("new"), str):
                renamed[d["old"]] = d["new"]
        return cls({i: n for i, n, _ in rows}, {i: p for i, _, p in rows}, renamed)

    def id_of(self, name: str) -> int | None:
        """The group a delivery's recorded name stands for now (following renames), or None."""
        if not hasattr(self, "_ids"):
            self._ids = {n: i for i, n in self.names.items()}
        seen: set[str] = set()
        while name not in self._ids and name in self.renamed and name not in seen:
            seen.add(name)
            name = self.renamed[name]
        return self._ids.get(name)

    def up(self, gid: int | None) -> list[int]:
        """``gid`` and every group above it, nearest first (a cycle is cut, never followed)."""
        out: list[int] = []
        while gid is not None and gid not in out:
            out.append(gid)
            gid = self.parents.get(gid)
        return out

    def below(self, gid: int) -> list[int]:
        """The sub-groups of ``gid``, at any depth."""
        return [g for g in self.names if g != gid and gid in self.up(g)]

    def roll_up(self, by_name: dict[str, Spend]) -> dict[int, Spend]:
        """Group id -> the spend of the group and all its sub-groups."""
        out: dict[int, Spend] = {}
        for name, spend in by_name.items():
            for gid in self.up(self.id_of(name)):
                out.setdefault(gid, Spend()).merge(spend)
        return out
