"""The channels a message goes out on (``message new --channel wecom-app,sms --fallback sms``).

A message names its channels in order of preference; each person gets it **once**, on the first
channel where they have an address and have not opted out of it. ``--fallback sms`` sends it by
SMS to a person whose channel refused or failed for them (never after that channel accepted it,
never twice: it is the same delivery row, moved). No channels: SMS only, as before.

=================  =====================================  ========================  ==============
channel            the address                            gateway(s)                opt-out key
=================  =====================================  ========================  ==============
``sms``            the phone                              BROADCAST_GATEWAY(S)      ``sms``
``email``          ``members.email``                      ``email``                 ``email``
``wecom-app``      ``members.wecom`` (the WeCom userid)   ``wecom-app``             ``wecom``
``group-robots``   the chat of each group with a robot    ``wecom-robot``,          the platform
                   (``group robot``): one post per chat,  ``dingtalk-robot``,
                   standing for the group's members       ``feishu-robot``
=================  =====================================  ========================  ==============

An SMS opt-out (``optouts``) is an opt-out of SMS only, unless the person asked for all channels
(``optouts.all_channels``); ``channel_optouts`` holds the opt-outs of one other channel.
"""

from __future__ import annotations

from broadcast.errors import InputError

CHANNELS = ("sms", "email", "wecom-app", "group-robots")
FALLBACKS = ("sms",)
ADDRESS_COLUMN = {"email": "email", "wecom-app": "wecom"}  # members.<column> of a person channel
OPTOUT_KEY = {"sms": "sms", "email": "email", "wecom-app": "wecom"}
ROBOT_GATEWAY = {"wecom": "wecom-robot", "dingtalk": "dingtalk-robot", "feishu": "feishu-robot"}
PLATFORM_OF_GATEWAY = {g: p for p, g in ROBOT_GATEWAY.items()}
CHANNEL_GATEWAYS = ("email", "wecom-app", *ROBOT_GATEWAY.values())  # a delivery's gateway beyond SMS
ROBOT_ADDRESS_PREFIX = "group:"  # a chat post's address: group:<group id>


def parse_channels(value: str | None) -> tuple[str, ...]:
    """``"wecom-app,sms"`` → ("wecom-app", "sms"); "" or None → () (SMS only). One-line errors."""
    if value is None or not value.strip():
        return ()
    names = [v.strip().lower() for v in value.split(",")]
    out: list[str] = []
    for name in names:
        if name not in CHANNELS:
            raise InputError(f"--channel: unknown channel {name!r}", hint=f"choose from {', '.join(CHANNELS)}")
        if name in out:
            raise InputError(f"--channel: {name!r} is named twice")
        out.append(name)
    return tuple(out)


def parse_fallback(value: str | None, channels: tuple[str, ...]) -> str:
    """``--fallback sms`` → "sms"; None → "". A fallback needs channels other than SMS."""
    if value is None or not value.strip():
        return ""
    name = value.strip().lower()
    if name not in FALLBACKS:
        raise InputError(f"--fallback: {name!r} is not a fallback channel", hint="the fallback is sms")
    if not channels or channels == ("sms",):
        raise InputError("--fallback sms needs --channel with a channel other than sms",
                         hint="e.g. --channel wecom-app --fallback sms")
    return name


def stored(channels: tuple[str, ...]) -> str:
    """The messages.channels column: "" for SMS only."""
    return "" if channels in ((), ("sms",)) else ",".join(channels)


def of_row(value: str | None) -> tuple[str, ...]:
    """The channels of a stored message ("" → ("sms",))."""
    return tuple(v for v in (value or "").split(",") if v) or ("sms",)


def channel_of(gateway: str) -> str:
    """The channel of the gateway that carried a delivery: its own name beyond SMS, else ``sms``."""
    return gateway if gateway in CHANNEL_GATEWAYS else "sms"


def robot_address(group_id: int) -> str:
    return f"{ROBOT_ADDRESS_PREFIX}{group_id}"
