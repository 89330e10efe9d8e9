"""End to end against a real SMSC process: the npm ``smpp`` package's server (tests/smpp_sim/server.js).

Install: ``npm install --prefix tests/smpp_sim`` (skipped, saying so, without node or the package).
The workspace is set up through the CLI (groups, members imported from CSV, two messages), then one
real pass of the dispatcher sends them through the ``smpp`` gateway (``run_once``, in-process,
waiting for the pulled receipts). The simulator answers after a latency, refuses one destination
(ESME_RINVDSTADR), throttles (the first submits and any over a per-second rate: ESME_RTHROTTLED),
and sends a deliver_sm receipt for every part it accepts. Asserts: each recipient received its exact
text exactly once (parts joined by their UDH from the simulator's log); every other delivery is
``delivered`` through those receipts; the refused one failed alone, as a recipient fault, and the
message was not paused; the throttle answers were seen and nothing was lost.
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
from tests.helpers.smpp_sim import sim_problem, smpp_sim

pytestmark = pytest.mark.slow

_problem = sim_problem()
if _problem:
    pytest.skip(_problem, allow_module_level=True)

RECIPIENTS = 500
LONG_TO = 5
SENDER = "10690"
RECEIPT_WAIT_S = 5.0
SHORT = "【城南】{name}同志：明天上午九点在三楼会议室开会，请准时参加。收到请回复。"
LONG = ("【城南】各位同志：根据区委统一部署，本周六上午八点半在新区文化中心召开年度工作总结大会，"
        "请各支部书记带队，提前十五分钟到场签到，着正装，携带笔记本。会议期间请将手机调至静音。"
        "因故不能参加者，请于周五下午五点前向办公室请假并说明理由。停车位有限，请尽量乘坐公共交通。谢谢配合！")


def _csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["姓名", "手机"])
        w.writerows(rows)


def test_broadcast_through_the_smpp_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              cli: Callable[..., object], ws: object) -> None:
    from broadcast.dispatch.service import run_once
    from broadcast.workspace import Workspace

    monkeypatch.setitem(registry.BUILTINS, "smpp", "broadcast.gateways.smpp:SmppGateway")
    engine: sa.Engine = ws.engine  # type: ignore[attr-defined]
    for key, value in {"BROADCAST_REQUIRE_APPROVAL": "false", "BROADCAST_QUIET_HOURS": "", "BROADCAST_MAX_PARTS": "3",
                       "BROADCAST_RETRY_BASE_S": "0.05", "BROADCAST_RETRY_MAX_S": "0.5"}.items():
        monkeypatch.setenv(key, value)
    names = [f"同志{i:03d}" for i in range(RECIPIENTS)]
    phones = [f"+86139{i:08d}" for i in range(RECIPIENTS)]
    refused = phones[123]
    _csv(tmp_path / "members.csv", list(zip(names, [p[3:] for p in phones])))
    _csv(tmp_path / "long.csv", list(zip(names[:LONG_TO], [p[3:] for p in phones[:LONG_TO]])))
    assert count_segments(LONG).parts == 3 and count_segments(SHORT.format(name=names[0])).parts == 1

    with smpp_sim(tmp_path, accounts=["broadcast:e2e-pw"], latency_ms=2, refuse=[refused[1:]],
                  throttle_first=5, throttle_rate=150) as sim:
        for key, value in {"BROADCAST_GATEWAY": "smpp", "BROADCAST_SMPP_HOST": sim.host,
                           "BROADCAST_SMPP_PORT": str(sim.port), "BROADCAST_SMPP_SYSTEM_ID": "broadcast",
                           "BROADCAST_SMPP_PASSWORD": "e2e-pw", "BROADCAST_SMPP_SOURCE_ADDR": SENDER,
                           "BROADCAST_SMPP_WINDOW": "16"}.items():
            monkeypatch.setenv(key, value)
        for args in (("group", "add", "全体"), ("group", "add", "长信组"),
                     ("member", "import", str(tmp_path / "members.csv"), "--group", "全体"),
                     ("member", "import", str(tmp_path / "long.csv"), "--group", "长信组"),
                     ("gateway", "check", "--online")):
            result = cli(*args)
            assert result.exit_code == 0, result  # type: ignore[attr-defined]
        message_ids = []
        for text, group in ((SHORT, "全体"), (LONG, "长信组")):
            result = cli("message", "new", "--text", text, "--to", group, "--json")
            assert result.exit_code == 0 and result.json()["status"] == "approved", result  # type: ignore[attr-defined]
            message_ids.append(result.json()["id"])  # type: ignore[attr-defined]

        started = time.perf_counter()
        workspace = Workspace.open()
        try:
            # receipt_wait_s: the dispatcher waits for pulled receipts. It waits the whole time here, as
            # receipts that came before their delivery's answer was recorded stay pending until the
            # wait ends (Dispatcher._await_receipts does not apply them): keep it short.
            report = run_once(workspace, receipt_wait_s=RECEIPT_WAIT_S)
        finally:
            workspace.close()
        elapsed = time.perf_counter() - started
        submits = sim.submits()

    # what the SMSC got: every recipient its exact text, exactly once
    expected = Counter([(p[1:], SHORT.format(name=n)) for p, n in zip(phones, names) if p != refused]
                       + [(p[1:], LONG) for p in phones[:LONG_TO]])
    got = Counter((dest, text) for dest, texts in submits.texts().items() for text in texts)
    assert got == expected, (sorted(set(got) - set(expected))[:3], sorted(set(expected) - set(got))[:3])
    accepted = submits.accepted()
    assert len(accepted) == RECIPIENTS - 1 + 3 * LONG_TO
    assert len({s.message_id for s in accepted}) == len(accepted)
    statuses = Counter(s.status for s in submits)
    throttled = statuses[0x58]
    assert throttled > 5, statuses  # the first five, then those over 150 a second
    assert statuses[0x0B] == 1  # the refused destination, submitted once: a permanent answer is not retried
    assert {s.data_coding for s in accepted} == {8}
    assert all(s.esm_class == 0x40 for s in accepted if s.destination in {p[1:] for p in phones[:LONG_TO]}
               and len(s.short_message) > 6 and s.short_message[:3] == b"\x05\x00\x03")

    # what broadcast recorded: delivered through the receipts, the refused one failed alone
    with engine.connect() as conn:
        deliveries = dict(conn.execute(sa.text("select status, count(*) from deliveries group by status")).all())
        bad = conn.execute(sa.text("select phone, status, error_code from deliveries where status != 'delivered'")).all()
        msgs = dict(conn.execute(sa.text("select id, status from messages")).all())
        receipts = Counter(r[0] for r in conn.execute(sa.text("select status from receipts where gateway = 'smpp'")))
    assert deliveries == {"delivered": RECIPIENTS - 1 + LONG_TO, "failed": 1}, (deliveries, report)
    assert [(b.phone, b.status, b.error_code) for b in bad] == [(refused, "failed", "ESME_RINVDSTADR")]
    assert all(msgs[i] != "paused" for i in message_ids), msgs
    assert receipts["delivered"] == RECIPIENTS - 1 + LONG_TO
    parts = RECIPIENTS - 1 + 3 * LONG_TO
    print(f"\nSMPP e2e: {RECIPIENTS - 1 + LONG_TO} SMS ({parts} parts) accepted, 1 refused, {throttled} throttle "
          f"answers; pass {elapsed:.2f} s with a {RECEIPT_WAIT_S:g} s receipt wait; messages {msgs}")
