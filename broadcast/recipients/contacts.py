"""A member's contact points besides the phone: an email address and WeCom, DingTalk and Feishu
user ids (``members.email``, ``.wecom``, ``.dingtalk``, ``.feishu``; ``""`` = none).

``check_contact(field, value)`` never raises: it returns the cleaned value and ``None``, or the
raw text and a one-line reason (the import reports it like a bad phone number).
``clean_contact`` raises ``InputError`` instead (``member add`` / ``member edit``).

What is accepted (a pragmatic check, not RFC 5322; the phone stays the identity):

* **email**: NFKC first (a full-width ``＠`` or ``．`` typed in a Chinese IME becomes ASCII),
  spaces around removed; then exactly one ``@``; a local part of 1-64 characters among
  letters, digits and ``!#$%&'*+/=?^_`{|}~.-`` (no leading, trailing or double dot); a domain
  with at least one dot, labels of letters, digits and ``-`` (not at either end), a last
  label of at least 2 letters; at most 254 characters in all. The domain is lowercased; the
  local part is kept as written.
* **wecom** (the WeCom/政务微信 ``userid``): 1-64 characters among letters, digits and
  ``_-.@``, the first a letter or digit (WeCom's own rule for a userid). Kept as written
  (WeCom compares userids case-insensitively).
* **dingtalk**, **feishu** (a DingTalk ``userid``, a Feishu ``user_id`` / ``open_id``): 1-64
  printable ASCII characters without spaces, quotes, ``,`` ``;`` ``<`` ``>`` or ``\\``.
* An id that looks like Excel's scientific notation (``1.23457E+15``) is rejected: Excel has
  already lost its digits (format the column as Text). A number cell's trailing ``.0`` is dropped.

Two members may share an email address (a branch office's mailbox is real) or an id: that is
accepted with a warning (``shared_contacts``), since it is most often a copy-and-paste slip.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from broadcast.errors import InputError
from broadcast.recipients.groups import members_t

CONTACT_FIELDS = ("email", "wecom", "dingtalk", "feishu")
LABELS = {"email": "email", "wecom": "WeCom userid", "dingtalk": "DingTalk userid", "feishu": "Feishu user id"}
EMAIL_MAX, ID_MAX = 254, 64

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*", re.ASCII)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", re.ASCII)
_WECOM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", re.ASCII)
_NOT_IN_ID = frozenset("\"',;<>\\")
_SPACE = re.compile(r"\s")
_SCIENTIFIC = re.compile(r"\d+(?:\.\d+)?[eE][+-]?\d+")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).replace("\u200b", "").replace("\ufeff", "")
    return text.strip()


def _email(text: str) -> tuple[str, str | None]:
    if _SPACE.search(text):
        return text, "an email address has no spaces"
    if text.count("@") != 1:
        return text, "not an email address (it needs exactly one @)"
    local, domain = text.split("@")
    domain = domain.lower().rstrip(".")
    if not local or len(local) > 64 or not _LOCAL.fullmatch(local):
        return text, "not an email address (the part before @ is empty or has characters mail does not allow)"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) and len(label) <= 63 for label in labels):
        return text, "not an email address (the part after @ must be a domain such as 163.com)"
    if len(labels[-1]) < 2 or not labels[-1].isalpha():
        return text, "not an email address (the domain must end in a name such as .com or .cn)"
    address = f"{local}@{domain}"
    if len(address) > EMAIL_MAX:
        return text, f"email address too long ({len(address)} characters, at most {EMAIL_MAX})"
    return address, None


def check_contact(field: str, value: Any) -> tuple[str, str | None]:
    """``(cleaned, None)``, or ``(text, reason)``; an empty value is ``("", None)``."""
    text = _text(value)
    if not text:
        return "", None
    if field == "email":
        return _email(text)
    label = LABELS[field]
    if _SCIENTIFIC.fullmatch(text):
        return text, f"scientific notation: Excel lost the {label}'s digits; format the column as Text and export again"
    if len(text) > ID_MAX:
        return text, f"{label} too long ({len(text)} characters, at most {ID_MAX})"
    if field == "wecom":
        if not _WECOM.fullmatch(text):
            return text, f"not a {label} (letters, digits and _-.@ only, starting with a letter or digit)"
    elif not all("!" <= c <= "~" and c not in _NOT_IN_ID for c in text):
        return text, f"not a {label} (ASCII letters, digits and punctuation, no spaces)"
    return text, None


def clean_contact(field: str, value: str) -> str:
    """The cleaned value of ``--email`` / ``--wecom`` / … (``""``: none), or ``InputError``."""
    cleaned, reason = check_contact(field, value)
    if reason:
        raise InputError(f"--{field} {value!r}: {reason}")
    return cleaned


def mask_contact(field: str, value: str) -> str:
    """For the audit trail: ``zhangsan@163.com`` -> ``z***@163.com``; ``zhangsan`` -> ``zh***``."""
    if not value:
        return ""
    if field == "email" and "@" in value:
        local, domain = value.split("@", 1)
        return f"{local[:1]}***@{domain}"
    return f"{value[:2]}***"


def shared_contacts(conn: Connection, values: Mapping[str, str], *, phone: str) -> list[str]:
    """Warnings for each of ``values`` (field -> cleaned value) that another member than ``phone``
    also has (compared without regard to case)."""
    warnings = []
    for fld, value in values.items():
        if not value:
            continue
        col = members_t.c[fld]
        others = conn.execute(
            sa.select(members_t.c.name, members_t.c.phone)
            .where(sa.func.lower(col) == value.lower(), members_t.c.phone != phone)
            .order_by(members_t.c.phone).limit(3)
        ).all()
        if others:
            who = "、".join(f"{o.name} {o.phone}" for o in others)
            warnings.append(f"{LABELS[fld]} {value} is also that of {who}")
    return warnings


def shared_in(conn: Connection, fld: str, values: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """Of ``values`` (lowercased), those two or more members have: value -> [(name, phone)…]."""
    wanted = sorted({v.lower() for v in values if v})
    found: dict[str, list[tuple[str, str]]] = {}
    col = members_t.c[fld]
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        for value, name, phone in conn.execute(
            sa.select(sa.func.lower(col), members_t.c.name, members_t.c.phone)
            .where(sa.func.lower(col).in_(chunk)).order_by(members_t.c.phone)
        ):
            found.setdefault(value, []).append((name, phone))
    return {v: people for v, people in found.items() if len(people) > 1}
