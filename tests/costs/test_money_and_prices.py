"""Money in the office's terms, prices per gateway (environment over .env), billing rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from broadcast.config import load_settings
from broadcast.costs.money import exact, fen_to_yuan, month_of, month_range, parse_budget, yuan
from broadcast.costs.prices import PriceBook, billing_of, price_of, price_var
from broadcast.costs.spend import GroupTree
from broadcast.errors import ConfigError, InputError
from broadcast.messages.audience import AudienceMember


@pytest.mark.parametrize(("text", "fen"), [("300", 30000), ("300.5", 30050), ("300.50", 30050), ("1,200", 120000),
                                           ("¥600", 60000), ("600元", 60000), (" 0 ", 0), ("0.01", 1)])
def test_parse_budget(text, fen):
    assert parse_budget(text) == fen


@pytest.mark.parametrize("text", ["-1", "abc", "1.234", "", "1e3", "NaN", "300 元 5"])
def test_parse_budget_refuses(text):
    with pytest.raises(InputError):
        parse_budget(text)


def test_yuan_as_the_office_writes_it():
    assert yuan(Decimal("616.88")) == "≈ ¥617"
    assert yuan(Decimal("15422") * Decimal("0.04")) == "≈ ¥617"
    assert yuan(Decimal("1234.5")) == "≈ ¥1,235"
    assert yuan(Decimal("28.035")) == "≈ ¥28.04"
    assert yuan(Decimal("0")) == "≈ ¥0.00"
    assert yuan(None) == "cost unknown"
    assert yuan(fen_to_yuan(60000), approx=False) == "¥600"
    assert yuan(fen_to_yuan(60050), approx=False) == "¥600.50"
    assert exact(Decimal("15422") * Decimal("0.04")) == "616.88"
    assert exact(fen_to_yuan(30)) == "0.30" and exact(Decimal("1E+2")) == "100" and exact(None) is None


def test_months_are_local():
    # 2026-11-30 23:30 in Shanghai is 15:30 UTC: still November there
    assert month_of(datetime(2026, 11, 30, 15, 30, tzinfo=UTC), "Asia/Shanghai") == date(2026, 11, 1)
    assert month_of(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), "Asia/Shanghai") == date(2026, 12, 1)
    lo, hi = month_range(date(2026, 12, 1), "Asia/Shanghai")
    assert (lo, hi) == (datetime(2026, 11, 30, 16, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC))


def test_prices_from_the_environment_over_the_env_file(monkeypatch, tmp_path: Path):
    env = tmp_path / "prices.env"
    env.write_text("BROADCAST_PRICE_ALIYUN=0.045\nBROADCAST_PRICE_TENCENT=0.05\nBROADCAST_PRICE_ACME_SMS=1\n",
                   encoding="utf-8")
    monkeypatch.setenv("BROADCAST_ENV_FILE", str(env))
    monkeypatch.setenv("BROADCAST_PRICE_TENCENT", "0.048")
    s = load_settings()
    assert price_of(s, "aliyun") == Decimal("0.045") and price_of(s, "tencent") == Decimal("0.048")
    assert price_of(s, "acme-sms") == Decimal("1") and price_var("acme-sms") == "BROADCAST_PRICE_ACME_SMS"
    assert price_of(s, "cmpp") is None
    assert s.masked()["price_tencent"] == "0.048"
    monkeypatch.setenv("BROADCAST_PRICE_TENCENT", "")  # empty: unset, not zero
    assert price_of(load_settings(), "tencent") is None


@pytest.mark.parametrize("bad", ["-0.01", "abc", "0.0000001", "1,5", "¥0.05", "inf"])
def test_a_bad_price_fails_when_the_settings_load(monkeypatch, bad):
    monkeypatch.setenv("BROADCAST_PRICE_ALIYUN", bad)
    with pytest.raises(ConfigError, match=r"invalid setting BROADCAST_PRICE_ALIYUN="):
        load_settings()


def test_billing_rules_declared_and_overridden(monkeypatch):
    s = load_settings()
    assert billing_of(s, "aliyun") == "delivered"  # 运营商回执失败不计费
    assert {billing_of(s, g) for g in ("tencent", "twilio", "cmas", "cmpp", "smpp", "kannel", "http")} == {"submitted"}
    assert billing_of(s, "not-installed") == "submitted"
    monkeypatch.setenv("BROADCAST_BILLING_CMPP", "Delivered")
    book = PriceBook(load_settings())
    assert book.billing("cmpp") == "delivered"
    assert book.billed("cmpp", 10, 3) == 10 and book.billed("tencent", 10, 3) == 13


def test_the_group_tree_rolls_spend_up_and_never_loops():
    tree = GroupTree({1: "党工委", 2: "一支部", 3: "二支部", 4: "甲", 5: "乙"}, {1: None, 2: 1, 3: 1, 4: 5, 5: 4})
    assert tree.up(2) == [2, 1] and tree.up(None) == [] and tree.up(4) == [4, 5]
    assert sorted(tree.below(1)) == [2, 3]


def test_an_estimate_for_a_month_plan_without_a_message(monkeypatch):
    """The integrator's month plan: the audience of a series' day and its text, priced."""
    from broadcast.costs.estimate import estimate_audience

    monkeypatch.setenv("BROADCAST_PRICE_SIMULATOR", "0.04")
    people = [AudienceMember(i, f"+86138001380{i:02d}", "张三" if i % 2 else "欧阳明华", "一支部") for i in range(10)]
    body = "{name}同志：" + "学" * 58  # with 【城南新区】: 69 characters for 张三, 71 for 欧阳明华
    est = estimate_audience(load_settings(), people, body, "城南新区")
    assert (est.people, est.parts, est.by_size) == (10, 15, {1: 5, 2: 5})
    assert est.cost == Decimal("0.60") and est.text() == "15 billable SMS parts, ≈ ¥0.60 (simulator ¥0.04 a part)"
    assert estimate_audience(load_settings(), people, body, "城南新区", gateway="cmpp").cost is None
