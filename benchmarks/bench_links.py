"""Operator-link benchmark: CMPP and SMPP submits per second through the gateways, beside a bare loop.

    python benchmarks/bench_links.py [--protocols cmpp,smpp] [--latencies 0,20] [--windows 1,16,64]
                                     [--seconds 3] [--repeat 3] [--quick]

For each protocol, answer latency (ms) and window: a local simulator in its own process (pinned to
CPU 1) answers every submit after the latency, and two clients in this process (CPU 0), one after
the other, keep `window` submits unanswered on one connection:

* **bare**: a loop written here, the least a client can do: one login; per message a submit PDU
  packed with struct from its fields (the destination and the UCS-2 text), a reader that matches
  responses to a dict of futures and reads each one's status. It does less than a correct client
  must, and is left so: no response timeout (an unanswered submit would wait forever), no check
  that the answer is a submit response, nothing the server sends besides responses is read or
  answered (the simulators send nothing else);
* **gateway**: `broadcast`'s own `cmpp` / `smpp` gateway (`SessionGateway.send`, as the dispatcher
  calls it with window × connections workers): the number checked, the text's parts (split once
  per text, as for a message's many recipients), each part's PDU from a template packed once per
  part, the session layer's window, per-response timeout and matching, the answer classified, the
  part's id remembered for its status report, and one `SendResult` per delivery.

Both send the same one-part Chinese text. Printed per case: the median submits per second of
--repeat interleaved rounds, and the gateway's ratio to the bare loop (target >= 0.8 at every
window) and, at 20 ms, to window / latency (target >= 0.9 at window 16: 720/s per connection).
The database is not involved: bench_dispatch measures the send path around a gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXT = "【城南新区】精神早餐：不忘初心，牢记使命，今天也要把群众的事办好。"
SP_ID, SECRET, SYSTEM_ID, PASSWORD = "901234", "bench-secret", "bench", "pw123"
CPU_CLIENT, CPU_SERVER = 0, 1


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


# -- the simulators (written here, from the specs: no project code) -------------------------------

def cmpp_reply(command: int, seq: int, body: bytes, latency_s: float, count: list[int]) -> bytes | None:
    if command == 0x00000001:  # CONNECT: status 0, AuthenticatorISMG = MD5(status + authenticator + secret)
        ismg = hashlib.md5(b"\x00" + body[6:22] + SECRET.encode()).digest()
        return struct.pack(">III", 30, 0x80000001, seq) + b"\x00" + ismg + b"\x20"
    if command == 0x00000004:  # SUBMIT → Msg_Id(8) Result(1)
        count[0] += 1
        return struct.pack(">IIIQB", 21, 0x80000004, seq, count[0], 0)
    if command == 0x00000008:  # ACTIVE_TEST
        return struct.pack(">IIIB", 13, 0x80000008, seq, 0)
    if command == 0x00000002:
        return struct.pack(">III", 12, 0x80000002, seq)
    return None


def smpp_reply(command: int, seq: int, body: bytes, latency_s: float, count: list[int]) -> bytes | None:
    if command in (0x00000009, 0x00000002, 0x00000001):  # bind_*: ESME_ROK + system_id
        out = b"bench\x00"
        return struct.pack(">IIII", 16 + len(out), 0x80000000 | command, 0, seq) + out
    if command == 0x00000004:  # submit_sm → message_id
        count[0] += 1
        out = b"%x\x00" % count[0]
        return struct.pack(">IIII", 16 + len(out), 0x80000004, 0, seq) + out
    if command in (0x00000015, 0x00000006):  # enquire_link, unbind
        return struct.pack(">IIII", 16, 0x80000000 | command, 0, seq)
    return None


def simulator(protocol: str, latency_s: float, ready: mp.Queue) -> None:  # type: ignore[type-arg]
    pin(CPU_SERVER)
    header = 12 if protocol == "cmpp" else 16
    reply = cmpp_reply if protocol == "cmpp" else smpp_reply

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = [0]
        loop = asyncio.get_running_loop()
        try:
            while True:
                head = await reader.readexactly(header)
                total, command = struct.unpack(">II", head[:8])
                seq = struct.unpack(">I", head[header - 4:header])[0]
                body = await reader.readexactly(total - header)
                out = reply(command, seq, body, latency_s, count)
                if out is None:
                    continue
                if latency_s and command == 4:
                    loop.call_later(latency_s, writer.write, out)
                else:
                    writer.write(out)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the bare loop --------------------------------------------------------------------------------

CMPP_SUBMIT = struct.Struct(">IIIQBBBB10sB21sBBB6s2s6s17s17s21sB21sB")


def bare_pdus(protocol: str) -> tuple[int, bytes, Callable[[int, str, str], bytes]]:
    """(header length, login PDU, submit(seq, phone, text) -> PDU), packed by hand."""
    if protocol == "cmpp":
        stamp = time.strftime("%m%d%H%M%S")
        auth = hashlib.md5(SP_ID.encode() + b"\0" * 9 + SECRET.encode() + stamp.encode()).digest()
        login = struct.pack(">III6s16sBI", 39, 1, 1, SP_ID.encode(), auth, 0x20, int(stamp))

        def cmpp_submit(seq: int, phone: str, text: str) -> bytes:
            content = text.encode("utf-16-be")
            return CMPP_SUBMIT.pack(CMPP_SUBMIT.size + len(content) + 8, 4, seq, 0, 1, 1, 1, 1, b"bench", 0, b"",
                                    0, 0, 8, SP_ID.encode(), b"01", b"", b"", b"", b"10690", 1,
                                    phone.removeprefix("+86").encode(), len(content)) + content + b"\0" * 8
        return 12, login, cmpp_submit
    bind = b"".join((SYSTEM_ID.encode(), b"\0", PASSWORD.encode(), b"\0", b"\0", bytes((0x34, 0, 0)), b"\0"))
    login = struct.pack(">IIII", 16 + len(bind), 9, 0, 1) + bind

    def smpp_submit(seq: int, phone: str, text: str) -> bytes:
        content = text.encode("utf-16-be")
        body = b"".join((b"\0\0\0" b"10690\0" b"\1\1", phone.removeprefix("+").encode(), b"\0\0\0\0\0\0",
                         bytes((1, 0, 8, 0, len(content))), content))
        return struct.pack(">IIII", 16 + len(body), 4, 0, seq) + body
    return 16, login, smpp_submit


async def bare(protocol: str, port: int, window: int, seconds: float) -> float:
    header, login, submit = bare_pdus(protocol)
    seq_at = header - 4
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(login)
    head = await reader.readexactly(header)
    await reader.readexactly(struct.unpack(">I", head[:4])[0] - header)
    pending: dict[int, asyncio.Future[int]] = {}

    async def read() -> None:
        while True:
            h = await reader.readexactly(header)
            body = await reader.readexactly(struct.unpack(">I", h[:4])[0] - header)
            fut = pending.pop(struct.unpack(">I", h[seq_at:header])[0], None)
            if fut is not None:  # CMPP: the Result after the Msg_Id; SMPP: command_status
                fut.set_result(body[8] if protocol == "cmpp" else struct.unpack(">I", h[8:12])[0])

    reading = asyncio.create_task(read())
    seqs = iter(range(2, 1 << 31))
    loop = asyncio.get_running_loop()
    done = [0]
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            seq = next(seqs)
            fut = pending[seq] = loop.create_future()
            writer.write(submit(seq, "+8613800000000", TEXT))
            if await fut != 0:
                raise RuntimeError("refused")
            done[0] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    took = time.perf_counter() - t0
    reading.cancel()
    writer.close()
    return done[0] / took


# -- the gateway ----------------------------------------------------------------------------------

def make_gateway(protocol: str, port: int, window: int):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    if protocol == "cmpp":
        from broadcast.gateways.cmpp import CmppGateway, CmppSettings

        return CmppGateway(CmppSettings(host="127.0.0.1", port=port, sp_id=SP_ID, secret=SecretStr(SECRET),
                                        service_id="bench", src_id="10690", window=window))
    from broadcast.gateways.smpp import SmppGateway, SmppSettings

    return SmppGateway(SmppSettings(host="127.0.0.1", port=port, system_id=SYSTEM_ID, password=SecretStr(PASSWORD),
                                    source_addr="10690", window=window))


async def through_gateway(protocol: str, port: int, window: int, seconds: float) -> float:
    from broadcast.gateways.base import Outcome, SendItem

    gateway = make_gateway(protocol, port, window)
    ids = iter(range(1, 1 << 31))
    done = [0]
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            (result,) = await gateway.send([SendItem(next(ids), "+8613800000000", TEXT)])
            if result.outcome is not Outcome.ACCEPTED:
                raise RuntimeError(f"not accepted: {result}")
            done[0] += 1

    await gateway.send([SendItem(0, "+8613800000000", TEXT)])  # log in before the clock starts
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    took = time.perf_counter() - t0
    await gateway.aclose()
    return done[0] / took


async def bare_logged_in(protocol: str, port: int, window: int, seconds: float) -> float:
    return await bare(protocol, port, window, seconds)


def measure(protocol: str, latency_ms: float, window: int, seconds: float,
            client: Callable[[str, int, int, float], Awaitable[float]]) -> float:
    ready: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    proc = mp.Process(target=simulator, args=(protocol, latency_ms / 1000, ready), daemon=True)
    proc.start()
    try:
        port = ready.get(timeout=10)
        return asyncio.run(client(protocol, port, window, seconds))
    finally:
        proc.kill()
        proc.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--protocols", default="cmpp,smpp")
    ap.add_argument("--latencies", default="0,20")
    ap.add_argument("--windows", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one round of 1.5 s per case")
    a = ap.parse_args()
    if a.quick:
        a.repeat, a.seconds = 1, 1.5
    pin(CPU_CLIENT)
    print(f"bench_links: one connection, {a.seconds:g} s per case, median of {a.repeat}; "
          f"the simulator on CPU {CPU_SERVER}, the client on CPU {CPU_CLIENT}")
    print(f"{'protocol':8} {'latency':>7} {'window':>6} {'bare/s':>9} {'gateway/s':>9} {'ratio':>6} "
          f"{'of w/lat':>8}  verdict")
    failed = 0
    for protocol in a.protocols.split(","):
        for latency in (float(x) for x in a.latencies.split(",")):
            for window in (int(x) for x in a.windows.split(",")):
                runs: dict[str, list[float]] = {"bare": [], "gateway": []}
                for _ in range(a.repeat):
                    runs["bare"].append(measure(protocol, latency, window, a.seconds, bare_logged_in))
                    runs["gateway"].append(measure(protocol, latency, window, a.seconds, through_gateway))
                b, g = statistics.median(runs["bare"]), statistics.median(runs["gateway"])
                ratio = g / b
                ideal = window / (latency / 1000) if latency else None
                of_ideal = g / ideal if ideal else None
                ok = ratio >= 0.8 and (of_ideal is None or window != 16 or of_ideal >= 0.9)
                failed += not ok
                print(f"{protocol:8} {latency:>5g}ms {window:>6} {b:>9,.0f} {g:>9,.0f} {ratio:>5.2f}× "
                      f"{(f'{of_ideal:.2f}' if of_ideal else '—'):>8}  {'ok' if ok else 'BELOW TARGET'}")
    print("targets: gateway >= 0.8 x bare at every window; at 20 ms and window 16, >= 0.9 x 16/0.02 s = 720/s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
