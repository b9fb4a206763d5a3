"""Servers that refuse a valid access token the way Microsoft 365 does when a switch is off.

    with RefusingSmtp(tls_dir) as smtp:   # SMTP AUTH disabled for the tenant (5.7.139)
        ... STARTTLS on smtp.port, AUTH XOAUTH2 -> 334, <token> -> 535 5.7.139 ...
    with RefusingPop3(tls_dir) as pop:    # POP disabled for the mailbox
        ... implicit TLS on pop.port, AUTH XOAUTH2 -> +, <token> -> -ERR Authentication failure

No real server refuses a good token on demand (the OAuth-only Dovecot/Postfix accept what
they can validate), so these speak just enough SMTP / POP3 over real TLS sockets to give
the replies quoted in shared/oauth2.md §2.1 (simonrob/email-oauth2-proxy#193, nodemailer
#1484; email-oauth2-proxy#160, #244). ``responses`` holds each decoded SASL response they
received, so a test can see that the token really arrived before the refusal.
"""

from __future__ import annotations

import base64
import contextlib
import socketserver
import ssl
import threading
from pathlib import Path

from devserver.certs import make_ca_and_cert

SMTP_TENANT_OFF = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
    "[AM0PR02CA0001.eurprd02.prod.outlook.com 2026-12-03T09:00:00.000Z]"
)
POP_OFF = "-ERR Authentication failure: unknown user name or bad password."


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    """A threaded server on 127.0.0.1 with a throw-away CA (``ca_file``, name localhost)."""

    handler: type[socketserver.StreamRequestHandler]

    def __init__(self, tls_dir: Path) -> None:
        Path(tls_dir).mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = make_ca_and_cert(Path(tls_dir), ("localhost",), ("127.0.0.1",))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.responses: list[bytes] = []
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Lines:
    def __init__(self, sock) -> None:
        self.sock, self.file = sock, sock.makefile("rb")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def read(self) -> str:
        return self.file.readline(20000).decode("utf-8", "replace").rstrip("\r\n")


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):  # the client hung up
            self.converse()


class _SmtpHandler(_Handler):
    def converse(self) -> None:
        owner = self.server.owner
        io = _Lines(self.request)
        io.send("220 localhost Microsoft ESMTP MAIL Service ready")
        tls = False
        while True:
            line = io.read()
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                extensions = ["AUTH LOGIN XOAUTH2"] if tls else ["STARTTLS"]
                for ext in ["localhost Hello", "SIZE 157286400", *extensions[:-1]]:
                    io.send(f"250-{ext}")
                io.send(f"250 {extensions[-1]}")
            elif verb == "STARTTLS" and not tls:
                io.send("220 2.0.0 SMTP server ready")
                sock = owner.context.wrap_socket(self.request, server_side=True)
                io, tls = _Lines(sock), True
            elif verb == "AUTH" and tls:
                io.send("334 ")
                owner.responses.append(base64.b64decode(io.read() or "="))
                io.send(SMTP_TENANT_OFF)
            elif verb == "QUIT" or not line:
                io.send("221 2.0.0 Service closing transmission channel")
                return
            else:
                io.send("503 5.5.1 Bad sequence of commands")


class RefusingSmtp(_Base):
    """Microsoft 365 submission with SMTP AUTH disabled for the tenant."""

    handler = _SmtpHandler


class _Pop3Handler(_Handler):
    def converse(self) -> None:
        owner = self.server.owner
        try:
            io = _Lines(owner.context.wrap_socket(self.request, server_side=True))
        except (ssl.SSLError, OSError):
            return
        io.send("+OK The Microsoft Exchange POP3 service is ready.")
        while True:
            line = io.read()
            verb = line.split(" ", 1)[0].upper()
            if verb == "CAPA":
                for cap in ("+OK", "TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER", "."):
                    io.send(cap)
            elif verb == "AUTH":
                io.send("+ ")
                owner.responses.append(base64.b64decode(io.read() or "="))
                io.send(POP_OFF)
            elif verb == "QUIT" or not line:
                io.send("+OK Microsoft Exchange Server POP3 server signing off.")
                return
            else:
                io.send("-ERR Command is not valid in this state.")


class RefusingPop3(_Base):
    """Microsoft 365 POP3S with POP disabled for the mailbox."""

    handler = _Pop3Handler
