"""The working calendar (China's official holidays and adjusted working days) and the days a
schedule sends on under ``--on every-day|workdays|weekdays|holidays-off``.

For a month plan or any other view of sending days::

    from broadcast.calendar import calendar_for, sending_days
    days = sending_days(calendar_for(settings, "workdays"), "workdays", date(2026, 12, 1), date(2026, 12, 31))
    days.sending            # [date(2026, 12, 1), ...]
    days.skipped            # [SkippedDay(day, kind, name, reason="2026-12-05 Saturday (weekend)"), ...]
    days.working_weekends   # adjusted working Saturdays and Sundays among the sending days

Nothing here touches the database or the CLI (layer: after ``config``, before ``db``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broadcast.calendar.days import (
    RULES,
    DayInfo,
    SendingDays,
    SkippedDay,
    WorkCalendar,
    needs_data,
    parse_rule,
    sending_days,
    sends_on,
)

if TYPE_CHECKING:
    from broadcast.config import Settings

__all__ = [
    "RULES", "DayInfo", "SendingDays", "SkippedDay", "WorkCalendar", "calendar_for", "needs_data", "parse_rule",
    "sending_days", "sends_on",
]


def calendar_for(settings: Settings, rule: str = "workdays") -> WorkCalendar:
    """The calendar a schedule ``--on rule`` needs: the package's data and the office's files
    (``BROADCAST_CALENDAR_FILE``) for ``workdays``/``holidays-off``; none for the others, so a broken
    calendar file never stops an every-day schedule."""
    return WorkCalendar.load(settings.calendar_file) if needs_data(rule) else WorkCalendar.none()
