"""The working calendar: which days are official days off and which weekends are working days,
and on which days a schedule sends under its ``--on`` rule.

Data: the ``chinesecalendar`` package (the State Council's yearly arrangements it ships), then the
office's own files (:mod:`broadcast.calendar.overrides`), which win for the dates they name. A year
is *known* when the package covers it or a file holds it entirely; in a known year a day that no
source names is an ordinary weekday or weekend. A year that is not known is never guessed:
:meth:`WorkCalendar.day` raises :class:`~broadcast.errors.CalendarGapError` naming the year and
how to add it.

The rules (``--on``):

* ``every-day``: every day (no calendar needed);
* ``weekdays``: Monday to Friday, whatever the holidays (no calendar needed);
* ``workdays``: the official working days: Monday to Friday except official days off, plus the
  adjusted working Saturdays and Sundays (调休);
* ``holidays-off``: every day except the official days off (ordinary weekends send).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

from broadcast.calendar.overrides import Entry, Overrides, load_overrides
from broadcast.errors import CalendarGapError, InputError

__all__ = [
    "RULES", "DayInfo", "SendingDays", "SkippedDay", "WorkCalendar", "needs_data", "parse_rule", "sending_days",
    "sends_on",
]

RULES = ("every-day", "workdays", "weekdays", "holidays-off")
_NEEDS_DATA = ("workdays", "holidays-off")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# chinesecalendar's English names, as people here say them
_NAMES = {
    "New Year's Day": "元旦", "Spring Festival": "春节", "Tomb-sweeping Day": "清明节", "Labour Day": "劳动节",
    "Dragon Boat Festival": "端午节", "National Day": "国庆节", "Mid-autumn Festival": "中秋节",
    "Anti-Fascist 70th Day": "抗战胜利纪念日",
}


def parse_rule(text: str) -> str:
    rule = text.strip().lower()
    if rule not in RULES:
        raise InputError(f"--on {text!r} is not one of {', '.join(RULES)}",
                         hint="workdays: the official working days (holidays off, adjusted weekends on); "
                              "weekdays: Monday to Friday; holidays-off: every day but official holidays")
    return rule


def needs_data(rule: str) -> bool:
    """Whether the rule needs the official arrangement (``every-day`` and ``weekdays`` do not)."""
    return rule in _NEEDS_DATA


@dataclass(frozen=True)
class DayInfo:
    """A day as the calendar sees it: ``off`` True for an official (or local) day off, False for an
    adjusted working day, None for an ordinary day (or when the rule needs no data)."""

    day: date
    off: bool | None = None
    name: str | None = None
    source: str | None = None

    @property
    def weekday(self) -> str:
        return WEEKDAYS[self.day.weekday()]

    @property
    def weekend(self) -> bool:
        return self.day.weekday() >= 5

    @property
    def workday(self) -> bool:
        """An official working day."""
        return self.off is False or (not self.weekend and self.off is not True)

    @property
    def working_weekend(self) -> bool:
        """A Saturday or Sunday that is a working day (调休)."""
        return self.weekend and self.off is False

    @property
    def kind(self) -> str:
        """holiday | working weekend | weekend | weekday."""
        if self.off is True:
            return "holiday"
        if self.working_weekend:
            return "working weekend"
        return "weekend" if self.weekend else "weekday"

    def describe(self) -> str:
        """``2027-02-08 春节 (holiday)``, ``2026-02-14 Saturday, a working day (春节)``,
        ``2026-12-05 Saturday (weekend)``, ``2026-12-07 Monday``."""
        if self.off is True:
            return f"{self.day} {self.name} (holiday)"
        if self.working_weekend:
            return f"{self.day} {self.weekday}, a working day ({self.name})"
        return f"{self.day} {self.weekday}" + (" (weekend)" if self.weekend else "")

    def to_dict(self) -> dict[str, object]:
        return {"date": self.day, "weekday": self.weekday, "kind": self.kind, "name": self.name,
                "reason": self.describe()}


def sends_on(rule: str, info: DayInfo) -> bool:
    """Whether a schedule ``--on rule`` sends on this day."""
    if rule == "every-day":
        return True
    if rule == "weekdays":
        return not info.weekend
    if rule == "workdays":
        return info.workday
    if rule == "holidays-off":
        return info.off is not True
    raise ValueError(f"unknown rule {rule!r}")


@lru_cache(maxsize=1)
def _package() -> tuple[dict[date, Entry], range, str]:
    """chinesecalendar's days (date -> Entry), the years it covers, and its name and version."""
    import chinese_calendar

    source = f"chinesecalendar {getattr(chinese_calendar, '__version__', '')}".strip()

    def name(english: str) -> str:
        if english in _NAMES:
            return _NAMES[english]
        try:
            return str(chinese_calendar.Holiday(english).chinese)
        except ValueError:
            return english

    entries = {d: Entry(d, name(n), True, source) for d, n in chinese_calendar.holidays.items()}
    entries.update({d: Entry(d, name(n), False, source) for d, n in chinese_calendar.workdays.items()})
    years = [d.year for d in chinese_calendar.holidays]
    return entries, range(min(years), max(years) + 1), source


