"""A 2027 holiday arrangement FOR TESTS ONLY, in the forms an office gives broadcast.

chinesecalendar 1.11.0 has no 2027 data and the State Council publishes 2027's arrangement in
late 2026, so the tests supply 2027 through BROADCAST_CALENDAR_FILE, as an office would. The dates
below are invented for the tests (plausible around the 2027 festivals: 春节 is 6 February 2027),
NOT the real arrangement: never ship them as data.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

LABEL = "TEST ARRANGEMENT for broadcast's tests, not the State Council's"


def _span(first: date, last: date, name: str) -> list[dict[str, object]]:
    out, day = [], first
    while day <= last:
        out.append({"name": name, "date": day.isoformat(), "isOffDay": True})
        day += timedelta(days=1)
    return out


OFF_2027 = (
    _span(date(2027, 1, 1), date(2027, 1, 3), "元旦")
    + _span(date(2027, 2, 6), date(2027, 2, 14), "春节")  # Saturday to the Sunday after
    + _span(date(2027, 10, 1), date(2027, 10, 7), "国庆节")  # Friday to Thursday
)
WORK_2027 = [  # adjusted working days: two Saturdays and a Sunday
    {"name": "春节", "date": "2027-01-30", "isOffDay": False},  # Saturday
    {"name": "春节", "date": "2027-02-20", "isOffDay": False},  # Saturday
    {"name": "国庆节", "date": "2027-09-26", "isOffDay": False},  # Sunday
    {"name": "国庆节", "date": "2027-10-09", "isOffDay": False},  # Saturday
]


def holiday_cn_2027() -> dict[str, object]:
    """The arrangement in holiday-cn's year-file form."""
    days = sorted(OFF_2027 + WORK_2027, key=lambda d: str(d["date"]))
    return {"$comment": LABEL, "year": 2027, "papers": [], "days": days}


def write_json(path: Path) -> Path:
    path.write_text(json.dumps(holiday_cn_2027(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, encoding: str = "utf-8") -> Path:
    """The same arrangement as lines date,name,off|work, with the year line."""
    rows = [f"# {LABEL}", "date,name,type", "year,2027"]
    rows += [f"{d['date']},{d['name']},{'off' if d['isOffDay'] else 'work'}"
             for d in sorted(OFF_2027 + WORK_2027, key=lambda d: str(d["date"]))]
    path.write_text("\n".join(rows) + "\n", encoding=encoding)
    return path
