"""The npm SMSC simulator itself (tests/smpp_sim/server.js), spoken to PDU by PDU with ``smpp_codec``."""

from __future__ import annotations

import socket

from broadcast.gateways import smpp_codec as c
from broadcast.gateways import smpp_receipts as rc
from tests.helpers.smpp_sim import Sim, smpp_simulator

__all__ = ["smpp_simulator"]


def read_pdu(s: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, "the simulator closed the connection"
            data += chunk
        return data

    head = exactly(16)
    return head + exactly(c.decode_header(head).length - 16)


def bind(sim: Sim, password: str, system_id: str = "broadcast") -> tuple[socket.socket, c.Header]:
    s = socket.create_connection((sim.host, sim.port), timeout=5)
    s.sendall(c.encode_bind(c.BIND_TRANSCEIVER, 1, c.Bind(system_id, password)))
    return s, c.decode_bind_resp(read_pdu(s))[0]


def test_binds(smpp_simulator: Sim) -> None:
    for password, system_id, status in (("secret", "broadcast", "ESME_ROK"), ("wrong", "broadcast", "ESME_RINVPASWD"),
                                        ("secret", "nobody", "ESME_RBINDFAIL")):
        s, head = bind(smpp_simulator, password, system_id)
        s.close()
        assert c.status_name(head.status) == status


def test_submit_receipt_enquire_link_unbind(smpp_simulator: Sim) -> None:
    s, _ = bind(smpp_simulator, "secret")
    with s:
        s.sendall(c.encode_submit_sm(2, c.ShortMessage("8613800000000", short_message="你好".encode("utf-16-be"),
                                                       source_addr="10690", data_coding=8)))
        head, message_id = c.decode_submit_sm_resp(read_pdu(s))
        assert head.seq == 2 and head.status == 0 and message_id
        dh, sm = c.decode_deliver_sm(read_pdu(s))
        report = rc.delivery_report(sm)
        assert sm.esm_class == c.ESM_RECEIPT and sm.source_addr == "8613800000000"
        assert report is not None and (report.message_id, report.stat) == (message_id, "DELIVRD")
        assert sm.tlv(c.TLV_MESSAGE_STATE) == b"\x02"
        s.sendall(c.encode_deliver_sm_resp(dh.seq))
        s.sendall(c.encode_enquire_link(3))
        assert c.decode_empty(read_pdu(s), c.ENQUIRE_LINK_RESP).seq == 3
        s.sendall(c.encode_unbind(4))
        assert c.decode_empty(read_pdu(s), c.UNBIND_RESP).seq == 4
    (logged,) = smpp_simulator.submits()
    assert (logged.destination, logged.data_coding, logged.message_id) == ("8613800000000", 8, message_id)
    assert logged.short_message == "你好".encode("utf-16-be")
