"""What the contract kit is given (``GatewayCase``) and the harness it runs a gateway in: sample items,
an event loop per check, an endpoint that never answers, and the capture of everything a gateway
prints or logs (searched for secrets)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from pydantic import SecretStr

from broadcast.config import environment
from broadcast.gateways.base import Gateway, SendItem
from broadcast.gateways.push import Incoming

__all__ = ["GatewayCase", "Hung", "Output", "captured", "environment", "run", "sample_items", "secret_values", "silent_endpoint"]

T = TypeVar("T")

#: A secret shorter than this would be found by chance in ordinary text: the kit refuses it.
MIN_SECRET_LEN = 8


@dataclass(frozen=True)
class GatewayCase:
    """How to build one gateway for the contract kit.

    * ``name`` — the entry-point name it is registered under (``capabilities.name``).
    * ``healthy()`` — a gateway whose provider accepts every message (a mock transport, a fake).
    * ``failing()`` — one whose provider or transport fails (down, throttling, connection reset):
      nothing accepted, nothing raised. ``None`` for a gateway that cannot fail (no provider).
    * ``hanging(url, timeout_s)`` — one pointed at ``url`` (``http://127.0.0.1:PORT``, an endpoint that
      accepts connections and never answers), configured with ``timeout_s``. ``None`` for a gateway
      that makes no network request.
    * ``recipients(request)`` — how many recipients one HTTP request to the provider carries (0 for
      a request that sends nothing, e.g. a query). With it the kit counts every request of the
      ``healthy()`` gateway's ``httpx`` client (the one passed to its constructor).
    * ``push_samples`` — push format name -> one callback as the provider sends it: required for
      every format of ``receipt_formats()``; each must parse to at least one receipt.
    * ``secrets`` — strings that must never appear in any output, besides the values of the
      settings' ``SecretStr`` fields (found by the kit); each at least ``MIN_SECRET_LEN`` characters.
    * ``env`` — environment variables set while the checks run (a push format that reads its
      settings from the environment).
    * ``variant`` — tells several cases of one gateway apart (``aliyun-throttled``).
    * ``silent_server()`` — for a gateway that logs in on a long-lived connection before it sends
      (CMPP, SMPP): a context manager yielding the URL (``scheme://127.0.0.1:PORT``) of a server that
      accepts the login and then never answers, used instead of the kit's silent HTTP endpoint
      (which never answers the login either, so no message would ever be written). ``hanging``
      is given that URL.
    * ``address(i)`` — the i-th sample recipient's address (``SendItem.address``) for a gateway
      that does not address phones (``capabilities.addresses``): an email address, a userid, the
      name of a robot configured in the case. ``None``: the recipients are phones.
    """

    name: str
    healthy: Callable[[], Gateway]
    failing: Callable[[], Gateway] | None = None
    hanging: Callable[[str, float], Gateway] | None = None
    recipients: Callable[[httpx.Request], int] | None = None
    push_samples: Mapping[str, Incoming] = field(default_factory=dict)
    secrets: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    variant: str = ""
    silent_server: Callable[[], contextlib.AbstractContextManager[str]] | None = None
    address: Callable[[int], str] | None = None

    @property
    def id(self) -> str:
        """``name`` or ``name-variant``: a test id."""
        return f"{self.name}-{self.variant}" if self.variant else self.name


def sample_items(n: int, *, same_text: bool = False, start: int = 1000,
                 address: Callable[[int], str] | None = None) -> list[SendItem]:
    """``n`` items with distinct delivery ids and numbers (and ``address(i)`` where given); one
    text for all, or a text each."""
    return [SendItem(start + 7 * i, f"+86137{i:08d}", "【测试】今日通知 text" if same_text else f"【测试】第{i}条 text",
                     address=address(i) if address else "")
            for i in range(n)]


class Hung(AssertionError):
    """A check's coroutine did not finish in time."""


def run(make: Callable[[], Awaitable[T]], timeout_s: float = 60.0) -> T:
    """Run one check's coroutine in a fresh event loop, failing (not hanging) after ``timeout_s``."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(make(), timeout_s)
        except TimeoutError:
            raise Hung(f"did not finish within {timeout_s:g} s: the gateway hangs") from None

    return asyncio.run(bounded())


async def closed(gateway: Gateway) -> None:
    """``aclose()`` twice: it must be idempotent."""
    await gateway.aclose()
    await gateway.aclose()


def secret_values(gateway: Gateway, extra: Sequence[str] = ()) -> list[str]:
    """The values of the gateway's ``SecretStr`` settings (non-empty) and ``extra``."""
    values = [v.get_secret_value() for v in vars(gateway.settings).values() if isinstance(v, SecretStr)]
    out = [v for v in [*values, *extra] if v]
    short = [v for v in out if len(v) < MIN_SECRET_LEN]
    if short:
        raise AssertionError(
            f"the case's secrets must be at least {MIN_SECRET_LEN} characters to be searched for (got {len(short)} shorter): "
            "give its settings recognisable fake secrets"
        )
    return out


class Output:
    """Everything a gateway wrote while captured: stdout, stderr and log records (any logger, DEBUG up)."""

    def __init__(self) -> None:
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.records: list[str] = []

    def texts(self) -> list[tuple[str, str]]:
        """(where, text) pairs."""
        return [("stdout", self.stdout.getvalue()), ("stderr", self.stderr.getvalue()),
                *(("log record", r) for r in self.records)]


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))  # the traceback of exc_info included


@contextlib.contextmanager
def captured() -> Iterator[Output]:
    """Capture stdout, stderr and every log record (the root logger at DEBUG for the duration)."""
    out = Output()
    root = logging.getLogger()
    handler, level = _Collect(out.records), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with contextlib.redirect_stdout(out.stdout), contextlib.redirect_stderr(out.stderr):
            yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT``: accepts connections, reads the requests, never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)  # kept open, never written to

    thread = threading.Thread(target=serve, name="kit-silent-endpoint", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()
