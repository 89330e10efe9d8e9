"""The one clock, quiet-hour windows and durations."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from broadcast import clock
from broadcast.errors import ConfigError, InputError

UTC = UTC


def test_now_is_real_time_without_override():
    before = datetime.now(UTC)
    got = clock.now()
    assert got.tzinfo is not None and before <= got <= datetime.now(UTC)


def test_now_override_naive_is_local_time(monkeypatch):
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-28T07:30")
    assert clock.now() == datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    monkeypatch.setenv("BROADCAST_TIMEZONE", "Europe/London")
    assert clock.now() == datetime(2026, 11, 28, 7, 30, tzinfo=UTC)


def test_now_override_with_offset_and_read_each_call(monkeypatch):
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-28T07:30+00:00")
    assert clock.now() == datetime(2026, 11, 28, 7, 30, tzinfo=UTC)
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-28 21:05")
    assert clock.local(clock.now()).strftime("%H:%M") == "21:05"


def test_bad_override_is_a_config_error(monkeypatch):
    monkeypatch.setenv("BROADCAST_NOW", "tomorrow")
    with pytest.raises(ConfigError):
        clock.now()


def test_parse_local():
    assert clock.parse_local("2026-11-28 07:30", "Asia/Shanghai") == datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    with pytest.raises(InputError):
        clock.parse_local("28/11/2026 7:30", "Asia/Shanghai")
    with pytest.raises(InputError):
        clock.parse_local("2026-11-28", "Asia/Shanghai")


@pytest.mark.parametrize(
    ("wall", "quiet"),
    [("06:59", True), ("07:00", False), ("20:59", False), ("21:00", True), ("00:00", True), ("12:00", False)],
)
def test_quiet_hours_edges(wall, quiet):
    window = clock.parse_quiet_hours("21:00-07:00")
    h, m = map(int, wall.split(":"))
    assert window.contains(time(h, m)) is quiet


def test_quiet_hours_end_after_crosses_the_date():
    window = clock.parse_quiet_hours("21:00-07:00")
    tz = "Asia/Shanghai"
    at = clock.parse_local("2026-11-28 23:30", tz)
    assert clock.local(window.end_after(at, tz), tz).strftime("%Y-%m-%d %H:%M") == "2026-11-29 07:00"
    midnight = clock.parse_local("2026-11-29 00:00", tz)
    assert clock.local(window.end_after(midnight, tz), tz).strftime("%Y-%m-%d %H:%M") == "2026-11-29 07:00"
    day = clock.parse_local("2026-11-29 07:00", tz)
    assert window.end_after(day, tz) == day


def test_daytime_window_and_none():
    window = clock.parse_quiet_hours("12:00-13:30")
    assert window.contains(time(12, 0)) and not window.contains(time(13, 30))
    assert clock.parse_quiet_hours("") is None
    for bad in ("21:00", "25:00-07:00", "07:00-07:00", "nine-five"):
        with pytest.raises(ValueError):
            clock.parse_quiet_hours(bad)


def test_durations():
    assert clock.parse_duration("2h") == timedelta(hours=2)
    assert clock.parse_duration("90m") == timedelta(minutes=90)
    assert clock.parse_duration("1h30m") == timedelta(minutes=90)
    assert clock.format_duration(timedelta(minutes=90)) == "1h30m"
    for bad in ("", "0m", "2 hours", "-1h", "h"):
        with pytest.raises(ValueError):
            clock.parse_duration(bad)


def test_settings_validate_the_new_fields(monkeypatch):
    from broadcast.config import load_settings

    monkeypatch.setenv("BROADCAST_BANNED_WORDS", "赌博, 彩票,,")
    monkeypatch.setenv("BROADCAST_MAX_LATENESS", "90m")
    s = load_settings()
    assert s.banned_words == ["赌博", "彩票"]
    assert s.lateness == timedelta(minutes=90) and s.quiet_hours == "21:00-07:00"
    assert s.require_approval is True and s.max_parts == 3 and s.timezone == "Asia/Shanghai"
    for key, value in (("TIMEZONE", "Mars/Base"), ("QUIET_HOURS", "late"), ("MAX_LATENESS", "soon"), ("NOW", "x")):
        monkeypatch.setenv(f"BROADCAST_{key}", value)
        with pytest.raises(ConfigError, match=f"BROADCAST_{key}"):
            load_settings()
        monkeypatch.delenv(f"BROADCAST_{key}")


def test_config_command_still_prints_json(cli):
    r = cli("config", "--json")
    assert r.exit_code == 0, r
    data = r.json()
    assert data["quiet_hours"] == "21:00-07:00" and data["max_lateness"] == "2h" and data["banned_words"] == []
