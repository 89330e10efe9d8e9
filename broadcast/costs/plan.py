"""A month's plan in the office's terms: "December: 23 sending days, 701 members, 16,123 SMS, ≈ ¥644.92".

The sending days come from the working calendar (``--on``, ``broadcast.calendar``); the audience is
the groups' members as they are now (opt-outs left out, one per phone); the SMS are the billable
parts of each day's text for each person, with the signature (``messages.billable``), through the
first configured gateway at its price (``BROADCAST_PRICE_<GATEWAY>``). With a series file the days
get its lines as ``schedule daily`` would place them (pinned lines on their dates, ``--on-skip``);
without one, each day is taken as one single-part SMS per person (the one-line daily thought), and
the plan says so. Budgets of the targeted groups (their sub-groups included) are set against the
month's spend so far plus the plan.
"""

from __future__ import annotations

import calendar as _calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa

from broadcast.calendar import SendingDays, calendar_for, parse_rule, sending_days
from broadcast.costs.budgets import BudgetLine, group_month_spend
from broadcast.costs.estimate import first_gateway
from broadcast.costs.money import exact, yuan
from broadcast.costs.prices import price_of, price_var
from broadcast.db.engine import transaction
from broadcast.db.models import Group
from broadcast.db.types import table
from broadcast.errors import InputError
from broadcast.messages.audience import AudienceMember, audience_of
from broadcast.messages.billable import billable_parts
from broadcast.messages.compose import freeze
from broadcast.messages.series_plan import parse_on_skip, plan_series
from broadcast.messages.store import resolve_targets
from broadcast.messages.templates import load_series
from broadcast.recipients.groups import subtree_ids
from broadcast.workspace import Workspace

__all__ = ["BudgetOutlook", "MonthPlan", "month_plan", "parse_month"]

groups_t = table(Group)


def parse_month(text: str) -> date:
    """``2026-12`` -> 2026-12-01; a one-line error otherwise."""
    try:
        year, month = (int(x) for x in text.strip().split("-"))
        return date(year, month, 1)
    except ValueError:
        raise InputError(f"--month must look like 2026-12, not {text!r}") from None


@dataclass
class BudgetOutlook:
    """A targeted group's budget: what it has spent this month, and what the plan adds."""

    line: BudgetLine
    planned_sms: int
    planned: Decimal | None

    @property
    def left(self) -> Decimal | None:
        if self.line.monthly is None or self.planned is None:
            return None
        return self.line.monthly - self.line.spent.total - self.planned

    def text(self) -> str:
        if self.line.monthly is None:
            return f"{self.line.group}: no budget"
        head = (f"{self.line.group}: budget {yuan(self.line.monthly, approx=False)}, spent {yuan(self.line.spent.total)}, "
                f"this plan {self.planned_sms:,} SMS")
        if self.planned is None or self.left is None:
            return head + " (price unknown)"
        state = f"{yuan(self.left)} left" if self.left >= 0 else f"OVER by {yuan(-self.left)}"
        return f"{head} {yuan(self.planned)}; {state}"

    def to_dict(self) -> dict[str, object]:
        return {"group": self.line.group, "monthly": exact(self.line.monthly), "spent": exact(self.line.spent.total),
                "planned_sms": self.planned_sms, "planned": exact(self.planned), "left": exact(self.left),
                "text": self.text()}


