"""Importing branch submissions from a spreadsheet: columns 支部 (branch), 内容 (text) and an
optional 日期 (the day wanted), in the files the member import reads (.xlsx; .csv/.tsv/.txt in
UTF-8, GB18030/GBK or UTF-16, with or without a BOM; :mod:`broadcast.recipients.tables`).

Every row is checked: the branch must exist, the text must be there and usable as a daily line
(``submissions.BLOCKING`` check codes), the date must be a date and not past. Any bad row
rejects the whole file: each bad row is reported with its row number, column and value, and
nothing is written, so the office fixes the file and imports it again. A row the database
already holds (same branch, text and day) is counted as ``already`` and not added again, so
importing the same file twice adds nothing; the same row twice in one file is one submission.
All of it is one transaction.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from broadcast.clock import local
from broadcast.clock import now as clock_now
from broadcast.db.audit_chain import note
from broadcast.db.engine import transaction
from broadcast.errors import ImportFileError, InputError
from broadcast.messages.store import check_for
from broadcast.recipients.files import unescape_cell
from broadcast.recipients.groups import clean_group_name, groups_t
from broadcast.recipients.importer import file_sha256
from broadcast.recipients.tables import HEADER_SCAN_ROWS, normalize_header, open_table
from broadcast.twoway.submissions import as_body, blocking_problem, submissions_t
from broadcast.workspace import Workspace

ALIASES: dict[str, tuple[str, ...]] = {
    "group": ("支部", "所属支部", "党支部", "所在支部", "党组织", "组织", "单位", "branch", "group", "organisation",
              "organization"),
    "text": ("内容", "投稿内容", "稿件", "正文", "短信内容", "文字", "text", "content", "line", "message"),
    "date": ("日期", "发送日期", "期望日期", "希望日期", "date", "day", "wanteddate", "wantedday"),
}
_DATE = re.compile(r"\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*")


@dataclass
class RowProblem:
    row: int
    field: str  # the column's header as in the file
    value: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class SubmissionImport:
    file: str
    rows: int = 0
    added: int = 0
    already: int = 0  # rows the database already holds (an earlier import of the same lines)
    duplicates: int = 0  # repeats of an earlier row of the same file
    imported: bool = False  # False: bad rows (nothing written), or a dry run
    dry_run: bool = False
    errors: list[RowProblem] = field(default_factory=list)
    warnings: list[RowProblem] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Row:
    row: int
    group: str
    text: str
    day: date | None
    headers: dict[str, str]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(unescape_cell(value) if isinstance(value, str) else value).strip()


def parse_day(value: Any) -> date | None:
    """A date cell: an Excel date, ``2026-12-01``, ``2026/12/1``, ``2026.12.1`` or ``2026年12月1日``;
    blank is None. Raises ValueError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    m = _DATE.fullmatch(str(value))
    if not m:
        raise ValueError("not a date: write it as YYYY-MM-DD, e.g. 2026-12-01")
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:  # 2026-02-30, 2026-13-01
        raise ValueError(f"no such day ({exc})") from None


def _columns(headers: list[str]) -> dict[str, int]:
    normalised = [normalize_header(h) for h in headers]
    found: dict[str, int] = {}
    for fld, aliases in ALIASES.items():
        for alias in aliases:
            if alias in normalised:
                found[fld] = normalised.index(alias)
                break
    return found


def _cells(cells: list[Any]) -> list[str]:
    return ["" if c is None else str(c).strip() for c in cells]


def _read(path: Path, encoding: str | None, sheet: str | None, result: SubmissionImport) -> list[_Row]:
    """Every data row, checked for what needs no database; problems go to ``result.errors``."""
    rows: list[_Row] = []
    # "phone column 1" makes the first non-blank row the headers; when it lacks 支部 and 内容 (a
    # title row), the next non-blank rows are tried, within the 10 rows the member import scans.
    with open_table(path, encoding=encoding, sheet=sheet, phone_column="1") as table:
        headers = best = table.headers
        cols = _columns(headers)
        names: dict[str, str] | None = None
        for row_no, cells in table:
            if names is None:
                if "group" in cols and "text" in cols:
                    names = {f: headers[i] or f for f, i in cols.items()}
                elif row_no > HEADER_SCAN_ROWS:
                    break
                elif any(_text(c) for c in cells):
                    headers = _cells(cells)
                    cols = _columns(headers)
                    best = headers if len(cols) > len(_columns(best)) else best
                    continue
                else:
                    continue
            _check_row(row_no, {f: (cells[i] if i < len(cells) else None) for f, i in cols.items()}, names,
                       rows, result)
        if "group" not in cols or "text" not in cols:
            found = _columns(best)
            missing = " and ".join(n for f, n in (("group", "支部"), ("text", "内容")) if f not in found)
            raise ImportFileError(
                f"{path.name}: no {missing} column (headers seen: {', '.join(h for h in best if h) or 'none'})",
                hint="the columns are 支部, 内容 and optionally 日期 (or branch, text, date)",
            )
    return rows


