"""``email``: messages by email through an SMTP server (aiosmtplib), one personal message per recipient.

**Connection**: ``BROADCAST_EMAIL_HOST``:``PORT`` with ``SECURITY`` ``starttls`` (port 587, the
default), ``tls`` (implicit TLS, port 465) or ``none`` (plain, for a relay on this host);
certificates are verified (``CA_FILE`` adds a private CA); ``USERNAME``/``PASSWORD`` log in when
set. One connection carries one batch (``BATCH`` messages, default 20), each its own SMTP
transaction: ``MAIL FROM``, ``RCPT TO``, ``DATA``.

**The message**: ``From: BROADCAST_EMAIL_FROM``, ``To:`` the recipient (with ``SendItem.name`` as
display name), ``Subject:`` ``SendItem.subject``, else ``BROADCAST_EMAIL_SUBJECT`` (``{name}`` is
replaced by the recipient's name), else the text's first line (at most 60 characters); the text as
``text/plain; charset=utf-8``. ``Message-ID: <delivery-ID.broadcast@DOMAIN>`` (the domain of
``FROM``) carries our delivery id: it is the provider id, a bounce quotes it, and a message resent
after an answer that never came has the same id (mail clients show one of the two).

**Answers**, per message:

================================================  ====================================================
``250`` after DATA                                accepted, provider id = the Message-ID
5xx to ``RCPT TO``                                that address fails alone (a recipient fault)
4xx to ``RCPT TO``                                retryable after 5 minutes (greylisting), that address only
4xx to ``MAIL FROM`` or ``DATA``, ``421``         retryable (nothing was taken)
5xx to ``DATA``                                   permanent (the content was refused)
5xx to ``MAIL FROM``, a refused login, no TLS     permanent, pause (the account or the settings)
cannot connect, connect timeout                   retryable (nothing was sent)
timeout or hang-up while the message was sent     retryable, in doubt (the server may have it)
a non-ASCII address                               fails alone (SMTPUTF8 is not used)
================================================  ====================================================
When the connection is lost, the messages of the batch not yet started are retryable, never in doubt.
"""

from __future__ import annotations

import email.policy
import email.utils
import ssl
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Literal

import aiosmtplib
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcast.gateways.base import Addresses, Capabilities, Gateway, Outcome, SendItem, SendResult, is_local_host, timeout_field

GREYLIST_RETRY_S = 300.0
SUBJECT_CHARS = 60

CAPABILITIES = Capabilities(
    name="email",
    max_batch=20,  # per instance: BROADCAST_EMAIL_BATCH (messages per SMTP connection)
    mixed_texts=True,
    addresses=Addresses.EMAIL,
    description="Email over SMTP (STARTTLS or TLS, aiosmtplib): one personal message per recipient, Message-ID = delivery id.",
)


class EmailSettings(BaseSettings):
    """``BROADCAST_EMAIL_*``"""

    model_config = SettingsConfigDict(env_prefix="BROADCAST_EMAIL_", env_file=".env", extra="ignore")

    host: str = Field(min_length=1, description="SMTP server, e.g. smtp.exmail.qq.com")
    port: int = Field(default=587, ge=1, le=65535, description="587 for starttls, 465 for tls, 25 for a local relay.")
    security: Literal["starttls", "tls", "none"] = Field(default="starttls", description="starttls, tls (implicit) or none (local relay only).")
    username: str = Field(default="", description="Login (empty: no login).")
    password: SecretStr = Field(default=SecretStr(""), description="Password or authorisation code (授权码).")
    from_address: str = Field(min_length=3, description="Sender, e.g. 城南新区党工委 <notice@example.org>")
    subject: str = Field(default="", description="Subject; {name} is the recipient's name (empty: the text's first line).")
    ca_file: str = Field(default="", description="A CA certificate file to trust besides the system's (a private mail server).")
    batch: int = Field(default=20, ge=1, le=1000, description="Messages per SMTP connection.")
    rate: float | None = Field(default=None, gt=0, description="Messages per second the server takes (empty: no limit).")
    timeout_s: float = timeout_field()

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        _, addr = email.utils.parseaddr(value)
        if "@" not in addr or not addr.isascii():
            raise ValueError("must be an (ASCII) email address, optionally with a name: 名称 <notice@example.org>")
        return value.strip()


