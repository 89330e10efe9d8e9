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

import contextlib
import csv
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote_to_bytes

import httpx
import pytest
import sqlalchemy as sa

from broadcast.gateways import registry
from broadcast.messages.segments import count_segments
from tests.helpers.serve import free_port, serve_cli

pytestmark = pytest.mark.slow

BEARERBOX = os.environ.get("KANNEL_BEARERBOX", "/usr/sbin/bearerbox")
SMSBOX = os.environ.get("KANNEL_SMSBOX", "/usr/sbin/smsbox")
FAKESMSC = os.environ.get("KANNEL_FAKESMSC", "/usr/lib/kannel/test/fakesmsc")
_missing = [p for p in (BEARERBOX, SMSBOX, FAKESMSC) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
if _missing:
    pytest.skip(f"Kannel is not installed ({', '.join(_missing)} missing): apt-get install -y kannel kannel-extras",
                allow_module_level=True)

SECRET = "e2e-secret"
SENDER = "10690"
RECIPIENTS = 200
SHORT = "【城南】{name}同志：明天上午九点在三楼会议室开会，请准时参加。收到请回复。"
LONG = ("【城南】" + "各位同志：根据区委统一部署，本周六上午八点半在新区文化中心召开年度工作总结大会，"
        "请各支部书记带队，提前十五分钟到场签到，着正装，携带笔记本。会议期间请将手机调至静音。"
        "因故不能参加者，请于周五下午五点前向办公室请假并说明理由。停车位有限，请尽量乘坐公共交通。谢谢配合！")


def kannel_conf(tmp: Path, ports: dict[str, int], smsbox_extra: str = "") -> str:
    return f"""
group = core
admin-port = {ports['admin']}
admin-password = adm
admin-interface = 127.0.0.1
smsbox-port = {ports['smsbox']}
box-allow-ip = 127.0.0.1
log-level = 1
log-file = "{tmp}/bearerbox.log"
access-log = "{tmp}/access.log"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
host = 127.0.0.1
port = {ports['fake']}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports['smsbox']}
sendsms-port = {ports['sendsms']}
sendsms-interface = 127.0.0.1
log-level = 1
log-file = "{tmp}/smsbox.log"
{smsbox_extra}
group = sendsms-user
username = broadcast
password = kannel-pw
max-messages = 3
concatenation = true
"""


def wait_for(what: str, probe: Callable[[], bool], logs: list[Path], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if probe():
                return
        except (httpx.TransportError, OSError):
            pass
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.1)


@contextlib.contextmanager
def kannel(tmp: Path, extra: str = "", smsbox_extra: str = "",
           ports: dict[str, int] | None = None) -> Iterator[tuple[str, Path, list[Path]]]:
    """bearerbox, fakesmsc and smsbox; yields (sendsms URL, fakesmsc output, log files). ``extra``:
    more kannel.conf groups, appended; ``smsbox_extra``: more lines of the smsbox group; ``ports``:
    admin/smsbox/fake/sendsms ports chosen by the caller."""
    ports = ports or {k: free_port() for k in ("admin", "smsbox", "fake", "sendsms")}
    conf = tmp / "kannel.conf"
    conf.write_text(kannel_conf(tmp, ports, smsbox_extra) + extra)
    fake_out = tmp / "fakesmsc.out"
    logs = [tmp / "bearerbox.log", tmp / "smsbox.log", fake_out, tmp / "bearerbox.out", tmp / "smsbox.out"]
    procs: list[subprocess.Popen[bytes]] = []
    files = []

    def start(name: str, argv: list[str], out: Path) -> None:
        f = out.open("wb")
        files.append(f)
        procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=tmp))

    status = f"http://127.0.0.1:{ports['admin']}/status.txt?password=adm"
    try:
        start("bearerbox", [BEARERBOX, str(conf)], tmp / "bearerbox.out")
        wait_for("bearerbox", lambda: httpx.get(status, timeout=1).status_code == 200, logs)
        # -m 0: generate no mobile-originated messages, only print what the SMSC is sent
        start("fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r", str(ports["fake"]), "-m", "0", "1 2 text x"], fake_out)
        wait_for("the fake SMSC link", lambda: "online" in httpx.get(status, timeout=1).text, logs)
        start("smsbox", [SMSBOX, str(conf)], tmp / "smsbox.out")
        sendsms = f"http://127.0.0.1:{ports['sendsms']}/cgi-bin/sendsms"
        wait_for("smsbox", lambda: httpx.get(sendsms, timeout=1).status_code == 403, logs)  # up, no credentials
        wait_for("smsbox to connect to bearerbox", lambda: "smsbox:" in httpx.get(status, timeout=1).text, logs)
        yield sendsms, fake_out, logs
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in files:
            f.close()


_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (.*)>\s*$")


def received(fake_out: Path) -> list[tuple[str, str]]:
    """(receiver, text) per SMS fakesmsc got, concatenated parts joined (UDH ref/total/seq)."""
    whole: list[tuple[str, str]] = []
    parts: dict[tuple[str, int], dict[int, bytes]] = {}
    totals: dict[tuple[str, int], int] = {}
    for line in fake_out.read_text(errors="replace").splitlines():
        m = _GOT.search(line)
        if not m:
            continue
        sender, receiver, rest = m.groups()
        assert sender == SENDER, line
        kind, _, data = rest.partition(" ")
        if kind == "ucs-2":
            whole.append((receiver, unquote_to_bytes(data).decode("utf-16-be")))
        elif kind == "text":
            whole.append((receiver, data))
        elif kind == "udh":
            udh_enc, _, rest2 = data.partition(" ")
            udh = unquote_to_bytes(udh_enc)
            kind2, _, payload = rest2.partition(" ")
            assert udh[1] == 0x00 and kind2 == "data", line  # 8-bit reference concatenation IE
            ref, total, seq = udh[3], udh[4], udh[5]
            parts.setdefault((receiver, ref), {})[seq] = unquote_to_bytes(payload)
            totals[(receiver, ref)] = total
        else:
            raise AssertionError(f"unexpected fakesmsc line: {line}")
    for key, got in parts.items():
        assert sorted(got) == list(range(1, totals[key] + 1)), f"missing parts for {key}: {sorted(got)}"
        whole.append((key[0], b"".join(got[i] for i in sorted(got)).decode("utf-16-be")))
    return whole


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
