"""Reply extension codes (扩展码): each message is sent from "our number + its code", the code is
kept on each delivery, and a reply that comes back to that number is matched to that message,
not to whatever was sent to the phone last."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import ClassVar

import sqlalchemy as sa

from broadcast.gateways.base import Capabilities, Inbound
from broadcast.gateways.reply_codes import extension_code
from broadcast.twoway import intake
from tests.helpers.scripted import Scripted, approved_message, run, statuses
from tests.twoway.test_intake import NOW, rows, take


class Extending(Scripted):
    """The scripted gateway, sending from 10690001, able to append up to 4 digits to it."""

    capabilities: ClassVar[Capabilities] = replace(Scripted.capabilities, reply_extension=4)

    def reply_address(self, extension: str) -> str:
        return "10690001" + extension


def reply(phone: str, text: str, pid: str, to: str = "10690001", extension: str = "") -> Inbound:
    return Inbound("test", pid, phone, to, text, NOW, text.encode(), extension)


def two_messages(ws, monkeypatch, digits: str = "4", gateway: type[Scripted] = Extending) -> tuple[int, int, Scripted]:
    monkeypatch.setenv("BROADCAST_REPLY_EXTENSION_DIGITS", digits)
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T09:30")  # the first half an hour before the second
    first = approved_message(ws, text="第一条：{name}同志，周五上午学习")
    run(ws, gateway())
    monkeypatch.setenv("BROADCAST_NOW", "2026-11-27T10:00")
    second = approved_message(ws, text="第二条：{name}同志，周六上午义务劳动")
    gw = gateway()
    run(ws, gw)
    assert statuses(ws, first) == statuses(ws, second) == {"accepted": 20}
    return first, second, gw


def test_the_code_is_the_message_ids_last_digits() -> None:
    assert [extension_code(7, 4), extension_code(12345, 4), extension_code(12345, 0)] == ["0007", "2345", ""]


def test_each_delivery_carries_and_keeps_its_messages_code(setup, monkeypatch) -> None:
    ws = setup
    first, second, gw = two_messages(ws, monkeypatch)
    assert {i.extension for i in gw.sent} == {extension_code(second, 4)}
    got = rows(ws, "select message_id, reply_address, count(*) from deliveries group by 1, 2 order by 1")
    assert got == [(first, "10690001" + extension_code(first, 4), 20), (second, "10690001" + extension_code(second, 4), 20)]


def test_a_reply_to_the_first_messages_number_answers_the_first_message(setup, monkeypatch) -> None:
    ws = setup
    first, second, _ = two_messages(ws, monkeypatch)
    code = extension_code(first, 4)
    take(ws, reply("13800000001", "周五我请假", "a", to="10690001" + code))  # Kannel %P, CMPP Dest_Id
    take(ws, reply("13800000002", "周五几点？", "b", to="86106900", extension="10690001" + code))  # an extension field
    take(ws, reply("13800000003", "好的", "c"))  # to our bare number (it ends in 0001, message 1's code): the last
    take(ws, reply("13800000004", "收到", "d", to="10690001" + "9999"))  # a code of no message here: the last
    got = rows(ws, "select phone, message_id from feedback order by id")
    assert got == [("+8613800000001", first), ("+8613800000002", first), ("+8613800000003", second),
                   ("+8613800000004", second)]


def test_an_opt_out_to_the_first_messages_number_names_the_first_message(setup, monkeypatch) -> None:
    ws = setup
    first, _, _ = two_messages(ws, monkeypatch)
    take(ws, reply("13800000005", "TD", "a", to="10690001" + extension_code(first, 4)))
    assert rows(ws, "select reason from optouts") == [(f"reply: TD to message {first}",)]


def test_a_code_is_only_matched_within_the_reply_window(setup, monkeypatch) -> None:
    ws = setup
    first, _, _ = two_messages(ws, monkeypatch)
    later = NOW + timedelta(days=8)
    intake.record(ws.engine, [reply("13800000006", "迟到的回复", "a", to="10690001" + extension_code(first, 4))],
                  later, intake.Rules.of(ws.settings))
    assert rows(ws, "select message_id from feedback") == [(None,)]


def test_no_code_when_it_is_off_or_the_gateway_cannot_carry_one(setup, monkeypatch) -> None:
    ws = setup
    _, last_a, gw = two_messages(ws, monkeypatch, digits="0")
    assert {i.extension for i in gw.sent} == {""}
    _, last_b, gw = two_messages(ws, monkeypatch, digits="4", gateway=Scripted)  # declares no room
    assert {i.extension for i in gw.sent} == {""}
    first, last_c, gw = two_messages(ws, monkeypatch, digits="5")  # more digits than the gateway has room for
    assert {i.extension for i in gw.sent} == {""}
    with ws.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from deliveries where reply_address is not null")).scalar() == 0
    # and a reply to what would have been the first one's number is matched to a last message sent
    # (three were sent at 10:00 by the frozen clock), never to the first
    take(ws, reply("13800000007", "收到", "z", to="10690001" + extension_code(first, 4)))
    [(mid,)] = rows(ws, "select message_id from feedback")
    assert mid in {last_a, last_b, last_c}
