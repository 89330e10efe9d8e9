"""A real SMTP server for the email channel's tests: aiosmtpd on 127.0.0.1, started by the test, with
STARTTLS or implicit TLS (a throw-away certificate made by the ``openssl`` command), a login, and the
refusals a mail server gives (5xx or 4xx to ``RCPT TO`` for chosen addresses, to ``MAIL FROM``, to
``DATA``), or a hang-up after the message was received. ``received`` holds every message taken,
parsed. ``silent_smtp`` is a server that takes the whole message and then never answers (the
kit's in-doubt check)."""

from __future__ import annotations

import contextlib
import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certificate(directory: Path) -> Path | None:
    """A self-signed certificate for 127.0.0.1 and localhost (``cert.pem`` + ``key.pem``); None
    when the ``openssl`` command is missing."""
    if shutil.which("openssl") is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        return str(self.message.get_content()).replace("\r\n", "\n").rstrip("\n")


@dataclass
class MailServer:
    """The handler: what it refuses and what it took."""

    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> "550 5.1.1 No such user"
    refuse_mail: str | None = None
    refuse_data: str | None = None
    hang_up_after: int | None = None  # after taking this many messages, drop the connection unanswered
    login: tuple[str, str] | None = None
    received: list[Received] = field(default_factory=list)
    logins: int = 0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.refuse_mail:
            return self.refuse_mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_data:
            return self.refuse_data
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        if self.hang_up_after is not None and len(self.received) >= self.hang_up_after:
            server.transport.abort()  # the message is taken; the answer never comes
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.login is not None and \
            (data.login.decode(), data.password.decode()) == self.login
        self.logins += ok
        return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(handler: MailServer, *, security: str = "none", cert: Path | None = None) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1; yields the port. ``security``: none, starttls or tls."""
    port = free_port()
    kwargs: dict[str, Any] = {"authenticator": handler.authenticate, "auth_require_tls": security == "starttls",
                              "auth_required": handler.login is not None and security != "none"}
    if security != "none":
        assert cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, cert.with_name("key.pem"))
        if security == "starttls":
            kwargs |= {"tls_context": context, "require_starttls": True}
        else:
            kwargs |= {"ssl_context": context}
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextlib.contextmanager
def silent_smtp() -> Iterator[str]:
    """``smtp://127.0.0.1:PORT``: answers everything up to the end of DATA, then never again."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def talk(conn: socket.socket) -> None:
        held.append(conn)
        reader = conn.makefile("rb")
        conn.sendall(b"220 silent ESMTP\r\n")
        try:
            while not stop.is_set():
                line = reader.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-silent\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
                elif verb == b"AUTH":
                    conn.sendall(b"235 2.7.0 Authentication successful\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    while reader.readline() not in (b".\r\n", b""):
                        pass
                    stop.wait()  # the message is in; the answer never comes
                    return
                else:
                    conn.sendall(b"250 OK\r\n")
        except OSError:
            return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=talk, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, name="silent-smtp", daemon=True)
    thread.start()
    try:
        yield f"smtp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()
