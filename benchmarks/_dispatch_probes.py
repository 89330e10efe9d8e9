"""Probes run in fresh processes by bench_dispatch.py (not a benchmark by itself).

    python benchmarks/_dispatch_probes.py client httpx|aiohttp N COUNT URL [BATCH]
        a bare client loop: N worker tasks, one shared client with a pool of N, COUNT messages
        POSTed as {"id","to","text"} (or {"messages": [...]} of BATCH), the answer checked for 200
        and its JSON parsed. Prints {"seconds", "sent", "cpu_s"} (own clock, client construction
        included, imports excluded).

    python benchmarks/_dispatch_probes.py engine MESSAGE_ID [trace]
        `broadcast send MESSAGE_ID` in-process (the configuration comes from BROADCAST_* in the
        environment), with timers around the engine's phases: freeze (Dispatcher.start_message: the
        audience query, rendering and the insert), claim (ledger.claim), record (ledger.record)
        and the gateway calls. With ``trace``: tracemalloc's peak. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

TEXT = "【城南新区】同志们好，{name}，请于明天上午九点到党群服务中心参加主题党日活动。"
NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏")


def body(i: int) -> dict[str, str]:
    return {"id": str(i + 1), "to": f"+86138{i:08d}", "text": TEXT.format(name=NAMES[i % len(NAMES)])}


def encode(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def httpx_loop(n: int, count: int, url: str, batch: int) -> int:
    import httpx

    headers = {"Content-Type": "application/json; charset=utf-8"}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=30.0)
    timeout = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=15.0)
    jobs = iter(range(0, count, batch))
    sent = 0
    async with httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False) as client:
        async def worker() -> None:
            nonlocal sent
            for start in jobs:
                if batch == 1:
                    payload = body(start)
                else:
                    payload = {"messages": [body(i) for i in range(start, min(start + batch, count))]}
                r = await client.post(url, content=encode(payload), headers=headers)
                assert r.status_code == 200, r.status_code
                data = json.loads(r.content)
                sent += 1 if batch == 1 else len(data["results"])
                assert data.get("id") or data.get("results")

        await asyncio.gather(*(worker() for _ in range(n)))
    return sent


async def aiohttp_loop(n: int, count: int, url: str, batch: int) -> int:
    import aiohttp

    headers = {"Content-Type": "application/json; charset=utf-8"}
    jobs = iter(range(0, count, batch))
    sent = 0
    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
        async def worker() -> None:
            nonlocal sent
            for start in jobs:
                if batch == 1:
                    payload = body(start)
                else:
                    payload = {"messages": [body(i) for i in range(start, min(start + batch, count))]}
                async with session.post(url, data=encode(payload), headers=headers) as r:
                    assert r.status == 200, r.status
                    data = json.loads(await r.read())
                sent += 1 if batch == 1 else len(data["results"])

        await asyncio.gather(*(worker() for _ in range(n)))
    return sent


def client_main(argv: list[str]) -> None:
    kind, n, count, url = argv[0], int(argv[1]), int(argv[2]), argv[3]
    batch = int(argv[4]) if len(argv) > 4 else 1
    loop_fn = httpx_loop if kind == "httpx" else aiohttp_loop
    if kind == "httpx":
        import httpx  # noqa: F401  (imports excluded from the timing)
    else:
        import aiohttp  # noqa: F401
    c0, t0 = time.process_time(), time.perf_counter()
    sent = asyncio.run(loop_fn(n, count, url, batch))
    print(json.dumps({"seconds": time.perf_counter() - t0, "sent": sent, "cpu_s": time.process_time() - c0}))


def engine_main(argv: list[str]) -> None:
    import tracemalloc

    message_id = int(argv[0])
    trace = len(argv) > 1 and argv[1] == "trace"
    from broadcast.dispatch import ledger, service
    from broadcast.dispatch.dispatcher import Dispatcher
    from broadcast.workspace import Workspace

    spent: dict[str, float] = {"freeze": 0.0, "claim": 0.0, "record": 0.0, "gateway_calls": 0.0}
    calls: dict[str, int] = {k: 0 for k in spent}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapper(*a, **k):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
                calls[name] += 1
        return wrapper

    ledger.claim = timed("claim", ledger.claim)
    ledger.record = timed("record", ledger.record)
    Dispatcher.start_message = timed("freeze", Dispatcher.start_message)
    first_send: list[float] = []
    real_open = service.open_gateway

    def open_gateway(ws, name=None):  # type: ignore[no-untyped-def]
        gw = real_open(ws, name)
        send = gw.send

        async def timed_send(batch):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            if not first_send:
                first_send.append(t)
            try:
                return await send(batch)
            finally:
                spent["gateway_calls"] += time.perf_counter() - t
                calls["gateway_calls"] += 1
        gw.send = timed_send
        return gw

    service.open_gateway = open_gateway
    ws = Workspace.open()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    report = service.send_now(ws, message_id)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    print(json.dumps({
        "seconds": elapsed, "accepted": report.outcomes.accepted, "spent": spent, "calls": calls,
        "to_first_send": (first_send[0] - t0) if first_send else None, "tracemalloc_peak": peak,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "client":
        client_main(rest)
    elif mode == "engine":
        engine_main(rest)
    else:
        raise SystemExit(f"unknown probe {mode!r}")
