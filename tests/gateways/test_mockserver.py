"""The mock SMS gateway on 127.0.0.1, driven by the real http gateway (and raw sockets)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcast.gateways.base import Outcome, SendItem, SendResult, make_client
from broadcast.gateways.http import HttpGateway, HttpSettings
from broadcast.gateways.mockserver import start_in_thread


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "received.jsonl"


@pytest.fixture
def mock(record: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    options: dict[str, Any] = getattr(request, "param", {})
    port, stop = start_in_thread(record, **options)
    yield port
    stop()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def items(n: int, text: str = "【精神早餐】今天也要好好吃饭") -> list[SendItem]:
    return [SendItem(i, f"+86139{i:08d}", f"{text} #{i}") for i in range(1, n + 1)]


def send_all(port: int, batch_items: list[SendItem], *, chunk: int = 1, concurrency: int = 4, **settings: Any) -> list[SendResult]:
    """Send like the engine would: a few concurrent workers over one shared client."""

    async def go() -> list[SendResult]:
        async with make_client(5, concurrency) as client:
            gateway = HttpGateway(HttpSettings(url=f"http://127.0.0.1:{port}/sms", batch=chunk, **settings), client)
            groups = [batch_items[i : i + chunk] for i in range(0, len(batch_items), chunk)]
            sem = asyncio.Semaphore(concurrency)

            async def one(group: list[SendItem]) -> list[SendResult]:
                async with sem:
                    return await gateway.send(group)

            out = await asyncio.gather(*(one(g) for g in groups))
            return [r for rs in out for r in rs]

    return asyncio.run(go())


def stats(port: int) -> dict[str, int]:
    return httpx.get(f"http://127.0.0.1:{port}/stats").json()


def test_single_messages_are_recorded_exactly(mock: int, record: Path) -> None:
    sent = items(60)
    results = send_all(mock, sent)
    assert [r.delivery_id for r in results] == [i.delivery_id for i in sent]
    assert all(r.outcome is Outcome.ACCEPTED and r.provider_id and r.provider_id.startswith("m") for r in results)
    got = lines(record)
    assert sorted((g["id"], g["to"], g["text"]) for g in got) == sorted((str(i.delivery_id), i.phone, i.text) for i in sent)
    assert all(isinstance(g["t"], float) for g in got)
    assert stats(mock) == {"count": 60, "requests": 60}


def test_batches_are_recorded_exactly(mock: int, record: Path) -> None:
    sent = items(450)
    results = send_all(mock, sent, chunk=200)
    assert [r.delivery_id for r in results] == list(range(1, 451))
    assert all(r.outcome is Outcome.ACCEPTED for r in results)
    assert len({r.provider_id for r in results}) == 450
    assert sorted(int(g["id"]) for g in lines(record)) == list(range(1, 451))
    assert stats(mock) == {"count": 450, "requests": 3}


@pytest.mark.parametrize("mock", [{"reject_suffix": ("3",), "batch": True}], indirect=True)
def test_batch_only_mode_and_rejected_numbers(mock: int, record: Path) -> None:
    results = send_all(mock, items(10), chunk=5)
    failed = {r.delivery_id for r in results if r.outcome is Outcome.PERMANENT}
    assert failed == {3} and results[2].code == "INVALID_NUMBER"
    assert sorted(int(g["id"]) for g in lines(record)) == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    (single,) = send_all(mock, items(1))
    assert single.outcome is Outcome.PERMANENT and single.code == "400"  # batch-only


@pytest.mark.parametrize("mock", [{"status_429_every": 2, "retry_after": "3"}], indirect=True)
def test_429_is_not_recorded_and_carries_retry_after(mock: int, record: Path) -> None:
    results = send_all(mock, items(6), concurrency=1)
    throttled = [r for r in results if r.outcome is Outcome.RETRYABLE]
    assert len(throttled) == 3 and all(r.retry_after_s == 3.0 and not r.maybe_sent for r in throttled)
    assert len(lines(record)) == 3


@pytest.mark.parametrize("mock", [{"fail_every": 3}], indirect=True)
def test_500_is_not_recorded(mock: int, record: Path) -> None:
    results = send_all(mock, items(9), concurrency=1)
    assert sum(r.outcome is Outcome.RETRYABLE and not r.maybe_sent for r in results) == 3
    assert len(lines(record)) == 6


@pytest.mark.parametrize("mock", [{"reset_every": 2}], indirect=True)
def test_reset_after_recording_is_maybe_sent(mock: int, record: Path) -> None:
    results = send_all(mock, items(6), concurrency=1)
    lost = [r for r in results if r.outcome is Outcome.RETRYABLE]
    assert len(lost) == 3 and all(r.maybe_sent for r in lost)
    # the gateway did receive them: this is exactly the in-doubt case
    assert len(lines(record)) == 6


@pytest.mark.parametrize("mock", [{"malformed_every": 2}], indirect=True)
def test_malformed_answers(mock: int, record: Path) -> None:
    single = send_all(mock, items(4), concurrency=1)
    assert all(r.outcome is Outcome.ACCEPTED for r in single)
    assert [r.provider_id is None for r in single] == [False, True, False, True]
    batch = send_all(mock, items(4), chunk=2, concurrency=1)  # requests 5 and 6: the 6th is malformed
    assert [r.outcome for r in batch[:2]] == [Outcome.ACCEPTED] * 2
    assert all(r.outcome is Outcome.RETRYABLE and r.maybe_sent for r in batch[2:])
    assert len(lines(record)) == 8


@pytest.mark.parametrize("mock", [{"delay_ms": 300}], indirect=True)
def test_read_timeout_after_recording_is_maybe_sent(mock: int, record: Path) -> None:
    (result,) = send_all(mock, items(1), timeout_s=0.1)
    assert result.outcome is Outcome.RETRYABLE and result.maybe_sent and result.code == "ReadTimeout"
    assert len(lines(record)) == 1


def test_nothing_listening_is_a_plain_retry() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (result,) = send_all(port, items(1))
    assert result.outcome is Outcome.RETRYABLE and not result.maybe_sent


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_keep_alive_pipelining_chunked_and_errors(mock: int) -> None:
    body = json.dumps({"id": "1", "to": "+8613900000001", "text": "hi"}).encode()
    req = b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    chunked = b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    out = _raw(mock, req + req + chunked)
    assert out.count(b"HTTP/1.1 200 OK") == 3 and b'{"id": "m3"}' in out
    assert _raw(mock, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{x}").startswith(b"HTTP/1.1 400")
    assert _raw(mock, b"GET /nope HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 404")


@pytest.mark.slow  # starts processes
def test_command_line_server(tmp_path: Path) -> None:
    rec = tmp_path / "cli.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "broadcast.gateways.mockserver", "--port", "0", "--record", str(rec), "--batch"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on ")
        port = int(line.split()[-1])
        results = send_all(port, items(7), chunk=7)
        assert all(r.outcome is Outcome.ACCEPTED for r in results)
        assert stats(port)["count"] == 7 and len(lines(rec)) == 7
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_mock_is_stdlib_only() -> None:
    code = "import sys, broadcast.gateways.mockserver; bad=[m for m in ('httpx','pydantic') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mock", [{"reject_suffix": ("3", "7")}], indirect=True)
def test_rejected_numbers_are_refused_as_recipient_faults(mock: int, record: Path) -> None:
    """The http contract's way of refusing one number: single answers and batch rows alike."""
    single = send_all(mock, items(8))
    assert {r.delivery_id for r in single if r.recipient_fault} == {3, 7}
    assert all(r.outcome is Outcome.PERMANENT and r.code == "400:INVALID_NUMBER" for r in single if r.recipient_fault)
    answer = httpx.post(f"http://127.0.0.1:{mock}/sms", json={"id": "9", "to": "+8613900000003", "text": "x"})
    assert answer.status_code == 400 and answer.json()["fault"] == "recipient"
    batch = send_all(mock, items(10), chunk=10)
    assert {r.delivery_id for r in batch if r.recipient_fault} == {3, 7}
    assert sorted(int(g["id"]) for g in lines(record)) == sorted([1, 2, 4, 5, 6, 8] + [1, 2, 4, 5, 6, 8, 9, 10])
