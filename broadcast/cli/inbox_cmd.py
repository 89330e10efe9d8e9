"""``broadcast inbox``: the members' feedback (replies that are not opt-outs or submissions),
triaged in the office's categories, answered by one SMS, reported in the office's words.

Every text that came from a member is printed through ``for_terminal`` (controls and bidi
characters as visible escapes, bounded) and escaped for rich; JSON keeps it exactly."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Feedback inbox: list, show, triage, close, reply, report.")

ID_ARG = typer.Argument(..., help="Inbox item id (see 'broadcast inbox list').")
SINCE_OPTION = typer.Option(None, "--since", help="Received on or after this local date (YYYY-MM-DD).")
UNTIL_OPTION = typer.Option(None, "--until", help="Received on or before this local date (YYYY-MM-DD).")
TEXT_WIDTH = 40


def _date(value: str | None) -> date | None:
    from broadcast.clock import parse_date

    return parse_date(value) if value is not None else None


def _safe(text: str | None, limit: int | None = None) -> str:
    """Untrusted text for a rich line: neutralised, bounded and with rich markup escaped."""
    from rich.markup import escape

    from broadcast.twoway.untrusted import DISPLAY_LIMIT, for_terminal

    return escape(for_terminal(text, limit=limit or DISPLAY_LIMIT))


def _local(ws: Any, dt: Any) -> str:
    from broadcast.clock import local

    return local(dt, ws.settings.timezone).strftime("%Y-%m-%d %H:%M") if dt else ""


def _who(i: Any) -> str:
    from broadcast.recipients.phones import mask_phone
    from broadcast.twoway.untrusted import for_terminal

    return f"{for_terminal(i.name, 40)} {mask_phone(i.phone)}".strip()


def _due(i: Any) -> str:
    if i.due_date is None:
        return ""
    return i.due_date.isoformat() + (" overdue" if i.overdue else "")


def _rows(ws: Any, items: list[Any]) -> list[list[Any]]:
    from broadcast.twoway.untrusted import for_terminal, one_line

    return [[i.id, _local(ws, i.received_at), i.status, i.category or "", _who(i), for_terminal(i.group, 60),
             for_terminal(i.assigned, 60), _due(i), one_line(i.text, TEXT_WIDTH)] for i in items]


COLUMNS = ["ID", "Received", "Status", "Category", "Member", "Branch", "Assigned", "Due", "Text"]


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="new, open, closed or overdue."),
    group: str | None = typer.Option(None, "--group", help="From members of this branch or assigned to it (sub-groups included)."),
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    json_: bool = JSON_OPTION,
    csv: Path | None = typer.Option(None, "--csv", help="Write the items to this .csv file (UTF-8 with BOM; phones masked)."),
    xlsx: Path | None = typer.Option(None, "--xlsx", help="Write the items to this .xlsx file (phones masked)."),
) -> None:
    """List inbox items (oldest first); --csv/--xlsx for auditors (formulas neutralised, audited)."""
    from broadcast.cli._output import Output
    from broadcast.twoway.inbox import export_items, list_items

    out = Output.for_(json_)
    ws = workspace()
    items = list_items(ws, status=status, group=group, since=_date(since), until=_date(until))
    target = csv or xlsx
    if target is not None:
        if csv and xlsx:
            raise typer.BadParameter("give --csv or --xlsx, not both")
        n = export_items(ws, items, target, filters={"status": status, "group": group, "since": since, "until": until})
        out.message(f"Wrote {n} inbox items to {target} (phones masked)", {"rows": n, "file": str(target)})
        return
    out.table(None, COLUMNS, _rows(ws, items), data=[i.to_dict() for i in items], caption=f"{len(items)} items",
              empty="No inbox items match." if (status or group or since or until) else "The inbox is empty.")


@app.command("show")
def show(item_id: int = ID_ARG, json_: bool = JSON_OPTION) -> None:
    """One item: the reply, the member and their branch, the message answered, the history."""
    from broadcast.cli._output import Output
    from broadcast.twoway.inbox import show_item

    ws = workspace()
    d = show_item(ws, item_id)
    Output.for_(json_).result(d.to_dict(), lambda: _say_item(ws, d))


def _say_item(ws: Any, d: Any) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, table
    from broadcast.twoway.inbox import CATEGORY_WORDS
    from broadcast.twoway.untrusted import for_terminal, one_line

    i = d.item
    cat = f"{i.category} {CATEGORY_WORDS[i.category]}" if i.category else "not triaged"
    say(f"[bold]Inbox item {i.id}[/]  {i.status}, {cat}" + ("  [red]overdue[/]" if i.overdue else ""))
    say(f"Received: {_local(ws, i.received_at)}")
    say(f"From: {_safe(i.name) or '(not a member)'} {i.phone}" + ("  [yellow](opted out)[/]" if d.opted_out else ""))
    if d.member:
        say(f"Member: {_safe(d.member['title']) or '-'}; groups: {_safe('、'.join(d.member['groups'])) or '-'}")
    say(f"Branch (when it came): {_safe(i.group) or '-'}")
    say(f"Reply: {_safe(i.text)}")
    if d.answered:
        a = d.answered
        say(f"Answers message {a['id']} of {a['date']} ({a['status']}): {escape(for_terminal(a['text'], 500))}")
    else:
        say("Answers: no message found")
    if i.category:
        say(f"Assigned: {_safe(i.assigned) or '-'}; due: {_due(i) or '-'}"
            + (f"; closed {_local(ws, i.closed_at)}" if i.closed_at else ""))
    if i.note:
        say(f"Note: {_safe(i.note)}")
    if d.history:
        table("History", ["When", "Who", "Action", "Details"],
              ([_local(ws, e["at"]), for_terminal(e["operator"], 100), e["action"],
                one_line("; ".join(f"{k}={v}" for k, v in e["details"].items() if v not in (None, "")), 120)]
               for e in d.history))
    if d.other_replies:
        table("Their other replies", ["Received", "Kind", "Inbox", "Text"],
              ([_local(ws, r["received_at"]), r["kind"], f"{r['inbox_id']} {r['status']}" if r["inbox_id"] else "",
                one_line(r["text"], 60)] for r in d.other_replies))


def _say_item_line(ws: Any, verb: str, i: Any) -> None:
    from broadcast.cli._output import say

    extra = "".join(f"; {k} {v}" for k, v in (("assigned to", _safe(i.assigned)), ("due", _due(i))) if v)
    say(f"Inbox item {i.id} {verb}: {i.status}, {i.category}{extra}")


@app.command("triage")
def triage(
    item_id: int = ID_ARG,
    as_: str = typer.Option(..., "--as", help="fix-now (立行立改), study (列入专项研究), supervise (重点督办) or no-action."),
    assign: str | None = typer.Option(None, "--assign", help="The branch that handles it."),
    due: str | None = typer.Option(None, "--due", help="Due date (local, YYYY-MM-DD), today or later."),
    note: str | None = typer.Option(None, "--note", help="A note (kept with the item and in the audit trail)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Sort a new (or open) item into a category; it becomes open. Audited."""
    from broadcast.cli._output import Output
    from broadcast.twoway import inbox

    ws = workspace()
    i = inbox.triage(ws, item_id, as_, assign=assign, due=_date(due), note_text=note)
    Output.for_(json_).result(i.to_dict(), lambda: _say_item_line(ws, "triaged", i))


