"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from broadcast.workspace import Workspace

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


_opened: list[Workspace] = []


def workspace() -> Workspace:
    """Settings plus the migrated database, for a command that needs them (closed when the
    command ends, see ``close_workspaces``)."""
    from broadcast.workspace import Workspace

    ws = Workspace.open()
    _opened.append(ws)
    return ws


def close_workspaces() -> None:
    """Release every database connection the command opened."""
    while _opened:
        _opened.pop().close()
