"""``broadcast message``: write, check, approve and schedule messages; ``broadcast due``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import typer

from broadcast.cli._common import JSON_OPTION, workspace

if TYPE_CHECKING:
    from broadcast.messages.checks import CheckReport

app = typer.Typer(rich_markup_mode=None, help="Messages: write or pick, check, approve (two-person rule), schedule.", no_args_is_help=True)

TEXT_OPTION = typer.Option(None, "--text", help="The message text; placeholders like {name} {date} allowed.")
TEMPLATE_OPTION = typer.Option(None, "--template", help="A template name (see 'broadcast template list').")
TO_OPTION = typer.Option(None, "--to", help="A target group (repeatable); its sub-groups are included.")
ALL_OPTION = typer.Option(False, "--all", help="Send to every member.")
AT_OPTION = typer.Option(None, "--at", help='Local send time "YYYY-MM-DD HH:MM"; default: as soon as possible.')


def _at(ws: Any, at: str | None) -> Any:
    from broadcast.clock import parse_local

    return parse_local(at, ws.settings.timezone) if at else None


def _local(ws: Any, dt: Any) -> str:
    from broadcast.clock import local

    return local(dt, ws.settings.timezone).strftime("%Y-%m-%d %H:%M") if dt else ""


def _warnings(warnings: list[dict[str, str]]) -> None:
    from broadcast.cli._output import warn

    for w in warnings:
        warn(f"{w['message']} [{w['code']}]")


@app.command("new")
def new(
    text: str | None = TEXT_OPTION,
    template: str | None = TEMPLATE_OPTION,
    to: list[str] | None = TO_OPTION,
    all_: bool = ALL_OPTION,
    at: str | None = AT_OPTION,
    category: str = typer.Option("notice", "--category", help="notice or marketing."),
    channel: str | None = typer.Option(
        None, "--channel", help="Channels in order of preference, e.g. wecom-app,sms (sms, email, wecom-app, "
                                "group-robots); each person gets it once, on the first where they have an address."),
    fallback: str | None = typer.Option(None, "--fallback", help="sms: by SMS to whoever their channel refused or failed for."),
    json_: bool = JSON_OPTION,
) -> None:
    """Create a message; its text is rendered and frozen now, and it waits for approval."""
    from broadcast.cli._output import Output, say
    from broadcast.messages.store import create_message

    ws = workspace()
    created = create_message(ws, text=text, template=template, groups=to or [], all_=all_,
                             at=_at(ws, at), category=category, channels=channel, fallback=fallback)

    def human() -> None:
        _warnings(created.to_dict()["warnings"])  # type: ignore[arg-type]
        say(f"Created message {created.id} ({created.status})")
        if created.status == "pending_approval":
            say(f"  another operator approves it with: broadcast message approve {created.id}")

    Output.for_(json_).result({"id": created.id, "status": created.status}, human)


@app.command("check")
def check(
    text: str | None = TEXT_OPTION,
    template: str | None = TEMPLATE_OPTION,
    category: str = typer.Option("notice", "--category", help="notice or marketing."),
    json_: bool = JSON_OPTION,
) -> None:
    """Check a text: length with the signature, encoding, SMS parts, warnings."""
    from broadcast.cli._output import Output
    from broadcast.config import load_settings
    from broadcast.messages.checks import check_message

    report = check_message(load_settings(), text=text, template=template, category=category)  # no database needed
    Output.for_(json_).result(report.to_dict(), lambda: _say_check(report))


def _say_check(report: CheckReport) -> None:
    from broadcast.cli._output import say

    say(report.text)
    say(f"{report.length} characters (signature included), {report.encoding}, {report.parts} SMS part"
        + ("s" if report.parts != 1 else ""))
    if report.warnings:
        _warnings(report.to_dict()["warnings"])  # type: ignore[arg-type]
    else:
        say("No warnings.")


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="Only messages in this status."),
    json_: bool = JSON_OPTION,
) -> None:
    """List messages."""
    from broadcast.cli._output import Output
    from broadcast.messages.store import list_messages

    ws = workspace()
    items = list_messages(ws, status=status)
    Output.for_(json_).table(
        None, ["ID", "Status", "Send after", "To", "Author", "Text"],
        ([m.id, f"{m.status}: {m.status_reason}" if m.status == "held" else m.status, _local(ws, m.send_after) or "asap",
          "everyone" if m.target_all else m.to_phone or "、".join(m.targets),
          m.author, m.body if len(m.body) <= 30 else m.body[:29] + "…"] for m in items),
        data=[m.to_dict() for m in items], caption=f"{len(items)} messages",
        empty="No messages." if status else "No messages yet. Create one with: broadcast message new --text ... --to GROUP")


@app.command("show")
def show(message_id: int = typer.Argument(..., help="Message id."), json_: bool = JSON_OPTION) -> None:
    """Show a message: text, people, status, audience now, parts and a preview."""
    from broadcast.cli._output import Output
    from broadcast.costs.estimate import message_cost
    from broadcast.dispatch.service import delivery_overview
    from broadcast.messages.store import show_message

    ws = workspace()
    m = show_message(ws, message_id)
    deliveries = delivery_overview(ws, message_id)
    cost = message_cost(ws, message_id)
    Output.for_(json_).result({**m.to_dict(), "deliveries": deliveries["counts"], "test_sends": deliveries["test_sends"],
                               "in_doubt": deliveries["in_doubt"], "by_channel": deliveries["by_channel"],
                               "cost": cost.to_dict()},
                              lambda: _say_message(ws, m, deliveries, cost))


def _say_message(ws: Any, m: Any, deliveries: dict[str, object], cost: Any) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, table

    say(f"[bold]Message {m.id}[/]  {m.status}" + (f" ({escape(m.status_reason)})" if m.status_reason else ""))
    say(f"Text: {escape(m.body)}")
    say(f"Category: {m.category}; signature: {escape(m.signature) or '(none)'}"
        + (f"; template: {escape(m.template)}" if m.template else ""))
    say(f"Author: {m.author}; approver: {m.approver or '-'}"
        + (f"; rejected: {escape(m.reject_reason)}" if m.reject_reason else ""))
    when = _local(ws, m.scheduled_at) or "as soon as possible"
    say(f"Scheduled: {when}" + (f"; may first be sent {_local(ws, m.send_after)}" if m.send_after else "")
        + (f"; schedule {m.schedule_id}" if m.schedule_id else ""))
    say(f"To: {'everyone' if m.target_all else m.to_phone or '、'.join(m.targets) or '(no groups)'}; audience now: {m.audience}")
    if m.channels:
        say(f"Channels: {m.channels.replace(',', ', ')}" + (f"; fallback: {m.fallback}" if m.fallback else "")
            + " (each person once, on the first where they have an address)")
    say(f"{m.length} characters, {m.encoding}, {m.parts} part(s); billable parts: {m.billable_parts}")
    say(escape(cost.text()))
    if m.status == "held":
        from broadcast.costs.guard import release_hint

        say(f"Held, nothing of it is sent: {escape(release_hint(m.id))}")
    say(f"Preview for {escape(m.preview_for)}: {escape(m.preview)}")
    _warnings(m.warnings)
    counts = {k: v for k, v in cast(dict[str, int], deliveries["counts"]).items() if v}
    if counts:
        say("Deliveries: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for channel, by_status in cast(dict[str, dict[str, int]], deliveries.get("by_channel") or {}).items():
        say(f"  {channel}: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    in_doubt = cast(list[dict[str, Any]], deliveries["in_doubt"])
    if in_doubt:
        table("In doubt: the run sending these died mid-request; they may or may not have arrived",
              ["Delivery", "Channel", "Phone", "Name", "Since"],
              ([d["delivery_id"], d["channel"], d["phone"], d["name"], d["since"]] for d in in_doubt))
        say(f"Resolve with: broadcast message resolve {m.id} --resend   (or --mark-sent if they arrived)")


@app.command("resolve")
def resolve(
    message_id: int = typer.Argument(...),
    resend: bool = typer.Option(False, "--resend", help="Send the in-doubt deliveries again (a person may get it twice)."),
    mark_sent: bool = typer.Option(False, "--mark-sent", help="Record them as sent (you checked that they arrived)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Settle deliveries held in doubt after a crash (the gateway is asked first where it can tell)."""
    from broadcast.cli._output import Output
    from broadcast.dispatch.service import resolve as resolve_doubt

    if resend == mark_sent:
        raise typer.BadParameter("give exactly one of --resend or --mark-sent")
    r = resolve_doubt(workspace(), message_id, resend=resend)
    Output.for_(json_).message(
        f"Message {message_id}: {r.confirmed} confirmed by the gateway, {r.resent} queued to resend, "
        f"{r.marked_sent} marked sent" + ("; run 'broadcast run' to send them" if r.resent else ""), r.to_dict())