@app.command("close")
def close(
    item_id: int = ID_ARG,
    note: str | None = typer.Option(None, "--note", help="What was done (required)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Close a triaged item with a note; it keeps its category. Audited."""
    from broadcast.cli._output import Output
    from broadcast.twoway import inbox

    ws = workspace()
    i = inbox.close(ws, item_id, note)
    Output.for_(json_).result(i.to_dict(), lambda: _say_item_line(ws, "closed", i))


@app.command("reopen")
def reopen(
    item_id: int = ID_ARG,
    note: str | None = typer.Option(None, "--note", help="Why it is open again (required)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Open a closed item again, with a note. Audited."""
    from broadcast.cli._output import Output
    from broadcast.twoway import inbox

    ws = workspace()
    i = inbox.reopen(ws, item_id, note)
    Output.for_(json_).result(i.to_dict(), lambda: _say_item_line(ws, "reopened", i))


@app.command("reply")
def reply(
    item_id: int = ID_ARG,
    text: str = typer.Option(..., "--text", help="The answer, sent as written (braces are literal)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = JSON_OPTION,
) -> None:
    """Send one SMS back to the item's phone: a message like any other (checks, signature, approval
    when BROADCAST_REQUIRE_APPROVAL, quiet hours, opt-outs); sent now when it needs no approval."""
    from broadcast.cli._output import Output
    from broadcast.cli.send_cmd import _Reporter, _say_report
    from broadcast.dispatch import service
    from broadcast.errors import ExitCode
    from broadcast.recipients.phones import mask_phone
    from broadcast.twoway import inbox

    out = Output.for_(json_)
    ws = workspace()
    target = inbox.reply_target(ws, item_id)  # an opted-out phone is refused here, before anything is written
    if not yes:
        from rich.markup import escape

        out.confirm(f"Reply to {_safe(target.name) or '(not a member)'} {mask_phone(target.phone)} "
                    f"(inbox item {item_id}): {escape(text)}", "Send this reply?",
                    refusal="--json needs --yes (there is no one to confirm)")
    r = inbox.reply(ws, item_id, text)
    for w in r.warnings:
        out.warn(f"{w['message']} [{w['code']}]")
    result: dict[str, Any] = {"reply": r.to_dict(), "send": None}
    if r.status != "approved":
        out.result(result, lambda: out.say(
            f"Reply message {r.message_id} waits for approval: another operator runs "
            f"'broadcast message approve {r.message_id}'; then 'broadcast run' (or the worker) sends it."))
        return
    quiet = ws.settings.quiet_window
    from broadcast.clock import now as clock_now

    if quiet is not None and quiet.is_quiet(clock_now(ws.settings), ws.settings.timezone):
        out.result(result, lambda: out.say(
            f"Reply message {r.message_id} created; it is quiet hours ({quiet}): 'broadcast run' (or the worker) "
            "sends it when they end."))
        return
    rep = _Reporter(out.is_json)
    try:
        report = service.send_now(ws, r.message_id, progress=rep)
    finally:
        rep.close()
    result["send"] = report.to_dict()

    def human() -> None:
        out.say(f"Reply message {r.message_id} to {mask_phone(r.phone)}:")
        _say_report(report)

    out.result(result, human)
    if report.needs_attention:
        raise typer.Exit(ExitCode.ATTENTION)


@app.command("report")
def report(
    since: str | None = SINCE_OPTION,
    until: str | None = UNTIL_OPTION,
    json_: bool = JSON_OPTION,
    xlsx: Path | None = typer.Option(None, "--xlsx", help="Also write the report (and every item) to this .xlsx file."),
) -> None:
    """收到意见建议N条，已立行立改N条，列入专项研究N条，重点督办N条: counts by received date, open and
    overdue items per assigned branch, the overdue items."""
    from broadcast.cli._output import Output
    from broadcast.twoway import inbox_report

    out = Output.for_(json_)
    ws = workspace()
    rep = inbox_report.build(ws, _date(since), _date(until))
    if xlsx is not None:
        inbox_report.write_xlsx(ws, rep, xlsx)
    out.result({**rep.to_dict(), "file": str(xlsx) if xlsx else None}, lambda: _say_report_tables(ws, rep, xlsx))


def _say_report_tables(ws: Any, rep: Any, xlsx: Path | None) -> None:
    from dataclasses import asdict

    from broadcast.cli._output import say, table
    from broadcast.twoway.untrusted import for_terminal, one_line

    say(f"[bold]{rep.headline}[/]")
    c = asdict(rep.counts)
    say(f"Period: {inbox_report_period(rep)}; today {rep.today.isoformat()}; open {c['open']}, closed {c['closed']}, "
        f"overdue {c['overdue']}")
    table("Per assigned branch", ["Branch", "Items", "Open", "Overdue", "Closed"],
          ([for_terminal(b.branch, 60), b.items, b.open, b.overdue, b.closed] for b in rep.branches))
    if rep.overdue:
        table("Overdue", ["ID", "Assigned", "Due", "Days late", "Category", "Member", "Text"],
              ([i.id, for_terminal(i.assigned, 60), i.due_date.isoformat(), (rep.today - i.due_date).days,
                i.category, _who(i), one_line(i.text, TEXT_WIDTH)] for i in rep.overdue))
    else:
        say("No overdue items.")
    if xlsx is not None:
        say(f"Wrote {xlsx}")


def inbox_report_period(rep: Any) -> str:
    from broadcast.twoway.inbox_report import period_text

    return str(period_text(rep))


@app.command("pull")
def pull(
    gateway: list[str] = typer.Option([], "--gateway", "-g",
                                      help="Only this gateway (repeatable); default: the gateways in use."),
    json_: bool = JSON_OPTION,
) -> None:
    """Fetch replies from providers that offer them by API (Tencent, Twilio): each is stored once and
    taken in like a pushed one (opt-outs, the inbox, submissions)."""
    from broadcast.cli._output import Output
    from broadcast.twoway.pull import pull_replies

    out = pull_replies(workspace(), gateways=gateway or None)

    def say() -> None:
        from broadcast.cli._output import say as print_line

        for g in out.gateways:
            print_line(f"{g.gateway}: {g.note}" if g.note else f"{g.gateway}: {g.pulled} pulled, {g.new} new")
        t = out.taken
        print_line(f"New replies {t.new}: opted out {t.optouts}, re-subscribed {t.resubscribed}, "
                   f"inbox {t.feedback}, submissions {t.submissions}; already stored {t.duplicates}")

    Output.for_(json_).result(out.to_dict(), say)
