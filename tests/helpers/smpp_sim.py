"""The SMSC simulator (tests/smpp_sim/server.js, on the npm ``smpp`` package) as a real process.

Install once: ``npm install --prefix tests/smpp_sim`` (CI's ``.ci/run`` does it on a clean clone).
``smpp_sim(...)`` starts ``node server.js`` on a free 127.0.0.1 port, waits for its
``listening PORT`` line and stops it (SIGTERM, then SIGKILL) on exit; ``sim_problem()`` says why it
cannot run here (no node, or the package not installed), for ``pytest.skip``. ``Submits`` reads its
JSON-lines log of every submit_sm and joins concatenated parts by their UDH.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SIM_DIR = Path(__file__).resolve().parent.parent / "smpp_sim"
SERVER = SIM_DIR / "server.js"
INSTALL = "npm install --prefix tests/smpp_sim"


def sim_problem() -> str | None:
    """None when the simulator can run, else why not (in words, with the fix)."""
    if shutil.which("node") is None:
        return "node is not installed (apt-get install -y nodejs npm): the SMPP simulator cannot run"
    if not (SIM_DIR / "node_modules" / "smpp" / "package.json").is_file():
        return f"the npm 'smpp' package is not installed for the SMPP simulator: run '{INSTALL}'"
    return None


@dataclass
class Sim:
    host: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def submits(self) -> Submits:
        return Submits.read(self.log)


@contextlib.contextmanager
def smpp_sim(tmp: Path, *, accounts: Sequence[str] = ("broadcast:secret",), latency_ms: int = 0,
             refuse: Sequence[str] = (), undeliverable: Sequence[str] = (), throttle_first: int = 0,
             throttle_rate: int = 0, mo: Sequence[str] = (), receipt_delay_ms: int = 0,
             start_timeout_s: float = 20.0) -> Iterator[Sim]:
    """Run the simulator with these flags (see server.js); yields where it listens and its log."""
    log = tmp / "smpp_submits.jsonl"
    log.touch()
    args = ["node", str(SERVER), "--host", "127.0.0.1", "--port", "0", "--log", str(log),
            "--latency-ms", str(latency_ms), "--throttle-first", str(throttle_first),
            "--throttle-rate", str(throttle_rate), "--receipt-delay-ms", str(receipt_delay_ms)]
    for account in accounts:
        args += ["--account", account]
    if refuse:
        args += ["--refuse", ",".join(refuse)]
    if undeliverable:
        args += ["--undeliverable", ",".join(undeliverable)]
    for spec in mo:
        args += ["--mo", spec]
    stderr = (tmp / "smpp_sim.stderr").open("wb")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, cwd=SIM_DIR)
    try:
        port = _await_listening(proc, start_timeout_s, tmp / "smpp_sim.stderr")
        yield Sim("127.0.0.1", port, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        stderr.close()


def _await_listening(proc: subprocess.Popen[bytes], timeout_s: float, stderr: Path) -> int:
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline() if proc.stdout else b""), daemon=True)
    reader.start()
    reader.join(timeout_s)
    text = line[0].decode().strip() if line else ""
    if not text.startswith("listening "):
        proc.kill()
        raise AssertionError(f"SMPP simulator did not start ({text or 'no output'}):\n{stderr.read_text()}")
    return int(text.split()[1])


@dataclass(frozen=True)
class Submit:
    destination: str
    esm_class: int
    data_coding: int
    short_message: bytes
    status: int
    message_id: str


class Submits(list[Submit]):
    """The simulator's log of submit_sm PDUs, in arrival order."""

    @classmethod
    def read(cls, path: Path) -> Submits:
        out = cls()
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                out.append(Submit(d["destination"], d["esm_class"], d["data_coding"],
                                  bytes.fromhex(d["short_message"]), d["status"], d["message_id"]))
        return out

    def accepted(self) -> list[Submit]:
        return [s for s in self if s.status == 0]

    def texts(self) -> dict[str, list[str]]:
        """destination -> the texts it received (accepted submits; parts joined by their UDH ref)."""
        out: dict[str, list[str]] = {}
        parts: dict[tuple[str, int], dict[int, str]] = {}
        totals: dict[tuple[str, int], int] = {}
        for s in self.accepted():
            payload = s.short_message
            if s.esm_class & 0x40:
                udh_len = payload[0]
                udh, payload = payload[1:1 + udh_len], payload[1 + udh_len:]
                assert udh[0] == 0x00 and udh[1] == 3, f"not an 8-bit concatenation UDH: {udh.hex()}"
                key = (s.destination, udh[2])
                assert udh[4] not in parts.get(key, {}), f"part {udh[4]} of {key} received twice"
                parts.setdefault(key, {})[udh[4]] = decode(payload, s.data_coding)
                totals[key] = udh[3]
                if len(parts[key]) == totals[key]:
                    got = parts.pop(key)
                    out.setdefault(s.destination, []).append("".join(got[i] for i in range(1, totals[key] + 1)))
            else:
                out.setdefault(s.destination, []).append(decode(payload, s.data_coding))
        assert not parts, f"incomplete concatenated messages: {sorted(parts)}"
        return out


def decode(payload: bytes, data_coding: int) -> str:
    if data_coding == 8:
        return payload.decode("utf-16-be")
    from broadcast.gateways.segments import decode_gsm7

    return decode_gsm7(payload)


@pytest.fixture
def smpp_simulator(tmp_path: Path) -> Iterator[Sim]:
    """The simulator with one account ``broadcast:secret`` and no faults; skipped, saying why, where
    it cannot run (import this fixture into the test module)."""
    problem = sim_problem()
    if problem:
        pytest.skip(problem)
    with smpp_sim(tmp_path) as sim:
        yield sim
