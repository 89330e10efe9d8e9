"""Replies pushed to the receipts endpoint (uvicorn on 127.0.0.1): stored and taken in before the
answer, the same push twice stored once, the secret and the size bound apply, a concurrent burst
loses nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from broadcast.gateways.base import Inbound
from broadcast.gateways.push import BadCallback, InboundFormat, Incoming
from broadcast.receipts.server import ReceiptsSettings, running
from broadcast.twoway import intake

SECRET = "s3cret-Token"


def parse(req: Incoming) -> list[Inbound]:
    try:
        items = json.loads(req.body)
        return [Inbound("test", i["id"], i["phone"], "10690001", i["text"], datetime.now(UTC), req.body) for i in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCallback(f"not a test reply: {exc}") from None


FORMATS = {"test-mo": InboundFormat(parse, b'{"ok":true}', "application/json")}


@pytest.fixture
def endpoint(setup):
    settings = ReceiptsSettings(secret=SECRET, max_bytes=4096)  # type: ignore[arg-type]
    with running(setup.engine, settings, rules=intake.Rules.of(setup.settings), inbound_formats=FORMATS) as base:
        yield base, setup


def count(ws, sql: str) -> int:
    with ws.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_an_opt_out_pushed_is_committed_before_the_answer_and_a_retry_is_stored_once(endpoint) -> None:
    base, ws = endpoint
    body = json.dumps([{"id": "a1", "phone": "13800000001", "text": "TD"}, {"id": "a2", "phone": "13800000002",
                                                                             "text": "路灯不亮"}])
    with httpx.Client(base_url=f"{base}/{SECRET}", timeout=10) as client:
        r = client.post("/test-mo", content=body)
        assert (r.status_code, r.content) == (200, b'{"ok":true}')
        assert count(ws, "select count(*) from optouts where phone = '+8613800000001'") == 1  # before any wait
        assert client.post("/test-mo", content=body).status_code == 200  # the provider retries
        assert client.post("/test-mo", content=b"[{").status_code == 400
    assert count(ws, "select count(*) from inbound") == 2 and count(ws, "select count(*) from feedback") == 1


def test_replies_need_the_secret_and_respect_the_size_bound(endpoint) -> None:
    base, ws = endpoint
    body = json.dumps([{"id": "b1", "phone": "13800000001", "text": "TD"}])
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/test-mo", content=body).status_code == 403
        assert client.post("/wrong/test-mo", content=body).status_code == 403
        big = json.dumps([{"id": "b2", "phone": "13800000001", "text": "长" * 5000}])
        assert client.post(f"/{SECRET}/test-mo", content=big).status_code == 413
    assert count(ws, "select count(*) from inbound") == 0 and count(ws, "select count(*) from optouts") == 0


def test_a_concurrent_burst_of_replies_loses_nothing(endpoint) -> None:
    base, ws = endpoint
    with httpx.Client(base_url=f"{base}/{SECRET}", timeout=30) as client:  # one pool, 16 threads
        def push(i: int) -> int:
            body = json.dumps([{"id": f"c{i}", "phone": f"139{i:08d}", "text": "TD" if i % 10 == 0 else f"意见{i}"}])
            return client.post("/test-mo", content=body).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(push, range(300)))
    assert codes == [200] * 300
    assert count(ws, "select count(*) from inbound") == 300
    assert count(ws, "select count(*) from optouts") == 30 and count(ws, "select count(*) from feedback") == 270
