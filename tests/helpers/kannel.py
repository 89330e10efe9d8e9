"""A real Kannel for end-to-end tests: bearerbox + smsbox + Kannel's own fake SMSC (``fakesmsc``).

Debian: ``apt-get install -y kannel kannel-extras``. A test module that uses it skips itself with
``skip_without_kannel()`` (this module never skips at import, so importing it is always safe).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote_to_bytes

import httpx
import pytest

from tests.helpers.serve import free_port

SENDER = "10690"  # the sendsms 'from' of the tests (fakesmsc prints it as the sender)
BEARERBOX = os.environ.get("KANNEL_BEARERBOX", "/usr/sbin/bearerbox")
SMSBOX = os.environ.get("KANNEL_SMSBOX", "/usr/sbin/smsbox")
FAKESMSC = os.environ.get("KANNEL_FAKESMSC", "/usr/lib/kannel/test/fakesmsc")
MISSING = [p for p in (BEARERBOX, SMSBOX, FAKESMSC) if not (os.path.isfile(p) and os.access(p, os.X_OK))]


def skip_without_kannel() -> None:
    """Skip the calling test module, saying why, where Kannel is not installed."""
    if MISSING:
        pytest.skip(f"Kannel is not installed ({', '.join(MISSING)} missing): apt-get install -y kannel kannel-extras",
                    allow_module_level=True)



def kannel_conf(tmp: Path, ports: dict[str, int], smsbox_extra: str = "") -> str:
    return f"""
group = core
admin-port = {ports['admin']}
admin-password = adm
admin-interface = 127.0.0.1
smsbox-port = {ports['smsbox']}
box-allow-ip = 127.0.0.1
log-level = 1
log-file = "{tmp}/bearerbox.log"
access-log = "{tmp}/access.log"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
host = 127.0.0.1
port = {ports['fake']}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports['smsbox']}
sendsms-port = {ports['sendsms']}
sendsms-interface = 127.0.0.1
log-level = 1
log-file = "{tmp}/smsbox.log"
{smsbox_extra}
group = sendsms-user
username = broadcast
password = kannel-pw
max-messages = 3
concatenation = true
"""


def wait_for(what: str, probe: Callable[[], bool], logs: list[Path], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if probe():
                return
        except (httpx.TransportError, OSError):
            pass
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.1)


@contextlib.contextmanager
def kannel(tmp: Path, extra: str = "", smsbox_extra: str = "",
           ports: dict[str, int] | None = None) -> Iterator[tuple[str, Path, list[Path]]]:
    """bearerbox, fakesmsc and smsbox; yields (sendsms URL, fakesmsc output, log files). ``extra``:
    more kannel.conf groups, appended; ``smsbox_extra``: more lines of the smsbox group; ``ports``:
    admin/smsbox/fake/sendsms ports chosen by the caller."""
    ports = ports or {k: free_port() for k in ("admin", "smsbox", "fake", "sendsms")}
    conf = tmp / "kannel.conf"
    conf.write_text(kannel_conf(tmp, ports, smsbox_extra) + extra)
    fake_out = tmp / "fakesmsc.out"
    logs = [tmp / "bearerbox.log", tmp / "smsbox.log", fake_out, tmp / "bearerbox.out", tmp / "smsbox.out"]
    procs: list[subprocess.Popen[bytes]] = []
    files = []

    def start(name: str, argv: list[str], out: Path) -> None:
        f = out.open("wb")
        files.append(f)
        procs.append(subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=tmp))

    status = f"http://127.0.0.1:{ports['admin']}/status.txt?password=adm"
    try:
        start("bearerbox", [BEARERBOX, str(conf)], tmp / "bearerbox.out")
        wait_for("bearerbox", lambda: httpx.get(status, timeout=1).status_code == 200, logs)
        # -m 0: generate no mobile-originated messages, only print what the SMSC is sent
        start("fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r", str(ports["fake"]), "-m", "0", "1 2 text x"], fake_out)
        wait_for("the fake SMSC link", lambda: "online" in httpx.get(status, timeout=1).text, logs)
        start("smsbox", [SMSBOX, str(conf)], tmp / "smsbox.out")
        sendsms = f"http://127.0.0.1:{ports['sendsms']}/cgi-bin/sendsms"
        wait_for("smsbox", lambda: httpx.get(sendsms, timeout=1).status_code == 403, logs)  # up, no credentials
        wait_for("smsbox to connect to bearerbox", lambda: "smsbox:" in httpx.get(status, timeout=1).text, logs)
        yield sendsms, fake_out, logs
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in files:
            f.close()


_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (.*)>\s*$")


def received(fake_out: Path) -> list[tuple[str, str]]:
    """(receiver, text) per SMS fakesmsc got, concatenated parts joined (UDH ref/total/seq)."""
    whole: list[tuple[str, str]] = []
    parts: dict[tuple[str, int], dict[int, bytes]] = {}
    totals: dict[tuple[str, int], int] = {}
    for line in fake_out.read_text(errors="replace").splitlines():
        m = _GOT.search(line)
        if not m:
            continue
        sender, receiver, rest = m.groups()
        assert sender == SENDER, line
        kind, _, data = rest.partition(" ")
        if kind == "ucs-2":
            whole.append((receiver, unquote_to_bytes(data).decode("utf-16-be")))
        elif kind == "text":
            whole.append((receiver, data))
        elif kind == "udh":
            udh_enc, _, rest2 = data.partition(" ")
            udh = unquote_to_bytes(udh_enc)
            kind2, _, payload = rest2.partition(" ")
            assert udh[1] == 0x00 and kind2 == "data", line  # 8-bit reference concatenation IE
            ref, total, seq = udh[3], udh[4], udh[5]
            parts.setdefault((receiver, ref), {})[seq] = unquote_to_bytes(payload)
            totals[(receiver, ref)] = total
        else:
            raise AssertionError(f"unexpected fakesmsc line: {line}")
    for key, got in parts.items():
        assert sorted(got) == list(range(1, totals[key] + 1)), f"missing parts for {key}: {sorted(got)}"
        whole.append((key[0], b"".join(got[i] for i in sorted(got)).decode("utf-16-be")))
    return whole
