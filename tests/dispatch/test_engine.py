"""The engine's rules, in-process with a scripted gateway: freezing, caps, quiet hours,
deadlines, recovery of a dead run's deliveries, resolve/resume, test sends, receipts."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
from typing import ClassVar

import pytest
import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery, DeliveryAttempt, Run
from broadcast.dispatch import ledger, service
from broadcast.dispatch.cap import apply_cap
from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.gateways.base import Capabilities, Outcome, Receipt, SendResult
from broadcast.messages.store import create_message
from tests.helpers import scripted
from tests.helpers.scripted import BAD, DOUBT, RETRY, Scripted, approved_message, as_operator, run, statuses

pytestmark = pytest.mark.both_stores  # every test here runs on SQLite and on PostgreSQL

D = Delivery.__table__


setup = scripted.setup  # the fixture: 20 members of 一支部, BROADCAST_NOW 2026-11-27T10:00, fast retries


def test_freeze_once_send_once_render_per_person(setup):
    ws = setup
    mid = approved_message(ws)
    gw = Scripted()
    report = run(ws, gw)
    assert report.completed == [mid] and report.outcomes.accepted == 20
    assert statuses(ws, mid) == {"accepted": 20}
    assert sorted(i.text for i in gw.sent)[0].startswith("明天下午三点开会，人0同志")
    again = Scripted()
    run(ws, again)
    assert again.sent == []  # a finished message is never sent again
    engine = Dispatcher(ws, again)
    with pytest.raises(Exception):
        engine.start_message(mid)  # sent -> sending is not a legal transition: no second freeze


def test_retries_then_permanent_and_attempts_recorded(setup):
    ws = setup
    mid = approved_message(ws)
    gw = Scripted({"+8613800000001": [RETRY, RETRY], "+8613800000002": [BAD]})
    report = run(ws, gw)
    assert statuses(ws, mid) == {"accepted": 19, "failed": 1}
    with ws.engine.connect() as conn:
        outcomes = conn.execute(
            sa.select(DeliveryAttempt.__table__.c.outcome).join(D, D.c.id == DeliveryAttempt.__table__.c.delivery_id)
            .where(D.c.phone == "+8613800000001").order_by(DeliveryAttempt.__table__.c.id)).scalars().all()
    assert outcomes == ["retryable", "retryable", "accepted"]
    assert report.completed == [mid]


def test_max_attempts_fails_the_delivery(setup, monkeypatch):
    monkeypatch.setenv("BROADCAST_MAX_ATTEMPTS", "2")
    ws = as_operator(setup, "x")
    mid = approved_message(ws)
    run(ws, Scripted({"+8613800000003": [RETRY, RETRY, RETRY]}))
    with ws.engine.connect() as conn:
        code, text = conn.execute(sa.select(D.c.error_code, D.c.error_text).where(D.c.phone == "+8613800000003")).one()
    assert statuses(ws, mid)["failed"] == 1 and "gave up after 2 attempts" in text


def test_maybe_sent_is_held_in_doubt_not_resent(setup):
    ws = setup
    mid = approved_message(ws)
    gw = Scripted({"+8613800000004": [DOUBT]})
    report = run(ws, gw)
    assert statuses(ws, mid) == {"accepted": 19, "in_doubt": 1}
    assert report.in_doubt == {mid: 1} and report.needs_attention and mid not in report.completed
    gw2 = Scripted()
    run(ws, gw2)
    assert gw2.sent == []  # held: never resent by a later run
    r = service.resolve(as_operator(ws, "leader"), mid, resend=True)
    assert r.resent == 1
    run(ws, gw2)
    assert [i.phone for i in gw2.sent] == ["+8613800000004"]
    assert statuses(ws, mid) == {"accepted": 20}


def test_resolve_asks_the_gateway_first(setup, monkeypatch):
    ws = setup
    mid = approved_message(ws)
    run(ws, Scripted({"+8613800000004": [DOUBT], "+8613800000005": [DOUBT]}))
    with ws.engine.connect() as conn:
        known = conn.execute(sa.select(D.c.id).where(D.c.phone == "+8613800000004")).scalar_one()
    monkeypatch.setattr(service, "open_gateway", lambda _ws, name=None: Scripted(known=[known]))
    r = service.resolve(ws, mid, resend=False)
    assert (r.confirmed, r.marked_sent, r.resent) == (1, 1, 0)
    assert statuses(ws, mid) == {"accepted": 20}


@pytest.mark.slow  # starts processes
def test_stranded_rows_of_a_dead_process_become_in_doubt(setup):
    """A run on this host whose process is gone: its SENDING rows are settled at once, not after
    the lease; the gateway is asked first, and only the unknown one is held. A row it had claimed
    but whose request it never started is queued again and sent, not held in doubt."""
    ws = setup
    mid = approved_message(ws)
    engine = Dispatcher(ws, Scripted())
    engine.start_message(mid)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from broadcast.db.types import utcnow

    with ws.engine.begin() as conn:
        conn.execute(Run.__table__.insert().values(id="dead-run", host=os.uname().nodename, pid=dead.pid, pid_start="",
                                                   kind="run", operator="x", started_at=utcnow(), heartbeat_at=utcnow()))
    rows = ledger.claim(ws.engine, "dead-run", [mid], 3, utcnow(), __import__("datetime").timedelta(hours=1))
    ledger.mark_started(ws.engine, "dead-run", [rows[0].id, rows[1].id], utcnow())  # in flight when it died
    gw = Scripted(known=[rows[0].id])
    report = run(ws, gw)
    assert report.recovered.accepted == 1 and report.recovered.in_doubt == 1
    assert statuses(ws, mid) == {"accepted": 19, "in_doubt": 1}
    assert rows[1].id not in {i.delivery_id for i in gw.sent} and rows[0].id not in {i.delivery_id for i in gw.sent}
    assert [i.delivery_id for i in gw.sent].count(rows[2].id) == 1  # claimed, never started: sent once
    with ws.engine.connect() as conn:
        assert conn.execute(sa.select(D.c.attempts).where(D.c.id == rows[2].id)).scalar_one() == 1


def test_resend_policy_resends_stranded_rows(setup, monkeypatch):
    monkeypatch.setenv("BROADCAST_IN_DOUBT", "resend")
    ws = as_operator(setup, "x")
    mid = approved_message(ws)
    Dispatcher(ws, Scripted()).start_message(mid)
    from datetime import timedelta

    from broadcast.db.types import utcnow

    rows = ledger.claim(ws.engine, "ghost", [mid], 3, utcnow() - timedelta(hours=2), timedelta(seconds=1))
    ledger.mark_started(ws.engine, "ghost", [c.id for c in rows], utcnow() - timedelta(hours=2))
    gw = Scripted()
    run(ws, gw)
    assert {c.id for c in rows} <= {i.delivery_id for i in gw.sent}
    assert statuses(ws, mid) == {"accepted": 20}


def test_per_number_daily_cap(setup, monkeypatch):
    monkeypatch.setenv("BROADCAST_MAX_PER_NUMBER_PER_DAY", "1")
    ws = as_operator(setup, "x")
    first, second = approved_message(ws), approved_message(ws, "第二条")
    run(ws, Scripted())
    assert statuses(ws, first) == {"accepted": 20} or statuses(ws, second) == {"accepted": 20}
    both = [statuses(ws, first), statuses(ws, second)]
    assert sorted(both, key=len) == [{"accepted": 20}, {"failed": 20}]
    with ws.engine.connect() as conn:
        assert set(conn.execute(sa.select(D.c.error_code).where(D.c.status == "failed")).scalars()) == {"cap"}


def test_per_number_cap_decided_by_two_workers_at_once(setup):
    """Two workers claim deliveries to the same 20 phones at the same moment (one run per message)
    and decide the cap at the same moment (threads released by a barrier), five rounds with cap 1,
    2, ...: for every phone exactly ``cap`` go in total. Never more; and never fewer, which is what
    happened when each worker counted the other's claim before either had stepped back (both
    failed with ``cap``). The decision is serialized per phone: the write lock on SQLite,
    advisory locks on the phones' slots on PostgreSQL."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    from broadcast.db.types import utcnow

    ws = setup
    now = utcnow()
    day_start = now - timedelta(hours=1)
    pool = ThreadPoolExecutor(2)
    sent: dict[str, int] = {}
    try:
        for cap in range(1, 6):
            mids = [approved_message(ws, f"第{cap}轮，甲"), approved_message(ws, f"第{cap}轮，乙")]
            engine = Dispatcher(ws, Scripted())
            for mid in mids:
                engine.start_message(mid)
            claims = [ledger.claim(ws.engine, f"run-{cap}-{i}", [mid], 100, now, timedelta(minutes=5))
                      for i, mid in enumerate(mids)]
            barrier = threading.Barrier(2)

            def decide(i: int) -> tuple[list[ledger.Claimed], list[ledger.Claimed]]:
                barrier.wait()
                return apply_cap(ws.engine, f"run-{cap}-{i}", "scripted", claims[i], cap, day_start, now,
                                        "over the cap")

            results = list(pool.map(decide, range(2)))
            went = collections.Counter(c.phone for ok, _ in results for c in ok)
            assert len(went) == 20 and all(went[p] + sent.get(p, 0) == cap for p in went), (cap, went, sent)
            for p in went:
                sent[p] = sent.get(p, 0) + went[p]
            # what went is still SENDING (counted for the next round); what did not is failed: cap
            over = [c.id for _, o in results for c in o]
            with ws.engine.connect() as conn:
                assert set(conn.execute(sa.select(D.c.status, D.c.error_code).where(D.c.id.in_(over))).all()) \
                    <= {("failed", "cap")}
    finally:
        pool.shutdown()


