"""The ``email`` channel against a real SMTP server started by the test (aiosmtpd on 127.0.0.1,
``fake_smtp.py``): STARTTLS, implicit TLS and a login; every message received once with the right
subject, text, recipient and Message-ID; 5xx to RCPT failing that address alone, 4xx retried; the
refusals of MAIL FROM and DATA; a hang-up after the message (in doubt) and the rest of the batch
(not sent)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from broadcast.gateways.base import Outcome, SendItem, SendResult
from broadcast.gateways.smtp import EmailGateway, EmailSettings
from tests.gateways.fake_smtp import MailServer, free_port, make_certificate, smtp_server

# implicit TLS: aiosmtpd cannot tell the connection is encrypted, and says so
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

FROM = "城南新区党工委 <notice@chengnan.example.org>"
LOGIN = ("notice@chengnan.example.org", "kit-smtp-auth-code-5d81")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    made = make_certificate(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("the openssl command is not installed: no certificate for the TLS tests")
    yield made


def gateway(port: int, **over: Any) -> EmailGateway:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none", "from_address": FROM, "timeout_s": 3}
    values.update(over)
    if "password" in values:
        values["password"] = SecretStr(values["password"])
    return EmailGateway(EmailSettings(**values))


def send(gw: EmailGateway, items: list[SendItem]) -> list[SendResult]:
    return asyncio.run(gw.send(items))


def members(n: int, **kw: Any) -> list[SendItem]:
    return [SendItem(100 + i, f"+86138051412{i:02d}", f"{'张王李赵'[i % 4]}同志：今晚七点支部学习，第{i}期。\n地点：党群服务中心",
                     address=f"member{i}@chengnan.example.org", name=f"{'张王李赵'[i % 4]}{i}", **kw) for i in range(n)]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_every_message_arrives_once_over_tls_with_a_login(cert: Path, security: str) -> None:
    server = MailServer(login=LOGIN)
    with smtp_server(server, security=security, cert=cert) as port:
        gw = gateway(port, security=security, ca_file=str(cert), username=LOGIN[0], password=LOGIN[1],
                     subject="{name}，请查收支部通知", batch=4)
        items = members(10)
        results = send(gw, items)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 10
    assert server.logins == 3  # 10 messages in batches of 4: three connections
    assert sorted(m.message["Message-ID"] for m in server.received) == sorted(r.provider_id for r in results)
    by_id = {m.message["Message-ID"]: m for m in server.received}
    assert len(by_id) == 10
    for item, result in zip(items, results):
        got = by_id[result.provider_id]  # type: ignore[index]
        assert result.provider_id == f"<delivery-{item.delivery_id}.broadcast@chengnan.example.org>"
        assert got.rcpt_to == [item.address] and got.mail_from == "notice@chengnan.example.org"
        assert got.message["Subject"] == f"{item.name}，请查收支部通知"
        assert got.message["To"].addresses[0].display_name == item.name
        assert got.message["From"].addresses[0].display_name == "城南新区党工委"
        assert got.text == item.text


def test_subject_from_the_item_or_the_first_line(cert: Path) -> None:
    server = MailServer()
    with smtp_server(server) as port:
        a, b = members(2)
        a = SendItem(a.delivery_id, a.phone, a.text, address=a.address, subject="关于召开组织生活会的通知")
        send(gateway(port), [a, b])
    subjects = [m.message["Subject"] for m in server.received]
    assert subjects == ["关于召开组织生活会的通知", "王同志：今晚七点支部学习，第1期。"]


def test_a_certificate_we_do_not_trust_pauses(cert: Path) -> None:
    server = MailServer()
    with smtp_server(server, security="starttls", cert=cert) as port:
        (r,) = send(gateway(port, security="starttls"), members(1))  # no CA_FILE: the system's CAs only
    assert r.outcome is Outcome.PERMANENT and r.pause and not r.maybe_sent and server.received == []


def test_5xx_to_rcpt_fails_that_address_alone_4xx_is_retried() -> None:
    items = members(4)
    server = MailServer(refuse_rcpt={items[1].address: "550 5.1.1 No such user",
                                     items[2].address: "450 4.2.1 Mailbox busy, try again later"})
    with smtp_server(server) as port:
        results = send(gateway(port), items)
    ok0, dead, busy, ok3 = results
    assert ok0.outcome is ok3.outcome is Outcome.ACCEPTED
    assert dead.outcome is Outcome.PERMANENT and dead.recipient_fault and dead.code == "smtp_550" and not dead.pause
    assert busy.outcome is Outcome.RETRYABLE and busy.recipient_fault and busy.retry_after_s == 300 and not busy.maybe_sent
    assert sorted(m.rcpt_to[0] for m in server.received) == sorted([items[0].address, items[3].address])


@pytest.mark.parametrize(("where", "answer", "outcome", "pause"), [
    ("mail", "550 5.7.1 Sender not allowed", Outcome.PERMANENT, True),
    ("mail", "451 4.3.0 Local error, try later", Outcome.RETRYABLE, False),
    ("data", "451 4.3.0 Try again later", Outcome.RETRYABLE, False),
    ("data", "554 5.6.0 Message content rejected", Outcome.PERMANENT, False),
])
def test_refusals_of_mail_from_and_data(where: str, answer: str, outcome: Outcome, pause: bool) -> None:
    server = MailServer(**{f"refuse_{where}": answer})
    with smtp_server(server) as port:
        results = send(gateway(port), members(2))
    for r in results:
        assert r.outcome is outcome and r.pause is pause and not r.maybe_sent and not r.recipient_fault
        assert r.code == f"smtp_{answer[:3]}" and answer[4:] in (r.detail or "")
    assert server.received == []


def test_a_refused_login_pauses_and_sends_nothing(cert: Path) -> None:
    server = MailServer(login=LOGIN)
    with smtp_server(server, security="starttls", cert=cert) as port:
        results = send(gateway(port, security="starttls", ca_file=str(cert), username=LOGIN[0], password="wrong-code-123"),
                       members(3))
        problem = asyncio.run(gateway(port, security="starttls", ca_file=str(cert), username=LOGIN[0],
                                      password="wrong-code-123").ping())
        fine = asyncio.run(gateway(port, security="starttls", ca_file=str(cert), username=LOGIN[0], password=LOGIN[1]).ping())
    assert {(r.outcome, r.pause, r.code) for r in results} == {(Outcome.PERMANENT, True, "smtp_535")}
    assert problem is not None and "535" in problem and "wrong-code" not in problem and fine is None
    assert server.received == []


def test_a_hang_up_after_the_message_is_in_doubt_the_rest_not_sent() -> None:
    server = MailServer(hang_up_after=2)
    with smtp_server(server) as port:
        results = send(gateway(port), members(5))
    first, second, *rest = results
    assert first.outcome is Outcome.ACCEPTED
    assert second.outcome is Outcome.RETRYABLE and second.maybe_sent  # the server has it; we never heard
    for r in rest:
        assert r.outcome is Outcome.RETRYABLE and not r.maybe_sent and r.code == "connection_lost"
    assert len(server.received) == 2


def test_no_server_is_retryable_and_never_in_doubt() -> None:
    results = send(gateway(free_port()), members(2))
    assert {(r.outcome, r.maybe_sent) for r in results} == {(Outcome.RETRYABLE, False)}


def test_bad_addresses_fail_alone_without_a_connection() -> None:
    server = MailServer()
    with smtp_server(server) as port:
        bad, utf8, ok = send(gateway(port), [SendItem(1, "+8613805141234", "早安"),
                                             SendItem(2, "", "早安", address="张三@例子.中国"), *members(1)])
    assert bad.code == "invalid_address" and bad.recipient_fault and utf8.code == "non_ascii_address"
    assert ok.outcome is Outcome.ACCEPTED and len(server.received) == 1


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="email address"):
        EmailSettings(host="smtp.example.org", from_address="城南新区")
    gw = gateway(25, host="smtp.example.org", username="notice", password="kit-smtp-auth-code-5d81")
    assert gw.check() == ["BROADCAST_EMAIL_SECURITY=none to a remote host: the password travels unencrypted"]
    assert "kit-smtp-auth-code" not in repr(gw.settings)
    assert gateway(25, batch=7, rate=2).capabilities.max_batch == 7
