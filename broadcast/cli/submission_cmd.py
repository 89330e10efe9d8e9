"""``broadcast submission``: lines the branches hand in for the daily series, and their review."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="Branch submissions: lines for the daily series, by SMS (投稿 ...) or spreadsheet; accept into a series day or reject.")

MAX_ERRORS_SHOWN = 20


def _shown(text: str | None, width: int | None = None) -> str:
    """Text a branch sent, safe for a terminal: control and format characters shown as ``�``."""
    text = "".join("�" if unicodedata.category(c) in ("Cc", "Cf") else c for c in (text or ""))
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _date(value: str | None, option: str) -> Any:
    from broadcast.clock import parse_date
    from broadcast.errors import InputError

    if value is None:
        return None
    try:
        return parse_date(value)
    except InputError as exc:
        raise InputError(f"{option}: {exc.message}", hint=exc.hint) from None


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help=".xlsx, or .csv/.tsv/.txt in UTF-8, GB18030/GBK or UTF-16; columns 支部, 内容, 日期 (optional)."),
    sheet: str | None = typer.Option(None, "--sheet", help=".xlsx sheet (default: the first)."),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding (default: detected)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every row, write nothing."),
    json_: bool = JSON_OPTION,
) -> None:
    """Import submissions from a spreadsheet: all rows or, if any row is bad, none (exit 1)."""
    from broadcast.cli._output import Output
    from broadcast.errors import ExitCode
    from broadcast.twoway.submission_import import import_submissions

    r = import_submissions(workspace(), file, encoding=encoding, sheet=sheet, dry_run=dry_run)
    Output.for_(json_).result(r.to_dict(), lambda: _say_import(file, r))
    if r.errors:
        raise typer.Exit(ExitCode.ERROR)


def _say_import(file: Path, r: Any) -> None:
    from broadcast.cli._output import error, say, table, warn

    if r.errors:
        shown = r.errors[:MAX_ERRORS_SHOWN]
        table(None, ["Row", "Column", "Value", "Problem"], ([e.row, e.field, _shown(e.value, 40), e.reason] for e in shown),
              caption=f"first {len(shown)} of {len(r.errors)}" if len(r.errors) > len(shown) else None)
        e = r.errors[0]
        error(f"{file.name}: {len(r.errors)} bad row{'s' if len(r.errors) != 1 else ''}, nothing imported "
              f"(row {e.row}, {e.field} {_shown(e.value, 40)!r}: {e.reason})",
              hint="fix the rows and import the file again")
        return
    for w in r.warnings:
        warn(f"row {w.row}: {w.reason}")
    done = "Dry run, nothing written: would add" if r.dry_run else "Imported"
    extra = []
    if r.already:
        extra.append(f"{r.already} already imported")
    if r.duplicates:
        extra.append(f"{r.duplicates} repeated in the file")
    say(f"{done} {r.added if not r.dry_run else r.rows - r.already - r.duplicates} submissions from {file.name}"
        + (f" ({'; '.join(extra)})" if extra else ""))
    if not r.dry_run and r.added:
        say("  review them with: broadcast submission list --status pending")


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="pending, accepted or rejected."),
    group: str | None = typer.Option(None, "--group", "-g", help="Only this branch."),
    json_: bool = JSON_OPTION,
) -> None:
    """List submissions, oldest first."""
    from broadcast.cli._output import Output
    from broadcast.twoway.submissions import list_submissions

    items = list_submissions(workspace(), status=status, group=group)
    Output.for_(json_).table(
        None, ["ID", "Branch", "From", "Wanted", "Status", "Series day", "Message", "Text"],
        ([s.id, s.group or "", s.member or s.source, s.wanted_day or "", _status(s), _placed(s),
          f"{s.message_id} ({s.message_status})" if s.message_id else "", _shown(s.text, 40)] for s in items),
        data=[s.to_dict() for s in items], caption=f"{len(items)} submissions",
        empty="No submissions." if status or group else
        "No submissions yet: branches text 投稿 + their line, or import a file with: broadcast submission import FILE")


def _status(s: Any) -> str:
    return f"rejected: {_shown(s.reason, 30)}" if s.status == "rejected" else s.status


def _placed(s: Any) -> str:
    return f"schedule {s.schedule_id}, {s.day}" if s.schedule_id else ""


@app.command("accept")
def accept(
    submission_id: int = typer.Argument(..., help="Submission id (see 'broadcast submission list')."),
    schedule: int | None = typer.Option(None, "--schedule", "-s", help="The daily series (see 'broadcast schedule list'); default: the only one not cancelled."),
    day: str | None = typer.Option(None, "--day", help="YYYY-MM-DD; default: the day the branch asked for, else the series' next day without a line."),
    json_: bool = JSON_OPTION,
) -> None:
    """Put a submitted line into a day of a daily series; its message then waits for approval."""
    from broadcast.cli._output import Output
    from broadcast.twoway.submissions import accept_submission

    a = accept_submission(workspace(), submission_id, schedule_id=schedule, day=_date(day, "--day"))
    out = Output.for_(json_)

    def human() -> None:
        for w in a.warnings:
            out.warn(f"{w['message']} [{w['code']}]")
        if a.replaced:
            out.say(f"Replaced the text of message {a.message_id} ({a.replaced['was']}): "
                    f"{_shown(str(a.replaced['body']), 60)}")
            for earlier in a.replaced["submissions"]:  # type: ignore[attr-defined]
                out.say(f"  submission {earlier} is pending again")
        out.say(f"Accepted submission {submission_id} ({a.submission.group or 'no branch'}) for {a.day} "
                f"in schedule {a.schedule_id}: message {a.message_id} ({a.message_status})")
        if a.message_status == "pending_approval":
            out.say(f"  another operator approves it with: broadcast message approve {a.message_id}")

    out.result(a.to_dict(), human)


@app.command("reject")
def reject(
    submission_id: int = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why (kept with the submission and in the audit log)."),
    json_: bool = JSON_OPTION,
) -> None:
    """Reject a pending submission, with the reason."""
    from broadcast.cli._output import Output
    from broadcast.twoway.submissions import reject_submission

    s = reject_submission(workspace(), submission_id, reason)
    Output.for_(json_).message(f"Rejected submission {s.id} ({s.group or 'no branch'}): {reason.strip()}", s.to_dict())


@app.command("report")
def report(
    since: str | None = typer.Option(None, "--from", help="Submissions from this local day (YYYY-MM-DD)."),
    until: str | None = typer.Option(None, "--to", help="Up to this local day, inclusive."),
    xlsx: Path | None = typer.Option(None, "--xlsx", help="Also write the table to this .xlsx (or .csv) file."),
    json_: bool = JSON_OPTION,
) -> None:
    """Per branch: lines submitted, accepted, rejected, pending, and used (sent)."""
    from broadcast.cli._output import Output
    from broadcast.twoway.submission_report import COLUMNS, submission_report, write_report

    rep = submission_report(workspace(), since=_date(since, "--from"), until=_date(until, "--to"))
    if xlsx is not None:
        write_report(rep, xlsx)

    def human() -> None:
        from broadcast.cli._output import say, table

        say(rep.headline)
        if rep.branches:
            table(None, [c.capitalize() for c in COLUMNS], [*(b.row() for b in rep.branches), rep.totals.row()])
        if xlsx is not None:
            say(f"Wrote {xlsx}")

    Output.for_(json_).result(rep.to_dict(), human)
