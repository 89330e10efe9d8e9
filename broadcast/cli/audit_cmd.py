"""The auditor's commands: ``log``, ``report``, ``purge`` and ``audit log|verify|export``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, help="The tamper-evident audit trail: who changed what, when.", no_args_is_help=True)


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    from broadcast.clock import parse_date

    try:
        return parse_date(value)
    except Exception:
        raise typer.BadParameter(f"{value!r} is not a date like 2026-11-27", param_hint=option) from None


def log(
    since: str | None = typer.Option(None, "--since", help="From this local date (YYYY-MM-DD), included."),
    until: str | None = typer.Option(None, "--until", help="Up to this local date, included."),
    message: int | None = typer.Option(None, "--message", help="Only this message."),
    group: str | None = typer.Option(None, "--group", help="Only people reached through this group (sub-groups included)."),
    status: str | None = typer.Option(None, "--status", help="queued, sending, retry_wait, accepted, delivered, failed, expired, in_doubt."),
    phone: str | None = typer.Option(None, "--phone", help="Only this number."),
    limit: int | None = typer.Option(None, "--limit", help="At most N rows (default 100 on screen, all in files)."),
    unmasked: bool = typer.Option(False, "--unmasked", help="Show full phone numbers (recorded in the audit trail)."),
    json_: bool = JSON_OPTION,
    csv: Path | None = typer.Option(None, "--csv", help="Write the rows to this .csv file."),
    xlsx: Path | None = typer.Option(None, "--xlsx", help="Write the rows to this .xlsx file."),
) -> None:
    """The delivery log: one row per delivery; phones masked (138****1234) unless --unmasked."""
    from broadcast.audit import delivery_log as dl
    from broadcast.cli._output import Output, say

    out = Output.for_(json_)
    f = dl.LogFilter(_date(since, "--since"), _date(until, "--until"), message, group, status, phone, limit)
    ws = workspace()
    target = csv or xlsx
    if target is not None:
        if csv and xlsx:
            raise typer.BadParameter("give --csv or --xlsx, not both")
        n = dl.export(ws, f, target, unmasked=unmasked)
        say(f"Wrote {n} deliveries to {target}" + ("" if unmasked else " (phones masked)"))
        return
    if f.limit is None:
        f.limit = out.screen_limit(100)
    n = out.stream(dl.rows(ws, f, unmasked=unmasked), lambda rows: _log_table(ws, rows, f.limit))


def _log_table(ws: Any, rows: list[dict[str, Any]], limit: int | None) -> None:
    from broadcast.cli._output import say, table
    from broadcast.clock import local as to_local

    if not rows:
        say("No deliveries match.")
        return
    fmt = "%Y-%m-%d %H:%M"

    def local(v: Any) -> str:
        return to_local(v, ws.settings.timezone).strftime(fmt) if v else ""

    table(None, ["#", "Msg", "Group", "Phone", "Status", "Tries", "Queued", "Sent", "Delivered", "Error"],
          ([r["delivery"], r["message"], r["group"], r["phone"], r["status"], r["attempts"], local(r["queued_at"]),
            local(r["sent_at"]), local(r["delivered_at"]), " ".join(x for x in (r["error_code"], r["error_text"]) if x)]
           for r in rows),
          caption=f"{len(rows)} deliveries" + (f" (first {limit}; --limit N or --csv FILE for more)"
                                               if limit and len(rows) == limit else ""))


def report(
    since: str | None = typer.Option(None, "--since", help="From this local date, included."),
    until: str | None = typer.Option(None, "--until", help="Up to this local date, included."),
    by: str = typer.Option("day", "--by", help="day, week, month, group, message or gateway."),
    json_: bool = JSON_OPTION,
    xlsx: Path | None = typer.Option(None, "--xlsx", help="Write the report to this .xlsx file."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained page with tables and a chart."),
) -> None:
    """What was sent and what arrived: messages, SMS, people, delivery rate, failures by reason."""
    from broadcast.audit.report import build
    from broadcast.cli._output import Output, say

    rep = build(workspace(), since=_date(since, "--since"), until=_date(until, "--until"), by=by)
    if xlsx or html:
        from broadcast.audit.report_files import write_html, write_xlsx

        if xlsx:
            write_xlsx(rep, xlsx)
            say(f"Wrote {xlsx}")
        if html:
            write_html(rep, html)
            say(f"Wrote {html}")
        return
    Output.for_(json_).result(rep.to_dict(), lambda: _say_report(rep, by))


def _say_report(rep: Any, by: str) -> None:
    from broadcast.cli._output import say, table
    from broadcast.costs.money import yuan
    from broadcast.costs.prices import price_var

    say(f"[bold]{rep.headline}[/]")
    top = max((r.deliveries for r in rep.rows), default=0) or 1
    priced = any(p is not None for p in rep.prices.values())
    cols = [by, "msgs", "deliveries", "accepted", "delivered", "failed", "expired", "pending", "in doubt",
            "SMS", "rate %"] + (["billed SMS", "cost"] if priced else [])
    if by == "day":
        cols.append("")
    table(None, cols, (
        [r.key, r.messages, f"{r.deliveries:,}", f"{r.accepted:,}", f"{r.delivered:,}", r.failed,
         r.expired, r.pending, r.in_doubt, f"{r.sms:,}", "" if r.delivery_rate is None else f"{r.delivery_rate:.1f}"]
        + ([f"{r.billed_sms:,}", r.cost_text()] if priced else [])
        + (["█" * max(1, round(20 * r.deliveries / top))] if by == "day" else [])
        for r in rep.rows))
    if rep.prices:
        say("Prices: " + "; ".join(f"{g} " + (f"¥{p} a part, billed when {rep.billing[g]}" if p is not None
                                              else f"not set ({price_var(g)})")
                                   for g, p in rep.prices.items()))
    if rep.budgets:
        table("Spend against budget (sub-groups included; in flight counts)", ["group", "month", "budget", "spent", "left", "%"],
              ([b.group, b.month, yuan(b.monthly, approx=False), b.spent.text(),
                "" if b.left is None else (yuan(b.left) if b.left >= 0 else f"OVER by {yuan(-b.left)}"),
                "" if b.percent is None else f"{b.percent:.1f}"] for b in rep.budgets))
    if rep.failures:
        say("Failed or expired, by reason: " + ", ".join(f"{k} {v}" for k, v in rep.failures.items()))
    if rep.total.unconfirmed:
        say(f"Unconfirmed (accepted, no receipt within BROADCAST_RECEIPT_TIMEOUT): {rep.total.unconfirmed:,}")
    if rep.total.optout_skipped:
        say(f"Opted-out people left out: {rep.total.optout_skipped}")


def purge(
    before: str | None = typer.Option(None, "--before", help="Erase deliveries queued before this local date (default: BROADCAST_RETENTION_DAYS ago)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = JSON_OPTION,
) -> None:
    """Erase phone numbers and texts of old deliveries and replies, keeping counts (audited)."""
    from broadcast.audit.purge import count
    from broadcast.audit.purge import cutoff as purge_cutoff
    from broadcast.audit.purge import purge as do_purge
    from broadcast.cli._output import Output

    out = Output.for_(json_)
    ws = workspace()
    cutoff = purge_cutoff(ws, _date(before, "--before"))
    n = count(ws, cutoff)
    if not yes:
        out.confirm(f"This erases phone numbers, names and texts of {n:,} deliveries queued before {cutoff}, and of the "
                    "replies received before it that are not open in the inbox (counts stay).",
                    "Purge them?", refusal="--json needs --yes")
    result = do_purge(ws, cutoff)
    out.message(f"Purged {result.deliveries:,} deliveries queued and {result.replies:,} replies received before "
                f"{result.before}", result.to_dict())


@app.command("log")
def audit_log(
    since: str | None = typer.Option(None, "--since", help="From this local date, included."),
    action: str | None = typer.Option(None, "--action", help="Only this action (e.g. message.approve) or family (message)."),
    limit: int | None = typer.Option(None, "--limit", help="At most N entries."),
    json_: bool = JSON_OPTION,
) -> None:
    """Show the audit trail: time, operator, action, object, details."""
    import json

    from broadcast.audit.timeutil import range_utc
    from broadcast.audit.trail import entries
    from broadcast.cli._output import Output
    from broadcast.clock import local

    ws = workspace()
    lo, _ = range_utc(_date(since, "--since"), None, ws.settings.timezone)
    items = list(entries(ws.engine, since=lo, action=action, limit=limit))
    Output.for_(json_).table(
        None, ["#", "When", "Operator", "Action", "Object", "Details"],
        ([e.id, local(e.at, ws.settings.timezone).strftime("%Y-%m-%d %H:%M:%S"), e.operator, e.action, e.object,
          json.dumps(e.details, ensure_ascii=False)[:120]] for e in items),
        data=[e.to_dict() for e in items], empty="The audit trail is empty.")


@app.command("verify")
def audit_verify(
    file: Path | None = typer.Option(None, "--file", help="Verify an exported JSONL file instead of the database."),
    head: str | None = typer.Option(None, "--head", help="With --file: the head hash you kept; detects a cut-off end."),
    json_: bool = JSON_OPTION,
) -> None:
    """Recompute the hash chain; exit 1 naming the first entry edited, deleted, inserted or reordered."""
    from broadcast.audit.trail import verify, verify_file
    from broadcast.cli._output import Output, error, say
    from broadcast.errors import ExitCode

    result = verify_file(file, head) if file else verify(workspace().engine)
    Output.for_(json_).result(result.to_dict(), lambda: (
        say(f"Audit trail intact: {result.entries:,} entries; head {result.head_hash}") if result.ok
        else error(f"audit trail broken at entry {result.entry_id}: {result.problem}")))
    if not result.ok:
        raise typer.Exit(ExitCode.ERROR)


@app.command("export")
def audit_export(file: Path = typer.Argument(..., help="A .jsonl file to write.")) -> None:
    """Write the trail as JSON lines with the hashes (verify it alone: broadcast audit verify --file)."""
    from broadcast.audit.trail import export
    from broadcast.cli._output import say
    from broadcast.errors import InputError

    if not file.parent.is_dir():
        raise InputError(f"folder {str(file.parent)!r} does not exist")
    n, head = export(workspace().engine, file)
    say(f"Wrote {n:,} entries to {file}; head hash {head} (keep it to detect a cut-off end later)")
