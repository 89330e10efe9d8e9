"""Freezing a template into a message body, and rendering that body for one recipient.

A template may use every name in :data:`broadcast.messages.render.STANDARD_FIELDS`. When a
message is created, the message-wide fields (:data:`MESSAGE_FIELDS`: {date} {weekday} {year}
{month} {day} {full_date}, for the local date the message is meant for) are rendered and the
result is *frozen* in ``messages.body``; the per-recipient fields (:data:`RECIPIENT_FIELDS`:
{name} {group} {phone}) stay as placeholders and literal braces stay doubled, so the body is
itself a template that :func:`render_for` completes at send time. Editing a template file later
cannot change a frozen body.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from broadcast.errors import InputError
from broadcast.messages import render as _render
from broadcast.messages.checks import CheckReport, check_text
from broadcast.messages.render import STANDARD_FIELDS, TemplateError, standard_values, validate

__all__ = ["MESSAGE_FIELDS", "RECIPIENT_FIELDS", "SAMPLE", "check_body", "freeze", "render_for"]

RECIPIENT_FIELDS: tuple[str, ...] = ("name", "group", "phone")
MESSAGE_FIELDS: tuple[str, ...] = tuple(f for f in STANDARD_FIELDS if f not in RECIPIENT_FIELDS)
SAMPLE = {"name": "王小明", "group": "城南社区党支部", "phone": "+8613800138000"}
"""Stand-in recipient for checks when no real one is at hand."""


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def as_input_error(exc: TemplateError, source: str) -> InputError:
    return InputError(
        f"{source}: {exc}",
        hint="placeholders are plain names: " + " ".join("{" + f + "}" for f in STANDARD_FIELDS)
        + "; write {{ and }} for literal braces",
    )


def freeze(template: str, when: datetime.date, *, source: str = "template") -> str:
    """Validate ``template`` (unsafe or unknown placeholders raise :class:`InputError`) and
    render its message-wide fields for the local date ``when``."""
    try:
        validate(template, STANDARD_FIELDS)
        tokens = _render._scan(template)
    except TemplateError as exc:
        raise as_input_error(exc, source) from None
    values = standard_values(name="", group="", when=when)
    out: list[str] = []
    for token in tokens:
        if isinstance(token, str):
            out.append(_escape(token))
        elif token.name in RECIPIENT_FIELDS:
            out.append("{" + token.name + "}")
        else:
            out.append(_escape(str(values[token.name])))
    return "".join(out)


def render_for(message_body: str, *, name: str, group: str, phone: str) -> str:
    """The text one recipient receives (without the signature): the frozen body with
    {name} {group} {phone} filled in and doubled braces made single."""
    return _render.render(message_body, {"name": name or "", "group": group or "", "phone": phone or ""})


def check_body(
    body: str,
    *,
    signature: str,
    max_parts: int,
    category: str,
    banned_words: Sequence[str],
    recipient: dict[str, str] | None = None,
) -> CheckReport:
    """Content checks of a frozen body as one recipient (default: :data:`SAMPLE`) would get it."""
    r = recipient or SAMPLE
    text = render_for(body, name=r["name"], group=r["group"], phone=r["phone"])
    return check_text(text, signature=signature, max_parts=max_parts, category=category, banned_words=banned_words)
