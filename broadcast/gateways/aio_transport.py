"""An httpx transport that sends through aiohttp: the httpx API for every gateway, a faster pool under it.

Why: httpx 0.28's connection pool spends more CPU per request the more requests are in flight
(encode/httpx#3215, encode/httpcore#1035); with a slow gateway and many requests in flight it
stops keeping up with what the latency allows, where aiohttp does (the figures: README,
benchmarks/bench_dispatch.py (b)).
Gateways keep speaking httpx (``client.post``, ``httpx.Response``, ``httpx.MockTransport`` in
tests); only the bytes on the wire go through aiohttp.

Why not the ``httpx-aiohttp`` package: it reports a connection the server dropped after the
request was written as ``ConnectTimeout``, which the dispatch engine must read as "never sent"
(safe to resend) — a duplicate SMS. Here every aiohttp error is mapped by *when* it happened:

==========================================  ===========================  ===========================
aiohttp error                               httpx error                  the request reached the
                                                                         server?
==========================================  ===========================  ===========================
ConnectionTimeoutError (connect, pool wait)  ConnectTimeout               no
ClientConnectorError (refused, DNS, TLS)     ConnectError                 no
NonHttpUrlClientError                        UnsupportedProtocol          no (configuration)
InvalidURL                                   InvalidURL (not Request-)    no (configuration)
other timeouts (socket read, total)          ReadTimeout                  maybe
ServerDisconnectedError                      RemoteProtocolError          maybe
ClientPayloadError, ClientResponseError      RemoteProtocolError          maybe
ClientOSError, reset, other OSError          ReadError                    maybe
==========================================  ===========================  ===========================

Timeouts come from the request's httpx ``Timeout``: ``pool + connect`` bounds waiting for and
opening a connection, ``connect`` the TCP/TLS connect, ``read`` each wait for the answer, and the
sum of all four the whole exchange (aiohttp has no separate write timeout).

Not supported (not used by any gateway): streamed request or response bodies (both are read whole),
HTTP/2, client certificates. Proxies from the environment are not used by this transport
(``trust_env=False``); httpx still routes proxied URLs through its own transports.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx
import yarl

__all__ = ["AiohttpTransport", "map_error"]

# request headers aiohttp computes itself from the body
_SKIP_HEADERS = frozenset({"content-length", "transfer-encoding"})


def map_error(exc: BaseException, request: httpx.Request) -> Exception:
    """The httpx exception for an aiohttp/OS error raised while ``request`` was being sent."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(msg, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(msg, request=request)
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(msg, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.InvalidURL(msg)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return httpx.ReadTimeout(msg, request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(msg, request=request)
    return httpx.ReadError(msg, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=AiohttpTransport(max_in_flight))``.

    One aiohttp session (created on first use, in the running event loop) with a pool of
    ``max_in_flight`` connections kept alive for ``keepalive_s``. Redirects are never followed
    (httpx decides that). Responses are read whole and handed to httpx still encoded, so httpx
    decodes gzip/deflate exactly as it would with its own transport.
    """

    def __init__(self, max_in_flight: int = 8, keepalive_s: float = 30.0) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.max_in_flight = max_in_flight
        self.keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_in_flight, keepalive_timeout=self.keepalive_s)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        return self._session

    @staticmethod
    def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
        t: dict[str, Any] = request.extensions.get("timeout") or {}
        connect, read, write, pool = (t.get(k) for k in ("connect", "read", "write", "pool"))
        parts = [x for x in (connect, read, write, pool) if x is not None]
        total = sum(parts) if len(parts) == 4 else None
        acquire = None if connect is None or pool is None else connect + pool
        return aiohttp.ClientTimeout(total=total, connect=acquire, sock_connect=connect, sock_read=read)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _SKIP_HEADERS]
        session = self._get_session()
        raw_url = str(request.url)
        url = self._urls.get(raw_url)
        if url is None:  # a gateway posts to one or two URLs: parse each once
            if len(self._urls) > 256:
                self._urls.clear()
            url = self._urls[raw_url] = yarl.URL(raw_url, encoded=True)
        try:
            async with session.request(
                request.method, url, data=body or None, headers=headers,
                allow_redirects=False, timeout=self._timeout(request), compress=None,
            ) as r:
                content = await r.read()
                raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.raw_headers]
                status, reason = r.status, r.reason or ""
                version = f"HTTP/{r.version.major}.{r.version.minor}" if r.version else "HTTP/1.1"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise map_error(exc, request) from exc
        return httpx.Response(
            status, headers=raw_headers, content=content, request=request,
            extensions={"http_version": version.encode("ascii"), "reason_phrase": reason.encode("latin-1", "replace")},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
