"""The ``broadcast`` command: one module per command group, wired here.

Exit codes are ``broadcast.errors.ExitCode`` (documented in the README and tested): an error the
user can fix is one red line and its exception's ``exit_code`` (``BROADCAST_DEBUG=1`` shows the
traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from broadcast.cli import (
    audit_cmd,
    backup_cmd,
    calendar_cmd,
    config_cmd,
    db_cmd,
    demo_cmd,
    gateway_cmd,
    group_cmd,
    inbox_cmd,
    member_cmd,
    message_cmd,
    optout_cmd,
    plan_cmd,
    receipts_cmd,
    schedule_cmd,
    send_cmd,
    submission_cmd,
    template_cmd,
)


def debug_enabled() -> bool:
    return os.environ.get("BROADCAST_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


class BroadcastGroup(TyperGroup):
    """Maps the core's exceptions to one red line and their exit code, in one place."""

    def invoke(self, ctx: Any) -> Any:
        from broadcast.cli._common import close_workspaces

        try:
            return super().invoke(ctx)
        except Exception as exc:
            from broadcast.errors import BroadcastError, ExitCode

            if debug_enabled() or isinstance(exc, (typer.Exit, typer.Abort)) or _is_click_exception(exc):
                raise
            from broadcast.cli._output import error

            if isinstance(exc, BroadcastError):
                error(exc.message, exc.hint)
                code = exc.exit_code
            elif type(exc).__module__.startswith("sqlalchemy") and hasattr(exc, "orig"):
                from broadcast.db.engine import explain

                error(*explain(exc))
                code = ExitCode.ERROR
            elif isinstance(exc, OSError) and exc.filename:  # a folder that cannot be made, a file not readable
                error(f"{exc.strerror or type(exc).__name__}: {exc.filename}")
                code = ExitCode.ERROR
            else:
                raise
            raise typer.Exit(code) from None
        finally:
            close_workspaces()


def _is_click_exception(exc: Exception) -> bool:
    return any(cls.__name__ in ("ClickException", "Exit", "Abort") for cls in type(exc).__mro__)


app = typer.Typer(
    cls=BroadcastGroup,
    name="broadcast",
    help="Bulk SMS broadcaster: recipient groups, contact-list import, schedules and a crash-safe send queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's help renderer slows every start-up
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(group_cmd.app, name="group")
app.add_typer(member_cmd.app, name="member")
app.add_typer(optout_cmd.app, name="optout")
app.add_typer(db_cmd.app, name="db")
app.command("backup")(backup_cmd.backup)
app.command("restore")(backup_cmd.restore)
app.command("config")(config_cmd.config)
app.command("demo")(demo_cmd.demo)
app.add_typer(message_cmd.app, name="message")
app.add_typer(template_cmd.app, name="template")
app.add_typer(schedule_cmd.app, name="schedule")
app.add_typer(calendar_cmd.app, name="calendar")
app.command("due")(message_cmd.due)
app.command("plan")(plan_cmd.plan)
app.command("run")(send_cmd.run)
app.command("worker")(send_cmd.worker)
app.command("send")(send_cmd.send)
app.add_typer(gateway_cmd.app, name="gateway")
app.command("log")(audit_cmd.log)
app.command("report")(audit_cmd.report)
app.command("purge")(audit_cmd.purge)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(receipts_cmd.app, name="receipts")
app.add_typer(submission_cmd.app, name="submission")
app.add_typer(inbox_cmd.app, name="inbox")


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from broadcast import __version__

        typer.echo(f"broadcast {__version__}")
        raise typer.Exit()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="broadcast")
