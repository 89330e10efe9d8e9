"""``broadcast schedule``: daily series (one message per line, one line per sending day)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, help="Daily schedules: a series file sent one line a sending day at a fixed time.", no_args_is_help=True)


@app.command("daily")
def daily(
    series: str = typer.Option(..., "--series", help="A series file (one message per line; '2026-12-24: text' pins a line to its date), or a name in templates/series/."),
    to: list[str] | None = typer.Option(None, "--to", help="A target group (repeatable); sub-groups included."),
    all_: bool = typer.Option(False, "--all", help="Send to every member."),
    time: str = typer.Option(..., "--time", help="Local time of day, HH:MM (e.g. 07:30)."),
    start: str | None = typer.Option(None, "--start", help="First day YYYY-MM-DD; default: the next HH:MM to come."),
    days: int | None = typer.Option(None, "--days", help="How many lines (not pinned ones) to send; default: every line."),
    on: str = typer.Option("every-day", "--on", help="Which days send: every-day; workdays (the State Council's working days: holidays off, adjusted weekends on); weekdays (Monday-Friday); holidays-off (every day but official holidays)."),
    on_skip: str = typer.Option("next", "--on-skip", help="A day that does not send: next (its line goes out on the next sending day) or drop (its line is not sent)."),
    channel: str | None = typer.Option(None, "--channel", help="Channels of every day's message, in order of preference, e.g. wecom-app,sms (see message new)."),
    fallback: str | None = typer.Option(None, "--fallback", help="sms: by SMS to whoever their channel refused or failed for."),
    json_: bool = JSON_OPTION,
) -> None:
    """Create one message per line of the series, one line per sending day at --time."""
    from broadcast.cli._output import Output
    from broadcast.clock import parse_date
    from broadcast.messages.schedules import create_daily

    ws = workspace()
    result = create_daily(ws, series=series, send_time=time, groups=to or [], all_=all_,
                          start=parse_date(start) if start else None, days=days, on=on, on_skip=on_skip,
                          channels=channel, fallback=fallback)
    Output.for_(json_).result(result.to_dict(), lambda: _say_created(result, time))


def _skips(skipped: list[dict[str, Any]]) -> str:
    """'春节 2026-02-15 to 2026-02-23 (9 days); 8 weekend days': holidays by run of days, weekends counted."""
    runs: list[list[Any]] = []  # [name, first, last, count]
    for s in skipped:
        if s["kind"] != "holiday":
            continue
        if runs and runs[-1][0] == s["name"] and (s["date"] - runs[-1][2]).days <= 1:
            runs[-1][2], runs[-1][3] = s["date"], runs[-1][3] + 1
        else:
            runs.append([s["name"], s["date"], s["date"], 1])
    parts = [f"{n} {a}" + (f" to {b} ({c} days)" if c > 1 else "") for n, a, b, c in runs]
    weekends = sum(1 for s in skipped if s["kind"] == "weekend")
    if weekends:
        parts.append(f"{weekends} weekend day{'s' if weekends != 1 else ''}")
    return "; ".join(parts)


def _say_created(result: Any, time: str) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, warn

    for w in result.warnings:
        warn(f"{w['date']} (message {w['message_id']}): {w['message']} [{w['code']}]")
    first, last = result.messages[0], result.messages[-1]
    say(f"Created schedule {result.id}: {len(result.messages)} messages ({result.series}) on {result.on}, "
        f"{result.start} to {result.end} at {time}, messages {first['id']}-{last['id']} ({first['status']})")
    if result.skipped:
        say(escape(f"  nothing is sent on {_skips(result.skipped)}"
                   + ("; their lines go out on the next sending day" if result.on_skip == "next" else "")))
    for d in result.dropped:
        say(escape(f"  line {d['line']} dropped (--on-skip drop): {d['reason']}"))
    if result.working_weekends:
        say(escape("  working weekends it sends on: " + ", ".join(w["reason"] for w in result.working_weekends)))
    pinned = [m for m in result.messages if m["pinned"]]
    if pinned:
        say("  pinned: " + ", ".join(f"line {m['line']} on {m['date']}" for m in pinned))
    if first["status"] == "pending_approval":
        say(f"  another operator approves them all with: broadcast schedule approve {result.id}")


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List schedules with their messages by status."""
    from broadcast.cli._output import Output
    from broadcast.messages.schedules import list_schedules

    items = list_schedules(workspace())
    Output.for_(json_).table(
        None, ["ID", "Series", "Time", "On", "From", "Until", "Status", "To", "Messages"],
        ([s.id, s.series, s.send_time, s.on, s.start_date, s.end_date, s.status,
          "everyone" if s.target_all else "、".join(s.targets),
          ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items()))] for s in items),
        data=[s.to_dict() for s in items],
        empty="No schedules. Create one with: broadcast schedule daily --series FILE --to GROUP --time 07:30")


