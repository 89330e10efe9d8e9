"""Receipts endpoint benchmark. One command:

    python benchmarks/bench_receipts.py [--callbacks 10000] [--clients 32]

A real `broadcast receipts serve` process on 127.0.0.1 receives N Kannel-style delivery reports
(type 1, GET with the dlr-url query) from C concurrent keep-alive clients. It prints callbacks per
second, and checks that every callback answered 200 was recorded (zero loss). Baseline from the
same run: the same client against the stdlib mock gateway (`broadcast.gateways.mockserver`, no
database), the client-side ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def blast(port: int, paths: list[str] | list[tuple[str, str, bytes | None]], clients: int,
          method: str = "GET") -> tuple[float, int]:
    """Send every request from ``clients`` keep-alive connections at once: (seconds, answered 200).
    A request is a path (``method``; a POST carries ``{}``) or (method, path, JSON body or None)."""
    ok = [0] * clients

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for item in paths[i::clients]:
            if isinstance(item, str):
                verb, path, body = method, item, (b"{}" if method == "POST" else None)
            else:
                verb, path, body = item
            conn.request(verb, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            resp = conn.getresponse()
            resp.read()
            ok[i] += resp.status == 200
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--callbacks", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    n = args.callbacks
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "r.db"
        env = {**os.environ, "BROADCAST_DATABASE_URL": f"sqlite:///{db}", "BROADCAST_ENV_FILE": "/nonexistent"}
        subprocess.run([sys.executable, "-m", "broadcast", "db", "migrate"], env=env, check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "broadcast", "receipts", "serve", "--port", str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            paths = [f"/kannel?id={i}&type=1&ts=1795757092&to=%2B8613800000000&reply=ok&fid=f{i}" for i in range(1, n + 1)]
            elapsed, ok = blast(port, paths, args.clients)
            engine = sa.create_engine(f"sqlite:///{db}")
            deadline = time.monotonic() + 30
            while True:
                with engine.connect() as conn:
                    recorded = conn.execute(sa.text("SELECT count(*) FROM receipts")).scalar_one()
                if recorded >= ok or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(30)
        mock_port = free_port()
        mock = subprocess.Popen([sys.executable, "-m", "broadcast.gateways.mockserver", "--port", str(mock_port),
                                 "--record", str(Path(d) / "rec.jsonl")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(mock_port)
            base_elapsed, _ = blast(mock_port, ["/stats"] * n, args.clients)
        finally:
            mock.terminate()
            mock.wait(10)
    rate, base = n / elapsed, n / base_elapsed
    print(f"receipts serve: {n:,} Kannel callbacks from {args.clients} clients in {elapsed:.2f} s = {rate:,.0f}/s; "
          f"answered 200: {ok:,}; recorded: {recorded:,}; lost: {ok - recorded}")
    print(f"baseline (same client, stdlib mock gateway, no database): {base:,.0f}/s; ratio {rate / base:.2f}x")
    print(f"zero loss: {'OK' if ok == n and recorded == n else 'MISSED'}")
    return 0 if recorded == ok == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
