"""The administrator's commands end to end, as real ``broadcast`` subprocesses where it matters:

* ``broadcast worker`` told to stop (SIGTERM, Ctrl-C) in the middle of a send through the real
  mock gateway: it exits 0, every request in flight is waited for and recorded, nothing is left
  ``sending``, and the rest goes out exactly once on the next run;
* ``broadcast demo`` in a data directory of its own: its database, its counts;
* ``broadcast gateway list`` and ``broadcast gateway check`` (check never sends anything);
* the progress output of ``run``/``send``/``demo`` (``send_cmd._Reporter``): without a terminal,
  at most one ``message N: sent … failed …`` line per second on stderr; in a terminal, a rich
  progress bar instead.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import sending as S

PROGRESS_LINE = re.compile(
    r"^message (\d+): sent (\d+) failed (\d+) retrying (\d+) in doubt (\d+) \(([\d,]+)/s\)$")




def _runs() -> list[Any]:
    from broadcast.db.dispatch_models import Run

    eng = S.db()
    try:
        with eng.connect() as conn:
            return list(conn.execute(sa.select(Run.__table__)))
    finally:
        eng.dispose()


# -- 1. broadcast worker, stopped mid-send ---------------------------------------------------------

WORKER_N = 300


def _stop_worker_mid_send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals) -> None:
    mid, phones = S.prepared_message(monkeypatch, tmp_path, WORKER_N)
    with S.Mock(tmp_path / "received.jsonl", "--delay-ms", "300") as mock:
        proc = S.spawn(mock.env(BROADCAST_CONCURRENCY="8"), "worker", "--poll", "0.5")
        assert proc.stderr is not None
        try:
            # the mock records a message before its 300 ms delay: once something is recorded, the
            # worker has requests in flight whose answers have not come back yet
            assert S.wait_for(lambda: mock.size() > 0 or proc.poll() is not None, timeout=60)
            assert proc.poll() is None, f"the worker ended before the signal: {proc.returncode} {proc.stderr.read()}"
            proc.send_signal(sig)
            signalled = time.monotonic()
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the worker did not exit within 20 s of {sig.name}")
            stop_s = time.monotonic() - signalled
            stderr = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        assert code == 0, (code, stderr)
        assert "Traceback" not in stderr, stderr

        rows = S.deliveries(mid)
        got = mock.by_id()
        assert len(rows) == WORKER_N
        by_status: dict[str, set[int]] = {}
        for r in rows.values():
            by_status.setdefault(r.status, set()).add(r.id)
        # nothing left claimed; everything the gateway received was waited for and recorded as
        # accepted; nothing else was (the mock is healthy: no failures, no doubts)
        assert "sending" not in by_status, {k: len(v) for k, v in by_status.items()}
        assert got, "the mock recorded nothing"
        assert max(got.values()) == 1
        assert by_status.get("accepted", set()) == set(got), {k: len(v) for k, v in by_status.items()}
        assert all(rows[i].outcomes == ["accepted"] and rows[i].provider_id for i in got)
        # it really was stopped mid-send: the rest were given back, untouched
        rest = set(rows) - set(got)
        assert rest, f"the worker sent all {WORKER_N} before the signal: slow the mock down"
        assert by_status.get("queued", set()) == rest
        assert all(rows[i].attempts == 0 and not rows[i].outcomes for i in rest)
        assert S.message_status(mid)[0] == "sending"
        # the worker closed its run (a crash would leave finished_at empty)
        workers = [r for r in _runs() if r.kind == "worker"]
        assert len(workers) == 1 and workers[0].finished_at is not None, workers
        first = len(got)

    # the next run sends the rest: every member gets the message exactly once over both
    with S.Mock(tmp_path / "received-2.jsonl") as mock2:
        r = S.broadcast(mock2.env(), "run", "--json")
        assert r.code == 0, r
        assert r.json()["accepted"] == WORKER_N - first, r
        assert set(mock2.by_id()) == rest
    rows = S.deliveries(mid)
    assert {r.status for r in rows.values()} == {"accepted"}
    both = mock.by_phone() + mock2.by_phone()
    assert set(both) == set(phones) and set(both.values()) == {1}
    assert S.message_status(mid)[0] == "sent"
    print(f"[worker {sig.name}] {first} of {WORKER_N} sent before stopping; exit {stop_s:.2f} s after the signal")


@pytest.mark.slow
def test_worker_sigterm_mid_send_finishes_in_flight_requests_and_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stop_worker_mid_send(tmp_path, monkeypatch, signal.SIGTERM)


@pytest.mark.slow
def test_worker_ctrl_c_mid_send_finishes_in_flight_requests_and_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stop_worker_mid_send(tmp_path, monkeypatch, signal.SIGINT)


# -- 2. broadcast demo -----------------------------------------------------------------------------


def _table_row(text: str, header_word: str) -> tuple[list[str], list[str]]:
    """(header cells, first body row cells) of the rich table whose header contains ``header_word``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("┃").split("┃")]
        if header_word in cells:
            body = next(ln for ln in lines[i + 1:] if ln.lstrip().startswith("│"))
            return cells, [c.strip() for c in body.strip().strip("│").split("│")]
    raise AssertionError(f"no table with {header_word!r} in:\n{text}")


