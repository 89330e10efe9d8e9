"""``broadcast optout``: numbers that must never be sent to, on one channel or on all."""

from __future__ import annotations

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, help="Opt-outs: kept when the member is removed and across every import.", no_args_is_help=True)

CHANNEL_HELP = ("sms (the default), email, wecom, dingtalk, feishu, or all (every channel: the SMS opt-out "
                "then covers the others too).")


@app.command("add")
def add(
    phone: str = typer.Argument(...),
    reason: str = typer.Option("", "--reason", help="Why, e.g. 本人回复退订."),
    channel: str = typer.Option("sms", "--channel", "-c", help=CHANNEL_HELP),
    json_: bool = JSON_OPTION,
) -> None:
    """Opt a number out of every future send on a channel (by default SMS; --channel all: every channel)."""
    from broadcast.cli._output import Output
    from broadcast.recipients.optouts import add_optout, check_channel

    what = check_channel(channel)
    info, created = add_optout(workspace(), phone, reason, what)
    on = "every channel" if what == "all" else what.upper() if what == "sms" else what
    who = info.phone + (f" ({info.name})" if info.name else "")
    text = (f"Opted out {who} of {on}" if created
            else f"{info.phone} was already opted out of {on}" + (" (all channels)" if info.channels == ["all"] else ""))
    Output.for_(json_).message(text, info.to_dict())


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List opt-outs with their channels (sms, all, or email, wecom, dingtalk, feishu): by hand (manual),
    by a reply such as TD (reply), or refused by the carrier as on its blacklist (carrier)."""
    from broadcast.cli._output import Output
    from broadcast.recipients.optouts import list_optouts

    items = list_optouts(workspace())
    Output.for_(json_).table(None, ["Phone", "Name", "Channels", "Source", "Reason", "Since", "By"],
                             ([o.phone, o.name, ",".join(o.channels), o.source, o.reason,
                               f"{o.created_at:%Y-%m-%d %H:%M}", o.created_by] for o in items),
                             data=[o.to_dict() for o in items], empty="No opt-outs.")


@app.command("remove")
def remove(
    phone: str = typer.Argument(...),
    channel: str = typer.Option("sms", "--channel", "-c", help="The channel to receive on again: " + CHANNEL_HELP
                                + " Removing one channel of an opt-out of all keeps the others."),
) -> None:
    """Let a number receive messages again on a channel (by default SMS; --channel all: every opt-out of it goes)."""
    from broadcast.cli._output import say
    from broadcast.recipients.optouts import check_channel, remove_optout

    what = check_channel(channel)
    left = remove_optout(workspace(), phone, what)
    on = "on every channel" if what == "all" else "by SMS" if what == "sms" else f"on {what}"
    rest = sorted(ch for ch in left if ch != "all")
    say(f"{phone} will receive messages again {on}" + (f" (still opted out of {', '.join(rest)})" if rest else ""))
