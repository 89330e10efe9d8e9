"""Rendering for the CLI: JSON for machines, rich tables and one-line messages for people.

rich is imported only when something is drawn, so ``--help`` and ``--json`` stay fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON (UTF-8, Chinese as is) on stdout."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    console().print(message)


def error(message: str, hint: str | None = None) -> None:
    """One red line on stderr, and the command that fixes it if there is one."""
    from rich.markup import escape

    err = console(stderr=True)
    err.print(f"[bold red]Error:[/] {escape(message)}")
    if hint:
        err.print(f"  {escape(hint)}", style="dim")


def warn(message: str) -> None:
    from rich.markup import escape

    console(stderr=True).print(f"[yellow]Warning:[/] {escape(message)}")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title, caption=caption, header_style="bold", title_justify="left")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else escape(str(v)) for v in row))
    console().print(t)
