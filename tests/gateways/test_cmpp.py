"""The ``cmpp`` gateway against the test ISMG (``cmpp_server``, written apart from the client):
login, window, heartbeats both ways, a dead link, long texts, status reports through the real
dispatcher, flow control, a link cut mid-window, replies, and CMPP 3.0 end to end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from pydantic import SecretStr

from broadcast.dispatch.dispatcher import Dispatcher
from broadcast.gateways import cmpp_codec as codec
from broadcast.gateways.base import Outcome, SendItem, SendResult
from broadcast.gateways.cmpp import CmppGateway, CmppSettings
from broadcast.gateways.session_gateway import THROTTLE_BACKOFF_S
from tests.gateways.cmpp_server import MSG_ID_BASE, CmppServer
from tests.helpers import scripted
from tests.helpers.scripted import approved_message, as_operator, statuses

SP, SECRET, SRC = "901234", "kit-cmpp-secret-1", "1065712345"
setup = scripted.setup  # 20 members of 一支部, 13800000000..13800000019

LONG = "各位党员同志：" + "请于本周五下午三点到区委三楼会议室参加专题学习会，带好笔记本。" * 5  # 3 parts of UCS-2


def gateway(port: int, **kw: Any) -> CmppGateway:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": port, "sp_id": SP, "secret": SecretStr(SECRET),
                                "src_id": SRC, "service_id": "MBJ0019901", **kw}
    return CmppGateway(CmppSettings(**settings))


def items(n: int, text: str = "【区委办】今晚八点停电检修", start: int = 1) -> list[SendItem]:
    return [SendItem(start + i, f"+861390000{i:04d}", text) for i in range(n)]


async def send_each(gw: CmppGateway, batch: list[SendItem]) -> list[SendResult]:
    """Every item in its own send() at once, as the dispatcher's concurrent workers do."""
    return [r for rs in await asyncio.gather(*(gw.send([i]) for i in batch)) for r in rs]


def test_login_and_send_one() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            gw = gateway(srv.port)
            (r,) = await gw.send(items(1))
            await gw.aclose()
            assert r.outcome is Outcome.ACCEPTED and int(r.provider_id or 0) > MSG_ID_BASE
            assert srv.logins == [(SP, 0x20, 0)] and srv.terminates == 1  # a graceful logout
            (s,) = srv.submits
            assert (s.dest, s.text, s.msg_fmt, s.src_id, s.msg_src, s.service_id, s.registered_delivery) == (
                "13900000000", "【区委办】今晚八点停电检修", 8, SRC, SP, "MBJ0019901", 1)

    asyncio.run(main())


@pytest.mark.parametrize(("secret", "sp", "status", "words"), [
    ("wrong-secret-123", SP, 3, "认证错"), (SECRET, "999999", 2, "非法源地址")])
def test_a_refused_login_pauses_with_the_servers_status(secret: str, sp: str, status: int, words: str) -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            gw = gateway(srv.port, secret=SecretStr(secret), sp_id=sp)
            results = await gw.send(items(2))
            assert "status" in (await gw.ping() or "")  # the pool remembers the refusal: no new login
            await gw.aclose()
            for r in results:
                assert r.outcome is Outcome.PERMANENT and r.pause and r.code == "login_refused"
                assert f"status {status}" in (r.detail or "") and words in (r.detail or "")
            assert secret not in repr(results)
            assert len(srv.logins) == 1  # never retried

    asyncio.run(main())


@pytest.mark.parametrize("window", [1, 16])
def test_the_window_is_respected(window: int) -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}, latency_s=0.02, window=window) as srv:
            gw = gateway(srv.port, window=window)
            results = await send_each(gw, items(40))
            await gw.aclose()
            assert all(r.outcome is Outcome.ACCEPTED for r in results)
            assert srv.overflows == 0 and srv.max_unanswered == window  # used to the full, never over

    asyncio.run(main())


