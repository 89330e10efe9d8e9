"""The receipts endpoint: an ASGI app (starlette, served by uvicorn) that records first, applies after.

Routes (``GET`` or ``POST``)::

    /<format>              secret, when one is set, in the ``X-Broadcast-Secret`` header
    /<secret>/<format>     secret in the path (Kannel's dlr-url cannot send headers)
    /healthz               liveness and counters (no secret needed, reveals no data)

``<format>`` is a key of ``broadcast.receipts.formats.FORMATS`` (``kannel``, ``simulator``, …), or of
``INBOUND_FORMATS`` for replies (``kannel-mo``, ``aliyun-mo``, …: see docs/replies.md). Replies take the
same bounds and secret, and are stored and taken in (opt-outs, the inbox, submissions) before the
answer, by a recorder of their own with the same group commit.

Record first — group commit. A callback is parsed, handed to the ``Recorder`` thread, and answered
only once its rows are committed to the ``receipts`` table. The recorder takes *everything that
queued up while the previous transaction ran* as its next batch (one multi-row INSERT, one commit),
so under a burst batches grow by themselves (hundreds of rows per commit) and at low load a
callback waits for one small commit. Why this and not a write-ahead file or
an in-memory queue answered at once:

* nothing acknowledged can be lost: a crash before the commit means no 2xx was sent, and a crash
  after it loses nothing; an in-memory queue answered immediately loses everything queued on a
  crash, and Kannel never retries a callback it saw succeed (nor one that failed);
* one store, no reconciliation: a journal file needs offsets, a checkpoint, and duplicates after a
  crash between the DB commit and the checkpoint (the ``receipts`` table has no key to dedupe on);
* throughput comes from batching, not from skipping durability: one fsync per batch, not per callback.
The cost: while the database is locked by another writer (SQLite, ``broadcast run`` freezing a big
audience), answers wait — up to ``BROADCAST_RECEIPTS_ANSWER_TIMEOUT_S``, then 503.

Apply after. The ``Applier`` thread applies PENDING rows to deliveries (``store.apply_pending``),
woken after each commit and every ``BROADCAST_RECEIPTS_APPLY_INTERVAL_S``, so a slow apply never
slows an answer. Receipts for a delivery still ``sending`` (the callback beat the run's own record
of Kannel's 202) stay PENDING and are retried.

Bounds: the body plus query string may not exceed ``BROADCAST_RECEIPTS_MAX_BYTES`` (413; uvicorn
itself caps the request line and headers at 16 KiB); the default bind is 127.0.0.1; access logs are
off (the path may hold the secret).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine

from broadcast.receipts import store
from broadcast.receipts.formats import FORMATS, INBOUND_FORMATS, BadCallback, Format, InboundFormat, Incoming
from broadcast.receipts.settings import ReceiptsSettings, load_receipts_settings  # noqa: F401  (re-exported)
from broadcast.twoway import intake

log = logging.getLogger("broadcast.receipts")

SECRET_HEADER = "x-broadcast-secret"


# -- record first -----------------------------------------------------------------------------

_STOP = object()


class Recorder:
    """Group commit: one thread inserts everything queued since its last commit, in one transaction."""

    def __init__(self, engine: Engine, max_batch: int = 5000, write_lock: threading.Lock | None = None,
                 write: Any = None, name: str = "receipts-recorder") -> None:
        self.engine = engine
        # what one batch is committed by: ``write(engine, rows, now)`` (default: the receipts log)
        self.write = write or store.record
        self.max_batch = max_batch
        self.write_lock = write_lock or threading.Lock()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.recorded = 0
        self.commits = 0
        self.largest_batch = 0
        self.on_commit: Any = None  # called (in the recorder thread) after each commit

    def start(self) -> None:
        self._thread.start()

    def submit(self, rows: Sequence[Any]) -> concurrent.futures.Future[int]:
        fut: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._q.put((list(rows), fut))
        return fut

    async def record(self, rows: Sequence[Any]) -> int:
        return await asyncio.wrap_future(self.submit(rows))

    def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            item = self._q.get()
            if item is _STOP:
                break
            batch = [item]
            n = len(item[0])
            while n < self.max_batch:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                n += len(item[0])
            self._write(batch)

    def _write(self, batch: list[tuple[list[Any], concurrent.futures.Future[int]]]) -> None:
        for _, fut in batch:
            fut.set_running_or_notify_cancel()  # a cancelled waiter's rows are still recorded
        live = batch
        rows = [row for rows_, _ in live for row in rows_]
        error: BaseException | None = None
        for attempt in range(3):
            try:
                with self.write_lock:
                    self.write(self.engine, rows, datetime.now(UTC))
                error = None
                break
            except Exception as exc:  # database locked or gone: retry briefly, then answer 503
                error = exc
                log.warning("%s: recording %d rows failed (attempt %d): %s", self._thread.name, len(rows), attempt + 1,
                            exc)
                time.sleep(0.05 * (attempt + 1))
        for rows_, fut in live:
            if fut.cancelled():
                continue
            if error is None:
                fut.set_result(len(rows_))
            else:
                fut.set_exception(error)
        if error is None:
            self.recorded += len(rows)
            self.commits += 1
            self.largest_batch = max(self.largest_batch, len(rows))
            if self.on_commit is not None:
                self.on_commit()


# -- apply after ------------------------------------------------------------------------------

class Applier:
    """Applies PENDING receipts to deliveries in the background, in batches."""

    def __init__(self, engine: Engine, interval_s: float = 0.2, batch: int = 1000,
                 write_lock: threading.Lock | None = None, min_gap_s: float = 0.05) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.batch = batch
        self.write_lock = write_lock or threading.Lock()
        self.min_gap_s = min_gap_s  # a burst of commits wakes it at most this often
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="receipts-applier", daemon=True)
        self.applied = 0
        self.changed = 0
        self.flagged = 0
        self.unknown = 0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._wake.set()
            self._thread.join()
        self.run_once()  # what the last commits brought

    def run_once(self) -> store.Applied:
        """One sweep over every PENDING row (deferred rows stay pending)."""
        total = store.Applied()
        cursor = 0
        while True:
            with self.write_lock:
                out = store.apply_pending(self.engine, datetime.now(UTC), after_id=cursor, limit=self.batch)
            for name in ("scanned", "changed", "applied", "flagged", "unknown", "deferred"):
                setattr(total, name, getattr(total, name) + getattr(out, name))
            total.flagged_ids += out.flagged_ids
            cursor = out.last_id
            if out.scanned < self.batch:
                break
        self.applied += total.applied
        self.changed += total.changed
        self.flagged += total.flagged
        self.unknown += total.unknown
        for rid in total.flagged_ids:
            log.warning("receipt %d contradicts its delivery's final state: kept, flagged (applied=2)", rid)
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
            except Exception as exc:  # keep serving; rows stay pending and are retried
                log.warning("applying receipts failed: %s", exc)
                self._stop.wait(1.0)
            self._stop.wait(self.min_gap_s)


# -- the ASGI app -----------------------------------------------------------------------------

@dataclass
class Counters:
    received: int = 0
    rejected: int = 0
    replies: int = 0


def create_app(engine: Engine, settings: ReceiptsSettings | None = None,
               formats: Mapping[str, Format] | None = None,
               inbound_formats: Mapping[str, InboundFormat] | None = None,
               rules: intake.Rules | None = None) -> Any:
    """The starlette app. Its lifespan starts and stops the recorder and applier threads.

    Replies (``inbound_formats``) go through a recorder of their own that stores and takes them in
    (``broadcast.twoway.intake``, by ``rules``: default, the settings' keywords and reply window)
    in one transaction per batch, before they are answered; an opt-out is committed before the
    provider hears back, so before any later claim."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    cfg = settings or ReceiptsSettings()
    fmts = dict(FORMATS) if formats is None else formats
    replies_fmts = dict(INBOUND_FORMATS) if inbound_formats is None else inbound_formats
    if rules is None:
        from broadcast.config import load_settings

        rules = intake.Rules.of(load_settings())
    take_in_rules = rules
    secret = cfg.secret.get_secret_value().encode()
    # One writer at a time inside this process: SQLite's busy handler sleeps up to 100 ms when two
    # connections race for the write lock, which would throttle the recorder to a few hundred rows/s.
    write_lock = threading.Lock()
    recorder = Recorder(engine, write_lock=write_lock)
    applier = Applier(engine, cfg.apply_interval_s, write_lock=write_lock)
    recorder.on_commit = applier.wake
    replies = Recorder(engine, write_lock=write_lock, name="replies-recorder",
                       write=lambda eng, items, now: intake.record(eng, items, now, take_in_rules))
    counters = Counters()

    def reject(status: int, text: str) -> Response:
        counters.rejected += 1
        return PlainTextResponse(text, status_code=status)

    async def read_body(request: Request, budget: int) -> bytes | None:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > budget):
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > budget:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def callback(request: Request) -> Response:
        name = request.path_params["fmt"]
        fmt: Format | InboundFormat | None = fmts.get(name) or replies_fmts.get(name)
        if fmt is None:
            return reject(404, "unknown receipt format")
        given = request.path_params.get("secret")
        if secret:
            token = (given if given is not None else request.headers.get(SECRET_HEADER, "")).encode()
            if not hmac.compare_digest(token, secret):
                return reject(403, "forbidden")
        elif given is not None:
            return reject(404, "not found")
        raw_query: bytes = request.scope.get("query_string", b"")
        body = await read_body(request, cfg.max_bytes - len(raw_query))
        if body is None:
            return reject(413, "request too large")
        query = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)
        if body and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            query += parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        incoming = Incoming(request.method, query, request.headers, body,
                            path=request.url.path, raw_query=raw_query.decode("latin-1"))
        try:
            parsed = fmt.parse(incoming)
        except BadCallback as exc:
            if exc.status == 403:
                return reject(403, "forbidden")
            return reject(exc.status, f"bad callback: {exc}")
        if parsed:
            try:
                if isinstance(fmt, InboundFormat):  # replies: stored and taken in before the answer
                    await asyncio.wait_for(replies.record(parsed), cfg.answer_timeout_s)
                else:
                    raw = json.dumps({"method": incoming.method, "query": raw_query.decode("latin-1"),
                                      "body": body.decode("utf-8", "replace")}, ensure_ascii=False)
                    await asyncio.wait_for(recorder.record([(name, r, raw) for r in parsed]), cfg.answer_timeout_s)
            except Exception as exc:
                log.warning("%s not recorded: %s", "reply" if isinstance(fmt, InboundFormat) else "receipt", exc)
                return reject(503, "not recorded, try again later")
        if isinstance(fmt, InboundFormat):
            counters.replies += len(parsed)
        else:
            counters.received += len(parsed)
        return Response(fmt.ack_body, media_type=fmt.ack_media_type)

    async def health(request: Request) -> Response:
        return JSONResponse({
            "ok": True, "received": counters.received, "rejected": counters.rejected,
            "recorded": recorder.recorded, "commits": recorder.commits, "largest_batch": recorder.largest_batch,
            "applied": applier.applied, "changed": applier.changed, "flagged": applier.flagged,
            "unknown": applier.unknown, "replies": counters.replies, "replies_recorded": replies.recorded,
        })

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        recorder.start()
        replies.start()
        applier.start()
        try:
            yield
        finally:
            await asyncio.to_thread(replies.close)
            await asyncio.to_thread(recorder.close)
            await asyncio.to_thread(applier.close)

    app = Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/{fmt}", callback, methods=["GET", "POST"]),
            Route("/{secret}/{fmt}", callback, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.recorder, app.state.applier, app.state.counters = recorder, applier, counters
    app.state.replies = replies
    return app


# -- serving ----------------------------------------------------------------------------------

def _config(app: Any, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                          server_header=False, backlog=4096, timeout_keep_alive=30, timeout_graceful_shutdown=5)


def serve(engine: Engine, settings: ReceiptsSettings | None = None, host: str = "127.0.0.1", port: int = 8787,
          rules: intake.Rules | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers); pending receipts are committed on the way out."""
    import uvicorn

    uvicorn.Server(_config(create_app(engine, settings, rules=rules), host, port)).run()


@contextlib.contextmanager
def running(engine: Engine, settings: ReceiptsSettings | None = None, host: str = "127.0.0.1",
            port: int = 0, rules: intake.Rules | None = None,
            inbound_formats: Mapping[str, InboundFormat] | None = None) -> Iterator[str]:
    """Serve in a background thread (tests, ``worker --receipts-port``); yields the base URL.
    ``port=0`` picks a free port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    app = create_app(engine, settings, rules=rules, inbound_formats=inbound_formats)
    server = uvicorn.Server(_config(app, host, sock.getsockname()[1]))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="receipts-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the receipts server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