@pytest.mark.slow
def test_demo_end_to_end_in_its_own_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # BROADCAST_DATA_DIR (isolated_env): where the demo puts demo.db
    own_db = Path(os.environ["BROADCAST_DATABASE_URL"].removeprefix("sqlite:///"))
    env = S.base_env(BROADCAST_SIMULATOR_LATENCY_MS="0", BROADCAST_SIMULATOR_RECEIPT_DELAY_MS="0",
                     COLUMNS="200")
    env.pop("BROADCAST_GATEWAY")  # the demo always uses the simulator
    t0 = time.monotonic()
    r = S.broadcast(env, "demo", timeout=120)
    took = time.monotonic() - t0
    assert r.code == 0, r
    assert "Traceback" not in r.stderr

    demo_db = data_dir / "demo.db"
    assert demo_db.is_file()
    assert f"Demo database: {demo_db}" in r.stdout
    assert (data_dir / "demo-rejected-rows.csv").is_file()
    assert not own_db.exists(), "the demo touched the configured database"

    header, row = _table_row(r.stdout, "people")
    shown = dict(zip(header, (int(v) for v in row)))
    people = shown["people"]
    assert people > 0
    assert shown["delivered"] + shown["accepted (no receipt yet)"] + shown["failed"] + shown["in doubt"] == people

    eng = sa.create_engine(f"sqlite:///{demo_db}")
    try:
        with eng.connect() as conn:
            counts = dict(conn.execute(sa.text(
                "SELECT status, count(*) FROM deliveries WHERE kind = 'real' GROUP BY status")).all())
            members = conn.execute(sa.text("SELECT count(*) FROM members")).scalar_one()
            message = conn.execute(sa.text("SELECT status FROM messages")).scalar_one()
            channels = dict(conn.execute(sa.text(
                "SELECT channel, count(*) FROM deliveries WHERE kind = 'real' GROUP BY channel")).all())
            moved = conn.execute(sa.text(  # their WeCom attempt stays beside the SMS one
                "SELECT count(*) FROM deliveries d WHERE d.channel = 'sms' AND EXISTS (SELECT 1 FROM "
                "delivery_attempts a WHERE a.delivery_id = d.id AND a.gateway = 'wecom-app')")).scalar_one()
            wecom_users = conn.execute(sa.text("SELECT count(*) FROM members WHERE wecom != ''")).scalar_one()
    finally:
        eng.dispose()
    # every delivery is settled into one of the four columns, which add up to the people shown
    assert set(counts) <= {"delivered", "accepted", "failed", "in_doubt"}, counts
    assert sum(counts.values()) == people == members
    assert (counts.get("delivered", 0), counts.get("accepted", 0), counts.get("failed", 0), counts.get("in_doubt", 0)) == (
        shown["delivered"], shown["accepted (no receipt yet)"], shown["failed"], shown["in doubt"])
    # WeCom for the members of the branches on it (no delivery receipts there: accepted), SMS for
    # the rest, where the simulator delivers most; the three who left WeCom got an SMS instead
    assert set(channels) == {"wecom-app", "sms"} and channels["wecom-app"] == wecom_users - 3
    assert counts.get("accepted", 0) >= channels["wecom-app"]
    assert counts.get("delivered", 0) > channels["sms"] // 2
    assert moved == 3 and "3 WeCom users who had left got it by SMS instead" in r.stdout
    assert message == "sent"
    # no terminal here: the send's progress comes as plain lines on stderr
    progress = [PROGRESS_LINE.match(ln) for ln in r.stderr.splitlines() if ln.startswith("message ")]
    assert progress and all(progress), r.stderr
    print(f"[demo] {people} people {counts} in {took:.1f} s")


