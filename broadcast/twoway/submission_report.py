"""The submissions report: per branch, how many lines were handed in and what became of them.

``submitted`` counts every submission (SMS and import); ``accepted``, ``rejected`` and
``pending`` split them by the office's decision; ``used`` counts the accepted ones whose message
has been sent. The headline is the office's sentence: "65 organisations, 143 lines submitted,
31 used". The branches listed are those with a submitter or a submission (so a branch with a
submitter and nothing handed in shows its zeros). Optional bounds take submissions by the local
day they came in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from broadcast.clock import at_local
from broadcast.db.engine import transaction
from broadcast.recipients.files import atomic_writer, write_rows
from broadcast.recipients.groups import groups_t, memberships_t
from broadcast.twoway.submissions import messages_t, submissions_t
from broadcast.workspace import Workspace

COLUMNS = ("branch", "submitters", "submitted", "accepted", "rejected", "pending", "used")
HEADERS = ("支部", "投稿人", "投稿", "采用", "未采用", "待审", "已发送")


@dataclass
class BranchCounts:
    branch: str
    submitters: int = 0
    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    used: int = 0

    def row(self) -> list[Any]:
        return [getattr(self, c) for c in COLUMNS]


@dataclass
class SubmissionReport:
    headline: str
    since: date | None
    until: date | None
    totals: BranchCounts
    branches: list[BranchCounts] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def submission_report(ws: Workspace, *, since: date | None = None, until: date | None = None) -> SubmissionReport:
    """Counts per branch (see the module doc); ``since``/``until`` are local days, inclusive."""
    s = submissions_t
    tz = ws.settings.timezone
    conds = []
    if since is not None:
        conds.append(s.c.created_at >= at_local(since, time.min, tz))
    if until is not None:
        conds.append(s.c.created_at < at_local(until + timedelta(days=1), time.min, tz))
    status_count = {
        st: sa.func.sum(sa.case((s.c.status == st, 1), else_=0)) for st in ("accepted", "rejected", "pending")
    }
    used = sa.func.sum(sa.case(((s.c.status == "accepted") & (messages_t.c.status == "sent"), 1), else_=0))
    query = (
        sa.select(s.c.group_id, sa.func.count(), status_count["accepted"], status_count["rejected"],
                  status_count["pending"], used)
        .outerjoin(messages_t, messages_t.c.id == s.c.message_id)
        .where(*conds).group_by(s.c.group_id)
    )
    with transaction(ws.engine) as conn:
        names: dict[int, str] = {i: n for i, n in conn.execute(sa.select(groups_t.c.id, groups_t.c.name))}
        counts: dict[int | None, BranchCounts] = {}
        for gid, n in conn.execute(
            sa.select(memberships_t.c.group_id, sa.func.count()).where(memberships_t.c.submitter.is_(True))
            .group_by(memberships_t.c.group_id)
        ):
            counts[gid] = BranchCounts(names[gid], submitters=n)
        for gid, n, acc, rej, pend, use in conn.execute(query):
            b = counts.setdefault(gid, BranchCounts(names.get(gid, "(no branch)") if gid is not None else "(no branch)"))
            b.submitted, b.accepted, b.rejected, b.pending, b.used = n, acc or 0, rej or 0, pend or 0, use or 0
    branches = sorted(counts.values(), key=lambda b: (-b.submitted, b.branch))
    totals = BranchCounts("total")
    for b in branches:
        for c in COLUMNS[1:]:
            setattr(totals, c, getattr(totals, c) + getattr(b, c))
    orgs = sum(1 for gid in counts if gid is not None)
    headline = (f"{orgs} organisation{'s' if orgs != 1 else ''}, {totals.submitted} line"
                f"{'s' if totals.submitted != 1 else ''} submitted, {totals.used} used")
    return SubmissionReport(headline, since, until, totals, branches)


def write_report(report: SubmissionReport, path: str | Path) -> int:
    """Write the report's table (Chinese headers, a total row) to .xlsx or .csv, atomically;
    text cells are made inert for spreadsheets (``files.xlsx_cells`` / ``spreadsheet_safe``)."""
    path = Path(path)
    rows = [b.row() for b in report.branches] + [["合计", *report.totals.row()[1:]]]
    with atomic_writer(path) as tmp:
        return write_rows(tmp, path.suffix, HEADERS, rows, sheet="投稿统计")