class EmailGateway(Gateway):
    """See the module docstring."""

    capabilities = CAPABILITIES
    settings_class = EmailSettings

    def __init__(self, settings: EmailSettings, client: object = None) -> None:
        super().__init__(settings, None)
        self.settings: EmailSettings = settings
        from dataclasses import replace

        self.capabilities = replace(CAPABILITIES, max_batch=settings.batch, max_per_second=settings.rate)  # type: ignore[misc]
        name, self.sender = email.utils.parseaddr(settings.from_address)
        self.from_header = str(Address(display_name=name, addr_spec=self.sender))
        self.domain = self.sender.rpartition("@")[2]

    # -- the message -----------------------------------------------------------------------------

    def message_id(self, item: SendItem) -> str:
        """``<delivery-ID.broadcast@DOMAIN>``; a test message (delivery id 0) gets a unique one."""
        if item.delivery_id == 0:
            import uuid

            return f"<test-{uuid.uuid4().hex}.broadcast@{self.domain}>"
        return f"<delivery-{item.delivery_id}.broadcast@{self.domain}>"

    def subject(self, item: SendItem) -> str:
        if item.subject:
            return item.subject
        if self.settings.subject:
            return self.settings.subject.replace("{name}", item.name)
        first = item.text.strip().splitlines()[0] if item.text.strip() else ""
        return first[:SUBJECT_CHARS] + ("…" if len(first) > SUBJECT_CHARS else "")

    def render(self, item: SendItem, message_id: str) -> bytes:
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.from_header
        msg["To"] = str(Address(display_name=item.name, addr_spec=item.to))
        msg["Subject"] = self.subject(item)
        msg["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id
        msg.set_content(item.text, charset="utf-8")
        return msg.as_bytes()

    # -- sending ---------------------------------------------------------------------------------

    def _smtp(self) -> aiosmtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file or None) if s.security != "none" else None
        return aiosmtplib.SMTP(hostname=s.host, port=s.port, timeout=s.timeout_s, use_tls=s.security == "tls",
                               start_tls=s.security == "starttls", tls_context=context)

    async def send(self, batch: Sequence[SendItem]) -> list[SendResult]:
        results: list[SendResult] = []
        for start in range(0, len(batch), self.settings.batch):
            results += await self._send_batch(batch[start:start + self.settings.batch])
        return results

    async def _send_batch(self, items: Sequence[SendItem]) -> list[SendResult]:
        if not items:
            return []
        smtp = self._smtp()
        try:
            await self._open(smtp)
        except (aiosmtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            return [_connection_result(i, exc) for i in items]
        results: list[SendResult] = []
        try:
            for item in items:
                result = await self._send_one(smtp, item)
                results.append(result)
                if not smtp.is_connected:
                    break
        finally:
            lost = not smtp.is_connected
            if not lost:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()
        for item in items[len(results):]:  # the connection was lost before these began: not sent
            results.append(SendResult(item.delivery_id, Outcome.RETRYABLE, code="connection_lost",
                                      detail="the SMTP connection was lost before this message began"))
        return results

    async def _open(self, smtp: aiosmtplib.SMTP) -> None:
        s = self.settings
        await smtp.connect()
        if s.username:
            if smtp.last_ehlo_response is None:  # after STARTTLS the extensions are asked again
                await smtp.ehlo()
            if not smtp.supports_extension("auth"):
                raise aiosmtplib.SMTPNotSupported("the server offers no login (AUTH) on this connection")
            await smtp.login(s.username, s.password.get_secret_value())

    async def _send_one(self, smtp: aiosmtplib.SMTP, item: SendItem) -> SendResult:
        if not item.to or "@" not in item.to:
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="invalid_address", recipient_fault=True,
                              detail=f"not an email address: {item.to!r}")
        if not item.to.isascii():
            return SendResult(item.delivery_id, Outcome.PERMANENT, code="non_ascii_address", recipient_fault=True,
                              detail="a non-ASCII address needs SMTPUTF8, which is not used")
        phase, message_id = "MAIL FROM", self.message_id(item)
        try:
            await smtp.mail(self.sender)
            phase = "RCPT TO"
            await smtp.rcpt(item.to)
            phase = "DATA"
            await smtp.data(self.render(item, message_id))
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(smtp)
            return _answer_result(item, phase, exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:  # timeout, hang-up: in doubt once DATA began
            return SendResult(item.delivery_id, Outcome.RETRYABLE, code=type(exc).__name__, maybe_sent=phase == "DATA",
                              detail=f"during {phase}: {exc}"[:300])
        return SendResult(item.delivery_id, Outcome.ACCEPTED, provider_id=message_id, code="250")

    # -- checks ----------------------------------------------------------------------------------

    async def ping(self) -> str | None:
        """Connect, TLS, log in, NOOP, QUIT: nothing is sent."""
        smtp = self._smtp()
        try:
            await self._open(smtp)
            await smtp.noop()
            await smtp.quit()
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            return f"{self.settings.host}:{self.settings.port} answered {exc.code} {exc.message}"[:300]
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            smtp.close()
            return f"cannot talk to {self.settings.host}:{self.settings.port}: {type(exc).__name__}: {exc}"[:300]
        return None

    def check(self) -> list[str]:
        s = self.settings
        problems = []
        if s.security == "none" and not is_local_host(s.host) and s.username:
            problems.append("BROADCAST_EMAIL_SECURITY=none to a remote host: the password travels unencrypted")
        if s.username and not s.password.get_secret_value():
            problems.append("BROADCAST_EMAIL_USERNAME is set but BROADCAST_EMAIL_PASSWORD is empty")
        if s.ca_file:
            from pathlib import Path

            if not Path(s.ca_file).is_file():
                problems.append(f"BROADCAST_EMAIL_CA_FILE {s.ca_file} is not a file")
        return problems


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, so the next message starts a clean transaction."""
    if smtp.is_connected:
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


def _answer_result(item: SendItem, phase: str, code: int, message: str) -> SendResult:
    """A refusal by the server (see the table in the module docstring)."""
    text = f"{code} {message} (to {phase})"[:300]
    tag = f"smtp_{code}"
    if phase == "RCPT TO" and code >= 500:
        return SendResult(item.delivery_id, Outcome.PERMANENT, code=tag, detail=text, recipient_fault=True)
    if phase == "RCPT TO" and 400 <= code < 500:
        return SendResult(item.delivery_id, Outcome.RETRYABLE, code=tag, detail=text, recipient_fault=True,
                          retry_after_s=GREYLIST_RETRY_S)
    if 400 <= code < 500:
        return SendResult(item.delivery_id, Outcome.RETRYABLE, code=tag, detail=text)
    if phase == "MAIL FROM":
        return SendResult(item.delivery_id, Outcome.PERMANENT, code=tag, detail=text, pause=True)
    return SendResult(item.delivery_id, Outcome.PERMANENT, code=tag, detail=text)


def _connection_result(item: SendItem, exc: Exception) -> SendResult:
    """Connecting, TLS or the login failed: nothing was sent. A certificate not trusted or a TLS
    handshake refused (the settings), a refused login or a missing extension pause; the rest retries."""
    code = getattr(exc, "code", None)
    tag = f"smtp_{code}" if isinstance(code, int) and code > 0 else type(exc).__name__
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if _tls_failure(exc) or isinstance(exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPNotSupported):
        return SendResult(item.delivery_id, Outcome.PERMANENT, code=tag, detail=detail, pause=True)
    if isinstance(code, int) and code >= 500:
        return SendResult(item.delivery_id, Outcome.PERMANENT, code=tag, detail=detail, pause=True)
    return SendResult(item.delivery_id, Outcome.RETRYABLE, code=tag, detail=detail)


def _tls_failure(exc: BaseException) -> bool:
    """An ``ssl.SSLError`` (a certificate, a protocol), raised as it is or behind aiosmtplib's own."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
