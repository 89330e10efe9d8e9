"""``broadcast backup FILE`` and ``broadcast restore FILE``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION


def _rows(rows: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in rows.items() if v) or "no rows"


def backup(
    file: Path = typer.Argument(..., help="The backup file to write (an SQLite database)."),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
    json_: bool = JSON_OPTION,
) -> None:
    """Write a consistent copy of the whole database to FILE, even while a send is running.

    The copy is built under a temporary name and renamed to FILE only when complete, and the
    backup is recorded in the audit trail. On PostgreSQL the copy is an SQLite file made with
    'db copy' from one snapshot (pg_dump remains the tool for a PostgreSQL-to-PostgreSQL dump)."""
    from broadcast.cli._output import Output
    from broadcast.config import load_settings
    from broadcast.db.backup import backup as make_backup

    result = make_backup(load_settings(), file, force=force)
    Output.for_(json_).result(result.to_dict(), lambda: _say_backup(result))


def _say_backup(result: Any) -> None:
    from broadcast.cli._output import say, warn

    c = result.contents
    say(f"Backed up {result.source} to {result.file} ({result.bytes:,} bytes, schema version {c.schema_version})")
    say(f"  {_rows(c.rows)}")
    say(f"  deliveries: {_rows(c.deliveries)}")
    say(f"  audit trail: {c.audit_entries:,} entries, head {c.audit_head}")
    say(f"  sha256 {result.sha256}")
    if not c.audit_ok:
        warn(f"the audit chain in this backup does not verify: {c.audit_problem}")


def restore(
    file: Path = typer.Argument(..., help="A backup written by 'broadcast backup' (or any broadcast SQLite database)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing database (it is kept as <db>.before-restore-<time>)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Make FILE the database: checked first, migrated if older, recorded in the audit trail.

    An existing database is replaced only with --force and is kept beside it; messages that may
    have gone out after the backup was taken are paused for an operator to resume."""
    from broadcast.cli._output import Output
    from broadcast.config import load_settings
    from broadcast.maintenance.restore import restore as do_restore

    result = do_restore(load_settings(), file, force=force)
    Output.for_(json_).result(result.to_dict(), lambda: _say_restore(result))


def _say_restore(result: Any) -> None:
    from broadcast.cli._output import say, warn

    c = result.contents
    assert c is not None
    say(f"Restored {result.file} into {result.database} (schema version {result.schema_version}"
        + (f", migrated to {c.schema_version})" if c.schema_version != result.schema_version else ")"))
    say(f"  {_rows(c.rows)}")
    say(f"  audit trail verified: {c.audit_entries:,} entries")
    if result.kept_aside:
        say(f"  the database it replaced is kept as {result.kept_aside}")
    for mid in result.held:
        warn(f"message {mid} is paused: it may have been sent after the backup was taken; check, then "
             f"'broadcast message resume {mid}' or 'broadcast message cancel {mid}'")
