"""A real HTTP/1.1 mock SMS gateway on raw asyncio (stdlib only), speaking the ``http`` gateway's
contract. Our "Kannel fakesmsc": tests and benchmarks point ``BROADCAST_HTTP_URL`` at it.

Run it::

    python -m broadcast.gateways.mockserver --port 0 --record FILE [--delay-ms N] [--fail-every N]
        [--status-429-every N] [--retry-after S] [--reset-every N] [--malformed-every N]
        [--reject-suffix DIGITS] [--batch] [--host 127.0.0.1]

It prints ``listening on PORT`` on stdout once ready. In-process: ``port, stop = start_in_thread(...)``.

Contract:

* ``POST <any path>`` with ``{"id","to","text"}`` → ``200 {"id": "m<n>"}``; with
  ``{"messages": [...]}`` → ``200 {"results": [{"id","status":"accepted","provider_id"}...]}``.
  Invalid JSON or missing fields → 400. ``--batch`` makes it batch-only (a single body → 400).
* Every message the gateway *accepts* is appended to the record file as one JSON line
  ``{"id","to","text","t"}`` and flushed BEFORE the answer is written, so a test that kills the
  client can count exactly what the gateway received. Refused messages are not recorded.
* ``GET /stats`` → ``{"count": <messages recorded>, "requests": <POSTs seen>}``.

Faults, counted over POST requests (the N-th, 2N-th, … request; first match wins, in this order):

* ``--reset-every N``: record the messages, then reset the connection without answering (the
  answer to a real send is lost: the client must treat it as maybe sent);
* ``--status-429-every N``: ``429`` with ``Retry-After: S`` (``--retry-after``, default 1), not recorded;
* ``--fail-every N``: ``500``, not recorded;
* ``--malformed-every N``: record, then answer ``200`` with a truncated JSON body.

``--reject-suffix 4`` refuses numbers ending in 4, the way the ``http`` gateway's contract says a
number alone is refused: a single request gets ``400 {"error": "invalid number", "code":
"INVALID_NUMBER", "fault": "recipient"}``, a batch gets that item as ``failed`` with ``"fault":
"recipient"``. (A refused number never pauses a message: for a storm, use ``--fail-every 1``.)
``--delay-ms`` waits after recording, before answering (a simulated gateway latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["MockConfig", "MockGateway", "main", "serve", "start_in_thread"]

MAX_BODY = 16 * 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class MockConfig:
    record: Path | None = None
    delay_ms: float = 0.0
    fail_every: int = 0
    status_429_every: int = 0
    retry_after: str = "1"
    reset_every: int = 0
    malformed_every: int = 0
    reject_suffix: tuple[str, ...] = ()
    batch: bool = False


class _Reset(Exception):
    """Drop the connection without answering."""


class MockGateway:
    """The request handler and its counters; ``handle`` serves one connection (keep-alive)."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.count = 0  # messages recorded
        self.requests = 0  # POSTs seen
        self._file: TextIO | None = open(config.record, "a", encoding="utf-8") if config.record else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- HTTP/1.1 framing ------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                while lines and not lines[0]:  # tolerate stray CRLFs between requests
                    lines.pop(0)
                try:
                    method, target, version = lines[0].split(" ", 2)
                except (ValueError, IndexError):
                    await self._write(writer, 400, {"error": "bad request line"}, close=True)
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                try:
                    body = await self._read_body(reader, headers)
                except ValueError as exc:
                    await self._write(writer, 413 if "large" in str(exc) else 400, {"error": str(exc)}, close=True)
                    return
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                conn = headers.get("connection", "").lower()
                keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
                try:
                    status, payload, extra = await self._respond(method, target, body)
                except _Reset:
                    _abort(writer)
                    return
                await self._write(writer, status, payload, close=not keep_alive, extra=extra)
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            if not writer.is_closing():
                writer.close()

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = int(headers.get("content-length", "0") or "0")
        if length > MAX_BODY:
            raise ValueError("body too large")
        return await reader.readexactly(length) if length else b""

    @staticmethod
    async def _write(
        writer: asyncio.StreamWriter, status: int, payload: Any, *, close: bool = False, extra: dict[str, str] | None = None
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
        for name, value in (extra or {}).items():
            head.append(f"{name}: {value}")
        if close:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    # -- the gateway contract --------------------------------------------------------------

    async def _respond(self, method: str, target: str, body: bytes) -> tuple[int, Any, dict[str, str] | None]:
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/stats":
            return 200, {"count": self.count, "requests": self.requests}, None
        if method != "POST":
            return 404, {"error": "not found"}, None
        self.requests += 1
        n = self.requests
        cfg = self.config
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": "invalid JSON"}, None
        raw = data.get("messages") if isinstance(data, dict) else None
        is_batch = isinstance(raw, list)
        if not is_batch and cfg.batch:
            return 400, {"error": "batch body expected: {\"messages\": [...]}"}, None
        messages: list[Any] = raw if isinstance(raw, list) else [data]
        if not all(isinstance(m, dict) and {"id", "to", "text"} <= m.keys() for m in messages):
            return 400, {"error": "each message needs id, to and text"}, None

        def every(k: int) -> bool:
            return k > 0 and n % k == 0

        fault = next(
            (name for name, k in (("reset", cfg.reset_every), ("429", cfg.status_429_every), ("500", cfg.fail_every),
                                  ("malformed", cfg.malformed_every)) if every(k)),
            None,
        )
        if fault == "429":
            return 429, {"error": "throttled"}, {"Retry-After": cfg.retry_after}
        if fault == "500":
            return 500, {"error": "simulated failure"}, None
        rejected = {i for i, m in enumerate(messages) if cfg.reject_suffix and str(m["to"]).endswith(cfg.reject_suffix)}
        if not is_batch and rejected:
            return 400, {"error": "invalid number", "code": "INVALID_NUMBER", "fault": "recipient"}, None
        first_pid = self._record([m for i, m in enumerate(messages) if i not in rejected])
        if cfg.delay_ms:
            await asyncio.sleep(cfg.delay_ms / 1000)
        if fault == "reset":
            raise _Reset
        if fault == "malformed":
            return 200, b'{"id": "m', None
        if not is_batch:
            return 200, {"id": f"m{first_pid}"}, None
        results = []
        pid = first_pid
        for i, m in enumerate(messages):
            if i in rejected:
                results.append({"id": m["id"], "status": "failed", "error": "INVALID_NUMBER", "fault": "recipient"})
            else:
                results.append({"id": m["id"], "status": "accepted", "provider_id": f"m{pid}"})
                pid += 1
        return 200, {"results": results}, None

    def _record(self, messages: list[dict[str, Any]]) -> int:
        """Append and flush one line per message; returns the first provider number used."""
        first = self.count + 1
        if not messages:
            return first
        self.count += len(messages)
        if self._file is not None:
            t = time.time()
            self._file.write(
                "".join(
                    json.dumps({"id": m["id"], "to": m["to"], "text": m["text"], "t": t}, ensure_ascii=False) + "\n"
                    for m in messages
                )
            )
            self._file.flush()
        return first


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), like a gateway that crashed mid-answer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def serve(config: MockConfig, host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.Server, MockGateway, int]:
    """Start serving on the running loop; returns the server, the handler and the bound port."""
    gateway = MockGateway(config)
    server = await asyncio.start_server(gateway.handle, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    return server, gateway, bound


def start_in_thread(
    record: Path | str | None = None, *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> tuple[int, Callable[[], None]]:
    """Run the mock in a daemon thread with its own event loop; returns ``(port, stop)``.

    ``options`` are ``MockConfig`` fields (``delay_ms=50``, ``fail_every=10``, ``batch=True`` …).
    ``stop()`` closes the server and the record file and joins the thread; it is idempotent.
    """
    config = MockConfig(record=Path(record) if record else None, **options)
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server, gateway, bound = loop.run_until_complete(serve(config, host, port))
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            return
        state.update(loop=loop, port=bound)
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            gateway.close()
            loop.close()

    thread = threading.Thread(target=run, name="mock-sms-gateway", daemon=True)
    thread.start()
    ready.wait()
    if "error" in state:
        raise state["error"]

    def stop() -> None:
        loop = state.get("loop")
        if loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    return state["port"], stop


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m broadcast.gateways.mockserver", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    p.add_argument("--record", type=Path, help="append one JSON line per accepted message")
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--fail-every", type=int, default=0, metavar="N", help="answer 500 to every N-th request")
    p.add_argument("--status-429-every", type=int, default=0, metavar="N", help="answer 429 to every N-th request")
    p.add_argument("--retry-after", default="1", help="Retry-After value sent with 429 (seconds or HTTP date)")
    p.add_argument("--reset-every", type=int, default=0, metavar="N", help="record, then reset every N-th request")
    p.add_argument("--malformed-every", type=int, default=0, metavar="N", help="record, then answer truncated JSON")
    p.add_argument("--reject-suffix", action="append", default=[], metavar="DIGITS", help="refuse numbers ending so")
    p.add_argument("--batch", action="store_true", help="accept only batch bodies {\"messages\": [...]}")
    return p.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    config = MockConfig(
        record=args.record, delay_ms=args.delay_ms, fail_every=args.fail_every,
        status_429_every=args.status_429_every, retry_after=args.retry_after, reset_every=args.reset_every,
        malformed_every=args.malformed_every, reject_suffix=tuple(args.reject_suffix), batch=args.batch,
    )
    server, gateway, port = await serve(config, args.host, args.port)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stopped.set)
        except (NotImplementedError, RuntimeError):  # Windows
            pass
    print(f"listening on {port}", flush=True)
    try:
        await stopped.wait()
    finally:
        server.close()
        gateway.close()  # open connections die with the process


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_main(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
