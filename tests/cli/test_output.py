"""The CLI's output object and exit codes: a command chooses JSON or rich once (``Output.for_``),
and ends with a code named in ``broadcast.errors.ExitCode``."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from broadcast.cli._output import JsonOutput, Output
from broadcast.errors import BroadcastError, ExitCode

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "broadcast" / "cli"
COMMAND_MODULES = sorted(CLI.glob("*_cmd.py"))


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_output_for(call: ast.AST | None) -> bool:
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "for_"
            and isinstance(call.func.value, ast.Name) and call.func.value.id == "Output")


def test_the_command_modules_are_found() -> None:
    assert len(COMMAND_MODULES) >= 14


@pytest.mark.parametrize("path", COMMAND_MODULES, ids=lambda p: p.name)
def test_a_command_reads_its_json_flag_only_to_choose_its_output(path: Path) -> None:
    """``json_`` is a parameter handed to ``Output.for_`` and nothing else: no ``if json_``,
    ``not json_``, ``quiet or json_`` ... and no branching on ``out.is_json`` either."""
    source = path.read_text(encoding="utf-8")
    assert "if json_" not in source
    tree = ast.parse(source)
    parents = _parents(tree)
    misuse = [f"{path.name}:{n.lineno}" for n in ast.walk(tree)
              if isinstance(n, ast.Name) and n.id == "json_" and not _is_output_for(parents.get(n))]
    branches = [f"{path.name}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.If | ast.IfExp)
                for sub in ast.walk(n.test) if isinstance(sub, ast.Attribute) and sub.attr == "is_json"]
    assert misuse == [] and branches == []


@pytest.mark.parametrize("path", COMMAND_MODULES, ids=lambda p: p.name)
def test_a_command_prints_json_only_through_the_output_object(path: Path) -> None:
    assert "emit_json" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_exit_codes_are_named_not_literal(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    literal = [f"{path.name}:{n.lineno}" for n in ast.walk(ast.parse(source))
               if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "Exit"
               and any(isinstance(a, ast.Constant) for a in [*n.args, *(k.value for k in n.keywords)])]
    assert literal == []
    assert "sys.exit(" not in source


# --- the output object ---------------------------------------------------------------------------

def test_for_chooses_once() -> None:
    assert type(Output.for_(False)) is Output and not Output.for_(False).is_json
    assert isinstance(Output.for_(True), JsonOutput) and Output.for_(True).is_json


def test_result_prints_the_data_or_runs_the_human_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    drawn: list[str] = []
    Output.for_(True).result({"id": 7, "name": "城南"}, lambda: drawn.append("human"))
    assert capsys.readouterr().out == '{\n  "id": 7,\n  "name": "城南"\n}\n'
    assert drawn == []
    Output.for_(False).result({"id": 7}, lambda: drawn.append("human"))
    assert capsys.readouterr().out == "" and drawn == ["human"]
    Output.for_(False).result({"id": 7})  # nothing to show people
    assert capsys.readouterr().out == ""


def test_message_is_one_line_for_people_and_the_data_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    Output.for_(False).message("Approved message 3", {"id": 3, "status": "approved"})
    assert capsys.readouterr().out == "Approved message 3\n"
    Output.for_(True).message("Approved message 3", {"id": 3, "status": "approved"})
    assert json.loads(capsys.readouterr().out) == {"id": 3, "status": "approved"}


def test_table_draws_rows_or_the_empty_line_or_prints_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    rows = ([n, p] for n, p in [("张三", "+8613800000001"), ("李四", "+8613800000002")])
    Output.for_(False).table("Members", ["Name", "Phone"], rows, data=None, caption="2 members", empty="none")
    out = capsys.readouterr().out
    assert "Members" in out and "张三" in out and "+8613800000002" in out and "2 members" in out

    Output.for_(False).table(None, ["Name"], iter([]), data=[], empty="No members found.")
    assert capsys.readouterr().out == "No members found.\n"

    consumed: list[int] = []

    def lazy() -> object:
        consumed.append(1)
        yield ["x"]

    Output.for_(True).table(None, ["Name"], lazy(), data=[{"name": "张三"}], empty="No members found.")
    assert json.loads(capsys.readouterr().out) == [{"name": "张三"}]
    assert consumed == []  # the rows for people are never built for JSON


def test_table_markup_in_values_is_shown_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    Output.for_(False).table(None, ["Name"], [["[bold]x[/]"]], data=None)
    assert "[bold]x[/]" in capsys.readouterr().out


def test_stream_writes_a_json_array_item_by_item(capsys: pytest.CaptureFixture[str]) -> None:
    items = [{"delivery": 1, "phone": "138****1234"}, {"delivery": 2, "phone": None}]
    assert Output.for_(True).stream(iter(items), lambda rows: pytest.fail("no human rendering")) == 2
    out = capsys.readouterr().out
    assert out == '[\n  {"delivery": 1, "phone": "138****1234"},\n  {"delivery": 2, "phone": null}\n]\n'
    assert json.loads(out) == items
    assert Output.for_(True).stream(iter([]), lambda rows: None) == 0
    assert capsys.readouterr().out == "[]\n"

    seen: list[list[object]] = []
    assert Output.for_(False).stream(iter(items), seen.append) == 2
    assert seen == [items] and capsys.readouterr().out == ""


def test_remarks_are_for_people_only(capsys: pytest.CaptureFixture[str]) -> None:
    Output.for_(True).say("pass: sent 3")
    Output.for_(True).warn("plugin x could not be loaded")
    assert capsys.readouterr() == ("", "")
    Output.for_(False).say("pass: sent 3")
    Output.for_(False).warn("plugin x could not be loaded")
    captured = capsys.readouterr()
    assert captured.out == "pass: sent 3\n" and captured.err == "Warning: plugin x could not be loaded\n"


def test_screen_limit_applies_on_screen_only() -> None:
    assert Output.for_(False).screen_limit(100) == 100
    assert Output.for_(True).screen_limit(100) is None


def test_confirm_asks_people_and_refuses_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.BadParameter, match="--json needs --yes") as refused:
        Output.for_(True).confirm("This erases 3 deliveries", "Purge them?", refusal="--json needs --yes")
    assert refused.value.param_hint == "--yes" and refused.value.exit_code == ExitCode.USAGE
    assert capsys.readouterr().out == ""

    answers = iter([True, False])
    monkeypatch.setattr(typer, "confirm", lambda question, default: next(answers))
    Output.for_(False).confirm("This erases 3 deliveries", "Purge them?", refusal="unused")
    assert capsys.readouterr().out == "This erases 3 deliveries\n"
    with pytest.raises(typer.Exit) as declined:
        Output.for_(False).confirm("This erases 3 deliveries", "Purge them?", refusal="unused")
    assert declined.value.exit_code == ExitCode.ERROR


# --- exit codes ----------------------------------------------------------------------------------

def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _subclasses(sub)]


def test_exit_codes_are_the_documented_ones() -> None:
    assert {c.name: int(c) for c in ExitCode} == {"OK": 0, "ERROR": 1, "USAGE": 2, "ATTENTION": 3}
    assert ExitCode.USAGE == click.UsageError.exit_code  # click's own code for a usage error


def test_every_exception_class_carries_an_exit_code() -> None:
    import broadcast.errors  # noqa: F401  (the whole tree is defined there)

    classes = _subclasses(BroadcastError)
    assert len(classes) >= 7
    assert all(isinstance(cls.exit_code, ExitCode) and cls.exit_code != ExitCode.OK for cls in classes)


def test_the_readme_table_lists_every_exit_code() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| exit code | meaning |"):]
    rows = re.findall(r"^\| (\d+) \| .*?`ExitCode\.(\w+)`", table.split("\n\n")[0], flags=re.M)
    assert [(int(code), name) for code, name in rows] == [(int(c), c.name) for c in ExitCode]


def test_the_error_handler_ends_with_the_exceptions_exit_code() -> None:
    from broadcast.cli.app import BroadcastGroup

    class Held(BroadcastError):
        exit_code = ExitCode.ATTENTION

    app = typer.Typer(cls=BroadcastGroup)

    @app.command()
    def fail(kind: str) -> None:
        raise Held("two deliveries are held") if kind == "held" else BroadcastError("no such group", hint="broadcast group list")

    @app.command()
    def other() -> None:
        pass

    held = CliRunner().invoke(app, ["fail", "held"])
    assert held.exit_code == 3 and "Error: two deliveries are held" in held.stderr
    plain = CliRunner().invoke(app, ["fail", "plain"])
    assert plain.exit_code == 1 and plain.stderr.splitlines() == ["Error: no such group", "  broadcast group list"]
