"""Replies benchmark. One command:

    python benchmarks/bench_inbound.py [--replies 10000] [--clients 32] [--members 2000]

A real `broadcast receipts serve` process on 127.0.0.1 (SQLite, a secret in the path) receives N
replies pushed by C concurrent keep-alive clients, in four providers' formats in turn: Kannel
`sms-service` GETs, Aliyun SmsUp JSON arrays (1-3 replies each), Tencent 短信回复 JSON and
simulator JSON. One reply in ten is "TD" from a member; the rest are feedback, some from numbers
nobody knows. Before the blast a message to every member is frozen (queued, as a send under way
would be).

It prints replies per second and checks:

* zero loss: every reply in a push answered 200 is stored (``inbound``), exactly once, and every
  "TD" is on the opt-out list, every other reply in the inbox;
* opt-outs before the next claim: claiming the message's queued deliveries right after the last
  answer takes none of an opted-out number (they were expired ``OPTED_OUT`` in the transactions
  that stored the replies).

Baseline from the same run: the same clients pushing the same number of Kannel delivery reports
to the same server (receipts are recorded and answered, applied later): the ratio says what
taking replies in (matching, opt-outs, the inbox, in the answering transaction) costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_from_bytes, urlencode

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_receipts import blast, free_port, wait_port

SECRET = "bench-secret"


def phone(i: int) -> str:
    return f"139{i:08d}"


def pushes(n: int, members: int) -> tuple[list[tuple[str, str, bytes | None]], int, set[str]]:
    """(method, path, body) per push, carrying ``n`` replies in all; how many; the TD phones."""
    out: list[tuple[str, str, bytes | None]] = []
    td: set[str] = set()
    i = 0
    now = datetime.now(UTC)
    beijing = (now + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")

    def reply(k: int) -> tuple[str, str]:
        if k % 10 == 0 and k // 10 < members:
            td.add("+86" + phone(k // 10))
            return phone(k // 10), "TD"
        who = phone(k % members) if k % 3 else f"137{k:08d}"  # a third from unknown numbers
        return who, f"第{k}条意见：路灯不亮，请尽快修复。"

    while i < n:
        kind = len(out) % 4
        if kind == 0:  # Kannel sms-service GET, UCS-2 as UTF-16BE bytes
            who, text = reply(i)
            q = urlencode({"id": str(uuid.uuid4()), "from": who, "to": "10690", "time": int(now.timestamp()),
                           "coding": 2, "charset": "UTF-16BE"})
            q += "&text=" + quote_from_bytes(text.encode("utf-16-be"), safe="")
            out.append(("GET", f"/{SECRET}/kannel-mo?{q}", None))
            i += 1
        elif kind == 1:  # Aliyun SmsUp: a JSON array
            rows = []
            for _ in range(min(1 + len(out) % 3, n - i)):
                who, text = reply(i)
                rows.append({"phone_number": who, "send_time": beijing, "content": text, "sign_name": "城南新区",
                             "dest_code": "1234", "sequence_id": 100_000 + i})
                i += 1
            out.append(("POST", f"/{SECRET}/aliyun-mo", json.dumps(rows, ensure_ascii=False).encode()))
        elif kind == 2:  # Tencent 短信回复
            who, text = reply(i)
            body = {"extend": "", "mobile": who, "nationcode": "86", "sign": "城南新区", "text": text,
                    "time": int(now.timestamp())}
            out.append(("POST", f"/{SECRET}/tencent-mo", json.dumps(body, ensure_ascii=False).encode()))
            i += 1
        else:  # the simulator's own
            who, text = reply(i)
            body = [{"id": f"sim-{i}", "phone": who, "text": text, "to": "10690"}]
            out.append(("POST", f"/{SECRET}/simulator-mo", json.dumps(body, ensure_ascii=False).encode()))
            i += 1
    return out, i, td


def prepare(env: dict[str, str], tmp: Path, members: int) -> int:
    """Members in one group and a message to them, frozen (queued deliveries); its id."""
    csv = tmp / "members.csv"
    csv.write_text("姓名,手机\n" + "".join(f"同志{i},{phone(i)}\n" for i in range(members)), encoding="utf-8")
    for args in (["db", "migrate"], ["group", "add", "全体"], ["member", "import", str(csv), "--group", "全体"],
                 ["message", "new", "--text", "精神早餐：不忘初心。", "--to", "全体"]):
        subprocess.run([sys.executable, "-m", "broadcast", *args], env=env, check=True, capture_output=True)
    os.environ.update(env)
    from broadcast.dispatch.dispatcher import Dispatcher
    from broadcast.gateways.simulator import SimulatorGateway, SimulatorSettings
    from broadcast.workspace import Workspace

    ws = Workspace.open()
    try:
        Dispatcher(ws, SimulatorGateway(SimulatorSettings())).start_message(1)
    finally:
        ws.close()
    return 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replies", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--members", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "r.db"
        env = {**os.environ, "BROADCAST_DATABASE_URL": f"sqlite:///{db}", "BROADCAST_ENV_FILE": "/nonexistent",
               "BROADCAST_RECEIPTS_SECRET": SECRET, "BROADCAST_REQUIRE_APPROVAL": "false",
               "BROADCAST_QUIET_HOURS": "", "BROADCAST_OPERATOR": "bench"}
        message_id = prepare(env, Path(d), args.members)
        requests, n, td = pushes(args.replies, args.members)
        dlrs = [("GET", f"/{SECRET}/kannel?id={i}&type=1&ts=1795757092&to=%2B8613800000000&reply=ok&fid=f{i}", None)
                for i in range(1, n + 1)]
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "broadcast", "receipts", "serve", "--port", str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            base_elapsed, base_ok = blast(port, dlrs, args.clients)
            elapsed, ok = blast(port, requests, args.clients)
            from broadcast.dispatch import ledger

            engine = sa.create_engine(f"sqlite:///{db}")
            claimed = ledger.claim(engine, "bench-claim", [message_id], 1_000_000, datetime.now(UTC) + timedelta(hours=1),
                                   timedelta(minutes=5))
        finally:
            server.terminate()
            server.wait(30)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM inbound")).scalar_one()
            inbox = conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one()
            optouts = set(conn.execute(sa.text("SELECT phone FROM optouts WHERE source = 'reply'")).scalars())
            expired = conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE error_code = 'OPTED_OUT'")).scalar_one()
    claimed_optouts = sum(c.phone in optouts for c in claimed)
    rate, base = n / elapsed, n / base_elapsed
    print(f"replies: {n:,} in {len(requests):,} pushes (Kannel, Aliyun, Tencent, simulator) from {args.clients} "
          f"clients in {elapsed:.2f} s = {rate:,.0f} replies/s; pushes answered 200: {ok:,}/{len(requests):,}")
    print(f"stored: {stored:,}; inbox: {inbox:,}; opted out by reply: {len(optouts):,} of {len(td):,} TD; "
          f"queued deliveries taken back: {expired:,}")
    print(f"next claim: {len(claimed):,} deliveries claimed, {claimed_optouts} of them to an opted-out number")
    print(f"baseline (same clients and server, {n:,} Kannel delivery reports): {base:,.0f}/s (answered 200: "
          f"{base_ok:,}); ratio {rate / base:.2f}x")
    good = (ok == len(requests) and stored == n and optouts == td and inbox == n - len(td)
            and claimed_optouts == 0 and expired == len(td))
    print(f"zero loss, opt-outs before the next claim: {'OK' if good else 'FAILED'}")
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