def test_heartbeats_both_ways() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}, heartbeat_s=0.1) as srv:
            gw = gateway(srv.port, idle_s=0.15, heartbeat_timeout_s=0.2)
            await gw.send(items(1))
            await asyncio.sleep(0.7)
            assert srv.active_test_answers >= 4  # the server's ACTIVE_TESTs answered
            # the client's own: the server's traffic keeps the link busy, so stop it and watch ours
            srv.heartbeat_s = None
            before = len(srv.client_active_tests)
            async with CmppServer({SP: SECRET}) as quiet:
                gw2 = gateway(quiet.port, idle_s=0.1, heartbeat_timeout_s=0.2)
                await gw2.send(items(1))
                await asyncio.sleep(0.55)
                assert len(quiet.client_active_tests) >= 3 and gw2.pool.sessions[0] is not None
                assert gw2.pool.sessions[0].alive
                await gw2.aclose()
            await gw.aclose()
            assert len(srv.client_active_tests) >= before

    asyncio.run(main())


def test_a_dead_link_is_noticed_within_c_plus_n_times_t() -> None:
    c, t, n = 0.1, 0.1, 3

    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            gw = gateway(srv.port, idle_s=c, heartbeat_timeout_s=t, heartbeat_tries=n)
            await gw.send(items(1))
            session = gw.pool.sessions[0]
            assert session is not None
            srv.silent = True
            silent_since = time.monotonic()
            while session.alive:
                await asyncio.sleep(0.01)
            noticed = time.monotonic() - silent_since
            assert noticed <= c + n * t + 0.15, noticed
            assert len(srv.client_active_tests) >= n
            srv.silent = False
            (r,) = await gw.send(items(1, start=50))  # a new link
            await gw.aclose()
            assert r.outcome is Outcome.ACCEPTED and srv.connections == 2

    asyncio.run(main())


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_a_long_text_goes_as_parts_the_server_joins(version: str) -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            gw = gateway(srv.port, version=version)
            (r,) = await gw.send(items(1, LONG))
            await asyncio.sleep(0.05)
            receipts = await gw.fetch_receipts()
            await gw.aclose()
            assert r.outcome is Outcome.ACCEPTED and r.detail == "3 parts"
            parts = srv.submits
            assert [(p.pk_total, p.pk_number) for p in parts] == [(3, 1), (3, 2), (3, 3)]
            assert len({p.udh[:-2] for p in parts}) == 1 and parts[0].udh.startswith("050003")
            assert srv.texts() == [("13900000000", LONG)]
            assert srv.logins[0][1] == (0x30 if version == "3.0" else 0x20)
            # one receipt for the delivery, when all three parts are delivered; by the first part's id
            assert [(x.delivery_id, x.provider_id, x.status) for x in receipts] == [(1, r.provider_id, "delivered")]
            assert len(srv.deliver_resps) == 3

    asyncio.run(main())


def test_recipient_faults_and_account_faults() -> None:  # CMPP 3.0 names Results 9-13
    async def main() -> None:
        results = {"13900000001": 13, "13900000002": 9, "13900000003": 10, "13900000004": 12, "13900000005": 6}
        async with CmppServer({SP: SECRET}, results=results) as srv:
            gw = gateway(srv.port, version="3.0")
            ok, dest13, dest9, src10, fee12, long6 = await gw.send(items(6))
            (bad,) = await gw.send([SendItem(9, "+86-139-x", "hi")])
            await gw.aclose()
        assert ok.outcome is Outcome.ACCEPTED
        for r in (dest13, dest9):
            assert r.outcome is Outcome.PERMANENT and r.recipient_fault and not r.pause
        assert dest13.code == "cmpp_13" and "Dest_terminal_Id" in (dest13.detail or "")
        assert "本网关不负责服务此计费号码" in (dest9.detail or "")
        for r in (src10, fee12):  # the same Src_Id / Fee_terminal_Id goes in every submit: the account's
            assert r.outcome is Outcome.PERMANENT and r.pause and not r.recipient_fault
        assert long6.outcome is Outcome.PERMANENT and not (long6.pause or long6.recipient_fault)
        assert bad.outcome is Outcome.PERMANENT and bad.recipient_fault and bad.code == "bad_number"

    asyncio.run(main())


