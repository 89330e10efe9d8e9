"""The inbox report in the office's own words, over the items received in a period (local dates).

``收到意见建议N条，已立行立改N条，列入专项研究N条，重点督办N条``: received, then the items in each
category whatever their status (closed items keep theirs), every clause printed even at zero.
When some items are no-action or not yet triaged, ``，无需处理N条`` and ``，尚未分办N条`` follow, so the
clauses always add up to the received count. Per assigned branch: the items assigned to it, how
many are open (not closed) and overdue (not closed, due before today, local) and closed; items
assigned to no branch are one row of their own, so the rows add up to the received count too.
Every overdue item is listed. The .xlsx has the same, and every item of the period (text cells
through ``xlsx_cells``: a reply cannot become a formula).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.errors import InputError
from broadcast.twoway.inbox import EXPORT_COLUMNS, Item, export_rows, list_items, today
from broadcast.workspace import Workspace

__all__ = ["UNASSIGNED", "BranchRow", "InboxReport", "build", "headline", "write_xlsx"]

UNASSIGNED = "(未分办)"


@dataclass
class Counts:
    received: int = 0
    fix_now: int = 0  # 已立行立改
    study: int = 0  # 列入专项研究
    supervise: int = 0  # 重点督办
    no_action: int = 0  # 无需处理
    untriaged: int = 0  # new: not yet triaged
    open: int = 0  # not closed (new ones included)
    closed: int = 0
    overdue: int = 0


@dataclass
class BranchRow:
    branch: str  # the assigned branch, or UNASSIGNED
    items: int = 0
    open: int = 0
    overdue: int = 0
    closed: int = 0


@dataclass
class InboxReport:
    since: date | None
    until: date | None
    today: date
    counts: Counts
    headline: str
    branches: list[BranchRow] = field(default_factory=list)
    overdue: list[Item] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "today": self.today, "headline": self.headline,
                "counts": asdict(self.counts), "branches": [asdict(b) for b in self.branches],
                "overdue": [i.to_dict() for i in self.overdue]}


def headline(c: Counts) -> str:
    text = (f"收到意见建议{c.received}条，已立行立改{c.fix_now}条，列入专项研究{c.study}条，"
            f"重点督办{c.supervise}条")
    if c.no_action:
        text += f"，无需处理{c.no_action}条"
    if c.untriaged:
        text += f"，尚未分办{c.untriaged}条"
    return text


def build(ws: Workspace, since: date | None = None, until: date | None = None) -> InboxReport:
    """The report over the items received from ``since`` to ``until`` (local dates, both included)."""
    items = list_items(ws, since=since, until=until)
    c = Counts(received=len(items))
    rows: dict[str, BranchRow] = {}
    for i in items:
        if i.category == "fix-now":
            c.fix_now += 1
        elif i.category == "study":
            c.study += 1
        elif i.category == "supervise":
            c.supervise += 1
        elif i.category == "no-action":
            c.no_action += 1
        if i.status == "new":
            c.untriaged += 1
        row = rows.setdefault(i.assigned or UNASSIGNED, BranchRow(i.assigned or UNASSIGNED))
        row.items += 1
        if i.status == "closed":
            c.closed += 1
            row.closed += 1
        else:
            c.open += 1
            row.open += 1
        if i.overdue:
            c.overdue += 1
            row.overdue += 1
    branches = sorted(rows.values(), key=lambda r: (r.branch == UNASSIGNED, r.branch))
    overdue = sorted((i for i in items if i.overdue), key=lambda i: (i.due_date, i.id))
    return InboxReport(since, until, today(ws), c, headline(c), branches, overdue, items)


def period_text(r: InboxReport) -> str:
    if r.since is None and r.until is None:
        return "all items"
    return f"received {r.since.isoformat() if r.since else '…'} to {r.until.isoformat() if r.until else '…'}"


def write_xlsx(ws: Workspace, r: InboxReport, path: Path) -> None:
    """The report as a workbook (summary, by branch, overdue, items), atomically; audited."""
    from openpyxl import Workbook

    from broadcast.recipients.files import atomic_writer, xlsx_cells

    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise InputError(f"{path.name}: the report is written as .xlsx", hint="give a file name ending in .xlsx")
    wb = Workbook(write_only=True)
    summary = wb.create_sheet("summary")
    summary.append(xlsx_cells(summary, [r.headline]))
    summary.append(xlsx_cells(summary, ["period", period_text(r)]))
    summary.append(xlsx_cells(summary, ["today", r.today.isoformat()]))
    for k, v in asdict(r.counts).items():
        summary.append(xlsx_cells(summary, [k, v]))
    by = wb.create_sheet("by branch")
    by.append(xlsx_cells(by, ["branch", "items", "open", "overdue", "closed"]))
    for b in r.branches:
        by.append(xlsx_cells(by, [b.branch, b.items, b.open, b.overdue, b.closed]))
    late = wb.create_sheet("overdue")
    late.append(xlsx_cells(late, list(EXPORT_COLUMNS)))
    for row in export_rows(ws, r.overdue):
        late.append(xlsx_cells(late, row))
    every = wb.create_sheet("items")
    every.append(xlsx_cells(every, list(EXPORT_COLUMNS)))
    for row in export_rows(ws, r.items):
        every.append(xlsx_cells(every, row))
    with atomic_writer(path) as tmp:
        wb.save(tmp)
        with transaction(ws.engine, write=True) as conn:
            note(conn, ws.operator, "inbox.report_export", f"file:{path.name}", rows=len(r.items),
                 since=r.since.isoformat() if r.since else None, until=r.until.isoformat() if r.until else None)
