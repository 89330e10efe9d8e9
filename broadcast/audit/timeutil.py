"""Local calendar days as UTC ranges, for logs and reports."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from broadcast import clock


def day_start(day: date, tz: str) -> datetime:
    """00:00 local time of ``day``, as an aware UTC datetime."""
    return clock.at_local(day, datetime.min.time(), tz)


def range_utc(since: date | None, until: date | None, tz: str) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` are local dates, both included."""
    return (day_start(since, tz) if since else None, day_start(until + timedelta(days=1), tz) if until else None)
