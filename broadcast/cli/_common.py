"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from broadcast.workspace import Workspace

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")


def workspace() -> Workspace:
    """Settings plus the migrated database, for a command that needs them."""
    from broadcast.workspace import Workspace

    return Workspace.open()