def test_cmpp_2_0_results_above_8_are_other_errors() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}, results={"13900000000": 9, "13900000001": 13, "13900000002": 10,
                                                     "13900000003": 7, "13900000004": 150}) as srv:
            gw = gateway(srv.port, version="2.0")
            other9, other13, other10, service7, vendor = await gw.send(items(5))
            await gw.aclose()
        for r in (other9, other13, other10, vendor):  # "9~: 其他错误": refused, counted, no guess at whose fault
            assert r.outcome is Outcome.PERMANENT and not (r.recipient_fault or r.pause)
            assert (r.detail or "").startswith("其他错误")
        assert other13.code == "cmpp_13" and vendor.code == "cmpp_150"
        assert service7.outcome is Outcome.PERMANENT and service7.pause and "业务代码错" in (service7.detail or "")

    asyncio.run(main())


def test_classify_result_by_version() -> None:
    from broadcast.gateways.cmpp import classify_result

    assert classify_result(0, 42, 0x20) == classify_result(0, 42, 0x30) and classify_result(0, 42, 0x30).msg_id == "42"
    for version in (0x20, 0x21, 0x30):
        assert classify_result(8, 0, version).throttled
        assert classify_result(5, 0, version).pause and classify_result(7, 0, version).pause
        assert not any(classify_result(r, 0, version).pause or classify_result(r, 0, version).recipient_fault
                       for r in (1, 2, 3, 4, 6, 14, 99, 150))
    v3 = {r: classify_result(r, 0, 0x30) for r in range(9, 14)}
    assert [r for r, a in v3.items() if a.recipient_fault] == [9, 13]
    assert [r for r, a in v3.items() if a.pause] == [10, 11, 12]
    assert not any(classify_result(r, 0, 0x20).pause or classify_result(r, 0, 0x20).recipient_fault for r in range(9, 14))


def test_flow_control_slows_down_and_loses_nothing() -> None:
    async def main() -> list[float]:
        async with CmppServer({SP: SECRET}, throttle_first=12) as srv:
            gw = gateway(srv.port)
            throttled = await send_each(gw, items(20))
            await gw.aclose()
            assert all(r.outcome is Outcome.ACCEPTED for r in throttled), throttled
            assert sum(1 for s in srv.submits if s.result == 8) == 12 and len(srv.submits) == 32
            assert srv.per_number() == Counter({f"1390000{i:04d}": 1 for i in range(20)})
            refused = {s.dest: s.at for s in srv.submits if s.result == 8}
            return [s.at - refused[s.dest] for s in srv.submits if s.result == 0 and s.dest in refused]

    waits = asyncio.run(main())
    # the link waited out the backoff: each refused number came back at least the first pause after
    # the server refused it (measured where the submits arrive: a loaded machine only lengthens
    # these, and a link that does not wait sends again at once)
    assert len(waits) == 12 and min(waits) >= THROTTLE_BACKOFF_S, waits


def test_a_link_cut_mid_window() -> None:
    """4 answered, 4 written and never answered (the window is full), then the link is cut: the 4
    answered are accepted and never sent again, the 4 unanswered are in doubt, the 4 that waited
    for the window were never written and go on the next link."""

    async def main() -> None:
        async with CmppServer({SP: SECRET}, hold_after=4, cut_after=8, receipts=False) as srv:
            gw = gateway(srv.port, window=4)
            batch = items(12)
            first = {r.delivery_id: r for r in await send_each(gw, batch)}
            accepted = [i for i, r in first.items() if r.outcome is Outcome.ACCEPTED]
            doubt = [i for i, r in first.items() if r.maybe_sent]
            unsent = [i for i, r in first.items() if r.outcome is Outcome.RETRYABLE and not r.maybe_sent]
            assert (len(accepted), len(doubt), len(unsent)) == (4, 4, 4), first
            assert all(first[i].code == "link_lost" for i in doubt)
            again = await send_each(gw, [i for i in batch if i.delivery_id in unsent])
            await gw.aclose()
            assert all(r.outcome is Outcome.ACCEPTED for r in again) and srv.connections == 2
            per_number = Counter(s.dest for s in srv.submits)
            assert sorted(per_number.values()) == [1] * 12  # nobody got two
            assert len(srv.accepted()) == 8

    asyncio.run(main())


