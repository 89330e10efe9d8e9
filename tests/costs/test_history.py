"""Costs cross-checked on a generated history: four days of sends through three gateways with
failovers (an account refused, a retry storm), refusals at submit, undelivered receipts and a
delivery in doubt. Every estimate and every report figure is recomputed here from the delivery
rows and what the script made happen: billable parts × the price of the gateway that carried
each delivery, by each provider's billing rule."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from broadcast.audit.report import build
from broadcast.costs.budgets import group_month_spend
from broadcast.costs.estimate import estimate_message, message_cost
from broadcast.db.dispatch_models import Delivery
from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.gateways.base import Capabilities, Outcome, Receipt, SendResult
from broadcast.messages.actions import approve_message
from broadcast.messages.checks import wrap_signature
from broadcast.messages.segments import count_segments
from broadcast.messages.store import create_message
from broadcast.receipts import store
from broadcast.recipients.groups import add_group
from broadcast.recipients.members import add_member
from tests.helpers.scripted import BAD, DOUBT, RETRY, Scripted, as_operator

pytestmark = pytest.mark.both_stores

D = Delivery.__table__
SIGNATURE = "【城南新区】"
PRICE = {"aliyun": Decimal("0.045"), "tencent": Decimal("0.05"), "cmpp": Decimal("0.038")}
RULE = {"aliyun": "delivered", "tencent": "submitted", "cmpp": "delivered"}  # cmpp: BROADCAST_BILLING_CMPP
BRANCHES = ["一支部", "二支部", "三支部"]
NAMES = ["张三", "李四", "欧阳明华", "王五", "司马相如凤", "赵六", "钱七", "孙悟空大"]  # 2 to 5 characters
# signature 6 + name + "同志：" 3 + 58 = 70 for a three-character name: two-character names fit one part,
# four and five characters need two
BODY = "{name}同志：" + ("请于明天上午九点到区委三楼会议室参加党史学习教育专题会议请准时参加" * 3)[:58]
REFUSED = SendResult(0, Outcome.PERMANENT, code="isv.AMOUNT_NOT_ENOUGH", pause=True)
START = {"A": "2026-11-25T10:00", "B": "2026-11-26T10:00", "C": "2026-11-27T10:00", "D": "2026-12-01T10:00"}


class FakeAliyun(Scripted):  # named as the built-in: its declared billing rule ("delivered") applies
    capabilities: ClassVar[Capabilities] = Capabilities(name="aliyun", max_batch=10, mixed_texts=True,
                                                         adds_signature=True, can_query=True)


class FakeTencent(Scripted):
    capabilities: ClassVar[Capabilities] = Capabilities(name="tencent", max_batch=10, mixed_texts=True,
                                                         adds_signature=True, can_query=True)


class FakeCmpp(Scripted):
    capabilities: ClassVar[Capabilities] = Capabilities(name="cmpp", max_batch=1, mixed_texts=True)


def phone(b: int, i: int) -> str:
    return f"+86138001380{b}{i}"


@pytest.fixture
def org(ws, monkeypatch):
    monkeypatch.setenv("BROADCAST_SIGNATURE", SIGNATURE)
    monkeypatch.setenv("BROADCAST_GATEWAYS", "aliyun,tencent,cmpp")
    for gw, price in PRICE.items():
        monkeypatch.setenv(f"BROADCAST_PRICE_{gw.upper()}", str(price))
    monkeypatch.setenv("BROADCAST_BILLING_CMPP", "delivered")  # the operator's contract: delivered SMS only
    monkeypatch.setenv("BROADCAST_RETRY_BASE_S", "0.01")
    monkeypatch.setenv("BROADCAST_RETRY_MAX_S", "0.02")
    monkeypatch.setenv("BROADCAST_NOW", START["A"])
    ws = as_operator(ws, "office")
    add_group(ws, "党工委")
    for b, branch in enumerate(BRANCHES):
        add_group(ws, branch, "党工委")
        for i, name in enumerate(NAMES):
            add_member(ws, name, phone(b, i), [branch])
    return ws


def expected_parts(people: list[tuple[str, str]]) -> dict[str, int]:
    """phone -> parts, counted here: the signed, rendered text of each person."""
    return {p: count_segments(wrap_signature(SIGNATURE) + BODY.replace("{name}", n)).parts for p, n in people}


def send(ws: Any, monkeypatch: Any, key: str, groups: list[str], gateways: list[Scripted]) -> int:
    monkeypatch.setenv("BROADCAST_NOW", START[key])
    office = as_operator(ws, "office")
    mid = create_message(office, text=BODY, groups=groups).id
    approve_message(as_operator(ws, "leader"), mid)
    cron = as_operator(ws, "cron")
    asyncio.run(Dispatcher(cron, gateways[0], fallbacks=gateways[1:]).run_pass())
    return mid


def receipts(ws: Any, gateway: str, ids: list[int], status: str) -> None:
    store.ingest(ws.engine, gateway, [Receipt(i, None, status, "UNDELIV" if status == "failed" else "DELIVRD",  # type: ignore[arg-type]
                                              datetime(2026, 12, 2, tzinfo=UTC)) for i in ids],
                 datetime(2026, 12, 2, tzinfo=UTC))


def rows(ws: Any) -> list[Any]:
    with ws.engine.connect() as conn:
        return conn.execute(sa.select(D.c.id, D.c.message_id, D.c.group_name, D.c.gateway, D.c.status, D.c.parts,
                                      D.c.phone).where(D.c.kind == "real").order_by(D.c.id)).all()


def test_costs_match_parts_times_price_across_gateways_and_failovers(org, monkeypatch):
    ws = org
    everyone = [(phone(b, i), n) for b in range(3) for i, n in enumerate(NAMES)]
    parts_of = expected_parts(everyone)
    assert set(parts_of.values()) == {1, 2}  # the history has one- and two-part texts

    # the estimate before sending: the audience as it is, each person's text counted here
    mid = create_message(org, text=BODY, groups=["党工委"]).id
    est = estimate_message(ws, mid)
    assert est.gateway == "aliyun" and est.people == 24 and est.parts == sum(parts_of.values())
    assert est.cost == est.parts * PRICE["aliyun"] and est.billing == "delivered"
    assert est.by_group == {b: sum(parts_of[phone(i, j)] for j in range(8)) for i, b in enumerate(BRANCHES)}
    from broadcast.messages.actions import cancel_message

    cancel_message(ws, mid)

    undelivered: set[int] = set()
    # A (Nov 25, everyone): aliyun refuses the account -> all through tencent; two numbers refused at submit
    a = send(ws, monkeypatch, "A", ["党工委"], [FakeAliyun({p: [REFUSED] for p, _ in everyone}),
                                                 FakeTencent({phone(0, 1): [BAD], phone(1, 1): [BAD]}), FakeCmpp()])
    # B (Nov 26, 一支部): aliyun takes all; three are reported undelivered (aliyun does not bill them)
    b = send(ws, monkeypatch, "B", ["一支部"], [FakeAliyun(), FakeTencent(), FakeCmpp()])
    ids_b = [r.id for r in rows(ws) if r.message_id == b]
    receipts(ws, "aliyun", ids_b[:3], "failed")
    receipts(ws, "aliyun", ids_b[3:6], "delivered")
    undelivered |= set(ids_b[:3])
    # C (Nov 27, 二支部 + 三支部): a retry storm on aliyun -> failover to tencent; tencent bills undelivered ones
    storm = {phone(bb, i): [RETRY] * 3 for bb in (1, 2) for i in range(8) if (bb, i) not in ((1, 0), (1, 2))}
    c = send(ws, monkeypatch, "C", ["二支部", "三支部"],
             [FakeAliyun(storm), FakeTencent({phone(2, 7): [DOUBT]}), FakeCmpp()])
    by_tencent = [r.id for r in rows(ws) if r.message_id == c and r.gateway == "tencent" and r.status == "accepted"]
    receipts(ws, "tencent", by_tencent[:4], "failed")
    undelivered |= set(by_tencent[:4])
    # D (Dec 1, everyone): aliyun and tencent both refuse the account -> cmpp, billed when delivered (contract)
    d = send(ws, monkeypatch, "D", ["党工委"], [FakeAliyun({p: [REFUSED] for p, _ in everyone}),
                                                 FakeTencent({p: [REFUSED] for p, _ in everyone}), FakeCmpp()])
    ids_d = [r.id for r in rows(ws) if r.message_id == d and r.status == "accepted"]
    receipts(ws, "cmpp", ids_d[:5], "failed")
    undelivered |= set(ids_d[:5])

    history = rows(ws)
    assert {r.gateway for r in history} == {"aliyun", "tencent", "cmpp"}
    assert {r.gateway for r in history if r.message_id == c} == {"aliyun", "tencent"}  # failed over mid-send
    assert {r.gateway for r in history if r.id in undelivered} == {"aliyun", "tencent", "cmpp"}
    assert {r.status for r in history} >= {"accepted", "delivered", "failed", "in_doubt"}
    assert all(r.status == "failed" for r in history if r.id in undelivered)
    # every delivery recorded the parts counted here, the signature included though these gateways add it
    assert all(r.parts == parts_of[r.phone] for r in history)
    # the estimate each message had, checked against what was frozen for it
    for mid in (a, b, c, d):
        frozen = sum(r.parts for r in history if r.message_id == mid)
        assert estimate_message(ws, mid).parts == frozen  # the audience has not changed since

    def billed(r: Any) -> int:
        if r.status in ("accepted", "delivered"):
            return int(r.parts)
        return int(r.parts) if r.id in undelivered and RULE[r.gateway] == "submitted" else 0

    day = {a: "2026-11-25", b: "2026-11-26", c: "2026-11-27", d: "2026-12-01"}
    keys = {"day": lambda r: day[r.message_id], "message": lambda r: str(r.message_id),
            "group": lambda r: r.group_name, "gateway": lambda r: r.gateway}
    for by, key in keys.items():
        want_sms: dict[str, int] = defaultdict(int)
        want_cost: dict[str, Decimal] = defaultdict(Decimal)
        for r in history:
            want_sms[key(r)] += billed(r)
            want_cost[key(r)] += billed(r) * PRICE[r.gateway]
        rep = build(ws, by=by)
        got = {row.key: row for row in rep.rows}
        assert set(got) == set(want_sms), by
        for k in got:
            assert (got[k].billed_sms, got[k].cost, got[k].unpriced_sms) == (want_sms[k], want_cost[k], 0), (by, k)
        assert rep.total.cost == sum(want_cost.values()) and rep.total.billed_sms == sum(want_sms.values())
        assert rep.prices == {g: str(p) for g, p in sorted(PRICE.items())}
        assert rep.billing == RULE
    # the undelivered parts make the difference: not billed by aliyun or the cmpp contract, billed by tencent
    total = build(ws).total
    assert total.billed_sms == total.sms + sum(r.parts for r in history if r.id in undelivered and r.gateway == "tencent")

    # a message's own cost, and each month's spend per group (sub-groups included, in doubt counted as open)
    for mid in (a, b, c, d):
        spent = message_cost(ws, mid).spent
        assert spent is not None
        assert spent.cost == sum(billed(r) * PRICE[r.gateway] for r in history if r.message_id == mid)
        assert spent.open_parts == sum(r.parts for r in history if r.message_id == mid and r.status == "in_doubt")
    for month, mids in ((date(2026, 11, 1), {a, b, c}), (date(2026, 12, 1), {d})):
        lines = group_month_spend(ws, month)
        for branch in BRANCHES:
            mine = [r for r in history if r.message_id in mids and r.group_name == branch]
            assert lines[branch].spent.cost == sum(billed(r) * PRICE[r.gateway] for r in mine)
        top = lines["党工委"].spent
        assert top.cost == sum(lines[x].spent.cost for x in BRANCHES)
        assert top.total == sum((billed(r) + (r.parts if r.status == "in_doubt" else 0)) * PRICE[r.gateway]
                                for r in history if r.message_id in mids)

    # report --by group: each budgeted group's month, folded from the report's own rows where the
    # month is whole, read again where the report's span cuts it; both agree with the month's spend
    from broadcast.costs.budgets import set_budget

    set_budget(ws, "党工委", "50")
    set_budget(ws, "二支部", "5")
    for since in (None, date(2026, 11, 26)):
        got = {(b.group, b.month): b.spent.to_dict() for b in build(ws, by="group", since=since).budgets}
        want = {(g, f"{m:%Y-%m}"): group_month_spend(ws, m)[g].spent.to_dict()
                for m in (date(2026, 11, 1), date(2026, 12, 1)) for g in ("党工委", "二支部")}
        assert got == want


def test_a_gateway_without_a_price_is_reported_as_unknown_not_free(org, monkeypatch):
    monkeypatch.delenv("BROADCAST_PRICE_TENCENT")
    ws = org
    everyone = [(phone(b, i), n) for b in range(3) for i, n in enumerate(NAMES)]
    mid = send(ws, monkeypatch, "A", ["一支部"], [FakeAliyun({p: [REFUSED] for p, _ in everyone[:4]}),
                                                   FakeTencent(), FakeCmpp()])
    history = [r for r in rows(ws) if r.message_id == mid]
    by_tencent = sum(r.parts for r in history if r.gateway == "tencent")
    by_aliyun = sum(r.parts for r in history if r.gateway == "aliyun")
    assert by_tencent and by_aliyun
    rep = build(as_operator(ws, "auditor"), by="gateway")  # the settings of a new command: no tencent price
    got = {r.key: r for r in rep.rows}
    assert got["tencent"].unpriced_sms == by_tencent and got["tencent"].cost == 0
    assert got["tencent"].cost_text() == "cost unknown"
    assert got["aliyun"].cost == by_aliyun * PRICE["aliyun"]
    assert rep.total.cost_text().endswith(f"+ {by_tencent} SMS at no known price")
    assert rep.prices["tencent"] is None
    assert "SMS at no known price" in rep.headline
