"""Sizes a reader can live with: no module outside broadcast/cli over 500 lines, and no function of
the dispatcher (broadcast/dispatch) over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "broadcast"


def test_no_core_module_over_500_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if "cli" not in p.relative_to(PACKAGE).parts and (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}


def test_no_dispatch_function_over_80_lines() -> None:
    long = []
    for path in (PACKAGE / "dispatch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 80:
                    long.append(f"{path.name}:{node.name} ({n} lines)")
    assert long == []
