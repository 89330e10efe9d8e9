"""The receipts endpoint served for real (uvicorn on 127.0.0.1, in a thread), fed Kannel-style
GET callbacks and simulator JSON: applied, secret, size bound, duplicates, and a burst."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from broadcast.receipts import store
from broadcast.receipts.server import ReceiptsSettings, running
from tests.helpers.receipt_rows import receipt_rows, status_of
from tests.helpers.serve import serve_cli

SECRET = "s3cret-Token"


@pytest.fixture
def server(engine: sa.Engine) -> Iterator[str]:
    settings = ReceiptsSettings(secret=SECRET, max_bytes=2048, apply_interval_s=0.05)  # type: ignore[arg-type]
    with running(engine, settings) as base:
        yield base


@pytest.fixture
def open_server(engine: sa.Engine) -> Iterator[str]:
    with running(engine, ReceiptsSettings(apply_interval_s=0.05)) as base:
        yield base


def kannel_query(did: int, kind: int, reply: str = "", ts: int = 1795757092) -> str:
    """What Kannel fetches after expanding our dlr-url (values URL-encoded by Kannel)."""
    return urlencode({"id": did, "type": kind, "ts": ts, "to": "+8613800000001", "reply": reply, "fid": f"smsc-{did}"})


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def applied_all(engine: sa.Engine) -> bool:
    return store.pending_count(engine) == 0


def test_kannel_callbacks_are_recorded_then_applied(server: str, engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    a, b, c = make_deliveries(3)
    with httpx.Client(base_url=f"{server}/{SECRET}", timeout=5) as client:
        for q in (kannel_query(a, 8, "ACK/"), kannel_query(a, 1, "id:x stat:DELIVRD err:000"),
                  kannel_query(b, 2, "id:y stat:UNDELIV err:001"), kannel_query(c, 16, "NACK/0x0b/Invalid Destination"),
                  kannel_query(c, 4)):
            r = client.get(f"/kannel?{q}")
            assert r.status_code == 200 and r.text == "OK"
    wait_until(lambda: applied_all(engine))
    assert status_of(engine, a, b, c) == ["delivered", "failed", "failed"]
    rows = receipt_rows(engine)
    assert [(x.delivery_id, x.status, x.code, x.gateway) for x in rows] == [
        (a, "accepted", "8:ACK/", "kannel"), (a, "delivered", "1:DELIVRD", "kannel"),
        (b, "failed", "2:UNDELIV:err001", "kannel"), (c, "failed", "16:NACK/0x0b/Invalid Destination", "kannel"),
        (c, "buffered", "4", "kannel"),
    ]
    assert all(x.provider_id == f"smsc-{x.delivery_id}" for x in rows)


def test_out_of_order_and_unknown_ids(server: str, engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1)
    with httpx.Client(base_url=f"{server}/{SECRET}", timeout=5) as client:
        assert client.get(f"/kannel?{kannel_query(a, 1)}").status_code == 200  # Kannel sends 1 before 8
        wait_until(lambda: applied_all(engine))
        assert client.get(f"/kannel?{kannel_query(a, 8, 'ACK/')}").status_code == 200
        assert client.get(f"/kannel?{kannel_query(a, 2)}").status_code == 200  # failure after delivered
        assert client.get(f"/kannel?{kannel_query(987654, 1)}").status_code == 200  # unknown id: logged
    wait_until(lambda: applied_all(engine))
    assert status_of(engine, a) == ["delivered"]
    assert [x.applied for x in receipt_rows(engine)] == [store.APPLIED, store.APPLIED, store.FLAGGED, store.UNKNOWN]


def test_duplicates_are_idempotent(server: str, engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1)
    with httpx.Client(base_url=f"{server}/{SECRET}", timeout=5) as client:
        for _ in range(5):
            assert client.get(f"/kannel?{kannel_query(a, 1)}").status_code == 200
    wait_until(lambda: applied_all(engine))
    with engine.connect() as conn:
        delivered_at, updated_at = conn.execute(sa.text("select delivered_at, updated_at from deliveries where id=:i"),
                                                {"i": a}).one()
    assert status_of(engine, a) == ["delivered"] and len(receipt_rows(engine)) == 5
    with httpx.Client(base_url=f"{server}/{SECRET}", timeout=5) as client:
        assert client.get(f"/kannel?{kannel_query(a, 1)}").status_code == 200
    wait_until(lambda: applied_all(engine))
    with engine.connect() as conn:
        again = conn.execute(sa.text("select delivered_at, updated_at from deliveries where id=:i"), {"i": a}).one()
    assert again == (delivered_at, updated_at)  # the sixth copy changed nothing


def test_bad_or_missing_secret_is_rejected(server: str, engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    (a,) = make_deliveries(1)
    q = kannel_query(a, 1)
    with httpx.Client(base_url=server, timeout=5) as client:
        assert client.get(f"/wrong/kannel?{q}").status_code == 403
        assert client.get(f"/kannel?{q}").status_code == 403
        assert client.get(f"/kannel?{q}", headers={"X-Broadcast-Secret": "wrong"}).status_code == 403
        assert client.get(f"/{SECRET[:-1]}/kannel?{q}").status_code == 403
        assert client.get(f"/kannel?{q}", headers={"X-Broadcast-Secret": SECRET}).status_code == 200
        assert client.get("/healthz").json()["rejected"] == 4
    wait_until(lambda: applied_all(engine))
    assert len(receipt_rows(engine)) == 1 and status_of(engine, a) == ["delivered"]


def test_oversized_request_is_rejected(server: str, engine: sa.Engine) -> None:
    with httpx.Client(base_url=f"{server}/{SECRET}", timeout=5) as client:
        long_reply = "x" * 3000  # max_bytes=2048
        assert client.get(f"/kannel?{kannel_query(1, 1, long_reply)}").status_code == 413
        big = b"[" + b",".join([b'{"delivery_id": 1, "status": "delivered"}'] * 100) + b"]"
        assert client.post("/simulator", content=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed body is counted
            for _ in range(10):
                yield b" " * 500

        assert client.post("/simulator", content=chunks()).status_code == 413
    assert receipt_rows(engine) == []


def test_bad_callbacks_and_unknown_format(server: str, engine: sa.Engine) -> None:
    with httpx.Client(base_url=f"{server}/{SECRET}", timeout=5) as client:
        assert client.get("/kannel?id=1&type=3").status_code == 400
        assert client.get("/kannel?type=1").status_code == 400
        assert client.get(f"/nosuch?{kannel_query(1, 1)}").status_code == 404
        assert client.post("/simulator", content=b"not json").status_code == 400
    assert receipt_rows(engine) == []


def test_simulator_json_and_no_secret_configured(open_server: str, engine: sa.Engine, make_deliveries: Callable[..., list[int]]) -> None:
    a, b = make_deliveries(2, gateway="simulator")
    with httpx.Client(base_url=open_server, timeout=5) as client:
        r = client.post("/simulator", json=[{"delivery_id": a, "status": "delivered", "code": "DELIVRD", "at": "2026-11-27T08:00:00Z"},
                                            {"delivery_id": b, "status": "failed", "code": "UNDELIV", "at": 1795757092}])
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert client.get(f"/anything/kannel?{kannel_query(a, 1)}").status_code == 404  # no secret path without a secret
    wait_until(lambda: applied_all(engine))
    assert status_of(engine, a, b) == ["delivered", "failed"]
    assert {x.gateway for x in receipt_rows(engine)} == {"simulator"}


@pytest.fixture
def served_cli(engine: sa.Engine, tmp_path: Path) -> Iterator[str]:
    """``broadcast receipts serve`` in its own process (its own GIL, as in production)."""
    with serve_cli(tmp_path / "receipts-serve.log", {"BROADCAST_RECEIPTS_SECRET": SECRET}) as base:
        yield base


def test_burst_of_concurrent_callbacks_loses_nothing(served_cli: str, engine: sa.Engine,
                                                     make_deliveries: Callable[..., list[int]]) -> None:
    """5,000 Kannel callbacks (RECEIPTS_BENCH_CALLBACKS to change it) from 32 concurrent
    keep-alive clients: every one answered 200 and already a committed row when answered."""
    n = int(os.environ.get("RECEIPTS_BENCH_CALLBACKS", "5000"))
    ids = make_deliveries(n)
    clients = 32
    codes: list[int] = []
    lock = threading.Lock()

    def client(part: list[int]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(served_cli.rsplit(":", 1)[1]), timeout=30)
        mine = []
        for did in part:
            conn.request("GET", f"/{SECRET}/kannel?{kannel_query(did, 1, 'stat:DELIVRD')}")
            response = conn.getresponse()
            response.read()
            mine.append(response.status)
        conn.close()
        with lock:
            codes.extend(mine)

    threads = [threading.Thread(target=client, args=(ids[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert codes.count(200) == n, {c: codes.count(c) for c in set(codes)}
    with engine.connect() as conn:  # every acknowledged callback is already a committed row
        assert conn.execute(sa.text("select count(*), count(distinct delivery_id) from receipts")).one() == (n, n)
    health = httpx.get(f"{served_cli}/healthz", timeout=5).json()
    print(f"\nreceipts burst: {n} callbacks in {elapsed:.2f} s = {n / elapsed:.0f}/s ({clients} clients); "
          f"{health['commits']} commits, largest batch {health['largest_batch']}")
    assert health["recorded"] == n and health["largest_batch"] > 1  # group commit did batch
    wait_until(lambda: applied_all(engine), 60)
    assert set(status_of(engine, *ids)) == {"delivered"}