@app.command("resume")
def resume(message_id: int = typer.Argument(...)) -> None:
    """Continue a message that was paused (e.g. by the auto-pause after many failures)."""
    from broadcast.cli._output import say
    from broadcast.dispatch.service import resume as resume_message

    to = resume_message(workspace(), message_id)
    say(f"Message {message_id} is {to} again; the next 'broadcast run' continues it")


@app.command("approve")
def approve(
    message_id: int = typer.Argument(...),
    over_budget: bool = typer.Option(False, "--over-budget", help="Let it go over its groups' monthly budgets (not by its author; audited)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Approve a pending message (not by its author); over a monthly budget it is held, until the
    budget is raised or another operator approves the overrun with --over-budget."""
    from broadcast.cli._output import Output
    from broadcast.costs import guard

    ws = workspace()
    out = Output.for_(json_)
    m = guard.approve_over_budget(ws, message_id) if over_budget else guard.approve(ws, message_id)
    data = {"id": m.id, "status": m.status, "approver": m.approver}
    if over_budget:
        data["over_budget_by"] = ws.operator
    if m.status == "held":
        from broadcast.costs.guard import release_hint

        out.warn(f"message {m.id} is held: {m.status_reason}; {release_hint(m.id)}")
        out.message(f"Approved message {m.id}, but it is held and will not be sent", {**data, "reason": m.status_reason})
        return
    out.message(f"Approved message {m.id}" + (" over budget" if over_budget else "")
                + f"; it may be sent from {_local(ws, m.send_after)}", data)


@app.command("reject")
def reject(
    message_id: int = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why, for the author."),
    json_: bool = JSON_OPTION,
) -> None:
    """Reject a pending message (not by its author); the author can edit and resubmit it."""
    from broadcast.cli._output import Output
    from broadcast.messages.actions import reject_message

    m = reject_message(workspace(), message_id, reason)
    Output.for_(json_).message(f"Rejected message {m.id}", {"id": m.id, "status": m.status})


@app.command("cancel")
def cancel(
    message_id: int = typer.Argument(...),
    reason: str | None = typer.Option(None, "--reason", help="Why (recorded)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Cancel a message that has not been sent (a daily schedule's day is skipped, not shifted)."""
    from broadcast.cli._output import Output
    from broadcast.messages.actions import cancel_message

    m = cancel_message(workspace(), message_id, reason)
    Output.for_(json_).message(f"Cancelled message {m.id}", {"id": m.id, "status": m.status})


@app.command("edit")
def edit(
    message_id: int = typer.Argument(...),
    text: str | None = TEXT_OPTION,
    template: str | None = TEMPLATE_OPTION,
    to: list[str] | None = TO_OPTION,
    all_: bool = ALL_OPTION,
    at: str | None = AT_OPTION,
    category: str | None = typer.Option(None, "--category", help="notice or marketing."),
    json_: bool = JSON_OPTION,
) -> None:
    """Change a message before it is approved; it goes back to approval."""
    from broadcast.cli._output import Output, say
    from broadcast.messages.actions import edit_message

    ws = workspace()
    created = edit_message(ws, message_id, text=text, template=template, groups=to or [], all_=all_,
                           at=_at(ws, at), category=category)

    def human() -> None:
        _warnings(created.to_dict()["warnings"])  # type: ignore[arg-type]
        say(f"Edited message {created.id} ({created.status})")

    Output.for_(json_).result({"id": created.id, "status": created.status}, human)


def due(json_: bool = JSON_OPTION) -> None:
    """What the sender would send now, and why anything else waits (BROADCAST_NOW to ask "what if")."""
    from broadcast.cli._output import Output
    from broadcast.messages.schedule_days import calendar_notes
    from broadcast.messages.timing import due as due_now

    ws = workspace()
    report = due_now(ws)
    notes = calendar_notes(ws, report.now)
    Output.for_(json_).result({**report.to_dict(), "calendar": [n.to_dict() for n in notes]},
                              lambda: _say_due(ws, report, notes))


def _say_due(ws: Any, report: Any, notes: list[Any]) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, table, warn

    say(f"Now: {_local(ws, report.now)} ({ws.settings.timezone})")
    if report.due:
        table("Due", ["ID", "Status", "Since", "Late", "Text"],
              ([d.id, d.status, _local(ws, d.send_after), d.late, d.preview] for d in report.due))
    else:
        say("Nothing is due.")
    if report.waiting:
        table("Waiting", ["ID", "Status", "Reason", "Text"],
              ([w.id, w.status, w.reason, w.preview] for w in report.waiting))
    for n in notes:
        if n.code in ("calendar_changed", "no_data"):
            warn(f"Calendar: {n.message}")
        else:
            say(escape(f"Calendar: {n.message}"))
