"""Money as the office writes it: yuan as ``Decimal`` (prices have fractions of a fen), budgets
in whole fen (integers); never a float. People see ``≈ ¥617``; JSON carries the exact figure as
a string (``"616.88"``)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from broadcast import clock
from broadcast.errors import InputError

__all__ = ["ZERO", "exact", "fen_to_yuan", "month_of", "month_range", "parse_budget", "yuan"]

ZERO = Decimal(0)
_FEN = Decimal("0.01")
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")


def parse_budget(text: str, option: str = "--monthly") -> int:
    """A budget in yuan (``300``, ``1,200``, ``300.50``; ``¥``/``元`` allowed) -> fen."""
    raw = text
    cleaned = text.strip().replace(",", "").replace("，", "").removeprefix("¥").removeprefix("￥").removesuffix("元").strip()
    if cleaned.startswith("-"):
        raise InputError(f"{option} {raw}: a budget cannot be negative", hint="give an amount in yuan, e.g. --monthly 300")
    if not _AMOUNT.fullmatch(cleaned):
        raise InputError(f"{option} {raw!r} is not an amount in yuan like 300 or 300.50 (at most 2 decimals)",
                         hint="give an amount in yuan, e.g. --monthly 300")
    return int((Decimal(cleaned) * 100).to_integral_value())


def fen_to_yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(_FEN)


def exact(amount: Decimal | None) -> str | None:
    """The exact figure for JSON: plain digits, never an exponent (``616.88``, ``0.30``, ``0``)."""
    return None if amount is None else format(amount, "f")


def yuan(amount: Decimal | None, *, approx: bool = True) -> str:
    """``≈ ¥617`` (100 yuan and more: whole yuan), ``≈ ¥28.04`` (less: to the fen); a budget
    (``approx=False``): ``¥600`` or ``¥600.50``. ``None`` (no price known): ``cost unknown``."""
    if amount is None:
        return "cost unknown"
    if not approx:
        whole = amount == amount.to_integral_value()
        return f"¥{amount:,.0f}" if whole else f"¥{amount.quantize(_FEN, ROUND_HALF_UP):,}"
    if abs(amount) >= 100:
        return f"≈ ¥{amount.quantize(Decimal(1), ROUND_HALF_UP):,}"
    return f"≈ ¥{amount.quantize(_FEN, ROUND_HALF_UP):,}"


def month_of(instant: datetime, tz: str) -> date:
    """The first day of the local calendar month ``instant`` falls in."""
    return clock.local(instant, tz).date().replace(day=1)


def month_range(month: date, tz: str) -> tuple[datetime, datetime]:
    """[00:00 local on the 1st, 00:00 local on the 1st of the next month) as UTC instants."""
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return clock.at_local(first, time(0), tz), clock.at_local(following, time(0), tz)