# -- 3. broadcast gateway list / check -------------------------------------------------------------


def test_gateway_list_shows_the_built_ins_with_their_max_batch(cli: Any) -> None:
    r = cli("gateway", "list", "--json")
    assert r.exit_code == 0, r
    caps = {c["name"]: c for c in r.json()}
    assert {"simulator", "console", "http"} <= set(caps)
    assert caps["simulator"]["max_batch"] == 100
    assert caps["console"]["max_batch"] == 100
    assert caps["http"]["max_batch"] == 1  # per instance: BROADCAST_HTTP_BATCH
    assert caps["simulator"]["pull_receipts"] is True and caps["http"]["pull_receipts"] is False
    assert all(c["description"] for c in caps.values())

    table = cli("gateway", "list", env={"COLUMNS": "400"})
    assert table.exit_code == 0, table
    rows = {}
    for line in table.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) > 2:
            rows[cells[0]] = cells
    assert rows["simulator"][1] == "100" and rows["console"][1] == "100" and rows["http"][1] == "1", table.stdout
    assert set(rows) - {"Name"} == set(caps)


class _Recorder:
    """A local HTTP server that records every request of any method (and accepts it)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((self.command, self.path, body))
                payload = json.dumps({"id": f"r{len(recorder.requests)}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_HEAD = do_OPTIONS = do_DELETE = do_PATCH = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    rec = _Recorder()
    yield rec
    rec.close()


def test_gateway_check_validates_the_http_gateway_without_sending(cli: Any, recorder: _Recorder,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_GATEWAY", "http")
    monkeypatch.setenv("BROADCAST_HTTP_URL", recorder.url)

    r = cli("gateway", "check", "--json")
    assert r.exit_code == 0, r
    assert r.json() == {"gateway": "http", "ok": True, "problems": []}
    r = cli("gateway", "check")
    assert r.exit_code == 0 and "Gateway http: settings OK (nothing was sent)" in r.stdout, r
    r = cli("gateway", "check", "--online", "--json")  # http has nothing harmless to call
    assert r.exit_code == 0 and r.json()["online"] == "unsupported", r
    assert recorder.requests == []

    # settings it refuses: exit 1 with the problem, and still nothing sent
    bad = recorder.url.replace("http://", "http://user:secret@")
    r = cli("gateway", "check", "--json", env={"BROADCAST_HTTP_URL": bad})
    assert r.exit_code == 1 and not r.json()["ok"], r
    assert any("credentials" in p for p in r.json()["problems"]), r
    r = cli("gateway", "check", env={"BROADCAST_HTTP_URL": bad})
    assert r.exit_code == 1 and "contains credentials" in r.stderr and "secret" not in r.stderr, r
    assert recorder.requests == []

    # the recorder does see a real send (so "no request" above means check sent nothing)
    r = cli("gateway", "test", "13900000001", "--json")
    assert r.exit_code == 0 and r.json()["outcome"] == "accepted", r
    assert [(m, p) for m, p, _ in recorder.requests] == [("POST", "/send")]
    assert json.loads(recorder.requests[0][2])["to"] == "+8613900000001"


# -- 4. progress output of run / send ------------------------------------------------------------

PROGRESS_N = 240


@pytest.mark.slow
def test_run_without_a_terminal_prints_count_lines_at_most_once_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mid, _ = S.prepared_message(monkeypatch, tmp_path, PROGRESS_N)
    # 240 requests of 100 ms, 8 at a time: about 3 s of sending
    with S.Mock(tmp_path / "received.jsonl", "--delay-ms", "100") as mock:
        proc = S.spawn(mock.env(BROADCAST_CONCURRENCY="8"), "run")
        assert proc.stderr is not None
        lines: list[tuple[float, str]] = []
        t0 = time.monotonic()
        try:
            for line in proc.stderr:  # stderr is a pipe, not a terminal
                lines.append((time.monotonic(), line.rstrip("\n")))
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        took = time.monotonic() - t0
        assert code == 0, lines
        assert mock.count() == PROGRESS_N

    progress = [(t, PROGRESS_LINE.match(text)) for t, text in lines]
    assert all(m for _, m in progress), lines  # nothing else on stderr: no bar, no escape codes
    assert len(progress) >= 2, lines
    stamps = [t for t, _ in progress]
    counts = [tuple(int(g) for g in m.groups()) for _, m in progress]  # type: ignore[union-attr]
    assert all(c[0] == mid for c in counts)
    sent = [c[1] for c in counts]
    assert sent == sorted(sent) and 0 < sent[0] < PROGRESS_N and sent[-1] <= PROGRESS_N, counts
    assert all(c[2] == 0 and c[3] == 0 and c[4] == 0 for c in counts), counts  # healthy gateway
    # at most one a second (0.8: the pipe may deliver a line a little late)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.8, gaps
    assert len(progress) <= took + 1
    print(f"[run progress] {len(progress)} lines in {took:.1f} s: sent {sent}; gaps {[round(g, 2) for g in gaps]}")


@pytest.mark.slow
def test_run_json_and_quiet_print_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --json/--quiet the first answers already print a line (see the throttle test)."""
    first, _ = S.prepared_message(monkeypatch, tmp_path, 40)
    with S.Mock(tmp_path / "received.jsonl") as mock:
        r = S.broadcast(mock.env(), "run", "--json")
        assert r.code == 0, r
        assert r.stderr == "", r
        assert r.json()["accepted"] == 40 and r.json()["completed"] == [first], r

        ws = S.open_workspace(monkeypatch)
        try:
            second = S.approved_message(ws, text="第二条通知：周五下午两点开会。")
        finally:
            ws.close()
        r = S.broadcast(mock.env(), "run", "--quiet")
        assert r.code == 0, r
        assert r.stderr == "", r
        assert "Sent 40, failed 0" in r.stdout and f"Finished: message {second}" in r.stdout, r
        assert mock.count() == 80