def test_replies_are_kept_with_their_pdu() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            gw = gateway(srv.port, version="3.0")
            await gw.send(items(1))
            await srv.send_mo("13900000000", "收到，退订", dest_id=SRC + "01")
            await asyncio.sleep(0.05)
            (mo,) = await gw.held_inbound()
            await gw.aclose()
        assert (mo.gateway, mo.phone, mo.to, mo.text) == ("cmpp", "+8613900000000", SRC + "01", "收到，退订")
        assert mo.raw[4:8] == b"\0\0\0\x05" and len(mo.raw) == 12 + 77 + 10 + 20

    asyncio.run(main())


def test_a_reply_in_parts_is_joined_and_every_part_answered_at_once() -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            gw = gateway(srv.port, version="3.0", join_timeout_s=0.3)
            await gw.pool.ping()  # logged in, nothing sent
            udh = lambda ref, n: bytes([5, 0, 3, ref, 3, n])
            for n, text in ((2, "第二段，"), (1, "第一段，"), (3, "第三段。")):  # out of order
                await srv.send_mo("13900000000", text, udh=udh(0x2A, n))
            for n, text in ((1, "只有一，"), (3, "和三。")):  # part 2 never comes
                await srv.send_mo("13900000001", text, udh=udh(7, n))
            await asyncio.sleep(0.1)
            answered_at_once = len(srv.deliver_resps)
            whole = await gw.held_inbound()
            await asyncio.sleep(0.4)  # the join timeout
            late = await gw.held_inbound()
            await gw.aclose()
        assert answered_at_once == 5  # no part waits for the others to be answered
        (mo,) = whole
        assert (mo.phone, mo.text, mo.incomplete) == ("+8613900000000", "第一段，第二段，第三段。", False)
        pdus, pos = [], 0
        while pos < len(mo.raw):  # the parts' PDUs, joined in part order, each with its own length
            size = int.from_bytes(mo.raw[pos:pos + 4], "big")
            pdus.append(mo.raw[pos:pos + size])
            pos += size
        assert [codec.decode_deliver(p[12:], 0x30).content[5] for p in pdus] == [1, 2, 3]
        (part,) = late
        assert (part.phone, part.text, part.incomplete) == ("+8613900000001", "只有一，[…]和三。", True)

    asyncio.run(main())


@pytest.mark.parametrize("version", ["2.0", "3.0"])
def test_status_reports_through_the_dispatcher(setup, version: str) -> None:
    ws = setup
    mid = approved_message(ws, text="明天下午三点开会，{name}同志请准时参加")

    async def main() -> None:
        async with CmppServer({SP: SECRET}, stats={"13800000007": "UNDELIV"}, latency_s=0.005) as srv:
            gw = gateway(srv.port, version=version)
            try:
                await Dispatcher(as_operator(ws, "cron"), gw, receipt_wait_s=5).run_pass()
            finally:
                await gw.aclose()
            assert len(srv.texts()) == 20 and len(srv.deliver_resps) == 20
            assert {v for _, v, _ in srv.logins} == {0x30 if version == "3.0" else 0x20}

    asyncio.run(main())
    assert statuses(ws, mid) == {"delivered": 19, "failed": 1}


@pytest.mark.parametrize(("msg_fmt", "text", "sent_as"), [(15, "开会通知：周五", 15), (15, "emoji 🎉 无GBK", 8),
                                                          (0, "meeting at 9", 0), (0, "会议", 8)])
