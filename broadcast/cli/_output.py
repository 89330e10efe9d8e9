"""Rendering for the CLI: JSON for machines, rich tables and one-line messages for people.

rich is imported only when something is drawn, so ``--help`` and ``--json`` stay fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
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


class Output:
    """Where a command's result goes, chosen once from its ``--json`` flag: ``Output.for_(json_)``.

    A command builds its result once and hands it over with the people's rendering beside it; the
    object prints one of the two. For people: rich tables and lines (``human`` callbacks run).
    For machines (``JsonOutput``): the data as one JSON document on stdout and nothing else, so
    remarks (``say``, ``warn``) are dropped and nobody is asked to confirm anything."""

    is_json = False

    @staticmethod
    def for_(json_: bool) -> Output:
        return JsonOutput() if json_ else Output()

    def result(self, data: Any, human: Callable[[], object] | None = None) -> None:
        """The command's result: ``data`` as JSON, or whatever ``human`` draws."""
        if human is not None:
            human()

    def message(self, text: str, data: Any) -> None:
        """A one-line result: ``text`` for people, ``data`` as JSON."""
        say(text)

    def table(self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, data: Any,
              caption: str | None = None, empty: str | None = None) -> None:
        """A list: ``rows`` as a table (``empty`` instead when there are none), or ``data`` as JSON."""
        rows = list(rows)
        if not rows and empty is not None:
            say(empty)
        else:
            table(title, columns, rows, caption=caption)

    def stream(self, items: Iterable[Any], human: Callable[[list[Any]], object]) -> int:
        """A list too long to hold as JSON: written item by item; people get ``human(list)``.
        Returns how many items there were."""
        held = list(items)
        human(held)
        return len(held)

    def say(self, text: str) -> None:
        """A remark for people (progress, the next step); not part of the JSON result."""
        say(text)

    def warn(self, text: str) -> None:
        warn(text)

    def screen_limit(self, rows: int) -> int | None:
        """How many rows a listing shows by default: ``rows`` on screen, all of them as JSON."""
        return rows

    def confirm(self, summary: str, question: str, *, refusal: str) -> None:
        """Show ``summary`` and ask; a "no" exits 1. As JSON there is no one to ask: a usage
        error ``refusal`` naming --yes."""
        import typer

        from broadcast.errors import ExitCode

        say(summary)
        if not typer.confirm(question, default=False):
            raise typer.Exit(ExitCode.ERROR)


class JsonOutput(Output):
    """``--json``: the result as JSON on stdout, nothing else there."""

    is_json = True

    def result(self, data: Any, human: Callable[[], object] | None = None) -> None:
        emit_json(data)

    def message(self, text: str, data: Any) -> None:
        emit_json(data)

    def table(self, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, data: Any,
              caption: str | None = None, empty: str | None = None) -> None:
        emit_json(data)

    def stream(self, items: Iterable[Any], human: Callable[[list[Any]], object]) -> int:
        out = sys.stdout
        out.write("[")
        n = 0
        for item in items:
            out.write(("," if n else "") + "\n  " + json.dumps(item, ensure_ascii=False, default=str))
            n += 1
        out.write("\n]\n" if n else "]\n")
        out.flush()
        return n

    def say(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass

    def screen_limit(self, rows: int) -> int | None:
        return None

    def confirm(self, summary: str, question: str, *, refusal: str) -> None:
        import typer

        raise typer.BadParameter(refusal, param_hint="--yes")
