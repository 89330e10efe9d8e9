"""SMPP 3.4 delivery receipts (Appendix B): what a receipt ``deliver_sm`` or ``data_sm`` says.

A receipt is a deliver_sm (or data_sm) whose ``esm_class`` message type is an SMSC delivery
receipt; its message id and final state are in the TLVs ``receipted_message_id`` and
``message_state`` (3.4) or in the conventional text ``id:… sub:… dlvrd:… submit date:… done
date:… stat:… err:… text:…`` (in ``short_message``, or ``message_payload`` for a data_sm). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broadcast.gateways.smpp_codec import (
    ESM_RECEIPT,
    ESM_TYPE_MASK,
    MESSAGE_STATES,
    TLV_MESSAGE_PAYLOAD,
    TLV_MESSAGE_STATE,
    TLV_NETWORK_ERROR_CODE,
    TLV_RECEIPTED_MESSAGE_ID,
    ShortMessage,
)

__all__ = ["DeliveryReport", "delivery_report", "is_receipt", "parse_receipt_text", "receipt_text"]

_RECEIPT_KEY = re.compile(r"(?i)(?:^|(?<=\s))(id|sub|dlvrd|submit date|done date|stat|err|text):")


def parse_receipt_text(text: str) -> dict[str, str]:
    """``id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…`` → {key: value}
    (keys lower-case; ``text`` is the rest of the line). Keys absent from ``text`` are absent."""
    found = list(_RECEIPT_KEY.finditer(text))
    out: dict[str, str] = {}
    for i, m in enumerate(found):
        key = m.group(1).lower()
        end = len(text) if key == "text" or i + 1 == len(found) else found[i + 1].start()
        out.setdefault(key, text[m.end():end].strip())
        if key == "text":
            break
    return out


def receipt_text(message_id: str, stat: str, err: str = "000", *, sub: str = "001", dlvrd: str = "001",
                 submit_date: str = "", done_date: str = "", text: str = "") -> str:
    """The conventional receipt text (Appendix B); tests and the simulator's counterpart."""
    return (f"id:{message_id} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date} done date:{done_date} "
            f"stat:{stat} err:{err} text:{text}")


@dataclass(frozen=True)
class DeliveryReport:
    """What a receipt says: the SMSC's message id, its final state (``DELIVRD``/``DELIVERED``…), error."""

    message_id: str
    stat: str  # the text's stat (DELIVRD, UNDELIV, EXPIRED, REJECTD, …) or the message_state's name
    err: str
    done_date: str


def is_receipt(sm: ShortMessage) -> bool:
    """deliver_sm whose message type (esm_class bits 2-5) is an SMSC delivery receipt (0x04)
    or an intermediate notification (0x20); anything else is a mobile-originated message."""
    return (sm.esm_class & ESM_TYPE_MASK) in (ESM_RECEIPT, 0x20)


def delivery_report(sm: ShortMessage) -> DeliveryReport | None:
    """The report in a receipt deliver_sm: TLVs (receipted_message_id, message_state) first, the text's
    id:/stat:/err: else. None when it is no receipt or says no message id."""
    if not is_receipt(sm):
        return None
    fields = parse_receipt_text((sm.short_message or sm.tlv(TLV_MESSAGE_PAYLOAD) or b"").decode("latin-1"))
    raw_id = sm.tlv(TLV_RECEIPTED_MESSAGE_ID)
    message_id = raw_id.rstrip(b"\0").decode("latin-1") if raw_id else fields.get("id", "")
    state = sm.tlv(TLV_MESSAGE_STATE)
    stat = fields.get("stat", "")
    if not stat and state and len(state) == 1:
        stat = MESSAGE_STATES.get(state[0], f"state {state[0]}")
    err = fields.get("err", "")
    net = sm.tlv(TLV_NETWORK_ERROR_CODE)
    if not err and net and len(net) == 3:
        err = f"{net[0]}:{int.from_bytes(net[1:], 'big')}"
    if not message_id:
        return None
    return DeliveryReport(message_id, stat.upper(), err, fields.get("done date", ""))
