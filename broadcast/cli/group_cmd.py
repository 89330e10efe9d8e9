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
    for r in g.robots:
        say(f"Robot ({r['platform']}): {r['url']}" + ("  secret: set" if r["secret"] else ""))
    if g.member_list:
        table(None, ["Name", "Phone", "Title", "Opted out", "Submitter"],
              ([m["name"], m["phone"], m["title"], "yes" if m["opted_out"] else "", "yes" if m["submitter"] else ""]
               for m in g.member_list))


@app.command("robot")
def robot(
    group: str = typer.Argument(..., help="The group whose chat the robot posts to."),
    wecom: str | None = typer.Option(None, "--wecom", metavar="URL", help="Set the WeCom (企业微信/政务微信) robot: …/cgi-bin/webhook/send?key=…; - reads it from stdin."),
    dingtalk: str | None = typer.Option(None, "--dingtalk", metavar="URL", help="Set the DingTalk (钉钉) robot: …/robot/send?access_token=…; - reads it from stdin."),
    feishu: str | None = typer.Option(None, "--feishu", metavar="URL", help="Set the Feishu (飞书) robot: …/open-apis/bot/v2/hook/…; - reads it from stdin."),
    secret: str | None = typer.Option(None, "--secret", help="DingTalk/Feishu signing secret, for a robot made with 加签/签名校验. "
                                      "- reads it from stdin (asks, hidden, at a terminal); without --secret, "
                                      "BROADCAST_ROBOT_SECRET from the environment is used if set."),
    remove: str | None = typer.Option(None, "--remove", metavar="PLATFORM", help="Remove the group's wecom, dingtalk or feishu robot."),
    json_: bool = JSON_OPTION,
) -> None:
    """A group chat's robots (one per platform; setting one replaces it): set one (--wecom / --dingtalk /
    --feishu URL [--secret]), --remove one, or, with no option, list them with their keys masked.
    The key and secret are never printed, logged or audited."""
    import os

    from broadcast.cli._output import Output
    from broadcast.recipients import robots

    given = {p: v for p, v in (("wecom", wecom), ("dingtalk", dingtalk), ("feishu", feishu)) if v is not None}
    if len(given) + (remove is not None) > 1:
        raise typer.BadParameter("give one of --wecom, --dingtalk, --feishu or --remove")
    if secret is not None and not given:
        raise typer.BadParameter("--secret goes with --dingtalk or --feishu URL")
    out = Output.for_(json_)
    ws = workspace()
    if remove is not None:
        platform = robots.check_platform(remove)
        robots.remove_robot(ws, group, platform)
        out.message(f"Removed the {platform} robot of {group}", {"group": group, "platform": platform, "removed": True})
        return
    if given:
        ((platform, url),) = given.items()
        if url.strip() == "-":
            url = _read_stdin(f"{platform} webhook URL")
        if secret is not None and secret.strip() == "-":
            secret = _read_stdin("signing secret")
        elif secret is None and platform != "wecom":
            secret = os.environ.get("BROADCAST_ROBOT_SECRET", "")
        info = robots.set_robot(ws, group, platform, url, secret or "")
        text = (f"{'Replaced' if info.replaced else 'Set'} the {platform} robot of {info.group}: {info.url}"
                + (" (secret: set)" if info.secret else ""))
        out.message(text, info.to_dict())
        return
    items = robots.list_robots(ws, group)
    out.table(None, ["Platform", "Webhook", "Secret", "Set by", "Set at"],
              ([r.platform, r.url, "set" if r.secret else "", r.set_by, f"{r.set_at:%Y-%m-%d %H:%M}"] for r in items),
              data=[r.to_dict() for r in items],
              empty=f"{group} has no robot. Set one with: broadcast group robot {group} --wecom URL")


def _read_stdin(what: str) -> str:
    """One line from stdin; at a terminal, asked for with the typing hidden."""
    import sys

    if sys.stdin.isatty():
        value: str = typer.prompt(what.capitalize(), hide_input=True)
        return value
    from broadcast.errors import InputError

    line = sys.stdin.readline().strip()
    if not line:
        raise InputError(f"no {what} on stdin")
    return line


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


@app.command("budget")
def budget(
    group: str | None = typer.Argument(None, help="The group; without it, every budget and this month's spend."),
    monthly: str | None = typer.Option(None, "--monthly", help="Set the monthly budget in yuan (e.g. 300); it covers the group's sub-groups."),
    remove: bool = typer.Option(False, "--remove", help="Take the group's budget away."),
    month: str | None = typer.Option(None, "--month", help="Show this local month (YYYY-MM) instead of the current one."),
    json_: bool = JSON_OPTION,
) -> None:
    """A group's monthly SMS budget: show it with the month's spend, set it (--monthly), or --remove it.
    A change checks the held messages again: those that fit now are released (audited)."""
    from broadcast.cli._output import Output
    from broadcast.costs import budgets

    out = Output.for_(json_)
    if (monthly is not None or remove) and group is None:
        raise typer.BadParameter("name the group whose budget to change", param_hint="GROUP")
    if monthly is not None and remove:
        raise typer.BadParameter("give --monthly or --remove, not both")
    ws = workspace()
    if monthly is not None or remove:
        assert group is not None
        r = budgets.set_budget(ws, group, monthly) if monthly is not None else budgets.remove_budget(ws, group)
        done = (f"Budget of {r.line.group}: {budgets.yuan(r.line.monthly, approx=False)} a month"
                if r.line.monthly is not None else f"Budget of {r.line.group} removed")
        out.message(done + f"; this month: {r.line.text()}"
                    + (f"; released held message {', '.join(map(str, r.released))}" if r.released else ""), r.to_dict())
        return
    when = _month(month)
    if group is not None:
        line = budgets.show_budget(ws, group, when)
        out.result(line.to_dict(), lambda: out.say(line.text()))
        return
    lines = budgets.list_budgets(ws, when)
    out.table(None, ["Group", "Month", "Budget", "Spent", "Left", "%"],
              ([b.group, b.month, budgets.yuan(b.monthly, approx=False), b.spent.text(),
                "" if b.left is None else budgets.yuan(b.left), "" if b.percent is None else f"{b.percent:.1f}"]
               for b in lines),
              data=[b.to_dict() for b in lines],
              empty="No budgets. Set one with: broadcast group budget GROUP --monthly 300")


def _month(text: str | None) -> Any:
    if text is None:
        return None
    from datetime import date

    try:
        year, mon = text.strip().split("-")
        return date(int(year), int(mon), 1)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a month like 2026-12", param_hint="--month") from None
