"""What the auditor's commands rely on is decided in the core, not in the CLI: an unmasked view of
the delivery log is audited by the function that produces it, and the retention cutoff of a purge
is computed by the purge module."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from broadcast.audit import delivery_log as dl
from broadcast.audit.purge import count, cutoff, purge
from broadcast.audit.trail import entries
from broadcast.errors import InputError
from tests.helpers.rows import insert_sent_message

AT = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)


@pytest.fixture
def logged(ws):
    with ws.engine.begin() as conn:
        insert_sent_message(conn, AT, [
            dict(phone=f"+861380514123{i}", name="张三", group_name="g", status="delivered",
                 queued_at=AT + timedelta(seconds=i)) for i in range(3)])
    return ws


def _log_entries(ws) -> list[tuple[str, str, dict]]:
    return [(e.action, e.object, e.details) for e in entries(ws.engine) if e.action.startswith("log.")]


def test_reading_the_log_unmasked_writes_the_audit_entry(logged) -> None:
    f = dl.LogFilter(status="delivered")
    shown = list(dl.rows(logged, f, unmasked=True))
    assert [r["phone"] for r in shown] == ["+8613805141230", "+8613805141231", "+8613805141232"]
    assert _log_entries(logged) == [("log.view_unmasked", "deliveries",
                                     {"filters": {"status": "delivered"}, "unmasked": True, "rows": 3})]


def test_a_masked_view_writes_nothing(logged) -> None:
    assert [r["phone"] for r in dl.rows(logged, dl.LogFilter())][0] == "138****1230"
    assert _log_entries(logged) == []


def test_an_unmasked_view_stopped_early_is_audited_with_the_rows_read(logged) -> None:
    stream = dl.rows(logged, dl.LogFilter(), unmasked=True)
    next(stream)
    stream.close()
    assert [d["rows"] for _, _, d in _log_entries(logged)] == [1]


def test_a_bad_filter_fails_before_any_row_and_is_not_audited(logged) -> None:
    with pytest.raises(InputError, match="unknown status"):
        dl.rows(logged, dl.LogFilter(status="lost"), unmasked=True)
    assert _log_entries(logged) == []


def test_an_unmasked_export_is_one_export_entry(logged, tmp_path) -> None:
    assert dl.export(logged, dl.LogFilter(), tmp_path / "log.csv", unmasked=True) == 3
    assert [(a, o) for a, o, _ in _log_entries(logged)] == [("log.export", "file:log.csv")]


def test_purge_cutoff_is_the_given_date(ws) -> None:
    assert cutoff(ws, date(2026, 1, 2)) == date(2026, 1, 2)


def test_purge_cutoff_without_a_date_is_retention_days_before_local_today(isolated_env, monkeypatch) -> None:
    from broadcast.workspace import Workspace

    monkeypatch.setenv("BROADCAST_RETENTION_DAYS", "30")
    monkeypatch.setenv("BROADCAST_NOW", "2026-12-04T23:30:00+00:00")  # 07:30 on 12-05 in Shanghai
    ws = Workspace.open()
    try:
        assert cutoff(ws) == date(2026, 11, 5)
    finally:
        ws.close()


def test_purge_cutoff_needs_a_date_or_a_retention(ws) -> None:
    with pytest.raises(InputError, match="say which deliveries to purge"):
        cutoff(ws)


def test_purge_before_the_cutoff(logged) -> None:
    before = cutoff(logged, date(2026, 11, 26))
    assert count(logged, before) == 3 and purge(logged, before).deliveries == 3 and count(logged, before) == 0
