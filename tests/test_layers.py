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


def _package_of(module: str) -> str | None:
    """``broadcast.db.engine`` -> ``db``; ``broadcast.clock`` -> ``clock``; outside broadcast -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "broadcast" and len(parts) > 1 else None


def _imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, at any depth (function-level and TYPE_CHECKING ones too)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    here = list(rel.parts[:-1])  # the package a relative import starts from
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found += [(base, node.lineno)] + [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the ``file:line`` places that import it. A package is the first
    path component under broadcast/ (top-level modules such as clock.py count as their own)."""
    known = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        source = rel.parts[0].removesuffix(".py")
        for module, line in _imported_modules(path):
            target = _package_of(module)
            if target in known and target != source and source != "__init__":
                places = graph.setdefault(source, {}).setdefault(target, [])
                if f"{rel}:{line}" not in places:
                    places.append(f"{rel}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of packages (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    graph = {"a": {"b": ["a/x.py:1"]}, "b": {"c": ["b/y.py:2"]}, "c": {"a": ["c.py:3"]}, "d": {"a": ["d.py:4"]}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    del graph["c"]
    assert find_cycle(graph) is None


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    assert graph, "no imports found: the scan is broken"
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"{a} -> {b} ({', '.join(graph[a][b][:3])})" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError("import cycle between packages:\n  " + "\n  ".join(steps))


LAYERS = ["errors", "clock", "config", "calendar", "db", "workspace", "recipients", "messages", "gateways", "costs", "testing",
          "twoway", "receipts",
          "dispatch", "audit", "maintenance", "demo", "cli", "__main__"]
"""Bottom to top, as the README states it: a package imports only packages before it."""


def test_packages_import_only_lower_layers() -> None:
    graph = package_graph()
    assert set(graph) | {t for deps in graph.values() for t in deps} <= set(LAYERS), "a package missing from LAYERS"
    upward = [f"{a} -> {b} ({', '.join(places[:3])})" for a, deps in sorted(graph.items())
              for b, places in sorted(deps.items()) if LAYERS.index(b) > LAYERS.index(a)]
    assert upward == []


def test_final_message_states_named_below_messages_agree() -> None:
    from broadcast.db.models import FINAL_MESSAGE_STATES
    from broadcast.messages.states import FINAL

    assert FINAL == set(FINAL_MESSAGE_STATES)
