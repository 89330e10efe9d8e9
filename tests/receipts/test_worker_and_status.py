"""`worker --receipts-port` does the whole job in one process; `receipts status`; receipts that
never come make deliveries 'unconfirmed' in reports, never 'delivered'."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC

import pytest
import sqlalchemy as sa

from broadcast.db.dispatch_models import Delivery, ReceiptLog


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sent(cli, monkeypatch):
    """One message to three people, sent through the console gateway (no receipts of its own)."""
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    monkeypatch.setenv("BROADCAST_GATEWAY", "console")
    assert cli("group", "add", "一支部").exit_code == 0
    for i in range(3):
        assert cli("member", "add", f"人{i}", f"1380013800{i}", "-g", "一支部").exit_code == 0
    assert cli("message", "new", "--text", "通知", "--to", "一支部").exit_code == 0
    assert cli("message", "approve", "1", env={"BROADCAST_OPERATOR": "leader"}).exit_code == 0
    assert cli("run").exit_code == 0
    return cli


def _ids(ws):
    with ws.engine.connect() as conn:
        return list(conn.execute(sa.select(Delivery.__table__.c.id).order_by(Delivery.__table__.c.id)).scalars())


@pytest.mark.slow
def test_worker_serves_receipts_and_stops_cleanly_on_sigterm(sent, ws):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "broadcast", "worker", "--poll", "0.5", "--receipts-port", str(port)],
                            env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        body = json.dumps([{"delivery_id": i, "status": "delivered"} for i in _ids(ws)]).encode()
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/simulator", data=body,
                                             headers={"Content-Type": "application/json"})
                assert urllib.request.urlopen(req, timeout=5).status == 200
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        d = Delivery.__table__
        while time.monotonic() < deadline:
            with ws.engine.connect() as conn:
                if conn.execute(sa.select(sa.func.count()).where(d.c.status == "delivered")).scalar_one() == 3:
                    break
            time.sleep(0.2)
        with ws.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).where(d.c.status == "delivered")).scalar_one() == 3
            raw = conn.execute(sa.select(ReceiptLog.__table__.c.raw)).scalars().first()
        assert raw and json.loads(json.loads(raw)["body"])[0]["delivery_id"] == 1  # kept for auditors
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_receipts_status_and_unconfirmed(sent, cli, monkeypatch):
    r = cli("receipts", "status", "--json")
    assert r.exit_code == 0 and r.json() == [{"gateway": "console", "awaiting": 3, "oldest": r.json()[0]["oldest"],
                                              "unconfirmed": 0, "receipts_pending": 0}]
    rep = cli("report", "--json").json()["total"]
    assert (rep["accepted"], rep["delivered"], rep["unconfirmed"]) == (3, 0, 0)
    from datetime import datetime, timedelta

    later = (datetime.now(UTC) + timedelta(hours=73)).isoformat()
    monkeypatch.setenv("BROADCAST_NOW", later)
    assert cli("receipts", "status", "--json").json()[0]["unconfirmed"] == 3
    rep = cli("report", "--json").json()["total"]
    assert (rep["accepted"], rep["delivered"], rep["unconfirmed"]) == (3, 0, 3)
    assert "Unconfirmed" in cli("report", env={"COLUMNS": "200"}).stdout
