"""The CLI is a thin layer over a core with no CLI imports: no module outside broadcast/cli
imports typer, click or rich (httpx may pull rich in for its own CLI when click is installed;
that is httpx's business, so this is checked in the source, not in sys.modules)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "broadcast"
CLI_ONLY = {"typer", "click", "rich"}


def test_core_modules_do_not_import_cli_libraries():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n.split(".")[0] in CLI_ONLY]
    assert offenders == []
