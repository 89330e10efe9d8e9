"""End to end against a real Kannel: bearerbox + smsbox + Kannel's own fake SMSC (``fakesmsc``).

Debian: ``apt-get install -y kannel kannel-extras`` (bearerbox/smsbox come with ``kannel``,
``/usr/lib/kannel/test/fakesmsc`` with ``kannel-extras``). Skipped, with the reason, where they are
absent. Everything listens on free 127.0.0.1 ports; every process started here is stopped here.

Flow: ``broadcast receipts serve`` (own process) ← DLR callbacks ← smsbox ← bearerbox ⇄ fakesmsc;
``broadcast run`` (in-process CLI, gateway ``kannel``) → smsbox sendsms. Asserts that fakesmsc got
each recipient's exact text exactly once (UCS-2 decoded, concatenated parts joined by their UDH),
and that every delivery reached ``delivered`` through Kannel's callbacks (fake SMSC: type 1 and 8).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from broadcast.gateways import registry
from broadcast.messages.segments import count_segments
from tests.helpers.kannel import SENDER, kannel, received, skip_without_kannel, wait_for
from tests.helpers.serve import serve_cli

skip_without_kannel()
pytestmark = pytest.mark.slow

SECRET = "e2e-secret"
RECIPIENTS = 200
SHORT = "【城南】{name}同志：明天上午九点在三楼会议室开会，请准时参加。收到请回复。"
LONG = ("【城南】" + "各位同志：根据区委统一部署，本周六上午八点半在新区文化中心召开年度工作总结大会，"
        "请各支部书记带队，提前十五分钟到场签到，着正装，携带笔记本。会议期间请将手机调至静音。"
        "因故不能参加者，请于周五下午五点前向办公室请假并说明理由。停车位有限，请尽量乘坐公共交通。谢谢配合！")


def test_broadcast_through_real_kannel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., object],
                                       ws: object) -> None:
    monkeypatch.setitem(registry.BUILTINS, "kannel", "broadcast.gateways.kannel:KannelGateway")
    engine: sa.Engine = ws.engine  # type: ignore[attr-defined]
    for key, value in {"BROADCAST_REQUIRE_APPROVAL": "false", "BROADCAST_QUIET_HOURS": "",
                       "BROADCAST_RECEIPTS_SECRET": SECRET, "BROADCAST_MAX_PARTS": "3"}.items():
        monkeypatch.setenv(key, value)

    names = [f"同志{i:03d}" for i in range(RECIPIENTS)]
    phones = [f"+86139{i:08d}" for i in range(RECIPIENTS)]
    with (tmp_path / "members.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["姓名", "手机"])
        w.writerows(zip(names, [p[3:] for p in phones]))
    with (tmp_path / "long.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["姓名", "手机"])
        w.writerows(zip(names[:5], [p[3:] for p in phones[:5]]))
    assert count_segments(LONG).parts == 3 and count_segments(SHORT.format(name=names[0])).parts == 1

    with serve_cli(tmp_path / "receipts.log") as receipts, kannel(tmp_path) as (sendsms, fake_out, logs):
        monkeypatch.setenv("BROADCAST_GATEWAY", "kannel")
        monkeypatch.setenv("BROADCAST_KANNEL_URL", sendsms)
        monkeypatch.setenv("BROADCAST_KANNEL_USERNAME", "broadcast")
        monkeypatch.setenv("BROADCAST_KANNEL_PASSWORD", "kannel-pw")
        monkeypatch.setenv("BROADCAST_KANNEL_SENDER", SENDER)
        monkeypatch.setenv("BROADCAST_KANNEL_MAX_PARTS", "3")
        monkeypatch.setenv("BROADCAST_RECEIPTS_URL", f"{receipts}/{SECRET}")

        for args in (("group", "add", "全体"), ("group", "add", "长信组"),
                     ("member", "import", str(tmp_path / "members.csv"), "--group", "全体"),
                     ("member", "import", str(tmp_path / "long.csv"), "--group", "长信组"),
                     ("gateway", "check")):
            result = cli(*args)
            assert result.exit_code == 0, result  # type: ignore[attr-defined]
        for text, group in ((SHORT, "全体"), (LONG, "长信组")):
            result = cli("message", "new", "--text", text, "--to", group, "--json")
            assert result.exit_code == 0 and result.json()["status"] == "approved", result  # type: ignore[attr-defined]
        started = time.perf_counter()
        result = cli("run", "--json")
        sent_s = time.perf_counter() - started
        assert result.exit_code == 0, result  # type: ignore[attr-defined]
        report = result.json()  # type: ignore[attr-defined]
        assert report["accepted"] == RECIPIENTS + 5 and report["failed"] == 0, report

        def all_delivered() -> bool:
            with engine.connect() as conn:
                left = conn.execute(sa.text("select count(*) from deliveries where status != 'delivered'")).scalar_one()
                pending = conn.execute(sa.text("select count(*) from receipts where applied = 0")).scalar_one()
            return left == 0 and pending == 0

        wait_for("every delivery to be delivered by Kannel's DLRs", all_delivered, logs + [tmp_path / "receipts.log"], 60)
        total_s = time.perf_counter() - started

    expected = Counter([(p, SHORT.format(name=n)) for p, n in zip(phones, names)] + [(p, LONG) for p in phones[:5]])
    got = Counter(received(fake_out))
    assert got == expected, (sorted(set(got) - set(expected))[:3], sorted(set(expected) - set(got))[:3])

    with engine.connect() as conn:
        rows = conn.execute(sa.text("select status, code, gateway from receipts")).all()
        deliveries = conn.execute(sa.text("select status, count(*) from deliveries group by status")).all()
    assert deliveries == [("delivered", RECIPIENTS + 5)]
    kinds = Counter(r.status for r in rows)
    assert kinds["delivered"] == RECIPIENTS + 5 and {r.gateway for r in rows} == {"kannel"}
    assert kinds["accepted"] >= RECIPIENTS + 5  # the fake SMSC sends type 8 too (order not guaranteed)
    print(f"\nKannel e2e: {RECIPIENTS + 5} SMS ({RECIPIENTS + 15} parts) sent in {sent_s:.2f} s, "
          f"all delivered after {total_s:.2f} s; receipts logged: {dict(kinds)}")
