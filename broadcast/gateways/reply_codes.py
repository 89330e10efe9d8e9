"""Reply extension codes (扩展码): the digits a message's sender number carries so that a reply
comes back to "our number + code" and is matched to that message (``BROADCAST_REPLY_EXTENSION_DIGITS``;
``Capabilities.reply_extension``, ``Gateway.reply_address``; docs/replies.md)."""

from __future__ import annotations

__all__ = ["digits_of", "extension_code"]


def extension_code(message_id: int, digits: int) -> str:
    """The reply extension code of a message: its id's last ``digits`` digits, zero-padded
    (``""`` when ``digits`` is 0). Codes repeat every 10**digits messages, so matching a reply by
    its code is only ever tried among the messages sent to that phone within the reply window."""
    if digits <= 0:
        return ""
    return f"{message_id % 10 ** digits:0{digits}d}"


def digits_of(value: str) -> str:
    """The digits of a number or code, nothing else (``+86 106-900`` -> ``86106900``)."""
    return "".join(ch for ch in value if ch.isdigit())
