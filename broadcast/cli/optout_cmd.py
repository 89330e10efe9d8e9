"""``broadcast optout``: numbers that must never be sent to."""

from __future__ import annotations

import typer

from broadcast.cli._common import JSON_OPTION, workspace

app = typer.Typer(rich_markup_mode=None, help="Opt-outs: kept when the member is removed and across every import.", no_args_is_help=True)


@app.command("add")
def add(
    phone: str = typer.Argument(...),
    reason: str = typer.Option("", "--reason", help="Why, e.g. 本人回复退订."),
    json_: bool = JSON_OPTION,
) -> None:
    """Opt a number out of every future send."""
    from broadcast.cli._output import Output
    from broadcast.recipients.optouts import add_optout

    info, created = add_optout(workspace(), phone, reason)
    text = (f"Opted out {info.phone}" + (f" ({info.name})" if info.name else "") if created
            else f"{info.phone} was already opted out on {info.created_at:%Y-%m-%d}")
    Output.for_(json_).message(text, info.to_dict())


@app.command("list")
def list_(json_: bool = JSON_OPTION) -> None:
    """List opt-outs: by hand (manual), by a reply such as TD (reply), or refused by the carrier as
    on its blacklist (carrier)."""
    from broadcast.cli._output import Output
    from broadcast.recipients.optouts import list_optouts

    items = list_optouts(workspace())
    Output.for_(json_).table(None, ["Phone", "Name", "Source", "Reason", "Since", "By"],
                             ([o.phone, o.name, o.source, o.reason, f"{o.created_at:%Y-%m-%d %H:%M}", o.created_by]
                              for o in items),
                             data=[o.to_dict() for o in items], empty="No opt-outs.")


@app.command("remove")
def remove(phone: str = typer.Argument(...)) -> None:
    """Let a number receive messages again."""
    from broadcast.cli._output import say
    from broadcast.recipients.optouts import remove_optout

    remove_optout(workspace(), phone)
    say(f"{phone} will receive messages again")