class WorkCalendar:
    """The package's arrangements with the office's files over them."""

    def __init__(self, overrides: Overrides | None = None, *, package: bool = True) -> None:
        self.overrides = overrides or Overrides()
        if package:
            self._package_entries, self.package_years, self.package_source = _package()
        else:  # no data at all: only for rules that need none
            self._package_entries, self.package_years, self.package_source = {}, range(0), ""

    @classmethod
    def load(cls, calendar_file: str | None) -> WorkCalendar:
        """The package plus the files ``BROADCAST_CALENDAR_FILE`` names (a bad file is refused)."""
        return cls(load_overrides(calendar_file))

    @classmethod
    def none(cls) -> WorkCalendar:
        """A calendar without data, for ``every-day`` and ``weekdays``."""
        return cls(package=False)

    def knows(self, year: int) -> bool:
        return year in self.package_years or year in self.overrides.years

    def years(self) -> list[int]:
        return sorted(set(self.package_years) | set(self.overrides.years))

    def status(self) -> dict[str, object]:
        """Where the data comes from and which years it covers (``broadcast calendar check``)."""
        years = self.years()
        return {
            "package": self.package_source,
            "package_years": [self.package_years[0], self.package_years[-1]] if self.package_years else [],
            "files": self.overrides.read,
            "years": years,
            "partial_years": {y: where for y, where in sorted(self.overrides.partial.items()) if not self.knows(y)},
        }

    def gap(self, year: int) -> CalendarGapError:
        have = (f"{self.package_source} knows {self.package_years[0]}–{self.package_years[-1]}"
                if self.package_years else "it has no data")
        files = self.overrides.files
        extra = [y for y in sorted(self.overrides.years) if y not in self.package_years]
        have += (f"; BROADCAST_CALENDAR_FILE adds {', '.join(map(str, extra))}" if extra
                 else "; BROADCAST_CALENDAR_FILE adds no year" if files else "; BROADCAST_CALENDAR_FILE is not set")
        partial = self.overrides.partial.get(year)
        if partial:
            hint = (f"{partial} names a day of {year}, but no file says it holds all of {year}: add the line "
                    f"year,{year} to it once it has the State Council's whole {year} arrangement")
        else:
            hint = (f"put the State Council's {year} arrangement in a file named by BROADCAST_CALENDAR_FILE: "
                    f"holiday-cn's {year}.json as published, or lines date,name,off|work with a line year,{year}; "
                    f"or upgrade chinesecalendar (pip install -U chinesecalendar) once a release covers {year}")
        return CalendarGapError(f"the working calendar has no data for {year} ({have}): which days of {year} are "
                                "holidays and working days is not guessed", year, hint=hint)

    def require(self, start: date, end: date) -> None:
        """Raise for the first year from ``start`` to ``end`` the calendar does not know."""
        for year in range(start.year, end.year + 1):
            if not self.knows(year):
                raise self.gap(year)

    def day(self, day: date) -> DayInfo:
        if not self.knows(day.year):
            raise self.gap(day.year)
        entry = self.overrides.entries.get(day) or self._package_entries.get(day)
        if entry is None:
            return DayInfo(day)
        return DayInfo(day, entry.off, entry.name, entry.source)

    def info(self, rule: str, day: date) -> DayInfo:
        """The day as the rule needs it: the calendar's view for ``workdays``/``holidays-off``, the bare
        date for ``every-day``/``weekdays`` (which never ask for data)."""
        return self.day(day) if needs_data(rule) else DayInfo(day)


@dataclass(frozen=True)
class SkippedDay:
    day: date
    kind: str  # holiday | weekend
    name: str | None
    reason: str  # "2027-02-08 春节 (holiday)"

    def to_dict(self) -> dict[str, object]:
        return {"date": self.day, "kind": self.kind, "name": self.name, "reason": self.reason}


@dataclass
class SendingDays:
    """The days of ``start``–``end`` (inclusive) on which a schedule ``--on rule`` sends, the days it
    skips with the reason, and the Saturdays and Sundays among its sending days that are working days."""

    rule: str
    start: date
    end: date
    sending: list[date] = field(default_factory=list)
    skipped: list[SkippedDay] = field(default_factory=list)
    working_weekends: list[DayInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule, "start": self.start, "end": self.end, "sending": self.sending,
            "skipped": [s.to_dict() for s in self.skipped],
            "working_weekends": [w.to_dict() for w in self.working_weekends],
        }


def skipped(info: DayInfo) -> SkippedDay:
    return SkippedDay(info.day, "holiday" if info.off is True else "weekend", info.name, info.describe())


def sending_days(calendar: WorkCalendar, rule: str, start: date, end: date) -> SendingDays:
    """Every day from ``start`` to ``end`` under ``rule``: sending, or skipped with its reason. Raises
    :class:`~broadcast.errors.CalendarGapError` when the rule needs a year the calendar does not know."""
    if end < start:
        raise InputError(f"the range {start} – {end} ends before it starts")
    if needs_data(rule):
        calendar.require(start, end)
    out = SendingDays(rule, start, end)
    day = start
    while day <= end:
        info = calendar.info(rule, day)
        if sends_on(rule, info):
            out.sending.append(day)
            if info.working_weekend:
                out.working_weekends.append(info)
        else:
            out.skipped.append(skipped(info))
        day += timedelta(days=1)
    return out