@app.command("show")
def show(schedule_id: int = typer.Argument(...), json_: bool = JSON_OPTION) -> None:
    """Show a schedule and its daily messages."""
    from broadcast.cli._output import Output
    from broadcast.messages.schedules import show_schedule

    s = show_schedule(workspace(), schedule_id)
    Output.for_(json_).result(s.to_dict(), lambda: _say_schedule(s))


def _say_schedule(s: Any) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, table, warn

    skip = {"next": "a skipped day's line goes out on the next sending day",
            "drop": "a skipped day's line is not sent"}[s.on_skip]
    say(f"[bold]Schedule {s.id}[/] {s.series}: at {s.send_time} on {s.on}"
        + (f" ({skip})" if s.on != "every-day" else "")
        + f", {s.start_date} to {s.end_date}; {s.status}; to {'everyone' if s.target_all else '、'.join(s.targets)}; "
        f"by {s.created_by}")
    rows = [(m["date"], m["id"], (f"{m['line']} pinned" if m["pinned"] else m["line"]), m["status"], m["body"])
            for m in s.messages]
    rows += [(d["date"], None, None, "skipped", str(d["reason"]).removeprefix(f"{d['date']} ")) for d in s.skipped]
    rows.sort(key=lambda r: (str(r[0]), r[1] or 0))
    table(None, ["Date", "Message", "Line", "Status", "Text"], rows)
    if s.working_weekends:
        say(escape("Working weekends: " + ", ".join(w["reason"] for w in s.working_weekends)))
    if s.calendar_error:
        warn(s.calendar_error)
    for w in s.calendar_warnings:
        warn(w["message"])


def _simple(verb: str, done: str) -> Callable[..., None]:
    def command(schedule_id: int = typer.Argument(...), json_: bool = JSON_OPTION) -> None:
        from broadcast.cli._output import Output
        from broadcast.messages import schedules

        s = getattr(schedules, f"{verb}_schedule")(workspace(), schedule_id)
        Output.for_(json_).message(f"{done} schedule {s.id}", {"id": s.id, "status": s.status})

    command.__doc__ = {
        "pause": "Pause a schedule: its messages wait (a day that passes while paused expires).",
        "resume": "Resume a paused schedule.",
        "cancel": "Cancel a schedule and every message of it not yet sent.",
    }[verb]
    return command


app.command("pause")(_simple("pause", "Paused"))
app.command("resume")(_simple("resume", "Resumed"))
app.command("cancel")(_simple("cancel", "Cancelled"))


@app.command("approve")
def approve(schedule_id: int = typer.Argument(...), json_: bool = JSON_OPTION) -> None:
    """Approve every pending message of a schedule at once (not by its author)."""
    from broadcast.cli._output import Output
    from broadcast.costs.guard import after_approval, held_among
    from broadcast.messages.schedules import approve_schedule

    ws = workspace()
    out = Output.for_(json_)
    ids = approve_schedule(ws, schedule_id, then=after_approval(ws))
    held = held_among(ws, ids)
    for mid, reason in held.items():
        out.warn(f"message {mid} is held: {reason}")
    out.message(f"Approved {len(ids)} messages of schedule {schedule_id}"
                + (f"; {len(held)} of them held over budget: {', '.join(map(str, held))}" if held else ""),
                {"id": schedule_id, "approved": ids, "held": [{"id": k, "reason": v} for k, v in held.items()]})
