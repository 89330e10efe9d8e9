"""The aiohttp transport under httpx: same answers, and every failure classified as httpx's own
transport would classify it (sent / maybe sent / not sent), against real servers on 127.0.0.1
that misbehave at each step of an exchange."""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
from collections.abc import Awaitable, Callable

import httpx
import pytest

from broadcast.gateways.base import Outcome, SendItem, make_client, transport_error_result

BACKENDS = ["aiohttp", "httpx"]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0].encode(), headers, body


def _answer(status: str, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _serve(handler: Handler, fn: Callable[[str], Awaitable[None]]) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await fn(f"http://127.0.0.1:{port}/send")
    finally:
        server.close()


def _classify(exc: BaseException) -> tuple[Outcome, bool, bool]:
    r = transport_error_result(SendItem(1, "+8613800000000", "x"), exc)
    return r.outcome, r.maybe_sent, r.pause


def _client(backend: str, timeout: float = 2.0, in_flight: int = 4) -> httpx.AsyncClient:
    return make_client(timeout, in_flight, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_answers_headers_and_body_pass_through(backend: str) -> None:
    seen: list[tuple[bytes, dict[str, str], bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                req = await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            seen.append(req)
            if req[0].startswith(b"GET /gz"):
                writer.write(_answer("200 OK", gzip.compress(b'{"a": 1}'), "Content-Encoding: gzip"))
            elif req[0].startswith(b"POST /moved"):
                writer.write(_answer("302 Found", b"", "Location: /elsewhere"))
            else:
                writer.write(_answer("201 Created", '{"id": "m1", "echo": "好"}'.encode(), "X-Trace: t1",
                                     "Content-Type: application/json; charset=utf-8"))
            await writer.drain()
        writer.close()

    async def go(url: str) -> None:
        async with _client(backend) as c:
            r = await c.post(url, content="你好".encode(), headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
            assert r.status_code == 201 and r.json() == {"id": "m1", "echo": "好"} and r.headers["x-trace"] == "t1"
            assert r.http_version == "HTTP/1.1" and r.reason_phrase == "Created"
            gz = await c.get(url.replace("/send", "/gz"))
            assert gz.json() == {"a": 1}  # decoded by httpx, as with its own transport
            moved = await c.post(url.replace("/send", "/moved"), content=b"{}")
            assert moved.status_code == 302 and moved.headers["location"] == "/elsewhere"  # never followed
        first_line, headers, body = seen[0]
        assert first_line == b"POST /send HTTP/1.1" and body == "你好".encode()
        assert headers["authorization"] == "Bearer k" and headers["content-type"] == "application/json"
        assert headers["content-length"] == str(len(body))
        assert len(seen) == 3  # the redirect target was not requested

    asyncio.run(_serve(handler, go))


async def _close_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.close()


async def _reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _garbage_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"SMTP 220 hello\r\n\r\n")
    await writer.drain()
    writer.close()


async def _truncated_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\":")
    await writer.drain()
    writer.close()


async def _slow_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await asyncio.sleep(1.5)
    writer.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("handler", [_close_after_request, _reset_after_request, _garbage_answer, _truncated_body, _slow_answer],
                         ids=["hung-up", "reset", "not-http", "truncated", "read-timeout"])
def test_a_request_the_server_read_is_maybe_sent(backend: str, handler: Handler) -> None:
    """Whatever goes wrong after the server has the request, the send may have happened."""

    async def go(url: str) -> None:
        async with _client(backend, timeout=0.3) as c:
            with pytest.raises(httpx.TransportError) as err:
                await c.post(url, content=b'{"id": "1"}')
        assert _classify(err.value) == (Outcome.RETRYABLE, True, False), repr(err.value)

    asyncio.run(_serve(handler, go))


@pytest.mark.parametrize("backend", BACKENDS)
def test_connection_refused_is_not_sent(backend: str) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now

    async def go() -> None:
        async with _client(backend) as c:
            with pytest.raises(httpx.ConnectError) as err:
                await c.post(f"http://127.0.0.1:{port}/send", content=b"{}")
        assert _classify(err.value) == (Outcome.RETRYABLE, False, False)

    asyncio.run(go())


@pytest.mark.parametrize("backend", BACKENDS)
def test_waiting_too_long_for_a_pooled_connection_is_not_sent(backend: str) -> None:
    """One connection, held by a slow request: the second request times out before it is written."""
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append((await _read_request(reader))[2])
        await asyncio.sleep(1.0)
        writer.write(_answer("200 OK", b"{}"))
        await writer.drain()
        writer.close()

    async def go(url: str) -> None:
        async with _client(backend, timeout=2.0, in_flight=1) as c:
            slow = asyncio.create_task(c.post(url, content=b"first"))
            await asyncio.sleep(0.2)
            with pytest.raises((httpx.PoolTimeout, httpx.ConnectTimeout)) as err:
                await c.post(url, content=b"second", timeout=httpx.Timeout(0.2))
            assert (await slow).status_code == 200
        assert _classify(err.value) == (Outcome.RETRYABLE, False, False)
        assert received == [b"first"]

    asyncio.run(_serve(handler, go))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_http_url_pauses(backend: str) -> None:
    async def go() -> None:
        async with _client(backend) as c:
            with pytest.raises(httpx.UnsupportedProtocol) as err:
                await c.post("ftp://127.0.0.1/send", content=b"{}")
        assert _classify(err.value) == (Outcome.PERMANENT, False, True)

    asyncio.run(go())


def test_keeps_connections_alive_and_bounds_them() -> None:
    """Many requests, few connections: the pool reuses them and never opens more than max_in_flight."""
    conns = 0
    active = 0
    peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal conns, active, peak
        conns += 1
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.005)
            active -= 1
            writer.write(_answer("200 OK", b"{}"))
            await writer.drain()
        writer.close()

    async def go(url: str) -> None:
        async with _client("aiohttp", in_flight=4) as c:
            rs = await asyncio.gather(*(c.post(url, content=b"{}") for _ in range(200)))
        assert all(r.status_code == 200 for r in rs)

    asyncio.run(_serve(handler, go))
    assert conns <= 4 and peak <= 4
