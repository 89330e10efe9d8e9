"""The inbox report: the office's headline, counts cross-checked against the rows, open and overdue
per assigned branch, overdue items listed as the clock moves (BROADCAST_NOW), local dates."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from broadcast.clock import parse_instant
from broadcast.db.twoway_models import Feedback
from tests.twoway.test_inbox import NOW, PEOPLE, add_feedback, make_org


@pytest.fixture
def org(isolated_env, monkeypatch, request):
    monkeypatch.setenv("BROADCAST_NOW", NOW)
    monkeypatch.setenv("COLUMNS", "250")
    ws = request.getfixturevalue("ws")
    make_org(ws)
    return ws


def _group_ids(ws) -> dict[str, int]:
    with ws.engine.connect() as conn:
        return {n: i for i, n in conn.execute(sa.text("select id, name from groups"))}


def test_the_offices_headline(org, cli):
    assert cli("inbox", "report", "--json").json()["headline"] == "收到意见建议0条，已立行立改0条，列入专项研究0条，重点督办0条"
    for n, category in ((31, "fix-now"), (2, "study"), (8, "supervise")):
        for _ in range(n):
            add_feedback(org, PEOPLE["张三"], "意见", status="closed" if category == "fix-now" else "open",
                         category=category)
    r = cli("inbox", "report")
    assert r.exit_code == 0, r
    assert r.stdout.splitlines()[0] == "收到意见建议41条，已立行立改31条，列入专项研究2条，重点督办8条"
    add_feedback(org, PEOPLE["李四"], "谢谢", status="closed", category="no-action")
    add_feedback(org, PEOPLE["李四"], "还没分")
    assert cli("inbox", "report", "--json").json()["headline"] == \
        "收到意见建议43条，已立行立改31条，列入专项研究2条，重点督办8条，无需处理1条，尚未分办1条"


def _random_inbox(ws, seed: int) -> None:
    """Items over 2026-11-01..11-20 in every state, some assigned with due dates before and after today."""
    rnd = random.Random(seed)
    gids = _group_ids(ws)
    phones = [*PEOPLE.values(), "+8613900000009"]
    for _ in range(60):
        day = date(2026, 11, 1) + timedelta(days=rnd.randrange(20))
        received = f"{day.isoformat()}T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}"
        status = rnd.choice(["new", "open", "open", "closed"])
        values = {"status": status}
        if status != "new":
            values["category"] = rnd.choice(["fix-now", "study", "supervise", "no-action"])
            values["assigned_group_id"] = rnd.choice([None, gids["一支部"], gids["二支部"]])
            values["due_date"] = rnd.choice([None, date(2026, 11, 10), date(2026, 11, 19), date(2026, 11, 20),
                                             date(2026, 11, 30)])
        add_feedback(ws, rnd.choice(phones), f"意见{rnd.randrange(1000)}", received=received, **values)


@pytest.mark.both_stores
@pytest.mark.parametrize(("since", "until"), [(None, None), ("2026-11-05", "2026-11-14"), ("2026-11-15", None)])
def test_counts_are_the_rows(org, cli, since, until):
    _random_inbox(org, seed=7)
    args = [a for k, v in (("--since", since), ("--until", until)) if v for a in (k, v)]
    got = cli("inbox", "report", *args, "--json").json()
    tz, today = "Asia/Shanghai", date(2026, 11, 20)
    f = Feedback.__table__
    q = sa.select(f.c.id, f.c.status, f.c.category, f.c.due_date, f.c.assigned_group_id)
    if since:
        q = q.where(f.c.received_at >= parse_instant(f"{since}T00:00", tz))
    if until:
        q = q.where(f.c.received_at < parse_instant(f"{until}T00:00", tz) + timedelta(days=1))
    with org.engine.connect() as conn:
        rows = conn.execute(q).all()
    names = {v: k for k, v in _group_ids(org).items()}

    def n(pred) -> int:
        return sum(1 for r in rows if pred(r))

    def late(r) -> bool:
        return r.status != "closed" and r.due_date is not None and r.due_date < today

    expected = {"received": len(rows), "fix_now": n(lambda r: r.category == "fix-now"),
                "study": n(lambda r: r.category == "study"), "supervise": n(lambda r: r.category == "supervise"),
                "no_action": n(lambda r: r.category == "no-action"), "untriaged": n(lambda r: r.status == "new"),
                "open": n(lambda r: r.status != "closed"), "closed": n(lambda r: r.status == "closed"), "overdue": n(late)}
    assert got["counts"] == expected
    assert expected["received"] > 5 and expected["overdue"] > 0
    c = expected
    assert c["fix_now"] + c["study"] + c["supervise"] + c["no_action"] + c["untriaged"] == c["received"]
    assert got["headline"].startswith(f"收到意见建议{c['received']}条，已立行立改{c['fix_now']}条，列入专项研究{c['study']}条，"
                                      f"重点督办{c['supervise']}条")
    branches = {b["branch"]: b for b in got["branches"]}
    for gid in {r.assigned_group_id for r in rows}:
        mine = [r for r in rows if r.assigned_group_id == gid]
        b = branches[names[gid] if gid else "(未分办)"]
        assert (b["items"], b["open"], b["overdue"], b["closed"]) == (
            len(mine), sum(r.status != "closed" for r in mine), sum(late(r) for r in mine),
            sum(r.status == "closed" for r in mine))
    assert sum(b["items"] for b in branches.values()) == c["received"]
    assert sorted(i["id"] for i in got["overdue"]) == sorted(r.id for r in rows if late(r))


@pytest.mark.both_stores
def test_overdue_as_the_clock_moves(org, cli, monkeypatch):
    a = add_feedback(org, PEOPLE["张三"], "路灯坏了")
    b = add_feedback(org, PEOPLE["王五"], "道路积水")
    c = add_feedback(org, PEOPLE["李四"], "早餐语音版")
    assert cli("inbox", "triage", a, "--as", "supervise", "--assign", "二支部", "--due", "2026-11-22").exit_code == 0
    assert cli("inbox", "triage", b, "--as", "fix-now", "--assign", "二支部", "--due", "2026-11-21").exit_code == 0
    assert cli("inbox", "triage", c, "--as", "study", "--assign", "一支部", "--due", "2026-11-22").exit_code == 0

    def overdue() -> list[int]:
        return [i["id"] for i in cli("inbox", "list", "--status", "overdue", "--json").json()]

    assert overdue() == []
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-22T23:59")  # the due day itself is not late
    assert overdue() == [b]
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-23T00:00")  # local midnight
    assert overdue() == [a, b, c]
    assert cli("inbox", "close", b, "--note", "已排水").exit_code == 0
    assert overdue() == [a, c]
    rep = cli("inbox", "report", "--json").json()
    assert [(i["id"], i["assigned"]) for i in rep["overdue"]] == [(a, "二支部"), (c, "一支部")]
    assert [(x["branch"], x["items"], x["open"], x["overdue"], x["closed"]) for x in rep["branches"]] == \
        [("一支部", 1, 1, 1, 0), ("二支部", 2, 1, 1, 1)]
    r = cli("inbox", "report")
    assert r.exit_code == 0, r
    assert "Overdue" in r.stdout and "Days late" in r.stdout and "路灯坏了" in r.stdout and "道路积水" not in r.stdout
    by_branch = cli("inbox", "list", "--status", "overdue", "--group", "一支部", "--json").json()
    assert [i["id"] for i in by_branch] == [a, c]  # a: from 一支部's member; c: assigned to 一支部


def test_period_is_by_local_received_date(org, cli):
    add_feedback(org, PEOPLE["张三"], "深夜", received="2026-11-19T23:30")  # 15:30 UTC on the 19th
    add_feedback(org, PEOPLE["张三"], "凌晨", received="2026-11-20T00:30")  # 16:30 UTC on the 19th
    day19 = cli("inbox", "report", "--since", "2026-11-19", "--until", "2026-11-19", "--json").json()
    day20 = cli("inbox", "report", "--since", "2026-11-20", "--json").json()
    assert (day19["counts"]["received"], day20["counts"]["received"]) == (1, 1)
    assert (day19["since"], day19["until"]) == ("2026-11-19", "2026-11-19")


def test_report_xlsx_has_the_same_counts_and_every_item(org, cli, tmp_path):
    from openpyxl import load_workbook

    add_feedback(org, PEOPLE["张三"], "意见一", status="open", category="fix-now")
    add_feedback(org, PEOPLE["李四"], "意见二")
    out = tmp_path / "inbox.xlsx"
    r = cli("inbox", "report", "--xlsx", out)
    assert r.exit_code == 0 and f"Wrote {out}" in r.stdout
    wb = load_workbook(out)
    assert wb.sheetnames == ["summary", "by branch", "overdue", "items"]
    summary = [[c.value for c in row] for row in wb["summary"].iter_rows()]
    assert summary[0][0] == "收到意见建议2条，已立行立改1条，列入专项研究0条，重点督办0条，尚未分办1条"
    assert dict(r[:2] for r in summary[3:])["received"] == 2
    items = [[c.value for c in row] for row in wb["items"].iter_rows()]
    assert [row[items[0].index("text")] for row in items[1:]] == ["意见一", "意见二"]
    wb.close()
    assert cli("inbox", "report", "--xlsx", tmp_path / "inbox.csv").exit_code == 1
    actions = [e["action"] for e in cli("audit", "log", "--action", "inbox", "--json").json()]
    assert actions == ["inbox.report_export"]