def test_per_number_cap_on_big_claims_from_four_workers_at_once(setup):
    """Four workers decide the cap for big claims at once, each with more phones than half of
    PostgreSQL's whole lock table (max_locks_per_transaction × max_connections, 6,400 by default).
    With one advisory lock per phone they held more locks together than the table has ("out of
    shared memory": the workers died); phones now share 64 lock slots. Nothing is over the cap
    here, so the rows need not exist."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from datetime import timedelta

    from broadcast.db.types import utcnow

    ws = setup
    n = 2000
    if ws.engine.dialect.name == "postgresql":
        with ws.engine.connect() as conn:
            table = (int(conn.execute(sa.text("SHOW max_locks_per_transaction")).scalar_one())
                     * int(conn.execute(sa.text("SHOW max_connections")).scalar_one()))
        n = table // 2 + 1
    now = utcnow()
    barrier = threading.Barrier(4)

    def decide(w: int) -> tuple[list[ledger.Claimed], list[ledger.Claimed]]:
        rows = [ledger.Claimed(10_000_000 * (w + 1) + i, 1, f"+861{w}{i:09d}", "x", 1) for i in range(n)]
        barrier.wait()
        return apply_cap(ws.engine, f"run-{w}", "scripted", rows, 5, now - timedelta(hours=1), now, "cap")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(decide, range(4)))
    assert [(len(ok), len(over)) for ok, over in results] == [(n, 0)] * 4


def test_quiet_hours_stop_a_send_midway(setup, monkeypatch):
    ws = setup
    mid = approved_message(ws)
    Dispatcher(ws, Scripted()).start_message(mid)  # it started at 10:00 and is still sending at 12:30
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "12:00-13:00")
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T12:30")
    report = run(ws, Scripted())
    assert mid in report.waiting_quiet and report.outcomes.accepted == 0
    assert statuses(ws, mid) == {"queued": 20}
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T13:00")
    assert run(ws, Scripted()).completed == [mid]
    assert statuses(ws, mid) == {"accepted": 20}
    # resuming only the next morning is past the 6 h delivery deadline: expired, not a surprise at 07:00
    mid2 = approved_message(ws)
    Dispatcher(ws, Scripted()).start_message(mid2)
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-28T07:00")
    run(ws, Scripted())
    assert statuses(ws, mid2) == {"expired": 20}


def test_auto_pause_and_resume(setup):
    ws = setup
    mid = approved_message(ws)
    auth = SendResult(0, Outcome.PERMANENT, code="401", pause=True)
    report = run(ws, Scripted({f"+86138000000{i:02d}": [auth] for i in range(20)}))
    assert mid in report.paused and report.needs_attention
    assert service.resume(ws, mid) == "sending"
    run(ws, Scripted())
    left = statuses(ws, mid)
    assert left.get("accepted", 0) + left.get("failed", 0) == 20 and "queued" not in left


def test_delivery_deadline_expires_the_rest(setup, monkeypatch):
    ws = setup
    mid = approved_message(ws)
    engine = Dispatcher(ws, Scripted())
    engine.start_message(mid)
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T17:00")  # 7 h later; the deadline is 6 h
    report = run(ws, Scripted())
    assert statuses(ws, mid) == {"expired": 20} and report.completed == [mid]


def test_receipts_mark_delivered(setup):
    ws = setup
    mid = approved_message(ws)
    gw = Scripted()
    run(ws, gw)
    from broadcast.db.types import utcnow

    ids = [i.delivery_id for i in gw.sent]
    gw.receipts = [Receipt(ids[0], None, "delivered", None, utcnow()), Receipt(None, f"p{ids[1]}", "failed", "UNDELIV", utcnow())]
    asyncio.run(Dispatcher(ws, gw).pull_receipts())
    assert statuses(ws, mid) == {"accepted": 18, "delivered": 1, "failed": 1}


def test_test_send_goes_to_one_number_and_does_not_count(setup, cli, monkeypatch):
    ws = setup
    mid = create_message(as_operator(ws, "office"), text="{name}同志：测试", groups=["一支部"]).id
    r = cli("send", str(mid), "--test-to", "13800000007", "--json", env={"BROADCAST_SIMULATOR_FAILURE_RATE": "0",
                                                                      "BROADCAST_SIMULATOR_LATENCY_MS": "0"})
    assert r.exit_code == 0, r
    assert r.json()["outcome"] == "accepted" and r.json()["text"].endswith("人7同志：测试")
    show = cli("message", "show", str(mid), "--json").json()
    assert show["status"] == "pending_approval" and show["test_sends"] == 1 and sum(show["deliveries"].values()) == 0


def test_send_command_confirms_and_sends(setup, cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_SIMULATOR_LATENCY_MS", "0")
    ws = setup
    mid = approved_message(ws)
    r = cli("send", str(mid), input="n\n")
    assert r.exit_code == 1 and "20 people" in r.stdout and "billable" in r.stdout
    r = cli("send", str(mid), "--yes", "--json")
    assert r.exit_code in (0, 3), r
    assert r.json()["accepted"] + r.json()["failed"] == 20
    assert cli("message", "show", str(mid), "--json").json()["status"] == "sent"
    r = cli("send", str(mid), "--yes")
    assert r.exit_code == 1 and "only approved messages are sent" in r.stderr


class Signing(Scripted):
    capabilities: ClassVar[Capabilities] = Capabilities(name="signing", max_batch=10, mixed_texts=True,
                                                         adds_signature=True)


class Backup(Scripted):
    capabilities: ClassVar[Capabilities] = Capabilities(name="backup", max_batch=1)


def test_failover_when_the_account_is_refused(setup, monkeypatch):
    monkeypatch.setenv("BROADCAST_SIGNATURE", "城南新区")
    ws = setup
    mid = approved_message(ws)
    auth = SendResult(0, Outcome.PERMANENT, code="isv.AMOUNT_NOT_ENOUGH", pause=True)
    first, second = Signing({f"+86138000000{i:02d}": [auth] for i in range(20)}), Backup()
    report = asyncio.run(Dispatcher(as_operator(ws, "cron"), first, fallbacks=[second]).run_pass())
    assert not report.paused and report.failovers and report.failovers[0]["to"] == "backup"
    assert report.completed == [mid]
    d = D
    with ws.engine.connect() as conn:
        rows = conn.execute(sa.select(d.c.status, d.c.gateway)).all()
    # the refused ones failed on the first gateway (permanent), the rest went through the backup
    assert {g for s, g in rows if s == "accepted"} == {"backup"}
    assert len(second.sent) == sum(1 for s, _ in rows if s == "accepted") > 0
    # the first gateway added the signature itself; the backup does not, so it gets it prepended
    assert all(i.text.startswith("【城南新区】明天") for i in second.sent)
    assert all(i.text.startswith("明天") for i in first.sent)
    from broadcast.audit.trail import entries

    assert any(e.action == "send.failover" and e.details["to_gateway"] == "backup" for e in entries(ws.engine))


def test_failover_after_repeated_retryable_errors_and_never_twice(setup):
    ws = setup
    mid = approved_message(ws)
    first = Scripted({f"+86138000000{i:02d}": [RETRY] * 3 for i in range(20)})
    second = Backup()
    report = asyncio.run(Dispatcher(as_operator(ws, "cron"), first, fallbacks=[second]).run_pass())
    assert report.failovers and report.completed == [mid]
    assert statuses(ws, mid) == {"accepted": 20}
    ids = [i.delivery_id for i in second.sent]
    assert len(ids) == len(set(ids)) == 20  # each delivery through the backup exactly once
    with ws.engine.connect() as conn:
        attempts = conn.execute(sa.select(DeliveryAttempt.__table__.c.gateway, sa.func.count())
                                .group_by(DeliveryAttempt.__table__.c.gateway)).all()
    assert dict(attempts)["backup"] == 20 and dict(attempts)["scripted"] >= 10


def test_resolve_asks_the_gateway_that_carried_each_delivery(setup, monkeypatch):
    """After a failover, in-doubt deliveries carried by the backup are checked with the backup,
    and the actions are in the audit trail."""
    ws = setup
    mid = approved_message(ws)
    auth = SendResult(0, Outcome.PERMANENT, code="401", pause=True)
    first = Scripted({f"+86138000000{i:02d}": [auth] for i in range(20)})
    second = Backup({"+8613800000019": [DOUBT]})
    asyncio.run(Dispatcher(as_operator(ws, "cron"), first, fallbacks=[second]).run_pass())
    with ws.engine.connect() as conn:
        doubt = conn.execute(sa.select(D.c.id, D.c.gateway).where(D.c.status == "in_doubt")).all()
    assert [g for _, g in doubt] == ["backup"]
    asked: list[str | None] = []

    class AskableBackup(Scripted):
        capabilities: ClassVar[Capabilities] = Capabilities(name="backup", max_batch=1, can_query=True)

    def open_gateway(_ws, name=None):
        asked.append(name)
        return AskableBackup(known=[doubt[0][0]]) if name == "backup" else Scripted()

    monkeypatch.setattr(service, "open_gateway", open_gateway)
    r = service.resolve(as_operator(ws, "leader"), mid, resend=True)
    assert asked == ["backup"] and (r.confirmed, r.resent) == (1, 0)
    from broadcast.audit.trail import entries

    actions = [e.action for e in entries(ws.engine)]
    assert "send.failover" in actions and "message.resolve" in actions


def test_pause_and_resume_are_audited(setup):
    ws = setup
    mid = approved_message(ws)
    auth = SendResult(0, Outcome.PERMANENT, code="401", pause=True)
    run(ws, Scripted({f"+86138000000{i:02d}": [auth] for i in range(20)}))
    service.resume(as_operator(ws, "leader"), mid)
    from broadcast.audit.trail import entries

    got = [(e.action, e.operator) for e in entries(ws.engine) if e.action in ("message.pause", "message.resume")]
    assert got == [("message.pause", "cron"), ("message.resume", "leader")]
