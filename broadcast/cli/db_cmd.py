"""``broadcast db``: schema version and migrations."""

from __future__ import annotations

import typer

from broadcast.cli._common import JSON_OPTION

app = typer.Typer(rich_markup_mode=None, help="The database: schema version and migrations.", no_args_is_help=True)


@app.command("status")
def status(json_: bool = JSON_OPTION) -> None:
    """Show the database URL, its schema version and the migrations still to apply."""
    from broadcast.cli._output import Output, say
    from broadcast.config import load_settings, mask_url
    from broadcast.db.engine import make_engine
    from broadcast.db.migrate import LATEST
    from broadcast.db.migrate import status as db_status

    settings = load_settings()
    version, pending = db_status(make_engine(settings.effective_database_url, busy_timeout_s=settings.busy_timeout_s))
    data = {"database_url": mask_url(settings.effective_database_url), "version": version, "latest": LATEST,
            "pending": [{"version": m.version, "description": m.description} for m in pending]}

    def human() -> None:
        say(f"Database {data['database_url']}: schema version {version} of {LATEST}")
        for m in pending:
            say(f"  pending: {m.version} {m.description}")

    Output.for_(json_).result(data, human)
    if version > LATEST:
        from broadcast.errors import StateError

        raise StateError(f"the database schema is version {version}, newer than this broadcast knows ({LATEST})",
                         hint="upgrade broadcast (pip install -U broadcast)")


@app.command("migrate")
def migrate() -> None:
    """Apply pending migrations (every command also does this when it opens the database)."""
    from broadcast.cli._output import say
    from broadcast.config import load_settings
    from broadcast.db.engine import make_engine
    from broadcast.db.migrate import migrate as db_migrate

    version = db_migrate(make_engine((s := load_settings()).effective_database_url, busy_timeout_s=s.busy_timeout_s))
    say(f"Schema at version {version}")


@app.command("copy")
def copy(
    to: str = typer.Option(..., "--to", help="Target SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host/db (must be empty)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Copy the whole history (groups to audit trail) into another, empty database."""
    from broadcast.cli._common import workspace
    from broadcast.cli._output import Output, say
    from broadcast.db.copy import copy_database

    result = copy_database(workspace().engine, to)

    def human() -> None:
        say(f"Copied into {result.target}: " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items() if v))
        say(f"Audit chain verified on the target: {result.audit_entries:,} entries")

    Output.for_(json_).result(result.to_dict(), human)