def _check_row(row_no: int, got: dict[str, Any], names: dict[str, str], rows: list[_Row],
               result: SubmissionImport) -> None:
    group, text, raw_day = _text(got["group"]), _text(got["text"]), got.get("date")
    if not group and not text and _text(raw_day) == "":
        return  # a blank line
    result.rows += 1
    bad = len(result.errors)
    if not group:
        result.errors.append(RowProblem(row_no, names["group"], "", "the branch is empty"))
    else:
        try:
            group = clean_group_name(group)
        except InputError as exc:
            result.errors.append(RowProblem(row_no, names["group"], group, exc.message))
    if not text:
        result.errors.append(RowProblem(row_no, names["text"], "", "the text is empty"))
    day = None
    try:
        day = parse_day(raw_day)
    except ValueError as exc:
        result.errors.append(RowProblem(row_no, names["date"], _text(raw_day), str(exc)))
    if len(result.errors) == bad:
        rows.append(_Row(row_no, group, text, day, names))


def import_submissions(ws: Workspace, path: str | Path, *, encoding: str | None = None, sheet: str | None = None,
                       dry_run: bool = False) -> SubmissionImport:
    """Import a file of submissions (see the module doc). With bad rows ``imported`` is False,
    ``errors`` names them and nothing is written."""
    path = Path(path)
    result = SubmissionImport(file=str(path), dry_run=dry_run)
    rows = _read(path, encoding, sheet, result)
    now = clock_now(ws.settings)
    today = local(now, ws.settings.timezone).date()
    with transaction(ws.engine, write=True) as conn:
        known: dict[str, int] = {n: i for n, i in conn.execute(sa.select(groups_t.c.name, groups_t.c.id))}
        seen: set[tuple[int, str, date | None]] = set()
        new: list[dict[str, Any]] = []
        for r in rows:
            gid = known.get(r.group)
            if gid is None:
                result.errors.append(RowProblem(r.row, r.headers["group"], r.group,
                                                "no such branch (see 'broadcast group list')"))
                continue
            key = (gid, r.text, r.day)
            if key in seen:
                result.duplicates += 1
                continue
            seen.add(key)
            if _exists(conn, *key):
                result.already += 1
                continue
            if r.day is not None and r.day < today:
                result.errors.append(RowProblem(r.row, r.headers["date"], r.day.isoformat(), "the date is past"))
                continue
            report = check_for(ws.settings, as_body(r.text, r.day or today), "notice")
            problem = blocking_problem(report)
            if problem:
                result.errors.append(RowProblem(r.row, r.headers["text"], r.text, problem))
                continue
            result.warnings += [RowProblem(r.row, r.headers["text"], r.text, w.message) for w in report.warnings]
            new.append(dict(group_id=gid, member_id=None, inbound_id=None, source="import", text=r.text,
                            wanted_day=r.day, status="pending", reason="", created_by=ws.operator, created_at=now))
        result.errors.sort(key=lambda e: e.row)
        if result.errors or dry_run:
            return result  # nothing was written: the transaction only read
        for values in new:
            pk = conn.execute(submissions_t.insert().values(**values)).inserted_primary_key
            assert pk is not None
            result.ids.append(int(pk[0]))
        result.added = len(new)
        result.imported = True
        note(conn, ws.operator, "submission.import", f"file:{path.name}", sha256=file_sha256(path),
             rows=result.rows, added=result.added, already=result.already, duplicates=result.duplicates,
             ids=result.ids)
    return result


def _exists(conn: sa.Connection, gid: int, text: str, day: date | None) -> bool:
    s = submissions_t
    return conn.execute(
        sa.select(s.c.id).where(s.c.group_id == gid, s.c.text == text,
                                s.c.wanted_day.is_(None) if day is None else s.c.wanted_day == day).limit(1)
    ).first() is not None