@dataclass
class MonthPlan:
    month: date
    rule: str
    days: SendingDays
    targets: list[str]
    people: int
    gateway: str
    price: Decimal | None
    series: str | None
    sms: int = 0  # billable SMS parts over the month
    per_day: list[tuple[date, int]] = field(default_factory=list)  # sending day -> SMS that day
    budgets: list[BudgetOutlook] = field(default_factory=list)

    @property
    def cost(self) -> Decimal | None:
        return None if self.price is None else self.sms * self.price

    def headline(self) -> str:
        """``December 2026: 23 sending days, 701 members, 16,123 SMS, ≈ ¥644.92``."""
        name = f"{_calendar.month_name[self.month.month]} {self.month.year}"
        cost = yuan(self.cost) if self.cost is not None else f"cost unknown ({price_var(self.gateway)} is not set)"
        return (f"{name}: {len(self.per_day)} sending days, {self.people:,} members, {self.sms:,} SMS, {cost}")

    def assumption(self) -> str:
        basis = (f"the lines of series {self.series}" if self.series
                 else "one single-part SMS per person per day (give --series for the real lines)")
        price = f"¥{exact(self.price)} an SMS" if self.price is not None else "no price"
        return f"{basis}; {self.rule}; through {self.gateway} at {price}; audience as it is now, opt-outs left out"

    def to_dict(self) -> dict[str, object]:
        return {"month": f"{self.month:%Y-%m}", "on": self.rule, "targets": self.targets, "members": self.people,
                "sending_days": len(self.per_day), "sms": self.sms, "gateway": self.gateway,
                "price": exact(self.price), "cost": exact(self.cost), "cost_text": yuan(self.cost) if self.cost else None,
                "series": self.series, "headline": self.headline(), "assumption": self.assumption(),
                "days": [{"date": d, "sms": n} for d, n in self.per_day],
                "skipped": [s.to_dict() for s in self.days.skipped],
                "working_weekends": [w.to_dict() for w in self.days.working_weekends],
                "budgets": [b.to_dict() for b in self.budgets]}


def month_plan(ws: Workspace, month: date, *, on: str = "every-day", groups: list[str] | None = None,
               all_: bool = False, series: str | None = None, on_skip: str = "next") -> MonthPlan:
    """The plan of ``month`` for a daily message to ``groups`` (or everyone) on the days ``on`` sends."""
    s = ws.settings
    rule, skip = parse_rule(on), parse_on_skip(on_skip)
    first = month.replace(day=1)
    last = first.replace(day=_calendar.monthrange(first.year, first.month)[1])
    cal = calendar_for(s, rule)
    days = sending_days(cal, rule, first, last)  # a year the calendar does not know is refused here
    texts: dict[date, str] = {}
    if series is not None:
        lines = load_series(s.templates_dir, series)
        pinned = {e.pinned for e in lines.entries if e.pinned is not None}
        free = [e for e in lines.entries if e.pinned is None]
        # as many lines as the month takes: one per sending day (next), one per day (drop), not
        # counting the days pinned lines hold; the rest of the series would go out next month
        room = sum(1 for d in (days.sending if skip == "next" else _days(first, last)) if d not in pinned)
        placed = plan_series(cal, rule, skip, first, [e for e in lines.entries if e.pinned is None or e.pinned <= last],
                             min(len(free), room)).placed
        texts = {p.day: freeze(p.line.text, p.day, source=f"series {lines.name}, line {p.line.number}")
                 for p in placed if p.day <= last}
    with transaction(ws.engine) as conn:
        gids = resolve_targets(conn, groups or [], all_)
        people = audience_of(conn, gids, all_)
        subtrees = {_name(conn, g): _subtree_names(conn, g) for g in gids}
    gateway = first_gateway(s)
    plan = MonthPlan(first, rule, days, [*(groups or [])] or ["all"], len(people), gateway, price_of(s, gateway),
                     series)
    share: dict[str, int] = {g: 0 for g in subtrees}
    day_list = sorted(texts) if series is not None else days.sending
    for day in day_list:
        if series is None:
            parts, by_group = len(people), _count_by_group(people)
        else:
            b = billable_parts(people, texts[day], s.signature)
            parts, by_group = b.parts, b.by_group
        plan.per_day.append((day, parts))
        plan.sms += parts
        for target, names in subtrees.items():
            share[target] += sum(n for g, n in by_group.items() if g in names)
    spend = group_month_spend(ws, first)
    for target, n in share.items():
        line = spend.get(target)
        if line is not None and line.monthly is not None:
            plan.budgets.append(BudgetOutlook(line, n, None if plan.price is None else n * plan.price))
    return plan


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _count_by_group(people: list[AudienceMember]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in people:
        out[p.group] = out.get(p.group, 0) + 1
    return out


def _name(conn: sa.Connection, gid: int) -> str:
    return str(conn.execute(sa.select(groups_t.c.name).where(groups_t.c.id == gid)).scalar_one())


def _subtree_names(conn: sa.Connection, gid: int) -> set[str]:
    tree = subtree_ids(conn, [gid])
    return set(conn.execute(sa.select(groups_t.c.name).where(groups_t.c.id.in_(sa.select(tree.c.id)))).scalars())