def _run_in_a_terminal(env: dict[str, str], *args: str, timeout: float = 60.0) -> tuple[int, str]:
    """Run ``broadcast ARGS`` with stdout and stderr on a pseudo-terminal; (exit code, all output)."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "broadcast", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    out = bytearray()
    give_up = time.monotonic() + timeout
    try:
        while time.monotonic() < give_up:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, out.decode("utf-8", "replace")


@pytest.mark.slow
def test_run_in_a_terminal_draws_a_progress_bar_instead_of_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    S.prepared_message(monkeypatch, tmp_path, 60)
    with S.Mock(tmp_path / "received.jsonl", "--delay-ms", "100") as mock:
        env = mock.env(BROADCAST_CONCURRENCY="8", TERM="xterm-256color", COLUMNS="120")
        for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
            env.pop(var, None)
        code, out = _run_in_a_terminal(env, "run")
        assert code == 0, out
        assert mock.count() == 60
    # a live bar: redrawn in place (carriage return + erase line), counted M/N, with the counts
    assert "\r\x1b[2K" in out, out
    assert "━" in out and "60/60" in out and "sent 60 failed 0 retrying 0" in out, out
    assert not re.search(r"message \d+: sent \d+ failed", out), out  # not the plain log lines
    assert "Sent 60, failed 0" in out


class _FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t


def _progress(mid: int, total: int, accepted: int, failed: int = 0, elapsed: float = 1.0) -> Any:
    from broadcast.dispatch.ledger import Outcomes
    from broadcast.dispatch.run_report import Progress

    return Progress(mid, total, Outcomes(accepted=accepted, failed=failed), elapsed)


def test_reporter_without_a_terminal_throttles_to_one_line_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from broadcast.cli import send_cmd

    err = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", err)
    clock = _FakeClock(1000.0)
    monkeypatch.setattr(send_cmd, "time", SimpleNamespace(monotonic=clock.monotonic))
    rep = send_cmd._Reporter(quiet=False)
    for t, accepted in ((1000.0, 8), (1000.5, 16), (1000.99, 24), (1001.0, 32), (1001.2, 40), (1003.0, 48)):
        clock.t = t
        rep(_progress(7, 100, accepted, failed=1, elapsed=2.0))
    rep.close()
    assert rep.bar is None
    assert err.getvalue().splitlines() == [
        "message 7: sent 8 failed 1 retrying 0 in doubt 0 (4/s)",
        "message 7: sent 32 failed 1 retrying 0 in doubt 0 (16/s)",
        "message 7: sent 48 failed 1 retrying 0 in doubt 0 (24/s)",
    ]

    err.seek(0)
    err.truncate()
    quiet = send_cmd._Reporter(quiet=True)
    clock.t = 2000.0
    quiet(_progress(7, 100, 50))
    quiet.close()
    assert err.getvalue() == "" and quiet.bar is None


class _TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_in_a_terminal_draws_a_rich_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.progress import Progress as RichProgress

    from broadcast.cli import send_cmd

    err = _TtyStringIO()
    monkeypatch.setattr(sys, "stderr", err)
    rep = send_cmd._Reporter(quiet=False)
    try:
        rep(_progress(1, 10, 2, elapsed=1.0))
        rep(_progress(1, 10, 5, failed=1, elapsed=2.0))
        rep(_progress(2, 4, 5, failed=1, elapsed=2.0))  # outcomes are the run's totals
        assert isinstance(rep.bar, RichProgress)
        assert rep.bar.console.stderr  # drawn on the stream it was chosen for, not into `run > log`
        assert rep.bar.live.is_started
        tasks = {t.description: t for t in rep.bar.tasks}
        assert set(tasks) == {"message 1", "message 2"}
        one, two = tasks["message 1"], tasks["message 2"]
        assert (one.completed, one.total) == (6, 10)
        assert one.fields["info"] == "sent 5 failed 1 retrying 0 3/s"
        assert (two.completed, two.total) == (4, 4)  # capped at the message's total
    finally:
        rep.close()
    assert not rep.bar.live.is_started
    assert "message 1: sent" not in err.getvalue()  # no log lines in a terminal


def test_gateway_list_shows_an_operator_links_window_and_connections(cli: Any) -> None:
    """The declared defaults (16 × 1), and an account's own once its settings load."""
    caps = {c["name"]: c for c in cli("gateway", "list", "--json").json()}
    assert (caps["cmpp"]["window"], caps["cmpp"]["connections"]) == (16, 1)
    assert (caps["smpp"]["window"], caps["smpp"]["connections"]) == (16, 1) and caps["http"]["window"] is None
    env = {"BROADCAST_CMPP_HOST": "127.0.0.1", "BROADCAST_CMPP_SP_ID": "901234", "BROADCAST_CMPP_SECRET": "s3cret",
           "BROADCAST_CMPP_SRC_ID": "10690", "BROADCAST_CMPP_WINDOW": "32", "BROADCAST_CMPP_CONNECTIONS": "2",
           "COLUMNS": "400"}
    caps = {c["name"]: c for c in cli("gateway", "list", "--json", env=env).json()}
    assert (caps["cmpp"]["window"], caps["cmpp"]["connections"]) == (32, 2)
    table = cli("gateway", "list", env=env).stdout
    assert "32 × 2" in table and "16 × 1" in table
