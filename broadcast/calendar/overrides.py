"""The office's own calendar files (``BROADCAST_CALENDAR_FILE``).

The setting names a file, several files separated by the OS path separator (``:`` on Linux,
``;`` on Windows), or a folder whose ``*.json``, ``*.csv`` and ``*.txt`` files are read in name
order. Two forms:

* **holiday-cn's year file**, as published (one per year)::

      {"year": 2027, "papers": [...], "days": [{"name": "春节", "date": "2027-02-06", "isOffDay": true}, ...]}

  ``isOffDay`` false is an adjusted working day. The file holds the whole of its ``year``; it may
  also name a day of the year next to it (a December day in the next year's file).

* **lines** (CSV, UTF-8 or GB18030), ``date,name,off|work`` (``休``/``班`` also work), ``#`` for
  comments, an optional header ``date,name,type``, and ``year,2027`` when the file holds the whole
  of 2027's arrangement. Without that line its dates only adjust years the calendar already knows
  (a local arrangement), and a year it names is not taken as known.

Anything unreadable is refused with the file, the line and the value: the calendar decides which
days members get a message, so nothing in it is guessed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from broadcast.errors import InputError

__all__ = ["Entry", "Overrides", "load_overrides", "override_paths"]

_SUFFIXES = (".json", ".csv", ".txt")
_OFF = {"off": True, "休": True, "休息": True, "放假": True, "holiday": True,
        "work": False, "班": False, "上班": False, "workday": False}
_HINT = "fix the file named by BROADCAST_CALENDAR_FILE (README: 'The working calendar')"


@dataclass(frozen=True)
class Entry:
    """One day of an official (or local) arrangement."""

    day: date
    name: str  # 春节, 国庆节, … or the office's own name
    off: bool  # True: a day off; False: an adjusted working day
    source: str  # where it was read: "chinesecalendar 1.11.0", "2027.json, line 12"


@dataclass
class Overrides:
    files: list[Path] = field(default_factory=list)
    entries: dict[date, Entry] = field(default_factory=dict)
    years: dict[int, str] = field(default_factory=dict)  # a year the files hold entirely -> where that is said
    partial: dict[int, str] = field(default_factory=dict)  # a year with dates but not held entirely -> first place
    read: list[dict[str, object]] = field(default_factory=list)  # per file: file, days, years (held entirely)


def _bad(path: Path, line: int | None, what: str) -> InputError:
    where = f"calendar file {path}" + (f", line {line}" if line else "")
    return InputError(f"{where}: {what}", hint=_HINT)


def override_paths(setting: str | None) -> list[Path]:
    """The files ``BROADCAST_CALENDAR_FILE`` names, in the order they are read."""
    if not setting or not setting.strip():
        return []
    out: list[Path] = []
    for part in setting.split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part.strip()).expanduser()
        if path.is_dir():
            out += sorted(p for p in path.iterdir()
                          if p.is_file() and p.suffix.lower() in _SUFFIXES and not p.name.startswith("."))
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(f"BROADCAST_CALENDAR_FILE names {path}, which does not exist",
                             hint="give an existing file or folder, or unset BROADCAST_CALENDAR_FILE")
    return out


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _bad(path, None, f"cannot be read ({exc.strerror or exc})") from None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError:
            continue
    raise _bad(path, None, "is neither UTF-8 nor GB18030 text")  # pragma: no cover - gb18030 decodes almost anything


def _day(path: Path, line: int | None, value: object) -> date:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _bad(path, line, f"date {value!r} is not a date (write YYYY-MM-DD, e.g. 2027-02-06)")


def _year(path: Path, line: int | None, value: object) -> int:
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if re.fullmatch(r"\d{4}", text) and 1900 <= int(text) <= 2200:
        return int(text)
    raise _bad(path, line, f"year {value!r} is not a year (e.g. 2027)")


def _parse_json(path: Path, text: str) -> tuple[list[tuple[int | None, Entry]], int]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, exc.lineno, f"is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or "year" not in data or not isinstance(data.get("days"), list):
        raise _bad(path, 1, 'is not a holiday-cn year file: expected {"year": 2027, "days": [{"name": …, '
                            '"date": …, "isOffDay": …}, …]}')
    year = _year(path, _line_of(text, '"year"', 0)[0], data["year"])
    out: list[tuple[int | None, Entry]] = []
    pos = text.find('"days"')
    for i, item in enumerate(data["days"]):
        raw_date = item.get("date") if isinstance(item, dict) else None
        line, pos = _line_of(text, json.dumps(raw_date, ensure_ascii=False) if isinstance(raw_date, str) else "{", pos)
        if not isinstance(item, dict):
            raise _bad(path, line, f"days[{i}] {item!r} is not an object with name, date and isOffDay")
        day = _day(path, line, raw_date)
        name, off = item.get("name"), item.get("isOffDay")
        if not isinstance(name, str) or not name.strip():
            raise _bad(path, line, f"days[{i}] ({day}): name {name!r} is not a holiday's name (e.g. 春节)")
        if not isinstance(off, bool):
            raise _bad(path, line, f"days[{i}] ({day}): isOffDay {off!r} must be true (a day off) or false "
                                   "(an adjusted working day)")
        out.append((line, Entry(day, name.strip(), off, f"{path.name}, line {line}")))
    return out, year


def _line_of(text: str, needle: str, start: int) -> tuple[int | None, int]:
    """(line number of ``needle`` at or after ``start``, the position after it); (None, start) if absent."""
    at = text.find(needle, max(start, 0))
    if at < 0:
        return None, start
    return text.count("\n", 0, at) + 1, at + len(needle)


def _parse_lines(path: Path, text: str) -> tuple[list[tuple[int | None, Entry]], dict[int, int]]:
    out: list[tuple[int | None, Entry]] = []
    years: dict[int, int] = {}  # year -> line saying the file holds it entirely
    first = True
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in re.split(r"[,，\t]", line)]
        while len(fields) > 1 and fields[-1] == "":
            fields.pop()
        head = fields[0].lower()
        if first and head in ("date", "日期"):
            first = False
            continue
        first = False
        if head in ("year", "年份", "年度"):
            if len(fields) != 2:
                raise _bad(path, n, f"{line!r}: write the year line as year,2027")
            years[_year(path, n, fields[1])] = n
            continue
        if len(fields) != 3:
            raise _bad(path, n, f"{line!r} is not date,name,off|work (e.g. 2027-02-06,春节,off)")
        day = _day(path, n, fields[0])
        if not fields[1]:
            raise _bad(path, n, f"{line!r}: the name is empty (e.g. 春节, or the local arrangement's name)")
        kind = fields[2].lower()
        if kind not in _OFF:
            raise _bad(path, n, f"{fields[2]!r} must be off (a day off, 休) or work (an adjusted working day, 班)")
        out.append((n, Entry(day, fields[1], _OFF[kind], f"{path.name}, line {n}")))
    return out, years


def load_overrides(setting: str | None) -> Overrides:
    """Read every file ``BROADCAST_CALENDAR_FILE`` names; a day named twice must agree."""
    result = Overrides(files=override_paths(setting))
    for path in result.files:
        text = _text(path)
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            entries, year = _parse_json(path, text)
            result.years.setdefault(year, path.name)
            held = [year]
        else:
            entries, years = _parse_lines(path, text)
            for y, n in years.items():
                result.years.setdefault(y, f"{path.name}, line {n}")
            held = sorted(years)
        result.read.append({"file": path, "days": len(entries), "years": held})
        for line, entry in entries:
            seen = result.entries.get(entry.day)
            if seen is not None and seen.off != entry.off:
                what = {True: "a day off", False: "a working day"}
                raise _bad(path, line, f"{entry.day} is {what[entry.off]} here but {what[seen.off]} in {seen.source}")
            result.entries[entry.day] = entry
    for entry in result.entries.values():
        if entry.day.year not in result.years:
            result.partial.setdefault(entry.day.year, entry.source)
    return result
