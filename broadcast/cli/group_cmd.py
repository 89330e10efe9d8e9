"""``broadcast group``: recipient groups."""

from __future__ import annotations

from typing import Any

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, help="Recipient groups (they nest: a parent group reaches its sub-groups).", no_args_is_help=True)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Group name, e.g. 城南社区党支部."),
    parent: str | None = typer.Option(None, "--parent", help="Put the group under this one."),
    json_: bool = JSON_OPTION,
) -> None:
    """Add a group."""
    from broadcast.cli._output import Output
    from broadcast.recipients.groups import add_group

    info = add_group(workspace(), name, parent)
    Output.for_(json_).message(f"Added group {info.name}" + (f" under {info.parent}" if info.parent else ""), info.to_dict())


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List groups with their parent and direct member count."""
    from broadcast.cli._output import Output
    from broadcast.recipients.groups import list_groups

    groups = list_groups(workspace())
    Output.for_(json_).table(None, ["Group", "Parent", "Members", "Sub-groups"],
                             ([g.name, g.parent or "", g.members, len(g.subgroups) or ""] for g in groups),
                             data=[g.to_dict() for g in groups], caption=f"{len(groups)} groups",
                             empty="No groups yet. Add one with: broadcast group add NAME")


@app.command("show")
def show(name: str = typer.Argument(..., help="Group name."), json_: bool = JSON_OPTION) -> None:
    """Show a group: parent, sub-groups, members, and how many people a send to it reaches."""
    from broadcast.cli._output import Output
    from broadcast.recipients.groups import show_group

    g = show_group(workspace(), name)
    Output.for_(json_).result(g.to_dict(), lambda: _say_group(g))


def _say_group(g: Any) -> None:
    from broadcast.cli._output import say, table

    say(f"[bold]{g.name}[/]" + (f"  (under {g.parent})" if g.parent else ""))
    if g.subgroups:
        say(f"Sub-groups ({len(g.subgroups)}): " + "、".join(g.subgroups))
    say(f"Direct members: {g.members}; a send reaches {g.reach} people (sub-groups included, opt-outs excluded)")
    if g.member_list:
        table(None, ["Name", "Phone", "Title", "Opted out", "Submitter"],
              ([m["name"], m["phone"], m["title"], "yes" if m["opted_out"] else "", "yes" if m["submitter"] else ""]
               for m in g.member_list))


@app.command("rename")
def rename(old: str = typer.Argument(...), new: str = typer.Argument(...)) -> None:
    """Rename a group."""
    from broadcast.cli._output import say
    from broadcast.recipients.groups import rename_group

    rename_group(workspace(), old, new)
    say(f"Renamed {old} to {new}")


@app.command("remove")
def remove(
    name: str = typer.Argument(...),
    force: bool = typer.Option(False, "--force", help="Remove even if it has members (they stay in their other groups) or sub-groups (they move up)."),
) -> None:
    """Remove a group (refused while it has members or sub-groups, unless --force)."""
    from broadcast.cli._output import say
    from broadcast.recipients.groups import remove_group

    r = remove_group(workspace(), name, force=force)
    extra = []
    if r.memberships_removed:
        extra.append(f"{r.memberships_removed} memberships removed")
    if r.subgroups_moved:
        extra.append(f"sub-groups moved up: {'、'.join(r.subgroups_moved)}")
    say(f"Removed group {r.name}" + (f" ({'; '.join(extra)})" if extra else ""))


@app.command("submitter")
def submitter(
    group: str = typer.Argument(..., help="The branch."),
    phone: str = typer.Argument(..., help="A member of it who hands in lines (texts 投稿 ...)."),
    remove: bool = typer.Option(False, "--remove", help="No longer a submitter."),
    json_: bool = JSON_OPTION,
) -> None:
    """Mark a member as the branch's submitter of lines for the daily series (or --remove)."""
    from broadcast.cli._output import Output
    from broadcast.recipients.submitters import set_submitter

    c = set_submitter(workspace(), group, phone, on=not remove)
    what = "a submitter" if c.submitter else "not a submitter"
    text = f"{c.name} {c.phone} is {'now' if c.changed else 'already'} {what} for {c.group}"
    Output.for_(json_).message(text, c.to_dict())
