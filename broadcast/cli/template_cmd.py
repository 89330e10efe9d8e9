"""``broadcast template``: the message templates and daily series in the templates folder."""

from __future__ import annotations

from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION

app = typer.Typer(rich_markup_mode=None, help="Message templates (templates/NAME.txt) and daily series (templates/series/NAME.txt).",
                  no_args_is_help=True)


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List templates and series with their placeholders."""
    from broadcast.cli._output import Output
    from broadcast.config import load_settings
    from broadcast.messages.templates import list_templates

    folder = load_settings().templates_dir
    items = list_templates(folder)
    Output.for_(json_).table(
        None, ["Name", "Kind", "Placeholders", "Text"],
        ([t.name, t.kind if t.kind == "template" else f"series ({t.lines} lines)",
          f"ERROR: {t.error}" if t.error else " ".join("{" + p + "}" for p in t.placeholders),
          t.text.split("\n")[0][:40]] for t in items),
        data=[t.to_dict() for t in items], caption=f"{len(items)} in {folder}",
        empty=f"No templates in {folder}. Put NAME.txt files there (BROADCAST_TEMPLATES_DIR sets the folder).")


@app.command("show")
def show(name: str = typer.Argument(..., help="Template or series name."), json_: bool = JSON_OPTION) -> None:
    """Show a template (or series) and check it as a sample recipient would get it today."""
    from broadcast.cli._output import Output
    from broadcast.clock import local, now
    from broadcast.config import load_settings
    from broadcast.messages.compose import freeze
    from broadcast.messages.store import check_for
    from broadcast.messages.templates import show_template

    settings = load_settings()
    info = show_template(settings.templates_dir, name)
    data = info.to_dict()
    if info.kind == "template" and info.error is None:
        body = freeze(info.text, local(now(settings), settings.timezone).date(), source=f"template {info.name!r}")
        data["check"] = check_for(settings, body, "notice").to_dict()
    Output.for_(json_).result(data, lambda: _say_template(info, data))


def _say_template(info: Any, data: dict[str, Any]) -> None:
    from rich.markup import escape

    from broadcast.cli._output import say, warn

    say(f"[bold]{escape(info.name)}[/] ({info.kind}, {escape(str(info.path))})")
    say(escape(info.text))
    if info.error:
        warn(info.error)
    elif info.placeholders:
        say("Placeholders: " + " ".join("{" + p + "}" for p in info.placeholders))
    check = data.get("check")
    if isinstance(check, dict):
        say(f"As sent today to a sample recipient: {escape(str(check['text']))}")
        say(f"{check['length']} characters, {check['encoding']}, {check['parts']} part(s)")
        for w in check["warnings"]:
            warn(f"{w['message']} [{w['code']}]")