def test_msg_fmt_gbk_or_ascii_when_the_text_fits(msg_fmt: int, text: str, sent_as: int) -> None:
    async def main() -> None:
        async with CmppServer({SP: SECRET}) as srv:
            gw = gateway(srv.port, msg_fmt=msg_fmt)
            (r,) = await gw.send(items(1, text))
            await gw.aclose()
            assert r.outcome is Outcome.ACCEPTED
            (s,) = srv.submits
            assert (s.msg_fmt, s.text) == (sent_as, text)

    asyncio.run(main())


def test_gateway_check_online_logs_in_and_out_and_says_what_the_ismg_answered(cli: Any, monkeypatch: Any) -> None:
    from tests.gateways.cmpp_server import in_thread

    with in_thread(accounts={"901234": "online-secret"}) as srv:
        for key, value in {"HOST": "127.0.0.1", "PORT": str(srv.port), "SP_ID": "901234", "SECRET": "online-secret",
                           "SRC_ID": "10690"}.items():
            monkeypatch.setenv(f"BROADCAST_CMPP_{key}", value)
        ok = cli("gateway", "check", "--gateway", "cmpp", "--online", "--json")
        assert ok.exit_code == 0 and ok.json()["online"] == "ok", ok
        monkeypatch.setenv("BROADCAST_CMPP_SECRET", "wrong-secret")
        bad = cli("gateway", "check", "--gateway", "cmpp", "--online")
        assert bad.exit_code == 1 and "login refused" in bad.stderr and "status 3" in bad.stderr, bad
        assert "wrong-secret" not in bad.stdout + bad.stderr
        give_up = time.monotonic() + 5
        while srv.live and time.monotonic() < give_up:
            time.sleep(0.01)
        assert len(srv.logins) == 2 and srv.terminates == 1 and srv.live == 0  # logged out, none left open


def test_a_reply_during_a_send_is_recorded_before_it_is_answered_and_only_once(setup) -> None:
    """A mobile-originated DELIVER on the link while the dispatcher sends: the dispatcher's sink
    stores it in ``inbound`` (raw PDU kept) before the DELIVER_RESP goes back; the same reply sent
    again (an ISMG that did not see our answer) is not stored twice."""
    import sqlalchemy as sa

    ws = setup
    approved_message(ws, text="明天下午三点开会")

    async def main() -> None:
        async with CmppServer({SP: SECRET}, latency_s=0.01) as srv:
            gw = gateway(srv.port)
            dispatcher = Dispatcher(as_operator(ws, "cron"), gw, receipt_wait_s=2)
            try:
                sending = asyncio.create_task(dispatcher.run_pass())
                while not srv.live:
                    await asyncio.sleep(0.005)
                await srv.send_mo("13800000003", "收到，谢谢")
                c = next(iter(srv._conns.values()))
                before = len(srv.deliver_resps)
                c.send(srv._deliver(c, MSG_ID_BASE + 0x10_0000 + srv._msg_ids, SRC, "13800000003", 0, 8,
                                    "收到，谢谢".encode("utf-16-be")))  # the same Msg_Id again
                await sending
                deadline = time.monotonic() + 10  # on a busy machine the pass may end first: the link stays up
                while len(srv.deliver_resps) < before + 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert len(srv.deliver_resps) >= before + 1  # both answered (the first maybe before `before`)
            finally:
                await gw.aclose()
                dispatcher.close()

    asyncio.run(main())
    with ws.engine.connect() as conn:
        phone, text, raw, kind = conn.execute(sa.text("select phone, text, raw, kind from inbound")).one()
        inbox = conn.execute(sa.text("select phone, text from feedback")).all()
    assert (phone, text) == ("+8613800000003", "收到，谢谢") and bytes.fromhex(raw)[4:8] == b"\0\0\0\x05"
    assert kind == "feedback" and inbox == [("+8613800000003", "收到，谢谢")]  # taken in, once
