"""``broadcast plan``: a month of daily messages in the office's terms, before anything is scheduled."""

from __future__ import annotations

from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION


def plan(
    month: str = typer.Option("", "--month", help="The month, YYYY-MM (default: the current month)."),
    on: str = typer.Option("every-day", "--on", help="every-day, workdays, weekdays or holidays-off."),
    group: list[str] = typer.Option([], "--group", "-g", help="A group to send to (its sub-groups included); repeat for more."),
    all_: bool = typer.Option(False, "--all", help="Everyone."),
    series: str = typer.Option("", "--series", help="A series file whose lines the days would get (default: one single-part SMS a day)."),
    on_skip: str = typer.Option("next", "--on-skip", help="With --series: next (a skipped day's line moves on) or drop."),
    json_: bool = JSON_OPTION,
) -> None:
    """Sending days, members, SMS and cost of a month of daily messages, and the budgets it touches."""
    from broadcast.cli._common import workspace
    from broadcast.cli._output import Output
    from broadcast.clock import local, now
    from broadcast.costs.plan import month_plan, parse_month

    ws = workspace()
    first = parse_month(month) if month else local(now(ws.settings), ws.settings.timezone).date().replace(day=1)
    result = month_plan(ws, first, on=on, groups=group, all_=all_, series=series or None, on_skip=on_skip)
    Output.for_(json_).result(result.to_dict(), lambda: _say(result))


def _say(plan: Any) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, table, warn

    say(escape(plan.headline()))
    say(escape(f"Assuming {plan.assumption()}."))
    if plan.days.skipped:
        table(None, ["Skipped", "Because"], ([s.day, s.reason.removeprefix(f"{s.day} ")] for s in plan.days.skipped))
    if plan.days.working_weekends:
        say(escape("Working weekends: " + ", ".join(w.describe() for w in plan.days.working_weekends)))
    for b in plan.budgets:
        (warn if b.left is not None and b.left < 0 else say)(escape(b.text()))
