"""``broadcast member``: people, their groups, and contact-list import/export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, help="Members: people identified by their mobile number.", no_args_is_help=True)

MAX_ERRORS_SHOWN = 10
CONTACTS_HELP = {"email": "Email address.", "wecom": "WeCom (企业微信 / 政务微信) userid.",
                 "dingtalk": "DingTalk (钉钉) userid.", "feishu": "Feishu (飞书) user id."}


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The person's name."),
    phone: str = typer.Argument(..., help="Mobile number, in any usual form (138 0514 1234, +86...)."),
    group: list[str] = typer.Option(..., "--group", "-g", help="Group to join (repeat for several)."),
    title: str = typer.Option("", "--title", help="职务, e.g. 组织委员."),
    notes: str = typer.Option("", "--notes", help="备注."),
    email: str = typer.Option("", "--email", help=CONTACTS_HELP["email"]),
    wecom: str = typer.Option("", "--wecom", help=CONTACTS_HELP["wecom"]),
    dingtalk: str = typer.Option("", "--dingtalk", help=CONTACTS_HELP["dingtalk"]),
    feishu: str = typer.Option("", "--feishu", help=CONTACTS_HELP["feishu"]),
    json_: bool = JSON_OPTION,
) -> None:
    """Add a member to one or more groups (an existing number with the same name joins them; an
    email or id given is set on it too)."""
    from broadcast.cli._output import Output
    from broadcast.recipients.members import add_member

    r = add_member(workspace(), name, phone, group, title=title, notes=notes, email=email, wecom=wecom,
                   dingtalk=dingtalk, feishu=feishu)
    who = f"{r.member.name} {r.member.phone}"
    if r.created:
        text = f"Added {who} to {'、'.join(r.joined)}"
    elif r.joined:
        text = f"{who} joined {'、'.join(r.joined)}"
    else:
        text = f"{who} is already in {'、'.join(group)}" + ("" if r.member.warnings else ": nothing changed")
    out = Output.for_(json_)
    for w in r.warnings:
        out.warn(w)
    out.message(text, r.member.to_dict())


def _member_rows(members: list) -> list[list[object]]:
    return [[m.name, m.phone, "、".join(m.groups), m.title, ", ".join(m.contacts()), ",".join(m.optouts)]
            for m in members]


@app.command("list")
def list_(
    group: str | None = typer.Option(None, "--group", "-g", help="Only this group (sub-groups included)."),
    search: str | None = typer.Option(None, "--search", "-s", help="Text in the name, phone, title or notes."),
    json_: bool = JSON_OPTION,
) -> None:
    """List members."""
    from broadcast.cli._output import Output
    from broadcast.recipients.members import list_members

    members = list_members(workspace(), group=group, search=search)
    Output.for_(json_).table(None, ["Name", "Phone", "Groups", "Title", "Also on", "Opted out"], _member_rows(members),
                             data=[m.to_dict() for m in members], caption=f"{len(members)} members",
                             empty="No members found.")


@app.command("show")
def show(phone: str = typer.Argument(...), json_: bool = JSON_OPTION) -> None:
    """Show one member."""
    from broadcast.cli._output import Output
    from broadcast.recipients.members import show_member

    m = show_member(workspace(), phone)
    Output.for_(json_).table(None, ["Field", "Value"], [
        ["Name", m.name], ["Phone", m.phone], ["Groups", "、".join(m.groups)], ["Title", m.title],
        ["Notes", m.notes], ["Email", m.email], ["WeCom", m.wecom], ["DingTalk", m.dingtalk], ["Feishu", m.feishu],
        ["Opted out", {"": "no", "all": "all channels"}.get(",".join(m.optouts), ", ".join(m.optouts))],
        ["Added", m.created_at], ["Updated", m.updated_at],
    ], data=m.to_dict())


@app.command("edit")
def edit(
    phone: str = typer.Argument(...),
    name: str | None = typer.Option(None, "--name"),
    new_phone: str | None = typer.Option(None, "--phone", help="Change the number."),
    title: str | None = typer.Option(None, "--title"),
    notes: str | None = typer.Option(None, "--notes"),
    add_group: list[str] = typer.Option([], "--add-group", help="Join a group (repeatable)."),
    remove_group: list[str] = typer.Option([], "--remove-group", help="Leave a group (repeatable)."),
    email: str | None = typer.Option(None, "--email", help=CONTACTS_HELP["email"] + ' "" clears it.'),
    wecom: str | None = typer.Option(None, "--wecom", help=CONTACTS_HELP["wecom"] + ' "" clears it.'),
    dingtalk: str | None = typer.Option(None, "--dingtalk", help=CONTACTS_HELP["dingtalk"] + ' "" clears it.'),
    feishu: str | None = typer.Option(None, "--feishu", help=CONTACTS_HELP["feishu"] + ' "" clears it.'),
    json_: bool = JSON_OPTION,
) -> None:
    """Change a member's name, number, title, notes, email, WeCom/DingTalk/Feishu ids or groups."""
    from broadcast.cli._output import Output
    from broadcast.recipients.members import edit_member

    m = edit_member(workspace(), phone, name=name, new_phone=new_phone, title=title, notes=notes,
                    add_groups=add_group, remove_groups=remove_group, email=email, wecom=wecom,
                    dingtalk=dingtalk, feishu=feishu)
    out = Output.for_(json_)
    for w in m.warnings:
        out.warn(w)
    out.message(f"Updated {m.name} {m.phone} ({'、'.join(m.groups) or 'no groups'})", m.to_dict())


