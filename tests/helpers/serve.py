"""Run ``broadcast receipts serve`` (the CLI module) in its own process, for tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_cli(log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the server on a free 127.0.0.1 port with this process's environment (plus ``env``);
    yields its base URL; stops it (SIGTERM, then SIGKILL) on exit."""
    port = free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from broadcast.cli.receipts_cmd import app; app()", "serve", "--port", str(port)],
        env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"receipts server did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
