"""``broadcast receipts``: the endpoint gateways push delivery reports to."""

from __future__ import annotations

from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION

app = typer.Typer(rich_markup_mode=None, help="Delivery receipts: pushed by gateways (Kannel, Aliyun, Tencent, Twilio, simulator) or pulled.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Delivery receipts: pushed by gateways (Kannel, Aliyun, Tencent, Twilio, simulator) or pulled."""


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; keep 127.0.0.1 unless the gateway runs elsewhere."),
    port: int = typer.Option(8787, "--port", min=1, max=65535, help="TCP port."),
) -> None:
    """Receive delivery reports and replies: record each one first, apply it after. Ctrl-C stops."""
    import ipaddress

    from broadcast.cli._common import workspace
    from broadcast.cli._output import say, warn
    from broadcast.receipts.formats import FORMATS, INBOUND_FORMATS
    from broadcast.receipts.server import serve as run_server
    from broadcast.receipts.settings import load_receipts_settings
    from broadcast.twoway.intake import Rules

    settings = load_receipts_settings()
    ws = workspace()
    has_secret = bool(settings.secret.get_secret_value())
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not has_secret:
        warn(f"listening on {host} without BROADCAST_RECEIPTS_SECRET: anyone who can reach it can mark deliveries "
             "and opt numbers out")
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}" + ("/<BROADCAST_RECEIPTS_SECRET>" if has_secret else "")
    say(f"Receipts endpoint on http://{host}:{port} (formats: {', '.join(sorted(FORMATS))}; "
        f"replies: {', '.join(sorted(INBOUND_FORMATS))}); set BROADCAST_RECEIPTS_URL={base}")
    try:
        run_server(ws.engine, settings, host, port, rules=Rules.of(ws.settings))
    finally:
        ws.close()


@app.command("status")
def status(json_: bool = JSON_OPTION) -> None:
    """How many deliveries await a final receipt, per gateway, and for how long."""
    from broadcast.cli._common import workspace
    from broadcast.cli._output import Output
    from broadcast.clock import format_duration, now
    from broadcast.receipts.status import status as receipt_status

    ws = workspace()
    rows = receipt_status(ws)
    current = now(ws.settings)
    Output.for_(json_).table(
        None, ["Gateway", "Awaiting a receipt", "Oldest waits", f"Unconfirmed (> {ws.settings.receipt_timeout})",
               "Received, not yet applied"],
        ([r.gateway, r.awaiting, format_duration(current - r.oldest) if r.oldest else "", r.unconfirmed,
          r.receipts_pending] for r in rows),
        data=[r.to_dict() for r in rows], empty="No deliveries await a receipt.")


@app.command("pull")
def pull(
    json_: bool = JSON_OPTION,
    budget: int = typer.Option(None, "--budget", min=1, help="API requests per gateway (default BROADCAST_RECEIPTS_PULL_BUDGET)."),
    gateway: list[str] = typer.Option(None, "--gateway", help="Only this gateway (repeatable)."),
) -> None:
    """Ask every gateway with a pull API about deliveries still accepted or in doubt; record, then apply."""
    from broadcast.cli._common import workspace
    from broadcast.cli._output import Output
    from broadcast.receipts.pull import pull_once

    ws = workspace()
    try:
        summary = pull_once(ws, budget=budget, gateways=gateway or None)
    finally:
        ws.close()
    Output.for_(json_).result(summary.to_dict(), lambda: _say_pull(summary))


def _say_pull(summary: Any) -> None:
    from broadcast.cli._output import say, table

    if not summary.gateways:
        say("No deliveries await a receipt.")
        return
    table(None, ["Gateway", "Waiting", "Asked", "Requests", "Reports", "Errors", "Note"],
          ([g.gateway, g.waiting, g.asked, g.requests, g.receipts, g.errors, g.note or ""] for g in summary.gateways))
    say(f"{summary.recorded} reports recorded: {summary.delivered} delivered, {summary.failed} failed, "
        f"{summary.settled} in-doubt settled ({summary.still_in_doubt} still in doubt) in {summary.seconds:.1f} s")