@app.command("remove")
def remove(phone: str = typer.Argument(...)) -> None:
    """Remove a member from every group. An opt-out of the number is kept."""
    from broadcast.cli._output import say
    from broadcast.recipients.members import remove_member

    m = remove_member(workspace(), phone)
    say(f"Removed {m.name} {m.phone}" + (" (the opt-out is kept)" if m.optouts else ""))


@app.command("export")
def export(
    file: Path = typer.Argument(..., help="Output .csv (UTF-8 with BOM, opens in Excel) or .xlsx."),
    group: str | None = typer.Option(None, "--group", "-g", help="Only this group (sub-groups included)."),
) -> None:
    """Export members in the columns the import reads back (one row per member and group)."""
    from broadcast.cli._output import say
    from broadcast.recipients.members import export_members

    n = export_members(workspace(), file, group=group)
    say(f"Wrote {n} rows to {file}")


def _parse_map(values: list[str]) -> dict[str, str]:
    out = {}
    for item in values:
        fld, sep, col = item.partition("=")
        if not sep or not fld.strip() or not col.strip():
            raise typer.BadParameter(f"{item!r}: use FIELD=COLUMN, e.g. phone=联系方式", param_hint="--map")
        out[fld.strip().lower()] = col.strip()
    return out


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help=".xlsx, or .csv/.tsv/.txt in UTF-8, GB18030/GBK or UTF-16."),
    group: str | None = typer.Option(None, "--group", "-g", help="Put every row in this group."),
    group_column: str | None = typer.Option(None, "--group-column", help="Column naming each row's group."),
    create_groups: bool = typer.Option(False, "--create-groups", help="Create groups the file names that do not exist."),
    map_: list[str] = typer.Option([], "--map", help="FIELD=COLUMN (fields: name, phone, group, title, notes, email, wecom, dingtalk, feishu); COLUMN is a header, a letter or a number."),
    sheet: str | None = typer.Option(None, "--sheet", help=".xlsx sheet (default: the first)."),
    encoding: str | None = typer.Option(None, "--encoding", help="Text encoding (default: detected)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and count, change nothing."),
    errors_out: Path | None = typer.Option(None, "--errors-out", help="Write rejected and conflicting rows here, with a reason column."),
    json_: bool = JSON_OPTION,
) -> None:
    """Import a contact list: validate every row, then add or update members in one transaction."""
    from broadcast.cli._output import Output
    from broadcast.recipients.importer import ImportOptions, import_members

    opts = ImportOptions(group=group, group_column=group_column, create_groups=create_groups,
                         column_map=_parse_map(map_), sheet=sheet, encoding=encoding, dry_run=dry_run,
                         errors_out=errors_out)
    s = import_members(workspace(), file, opts)
    Output.for_(json_).result(s.to_dict(), lambda: _say_import(file, s))


def _say_import(file: Path, s: Any) -> None:
    from broadcast.cli._output import say, table

    title = f"{'Dry run: nothing was written. ' if s.dry_run else ''}Import of {file.name}: {s.rows} rows"
    table(title, ["added", "updated", "unchanged", "rejected", "duplicates", "conflicts"],
          [[s.added, s.updated, s.unchanged, s.rejected, s.duplicates, s.conflicts]])
    if s.groups_created:
        say(f"Groups {'to create' if s.dry_run else 'created'}: {'、'.join(s.groups_created)}")
    if s.errors:
        shown = s.errors[:MAX_ERRORS_SHOWN]
        table(None, ["Row", "Field", "Value", "Problem"], ([e.row, e.field, e.value, e.reason] for e in shown),
              caption=f"first {len(shown)} of {len(s.errors)}" if len(s.errors) > len(shown) else None)
        if s.errors_file:
            say(f"Rejected rows, with a reason column, are in {s.errors_file}: fix them and import that file.")
        else:
            say("Write them to a file to fix and re-import with --errors-out FILE.")
