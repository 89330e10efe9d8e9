"""The delivery log (masking on every output path) and reports (cross-checked against the rows)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from broadcast.audit.report import build
from broadcast.db.dispatch_models import DELIVERY_STATES, Delivery
from broadcast.db.models import Message
from tests.helpers.files import read_csv

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL

STATES = DELIVERY_STATES
GROUPS = ["一支部", "二支部", "三支部"]


@pytest.fixture
def history(ws):
    """4 messages over 3 local days (Asia/Shanghai), 300 deliveries in every status."""
    rng = random.Random(7)
    m, d = Message.__table__, Delivery.__table__
    rows = []
    with ws.engine.begin() as conn:
        base = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
        for mid in range(1, 5):
            conn.execute(m.insert().values(started_at=base + timedelta(days=(mid - 1) % 3),
                id=mid, body="x", template=None, signature="", category="notice", status="sent", author="a",
                approver="b", reject_reason=None, status_reason=None, created_at=datetime.now(UTC),
                updated_at=datetime.now(UTC), scheduled_at=None, send_after=None, schedule_id=None,
                target_all=True, optout_skipped=mid))
        for i in range(300):
            mid = i % 4 + 1
            status = STATES[i % len(STATES)]
            queued = base + timedelta(days=(mid - 1) % 3, minutes=rng.randrange(600))  # up to 18:30 local
            rows.append(dict(message_id=mid, kind="real", member_id=None, phone=f"+86138{i % 250:08d}", name="n",
                             group_name=GROUPS[i % 3], text="t", parts=1 + i % 2, status=status, attempts=1,
                             gateway="simulator" if i % 5 else "http", queued_at=queued, updated_at=queued,
                             error_code="EMPTY" if status in ("failed", "expired") and i % 2 else None,
                             sent_at=queued if status in ("accepted", "delivered", "in_doubt") else None))
        rows.append(dict(rows[0], kind="test", phone="+8613900000000"))  # test sends never count
        conn.execute(d.insert(), rows)
    return ws, rows[:-1]


def _local_day(ts):
    return (ts + timedelta(hours=8)).date().isoformat()


def test_report_by_day_matches_the_rows(history):
    ws, rows = history
    rep = build(ws, by="day")
    want = defaultdict(Counter)
    for r in rows:
        c = want[_local_day(r["queued_at"])]
        c["deliveries"] += 1
        c[r["status"]] += 1
        c["sms"] += r["parts"] if r["status"] in ("accepted", "delivered") else 0
    got = {row.key: row for row in rep.rows}
    assert set(got) == set(want)
    for day, c in want.items():
        row = got[day]
        assert row.deliveries == c["deliveries"]
        assert row.accepted == c["accepted"] + c["delivered"] and row.delivered == c["delivered"]
        assert (row.failed, row.expired, row.in_doubt) == (c["failed"], c["expired"], c["in_doubt"])
        assert row.pending == c["queued"] + c["retry_wait"] + c["sending"]
        assert row.sms == c["sms"]
    assert rep.total.deliveries == 300 and rep.total.messages == 4
    assert rep.total.people == len({r["phone"] for r in rows})
    assert rep.total.optout_skipped == 1 + 2 + 3 + 4
    settled = 300 - rep.total.pending
    assert rep.total.delivery_rate == round(100 * rep.total.delivered / settled, 1)
    assert rep.failures == dict(Counter(r["error_code"] or "unknown" for r in rows if r["status"] in ("failed", "expired")))
    assert rep.headline.startswith(f"{rep.rows[0].key} – {rep.rows[-1].key}: 4 messages,")


@pytest.mark.parametrize("by,key", [("group", "group_name"), ("message", "message_id"), ("gateway", "gateway")])
def test_report_by_dimension_matches_the_rows(history, by, key):
    ws, rows = history
    rep = build(ws, by=by)
    want = Counter(str(r[key]) for r in rows)
    assert {row.key: row.deliveries for row in rep.rows} == dict(want)


def test_report_week_month_and_range(history):
    ws, rows = history
    assert sum(r.deliveries for r in build(ws, by="week").rows) == 300
    assert [r.key for r in build(ws, by="month").rows] == ["2026-11"]
    from datetime import date

    one = build(ws, since=date(2026, 11, 26), until=date(2026, 11, 26))
    assert [r.key for r in one.rows] == ["2026-11-26"]
    assert one.total.deliveries == sum(1 for r in rows if _local_day(r["queued_at"]) == "2026-11-26")


def test_report_outputs(history, cli, tmp_path):
    r = cli("report", "--by", "group", "--json")
    assert r.exit_code == 0 and r.json()["by"] == "group" and r.json()["total"]["deliveries"] == 300
    assert cli("report", "--html", tmp_path / "r.html", "--xlsx", tmp_path / "r.xlsx").exit_code == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<svg" in page and "300" in page and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    from openpyxl import load_workbook

    assert load_workbook(tmp_path / "r.xlsx").sheetnames == ["summary", "by day", "failures"]
    assert cli("report", "--by", "year").exit_code == 1


def test_log_masks_phones_on_every_path(history, cli, tmp_path):
    r = cli("log", "--limit", "5", env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "+8613800000" not in r.stdout and "138****0000" in r.stdout
    data = cli("log", "--json", "--limit", "3").json()
    assert all("****" in row["phone"] for row in data)
    assert cli("log", "--csv", tmp_path / "l.csv").exit_code == 0
    rows = read_csv(tmp_path / "l.csv", "utf-8-sig")
    assert len(rows) == 301 and all("****" in row[3] for row in rows[1:])
    assert cli("log", "--xlsx", tmp_path / "l.xlsx").exit_code == 0
    from openpyxl import load_workbook

    cells = [c.value for c in next(load_workbook(tmp_path / "l.xlsx").active.iter_cols(min_col=4, max_col=4))]
    assert all("****" in v for v in cells[1:])
    full = cli("log", "--json", "--unmasked", "--limit", "1").json()
    assert full[0]["phone"].startswith("+86138")
    assert [e["action"] for e in cli("audit", "log", "--json").json()] == ["log.export", "log.export", "log.view_unmasked"]


def test_log_filters(history, cli):
    ws, rows = history
    failed = cli("log", "--status", "failed", "--json").json()
    assert len(failed) == sum(1 for r in rows if r["status"] == "failed")
    assert {row["status"] for row in failed} == {"failed"}
    assert len(cli("log", "--message", "2", "--json").json()) == 75
    assert len(cli("log", "--since", "2026-11-26", "--until", "2026-11-26", "--json").json()) == \
        sum(1 for r in rows if _local_day(r["queued_at"]) == "2026-11-26")
    assert len(cli("log", "--phone", "13800000007", "--json").json()) == 2
    r = cli("log", "--status", "lost")
    assert r.exit_code == 1 and "unknown status 'lost'" in r.stderr


def test_purge_erases_personal_data_and_keeps_counts(history, cli):
    ws, rows = history
    before = build(ws, by="group")
    r = cli("purge", "--before", "2026-11-26", "--yes", "--json")
    assert r.exit_code == 0
    n = r.json()["deliveries"]
    d = Delivery.__table__
    with ws.engine.connect() as conn:
        purged = conn.execute(sa.select(d.c.phone, d.c.text, d.c.name).where(d.c.phone.like("purged-%"))).all()
        still_open = conn.execute(sa.select(sa.func.count()).select_from(d).where(
            d.c.status.in_(("queued", "sending", "retry_wait")), d.c.phone.like("purged-%"))).scalar_one()
    assert len(purged) == n > 0 and all(t == "" and nm == "" for _, t, nm in purged) and still_open == 0
    after = build(ws, by="group")
    assert [(x.key, x.deliveries, x.delivered, x.failed, x.sms) for x in after.rows] == \
        [(x.key, x.deliveries, x.delivered, x.failed, x.sms) for x in before.rows]
    assert cli("purge").exit_code == 1  # no --before and no BROADCAST_RETENTION_DAYS
    assert cli("audit", "log", "--json").json()[-1]["details"]["deliveries"] == n
