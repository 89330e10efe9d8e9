"""Local calendar days as UTC ranges, and local timestamps in SQL, for logs and reports."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import ColumnElement

from broadcast import clock


def day_start(day: date, tz: str) -> datetime:
    """00:00 local time of ``day``, as an aware UTC datetime."""
    return clock.at_local(day, datetime.min.time(), tz)


def range_utc(since: date | None, until: date | None, tz: str) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` are local dates, both included."""
    return (day_start(since, tz) if since else None, day_start(until + timedelta(days=1), tz) if until else None)


def local_ts(col: ColumnElement, dialect: str, tz: str) -> ColumnElement:
    """The column's local wall-clock time as text 'YYYY-MM-DD HH:MM:SS' (SQLite) or timestamp (PostgreSQL).

    SQLite has no time zones: the zone's current UTC offset is applied, exact for zones without
    daylight saving time (Asia/Shanghai); PostgreSQL converts each value exactly."""
    if dialect == "postgresql":
        return sa.func.timezone(tz, col)
    offset = clock.local(clock.now(), tz).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    return sa.func.datetime(col, f"{minutes:+d} minutes")


def local_key(col: ColumnElement, by: str, dialect: str, tz: str) -> ColumnElement:
    """A text key for the local day, week (its Monday) or month of a UTC timestamp column."""
    ts = local_ts(col, dialect, tz)
    if dialect == "postgresql":
        fmt = {"day": "YYYY-MM-DD", "week": "IYYY-MM-DD", "month": "YYYY-MM"}[by]
        if by == "week":
            return sa.func.to_char(sa.func.date_trunc("week", ts), "YYYY-MM-DD")
        return sa.func.to_char(ts, fmt)
    if by == "day":
        return sa.func.date(ts)
    if by == "week":
        return sa.func.date(ts, "-6 days", "weekday 1")  # the Monday on or before the day
    return sa.func.strftime("%Y-%m", ts)
