"""Text that came from outside (a member's reply) on its way to a terminal or a spreadsheet.

A reply is data, never code: it is not rendered as a template (nothing here or in the inbox
calls the renderer on it), and before it reaches a terminal :func:`for_terminal` turns every
character that could move the cursor, recolour the screen, reorder what is shown or hide
itself into a visible escape: C0 and C1 controls and DEL (``\\x1b``, ``\\n``), the bidi
controls (U+202A–202E, U+2066–2069, U+200E/U+200F, U+061C: ``\\u202e``), the other invisible
format characters (Unicode category Cf: zero-width spaces and joiners, U+FEFF …), line and
paragraph separators, and lone surrogates. The result is bounded (``limit`` characters, then
a note of how many more there were). Spreadsheet files get
:func:`broadcast.recipients.files.spreadsheet_safe` (re-exported here): a cell starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``. JSON output keeps
the text exactly as received (JSON escapes what it must; a machine reads it).
"""

from __future__ import annotations

import unicodedata

from broadcast.recipients.files import spreadsheet_safe

__all__ = ["DISPLAY_LIMIT", "for_terminal", "one_line", "spreadsheet_safe"]

DISPLAY_LIMIT = 2000
"""At most this many characters of one text on screen (the inbound limit's default)."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def for_terminal(text: str | None, limit: int | None = DISPLAY_LIMIT) -> str:
    """``text`` safe to print: unsafe characters as visible escapes, at most ``limit``
    characters of the original (None: no bound), with a note of what was left off."""
    if not text:
        return ""
    shown = text if limit is None else text[:limit]
    out = "".join(_escape(ch) if _unsafe(ch) else ch for ch in shown)
    if len(shown) < len(text):
        out += f"…(+{len(text) - len(shown)} characters)"
    return out


def one_line(text: str | None, width: int) -> str:
    """``for_terminal`` cut to about ``width`` characters for a table cell (newlines escaped too)."""
    safe = for_terminal(text, limit=width)
    if text and len(text) > width:
        safe = for_terminal(text[: max(1, width - 1)], limit=None) + "…"
    return safe
