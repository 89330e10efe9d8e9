"""``broadcast schedule``: daily series (one message per line, on consecutive days)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, help="Daily schedules: a series file sent one line a day at a fixed time.", no_args_is_help=True)


@app.command("daily")
def daily(
    series: str = typer.Option(..., "--series", help="A series file (one message per line), or a name in templates/series/."),
    to: list[str] | None = typer.Option(None, "--to", help="A target group (repeatable); sub-groups included."),
    all_: bool = typer.Option(False, "--all", help="Send to every member."),
    time: str = typer.Option(..., "--time", help="Local time of day, HH:MM (e.g. 07:30)."),
    start: str | None = typer.Option(None, "--start", help="First day YYYY-MM-DD; default: the next HH:MM to come."),
    days: int | None = typer.Option(None, "--days", help="How many days (lines); default: every line."),
    json_: bool = JSON_OPTION,
) -> None:
    """Create one message per line of the series, on consecutive days at --time."""
    from broadcast.cli._output import Output
    from broadcast.clock import parse_date
    from broadcast.messages.schedules import create_daily

    ws = workspace()
    result = create_daily(ws, series=series, send_time=time, groups=to or [], all_=all_,
                          start=parse_date(start) if start else None, days=days)
    Output.for_(json_).result(result.to_dict(), lambda: _say_created(result, time))


def _say_created(result: Any, time: str) -> None:
    from broadcast.cli._output import say, warn

    for w in result.warnings:
        warn(f"{w['date']} (message {w['message_id']}): {w['message']} [{w['code']}]")
    first, last = result.messages[0], result.messages[-1]
    say(f"Created schedule {result.id}: {len(result.messages)} messages ({result.series}), "
        f"{first['date']} to {last['date']} at {time}, messages {first['id']}-{last['id']} ({first['status']})")
    if first["status"] == "pending_approval":
        say(f"  another operator approves them all with: broadcast schedule approve {result.id}")


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List schedules with their messages by status."""
    from broadcast.cli._output import Output
    from broadcast.messages.schedules import list_schedules

    items = list_schedules(workspace())
    Output.for_(json_).table(
        None, ["ID", "Series", "Time", "From", "Days", "Status", "To", "Messages"],
        ([s.id, s.series, s.send_time, s.start_date, s.days, s.status,
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
    from broadcast.cli._output import say, table

    say(f"[bold]Schedule {s.id}[/] {s.series}: daily at {s.send_time} from {s.start_date} for {s.days} days; "
        f"{s.status}; to {'everyone' if s.target_all else '、'.join(s.targets)}; by {s.created_by}")
    table(None, ["Date", "Message", "Status", "Text"],
          ([m["date"], m["id"], m["status"], m["body"]] for m in s.messages))


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
