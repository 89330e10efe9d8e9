"""``broadcast calendar``: the working calendar schedules use (``schedule daily --on``)."""

from __future__ import annotations

from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="The working calendar: official holidays, adjusted working days, the days a schedule sends on.")


@app.command("days")
def days(
    from_: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD."),
    to: str = typer.Option(..., "--to", help="Last day, YYYY-MM-DD."),
    on: str = typer.Option("workdays", "--on", help="every-day, workdays, weekdays or holidays-off."),
    json_: bool = JSON_OPTION,
) -> None:
    """The days a schedule --on would send on between two dates, and why it skips the others."""
    from broadcast.calendar import calendar_for, parse_rule, sending_days
    from broadcast.cli._output import Output
    from broadcast.clock import parse_date
    from broadcast.config import load_settings

    rule = parse_rule(on)
    result = sending_days(calendar_for(load_settings(), rule), rule, parse_date(from_), parse_date(to))
    Output.for_(json_).result(result.to_dict(), lambda: _say_days(result))


def _say_days(result: Any) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, table

    say(f"{result.start} to {result.end} on {result.rule}: {len(result.sending)} sending days, "
        f"{len(result.skipped)} skipped")
    if result.skipped:
        table(None, ["Date", "Skipped because"], ([s.day, s.reason.removeprefix(f"{s.day} ")] for s in result.skipped))
    if result.working_weekends:
        say(escape("Working weekends: " + ", ".join(w.describe() for w in result.working_weekends)))


@app.command("check")
def check(json_: bool = JSON_OPTION) -> None:
    """Read the calendar (chinesecalendar and BROADCAST_CALENDAR_FILE): the years it knows, each file read."""
    from broadcast.calendar import WorkCalendar
    from broadcast.cli._output import Output
    from broadcast.config import load_settings

    status = WorkCalendar.load(load_settings().calendar_file).status()
    Output.for_(json_).result(status, lambda: _say_status(status))


def _say_status(status: dict[str, Any]) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, warn

    first, last = status["package_years"] or ["-", "-"]
    say(f"{status['package']}: {first}–{last}")
    for f in status["files"]:
        held = ", ".join(map(str, f["years"])) or "no whole year (its dates adjust years already known)"
        say(escape(f"{f['file']}: {f['days']} days; holds {held}"))
    if not status["files"]:
        say("BROADCAST_CALENDAR_FILE: not set")
    say(f"Known years: {_ranges(status['years'])}")
    for year, where in status["partial_years"].items():
        warn(f"{where} names a day of {year}, but no file holds all of {year} (add the line year,{year} once it does)")


def _ranges(years: list[int]) -> str:
    """[2004, 2005, 2006, 2027] -> '2004–2006, 2027'."""
    out: list[str] = []
    for y in years:
        if out and y == int(out[-1].split("–")[-1]) + 1:
            out[-1] = f"{out[-1].split('–')[0]}–{y}"
        else:
            out.append(str(y))
    return ", ".join(out) or "none"
