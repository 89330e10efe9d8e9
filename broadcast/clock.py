"""The one clock, and the few time helpers everything else uses.

Every piece of time-dependent logic (schedules, quiet hours, lateness, the dispatch engine) asks
:func:`now` for the current time. ``BROADCAST_NOW`` (ISO 8601, e.g. ``2026-11-28T07:29`` or
``2026-11-27T23:29:00+00:00``) overrides it, read on every call so a drill or a test can ask
"what happens at 07:29, 07:30, 21:05?". A value without an offset is local time in
``BROADCAST_TIMEZONE`` (default Asia/Shanghai). Returned datetimes are always UTC-aware.

Also here, because settings validation needs them without importing the core: parsing of
quiet-hour windows (``21:00-07:00``) and durations (``2h``, ``90m``, ``1h30m``).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broadcast.errors import ConfigError, InputError

DEFAULT_TIMEZONE = "Asia/Shanghai"

__all__ = [
    "DEFAULT_TIMEZONE",
    "ClockSettings",
    "QuietHours",
    "format_duration",
    "local",
    "now",
    "parse_duration",
    "parse_instant",
    "parse_local",
    "parse_quiet_hours",
    "zone",
]


def zone(name: str | None = None) -> ZoneInfo:
    """The time zone ``name``, else ``BROADCAST_TIMEZONE``, else Asia/Shanghai."""
    name = (name or os.environ.get("BROADCAST_TIMEZONE") or DEFAULT_TIMEZONE).strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r}", hint="set BROADCAST_TIMEZONE to a name like Asia/Shanghai"
        ) from None


def _tz(tz: str | ZoneInfo | None) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else zone(tz)


def parse_instant(text: str, tz: str | ZoneInfo | None = None) -> datetime:
    """ISO 8601 to an aware UTC datetime; a value without offset is local time in ``tz``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"{text!r} is not an ISO 8601 time", hint="write it like 2026-11-28T07:30 or 2026-11-28 07:30+08:00"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_tz(tz))
    return value.astimezone(UTC)


class ClockSettings(Protocol):
    """What the clock reads from the settings (``broadcast.config.Settings`` has both): the clock
    sits below the configuration and never imports it."""

    @property
    def now(self) -> str | None: ...

    @property
    def timezone(self) -> str: ...


def now(settings: ClockSettings | None = None) -> datetime:
    """The current time (UTC-aware): ``BROADCAST_NOW`` if set (environment first, then the
    settings' ``now`` from .env), else the real time."""
    raw = os.environ.get("BROADCAST_NOW", "").strip()
    if not raw and settings is not None:
        raw = (settings.now or "").strip()
    tzname = settings.timezone if settings is not None else None
    if raw:
        try:
            return parse_instant(raw, tzname)
        except InputError:
            raise ConfigError(
                f"invalid BROADCAST_NOW={raw!r}: not an ISO 8601 time", hint="e.g. BROADCAST_NOW=2026-11-28T07:30"
            ) from None
    return datetime.now(UTC)


def local(dt: datetime, tz: str | ZoneInfo | None = None) -> datetime:
    """``dt`` (aware) as wall-clock time in ``tz``."""
    return dt.astimezone(_tz(tz))


def at_local(day: date, hhmm: time, tz: str | ZoneInfo | None = None) -> datetime:
    """The UTC instant of wall-clock ``hhmm`` on ``day`` in ``tz``."""
    return datetime.combine(day, hhmm, tzinfo=_tz(tz)).astimezone(UTC)


_LOCAL = re.compile(r"\s*(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2})(?::\d{2})?\s*")


def parse_local(text: str, tz: str | ZoneInfo | None = None) -> datetime:
    """``"YYYY-MM-DD HH:MM"`` in local time (``tz``) to an aware UTC datetime. An explicit
    offset (``2026-11-28T07:30+08:00``) is honoured."""
    if not _LOCAL.fullmatch(text) and not re.search(r"[+-]\d{2}:?\d{2}$|Z$", text.strip()):
        raise InputError(f"{text!r} is not a local time", hint='write it as "YYYY-MM-DD HH:MM", e.g. "2026-11-28 07:30"')
    return parse_instant(text, tz)


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{text!r} is not a date", hint="write it as YYYY-MM-DD, e.g. 2026-11-28") from None


def parse_hhmm(text: str) -> time:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise InputError(f"{text!r} is not a time of day", hint="write it as HH:MM, e.g. 07:30")
    return time(int(m.group(1)), int(m.group(2)))


class QuietHours:
    """A daily window of local wall-clock time, ``start`` inclusive, ``end`` exclusive; it
    may wrap midnight (``21:00-07:00``)."""

    def __init__(self, start: time, end: time) -> None:
        self.start, self.end = start, end

    def __repr__(self) -> str:
        return f"QuietHours({self})"

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, wall: time) -> bool:
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def is_quiet(self, instant: datetime, tz: str | ZoneInfo | None = None) -> bool:
        return self.contains(local(instant, tz).time().replace(tzinfo=None))

    def end_after(self, instant: datetime, tz: str | ZoneInfo | None = None) -> datetime:
        """``instant`` if it is outside the window, else the (UTC) moment the window ends."""
        if not self.is_quiet(instant, tz):
            return instant
        wall = local(instant, tz)
        day = wall.date()
        if wall.time().replace(tzinfo=None) >= self.end:  # evening part of a wrapping window
            day += timedelta(days=1)
        return at_local(day, self.end, tz)


def parse_quiet_hours(text: str | None) -> QuietHours | None:
    """``"21:00-07:00"`` -> QuietHours; ``""`` -> None (no quiet hours)."""
    if text is None or not text.strip():
        return None
    m = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a window like 21:00-07:00 (empty for none)")
    try:
        start, end = parse_hhmm(m.group(1)), parse_hhmm(m.group(2))
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if start == end:
        raise ValueError(f"{text!r} starts and ends at the same time (leave it empty for no quiet hours)")
    return QuietHours(start, end)


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?")


def parse_duration(text: str) -> timedelta:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"1d"``, ``"45s"`` -> timedelta (positive)."""
    cleaned = text.strip().lower().replace(" ", "")
    m = _DURATION.fullmatch(cleaned)
    if not cleaned or not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration like 2h, 90m or 1h30m")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    value = timedelta(days=d, hours=h, minutes=mi, seconds=s)
    if value <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return value


def format_duration(value: timedelta) -> str:
    """timedelta -> ``"2h"``, ``"1h30m"``, ``"3d4h"`` (rounded down to minutes unless shorter)."""
    total = int(value.total_seconds())
    if total < 60:
        return f"{total}s"
    days, rest = divmod(total // 60, 24 * 60)
    hours, minutes = divmod(rest, 60)
    out = (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out or "0m"
