"""``broadcast run``, ``broadcast worker`` and ``broadcast send``: the administrator's send commands."""

from __future__ import annotations

import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

if TYPE_CHECKING:
    from broadcast.cli._output import Output

class _Graceful:
    """SIGTERM or a first Ctrl-C: stop taking new work, finish and record the requests in flight.

    Installed when the command starts, before the engine exists (a worker may be told to stop
    while it is still opening its database or its receipts endpoint); a second signal ends the
    process at once."""

    def __init__(self) -> None:
        self.engine: Any = None
        self.stopping = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        if self.engine is not None:
            self.engine.stop()
        signal.signal(signum, signal.SIG_DFL)

    def __call__(self, engine: Any) -> None:
        """The engine hook: hand the engine over, stopping it at once if a signal came first."""
        self.engine = engine
        if self.stopping:
            engine.stop()


class _Reporter:
    """A rich progress bar in a terminal; otherwise at most one log line per second."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.tasks: dict[int, Any] = {}
        self.last = 0.0

    def __call__(self, p: Any) -> None:
        if self.quiet:
            return
        o = p.outcomes
        done = o.accepted + o.failed + o.in_doubt + o.expired
        rate = done / p.elapsed_s if p.elapsed_s > 0 else 0.0
        if self.tty:
            if self.bar is None:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                # on stderr, the stream it was chosen for: `broadcast run > log` keeps it out of the log
                self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False,
                                    console=Console(stderr=True))
                self.bar.start()
            if p.message_id not in self.tasks:
                self.tasks[p.message_id] = self.bar.add_task(f"message {p.message_id}", total=p.total, info="")
            self.bar.update(self.tasks[p.message_id], completed=min(done, p.total),
                            info=f"sent {o.accepted} failed {o.failed} retrying {o.retry} {rate:,.0f}/s")
        elif time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            print(f"message {p.message_id}: sent {o.accepted} failed {o.failed} retrying {o.retry} "
                  f"in doubt {o.in_doubt} ({rate:,.0f}/s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_report(report: Any, out: Output) -> None:
    """The run's report; exit 3 (ATTENTION) when a message paused or deliveries are held in doubt."""
    from broadcast.errors import ExitCode

    out.result(report.to_dict(), lambda: _say_report(report))
    if report.needs_attention:
        raise typer.Exit(ExitCode.ATTENTION)


def _say_report(report: Any) -> None:
    from broadcast.cli._output import say, warn
    from broadcast.costs.guard import release_hint

    o = report.outcomes
    say(f"Sent {o.accepted}, failed {o.failed}, retrying later {o.retry}, expired {o.expired}, "
        f"in doubt {o.in_doubt} ({report.elapsed_s:.1f} s)"
        + (f"; receipts {report.receipts}" if report.receipts else ""))
    for mid, counts in report.channels.items():
        say(f"Message {mid} by channel: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if report.fell_back:
        say(f"{report.fell_back} sent by SMS instead: their channel refused or failed for them (--fallback sms)")
    for mid, n in report.optout_skipped.items():
        say(f"Message {mid}: {n} opted-out {'person' if n == 1 else 'people'} left out (see broadcast optout list)")
    if report.completed:
        say(f"Finished: message {', '.join(map(str, report.completed))}")
    for mid in report.waiting_quiet:
        say(f"Message {mid} waits: quiet hours")
    for mid, reason in report.expired.items():
        warn(f"message {mid} expired unsent: {reason}")
    for mid, reason in report.paused.items():
        warn(f"message {mid} paused: {reason}; after fixing it: broadcast message resume {mid}")
    for mid, reason in report.held.items():
        warn(f"message {mid} held, nothing of it sent: {reason}; {release_hint(mid)}")
    for mid, n in report.in_doubt.items():
        per = report.in_doubt_by_channel.get(mid)
        where = f" ({', '.join(f'{k} {v}' for k, v in per.items())})" if per else ""
        warn(f"message {mid}: {n} deliveries in doubt{where} (held, not resent); see broadcast message show {mid}")


def run(json_: bool = JSON_OPTION, quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output.")) -> None:
    """Send everything due now, once, and exit (safe to run from cron every minute)."""
    from broadcast.cli._output import Output
    from broadcast.dispatch.service import run_once

    out = Output.for_(json_)
    graceful = _Graceful()
    rep = _Reporter(quiet or out.is_json)
    try:
        report = run_once(workspace(), progress=rep, on_dispatcher=graceful)
    finally:
        rep.close()
    _print_report(report, out)


def worker(
    poll: float = typer.Option(5.0, "--poll", help="Seconds between passes."),
    receipts_port: int | None = typer.Option(None, "--receipts-port", help="Also serve the receipts endpoint on this port (127.0.0.1), so one process does the whole job."),
    receipts_host: str = typer.Option("127.0.0.1", "--receipts-host", help="Interface for --receipts-port."),
    json_: bool = JSON_OPTION,
) -> None:
    """Send due messages in a loop; SIGTERM or Ctrl-C finishes the requests in flight and exits 0."""
    import contextlib

    from broadcast.cli._output import Output
    from broadcast.dispatch.service import run_worker

    out = Output.for_(json_)

    def on_pass(r: Any) -> None:
        if r.outcomes.accepted or r.outcomes.failed or r.started or r.paused:
            o = r.outcomes
            out.say(f"pass: sent {o.accepted} failed {o.failed} retrying {o.retry} in doubt {o.in_doubt}")

    graceful = _Graceful()
    rep = _Reporter(True)
    ws = workspace()
    endpoint: Any = contextlib.nullcontext(None)
    if receipts_port is not None:
        from broadcast.receipts.server import running
        from broadcast.receipts.settings import load_receipts_settings
        from broadcast.twoway.intake import Rules

        endpoint = running(ws.engine, load_receipts_settings(), receipts_host, receipts_port, rules=Rules.of(ws.settings))
    with endpoint as url:
        if url:
            out.say(f"Receipts endpoint on {url}")
        report = run_worker(ws, poll_s=poll, progress=rep, on_pass=on_pass, on_dispatcher=graceful)
    out.result(report.to_dict())


def send(
    message_id: int = typer.Argument(..., help="An approved message."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    test_to: str | None = typer.Option(None, "--test-to", help="Send the rendered text to this number only, as a test."),
    json_: bool = JSON_OPTION,
) -> None:
    """Send one approved message now, after showing its audience, parts, cost and duration."""
    from broadcast.cli._output import Output
    from broadcast.dispatch import service
    from broadcast.errors import ExitCode

    out = Output.for_(json_)
    ws = workspace()
    if test_to:
        t = service.test_send(ws, message_id, test_to)
        out.message(f"Test to {t.phone}: {t.outcome}" + (f" ({t.detail})" if t.detail else "") + f"\n{t.text}",
                    t.to_dict())
        if t.outcome != "accepted":
            raise typer.Exit(ExitCode.ERROR)
        return
    p = service.plan(ws, message_id)
    if not yes:
        assert p.estimate is not None
        budget = "".join(f"\nHeld when it starts, nothing sent: {o}" for o in p.over_budget)
        out.confirm(f"Message {p.message_id} ({p.status}) through {p.gateway}: {p.audience} people, {p.parts} part(s) each; "
                    f"{p.estimate.text()}; {service.eta_text(p.eta_s)}"
                    + (f" at {p.rate:g}/s" if p.rate else "") + budget,
                    "Send now?", refusal="--json needs --yes (there is no one to confirm)")
    rep = _Reporter(out.is_json)
    try:
        report = service.send_now(ws, message_id, progress=rep)
    finally:
        rep.close()
    _print_report(report, out)
