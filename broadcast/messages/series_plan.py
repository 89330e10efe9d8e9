"""Which line of a series goes out on which day, under the schedule's working calendar.

The schedule walks the days from its start:

* a day a line is **pinned** to (``2026-12-24: …`` in the series file) sends that line, whatever
  the calendar says of the day (the office chose it), and takes no other line;
* a **sending day** (:func:`broadcast.calendar.sends_on` under ``--on``) sends the next line;
* any other day sends nothing. With ``--on-skip next`` (the default) its line waits for the next
  sending day, so no line is lost; with ``--on-skip drop`` the line that day would have had is
  dropped (not sent), so the lines keep to their calendar days.

Every year from the start to the last day must be known to the calendar when the rule needs it
(``workdays``, ``holidays-off``); otherwise the whole schedule is refused, naming the year.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from broadcast.calendar import SendingDays, WorkCalendar, needs_data, sending_days, sends_on
from broadcast.errors import InputError
from broadcast.messages.templates import SeriesLine

__all__ = ["DroppedLine", "PlacedLine", "SeriesPlan", "SKIP_RULES", "parse_on_skip", "plan_series"]

SKIP_RULES = ("next", "drop")


def parse_on_skip(text: str) -> str:
    rule = text.strip().lower()
    if rule not in SKIP_RULES:
        raise InputError(f"--on-skip {text!r} is not next or drop",
                         hint="next: a skipped day's line goes out on the next sending day; drop: it is not sent")
    return rule


@dataclass(frozen=True)
class PlacedLine:
    day: date
    line: SeriesLine

    @property
    def pinned(self) -> bool:
        return self.line.pinned is not None


@dataclass(frozen=True)
class DroppedLine:
    line: SeriesLine
    day: date
    reason: str  # why its day sends nothing: "2026-12-05 Saturday (weekend)"

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line.number, "date": self.day, "reason": self.reason, "text": self.line.text}


@dataclass
class SeriesPlan:
    start: date
    end: date
    placed: list[PlacedLine] = field(default_factory=list)
    dropped: list[DroppedLine] = field(default_factory=list)
    days: SendingDays | None = None  # the calendar over start..end: skipped days, working weekends

    @property
    def span(self) -> int:
        return (self.end - self.start).days + 1


def plan_series(calendar: WorkCalendar, rule: str, on_skip: str, start: date, lines: Sequence[SeriesLine],
                count: int | None = None) -> SeriesPlan:
    """Place the first ``count`` unpinned lines (default all) and every pinned line on their days.
    A line pinned before ``start`` is refused (it could not go out on its date)."""
    free = [e for e in lines if e.pinned is None]
    pins = {e.pinned: e for e in lines if e.pinned is not None}
    early = sorted((d, e) for d, e in pins.items() if d < start)
    if early:
        day, entry = early[0]
        raise InputError(f"line {entry.number} is pinned to {day}, before the schedule's first day {start}",
                         hint="change or remove that line's date, or give an earlier --start")
    if count is None:
        count = len(free)
    if count > len(free):
        raise InputError(f"--days {count} but the series has only {len(free)} lines that are not pinned to a date",
                         hint="give fewer --days, or add lines to the series file")
    queue = list(free[:count])
    plan = SeriesPlan(start, start)
    day = start
    while queue:
        if day in pins:
            day += timedelta(days=1)
            continue
        info = calendar.info(rule, day)  # raises for a year the calendar does not know
        if sends_on(rule, info):
            plan.placed.append(PlacedLine(day, queue.pop(0)))
        elif on_skip == "drop":
            plan.dropped.append(DroppedLine(queue.pop(0), day, info.describe()))
        day += timedelta(days=1)
    plan.placed += [PlacedLine(d, e) for d, e in pins.items()]
    plan.placed.sort(key=lambda p: p.day)
    last = [p.day for p in plan.placed] + [d.day for d in plan.dropped]
    plan.end = max(last, default=start)
    if needs_data(rule):
        calendar.require(start, plan.end)  # a pinned day beyond the lines: its year must be known too
    plan.days = sending_days(calendar, rule, start, plan.end)
    return plan
