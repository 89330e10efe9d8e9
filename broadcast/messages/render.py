"""Safe message-template rendering.

Rules:

* A placeholder is ``{name}`` where ``name`` is an ASCII identifier
  (``[A-Za-z_][A-Za-z0-9_]*``). ``{{`` and ``}}`` are a literal ``{`` / ``}``.
* Anything else between braces is rejected with :class:`TemplateError` naming the
  field and its position: attribute access ``{a.b}``, indexing ``{a[0]}``,
  format specs ``{a:>10}``, conversions ``{a!r}``, positional ``{}``/``{0}``,
  spaces, non-ASCII names, nested braces, and unbalanced ``{`` or ``}``.
* Rendering is a hand-written single-pass scanner (never ``str.format``), so no
  attribute, index or format-spec evaluation can happen; substituted values are
  ``str()``-ed and never re-scanned. An unknown name or a ``None`` value raises
  :class:`TemplateError`.
* Positions in messages are 1-based columns (plus the line when it is not 1).
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "STANDARD_FIELDS",
    "TemplateError",
    "placeholders",
    "render",
    "standard_values",
    "validate",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")

STANDARD_FIELDS: tuple[str, ...] = (
    "name", "group", "date", "weekday", "phone", "year", "month", "day", "full_date",
)
"""Every key :func:`standard_values` produces."""


class TemplateError(ValueError):
    """A template is malformed, unsafe, or refers to an unknown placeholder."""

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None):
        super().__init__(message)
        self.field = field
        self.index = index  # 0-based offset into the template, when known


@dataclass(frozen=True)
class _Field:
    name: str
    index: int


def _where(template: str, index: int) -> str:
    line = template.count("\n", 0, index) + 1
    column = index - (template.rfind("\n", 0, index) + 1) + 1
    return f"column {column}" if line == 1 else f"line {line}, column {column}"


def _shorten(field: str, limit: int = 40) -> str:
    return field if len(field) <= limit else field[: limit - 1] + "…"


def _field_end(template: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``start`` (nesting counted), or -1."""
    depth = 0
    for j in range(start, len(template)):
        ch = template[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


@functools.lru_cache(maxsize=256)
def _scan(template: str) -> tuple[str | _Field, ...]:
    """Split a template into literal text and fields, validating the syntax. Cached: an
    audience of 100,000 renders one template 100,000 times (a bad template raises every time)."""
    out: list[str | _Field] = []
    buf: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        nxt = template[i + 1] if i + 1 < n else ""
        if ch in "{}" and nxt == ch:
            buf.append(ch)
            i += 2
            continue
        if ch == "}":
            raise TemplateError(
                f"unbalanced '}}' at {_where(template, i)}: write '}}}}' for a literal brace",
                field="}", index=i,
            )
        if ch != "{":
            buf.append(ch)
            i += 1
            continue
        end = _field_end(template, i)
        if end < 0:
            raise TemplateError(
                f"unbalanced '{{' at {_where(template, i)}: close it as {{name}} "
                "or write '{{' for a literal brace",
                field="{", index=i,
            )
        field = template[i : end + 1]
        if not _NAME.fullmatch(field[1:-1]):
            raise TemplateError(
                f"unsafe placeholder {_shorten(field)} at {_where(template, i)}: "
                "only plain names like {name} are allowed",
                field=field, index=i,
            )
        if buf:
            out.append("".join(buf))
            buf = []
        out.append(_Field(field[1:-1], i))
        i = end + 1
    if buf:
        out.append("".join(buf))
    return tuple(out)


def placeholders(template: str) -> list[str]:
    """Names used by ``template``, in order of first use, without duplicates."""
    names: dict[str, None] = {}
    for token in _scan(template):
        if isinstance(token, _Field):
            names.setdefault(token.name)
    return list(names)


def validate(template: str, allowed: Iterable[str]) -> None:
    """Raise :class:`TemplateError` if ``template`` is malformed or uses unknown names."""
    allowed_set = set(allowed)
    for token in _scan(template):
        if isinstance(token, _Field) and token.name not in allowed_set:
            listed = ", ".join("{" + a + "}" for a in sorted(allowed_set)) or "none"
            raise TemplateError(
                f"unknown placeholder {{{token.name}}} at {_where(template, token.index)}: "
                f"allowed placeholders are {listed}",
                field=token.name, index=token.index,
            )


def render(template: str, values: Mapping[str, object]) -> str:
    """Substitute ``{name}`` fields of ``template`` with ``str(values[name])``."""
    out: list[str] = []
    for token in _scan(template):
        if not isinstance(token, _Field):
            out.append(token)
            continue
        if token.name not in values:
            known = ", ".join("{" + k + "}" for k in sorted(values)) or "none"
            raise TemplateError(
                f"unknown placeholder {{{token.name}}} at {_where(template, token.index)}: "
                f"available placeholders are {known}",
                field=token.name, index=token.index,
            )
        value = values[token.name]
        if value is None:
            raise TemplateError(
                f"placeholder {{{token.name}}} at {_where(template, token.index)} has no value",
                field=token.name, index=token.index,
            )
        out.append(str(value))
    return "".join(out)


def standard_values(
    *, name: str, group: str, when: datetime.date, phone: str = ""
) -> dict[str, object]:
    """Values for :data:`STANDARD_FIELDS`; e.g. 2026-11-27 gives date ``11月27日``,
    full_date ``2026年11月27日``, weekday ``星期五`` and year/month/day as ints."""
    return {
        "name": name,
        "group": group,
        "date": f"{when.month}月{when.day}日",
        "weekday": _WEEKDAYS[when.weekday()],
        "phone": phone,
        "year": when.year,
        "month": when.month,
        "day": when.day,
        "full_date": f"{when.year}年{when.month}月{when.day}日",
    }
