"""Streaming POP3 client: RFC 1939, CAPA (RFC 2449), STLS (RFC 2595), SASL PLAIN (RFC 5034).

Why raw sockets and not ``poplib``: poplib refuses lines longer than 2,048 bytes
(``_MAXLINE``), reads each whole message into memory, has no default timeout, sets no
limit on a reply's size, can raise ``UnicodeDecodeError`` from ``capa()``, sends CR/LF
inside ``user()``/``pass_()`` arguments as new commands and cannot pipeline. Here every
read has a timeout, status lines are bounded, bodies stream to a sink in chunks.

Contract:

- ``Client(host, port, security, ...)`` then ``connect()``. To do the resolve/connect
  steps yourself (Detect connects to an address it has vetted), pass the connected TCP
  socket: ``connect(sock=s)``; the client still does TLS as ``security`` says, checking
  the certificate against ``server_hostname or host``. ``connect_address`` does the same
  without handing over a socket.
- ``security=STARTTLS`` requires STLS in CAPA and +OK to STLS, else
  ``Pop3StartTlsRefusedError``: never a fallback to plain text (fetchmail CVE-2021-39272).
- ``tls_info()`` after ``connect()``: the peer certificate, TLS version and cipher the
  handshake negotiated (a ``TlsInfo``), or None on a plain-text session.
- ``login()`` or ``authenticate(Authenticator)``: the pluggable login contract (and how
  XOAUTH2 fits) is in ``pop3_auth.py``; errors live in ``pop3_errors.py``, the TLS
  handshake in ``pop3_tls.py``; all are re-exported here, so callers import everything
  from ``mapping.pop3``.
- ``retr_to``/``retr_many`` write stored bytes to sinks (see ``ReplyReader.read_body``);
  they and ``dele`` live in ``pop3_messages.py``.
- Every failure is a ``Pop3Error`` with ``.message`` (a sentence for an administrator)
  and ``.transient``. After any error other than ``Pop3MessageGoneError`` the session is
  unusable: close it. Nothing here ever stores a password or puts one in a message.
- Deletions (``dele``) take effect only at ``quit()`` (RFC 1939 §6); ``close()`` and
  leaving the ``with`` block drop the connection without QUIT, so nothing is deleted.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

from .pop3_auth import (
    Apop,
    Authenticator,
    SaslAuthenticator,
    SaslPlain,
    UserPass,
    check_value,
)
from .pop3_errors import (
    Pop3AuthError,
    Pop3ConnectError,
    Pop3Error,
    Pop3MessageGoneError,
    Pop3ProtocolError,
    Pop3StartTlsRefusedError,
    Pop3TimeoutError,
    Pop3TlsError,
)
from .pop3_messages import MessageCommands, Sink
from .pop3_stream import LineTooLongError, ReplyReader, StreamClosedError
from .pop3_tls import TlsInfo, handshake

__all__ = [
    "Apop",
    "Authenticator",
    "Client",
    "Pop3AuthError",
    "Pop3ConnectError",
    "Pop3Error",
    "Pop3MessageGoneError",
    "Pop3ProtocolError",
    "Pop3StartTlsRefusedError",
    "Pop3TimeoutError",
    "Pop3TlsError",
    "Reply",
    "SaslAuthenticator",
    "SaslPlain",
    "Security",
    "Sink",
    "TlsInfo",
    "UserPass",
    "check_value",
]


class Security(StrEnum):
    """How the connection is protected; values are what settings and forms store."""

    SSL = "ssl"
    STARTTLS = "starttls"
    NONE = "none"


@dataclass(frozen=True)
class Reply:
    """One status line: +OK (``ok``), -ERR, or a SASL ``continuation`` ("+ ...")."""

    ok: bool
    text: str
    continuation: bool = False

    @property
    def code(self) -> str | None:
        """The RFC 2449 response code, e.g. "AUTH", "IN-USE", "SYS/TEMP"."""
        match = re.match(r"\[([^\]]+)\]", self.text)
        return match.group(1).upper() if match else None


class Client(MessageCommands):
    """One POP3 session; see the module docstring for the contract."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        connect_address: str | None = None,
        server_hostname: str | None = None,
        max_line: int = 8192,
    ) -> None:
        self.host, self.port, self.security = host, port, Security(security)
        self.timeout, self.max_line = timeout, max_line
        self._ssl_context = ssl_context
        self.connect_address = connect_address
        self.server_hostname = server_hostname or host
        self.greeting: str | None = None
        self.apop_timestamp: str | None = None
        self.capabilities: dict[str, list[str]] | None = None
        self._sock: socket.socket | None = None
        self._reader: ReplyReader | None = None
        self._tls: TlsInfo | None = None
        self._broken = False

    def __repr__(self) -> str:
        return f"<pop3.Client {self.host}:{self.port} {self.security.value}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The given context, else a verifying default one (made only when TLS is used)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def tls_info(self) -> TlsInfo | None:
        """What the TLS handshake negotiated (peer certificate, version, cipher), or None.

        None while the session is plain text: security "none", or STARTTLS before STLS
        succeeded. Like ``greeting``, it stays readable after ``close()`` and after a failed
        ``connect()``, so a caller can tell a refused handshake from a later failure.
        """
        return self._tls

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # --- connection -------------------------------------------------------------------

    def connect(self, sock: socket.socket | None = None) -> str:
        """Connect (or adopt a connected TCP socket), do TLS, CAPA; return the greeting."""
        try:
            self._attach(sock if sock is not None else self._open_tcp())
            if self.security is Security.SSL and not isinstance(self._sock, ssl.SSLSocket):
                self._attach(self._wrap_tls())
            greeting = self._read_reply()
            if not greeting.ok:
                raise Pop3ProtocolError(f"{self._where} refused service: {greeting.text[:200]}")
            self.greeting = greeting.text
            stamp = re.search(r"<[^<>\s]+@[^<>\s]+>", greeting.text)
            self.apop_timestamp = stamp.group(0) if stamp else None
            if self.security is Security.STARTTLS:
                self._starttls()
            else:
                self.capa()
        except BaseException:
            self.close()
            raise
        return self.greeting

    def _open_tcp(self) -> socket.socket:
        address = self.connect_address or self.host
        try:
            return socket.create_connection((address, self.port), timeout=self.timeout)
        except socket.gaierror as exc:
            reason = exc.strerror
            raise Pop3ConnectError(
                f"The name {address} could not be resolved ({reason})."
            ) from None
        except TimeoutError:
            raise Pop3TimeoutError(
                f"No answer from {address}:{self.port} after {self.timeout:g} s."
            ) from None
        except ConnectionRefusedError:
            raise Pop3ConnectError(f"Connection refused on {address}:{self.port}.") from None
        except OSError as exc:
            reason = exc.strerror or exc
            raise Pop3ConnectError(f"Could not reach {address}:{self.port} ({reason}).") from exc

    def _attach(self, sock: socket.socket) -> None:
        sock.settimeout(self.timeout)  # every later read and write is bounded
        with contextlib.suppress(OSError):  # a command must not wait for a delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._broken = sock, False
        self._reader = ReplyReader(self._recv)
        self._tls = TlsInfo.of(sock) if isinstance(sock, ssl.SSLSocket) else None

    def _wrap_tls(self) -> ssl.SSLSocket:
        return handshake(
            self._sock,
            self.ssl_context,
            server_hostname=self.server_hostname,
            where=self._where,
            port=self.port,
            security=self.security.value,
            timeout=self.timeout,
        )

    def _starttls(self) -> None:
        caps = self.capa()
        if caps is None or "STLS" not in caps:
            raise Pop3StartTlsRefusedError(
                f"STARTTLS was chosen but {self._where} does not offer it; nothing was sent "
                "in plain text. Choose SSL/TLS or ask the ISP which port offers encryption."
            )
        reply = self.request("STLS")
        if not reply.ok:
            raise Pop3StartTlsRefusedError(
                f"{self._where} refused STARTTLS ({reply.text[:200]}); "
                "nothing was sent in plain text."
            )
        if self._reader.pending():
            # Bytes before the handshake would be read as if they came over TLS.
            raise Pop3TlsError(f"{self._where} sent data ahead of the TLS handshake; refusing it.")
        self._attach(self._wrap_tls())
        self.capa()  # RFC 2595 §4: capabilities learnt before TLS are discarded

    def close(self) -> None:
        """Drop the connection without QUIT: pending deletions are not applied."""
        sock, self._sock, self._broken = self._sock, None, True
        if sock is not None:
            sock.close()

    # --- I/O (the one place socket errors become Pop3Error) ---------------------------

    def _recv(self, size: int) -> bytes:
        try:
            return self._sock.recv(size)
        except OSError as exc:
            raise self._lost(exc) from exc

    def _send(self, data: bytes) -> None:
        if self._broken or self._sock is None:
            raise Pop3ProtocolError("The POP3 session is closed after an earlier error.")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise self._lost(exc) from exc

    def _lost(self, exc: OSError) -> Pop3Error:
        self._broken = True
        if isinstance(exc, TimeoutError):
            return Pop3TimeoutError(f"No answer from {self._where} after {self.timeout:g} s.")
        return Pop3ProtocolError(f"The connection to {self._where} was lost ({exc}).")

    def _read_reply(self) -> Reply:
        try:
            raw = self._reader.read_line(self.max_line)
        except StreamClosedError:
            self._broken = True
            raise Pop3ProtocolError(f"{self._where} closed the connection unexpectedly.") from None
        except LineTooLongError:
            self._broken = True
            raise Pop3ProtocolError(
                f"{self._where} sent garbage (a reply line over {self.max_line} bytes)."
            ) from None
        if raw.startswith(b"+OK"):
            return Reply(True, raw[3:].decode("utf-8", "replace").strip())
        if raw.startswith(b"-ERR"):
            return Reply(False, raw[4:].decode("utf-8", "replace").strip())
        if raw == b"+" or raw.startswith(b"+ "):
            return Reply(False, raw[2:].decode("ascii", "replace"), continuation=True)
        self._broken = True
        raise Pop3ProtocolError(
            f"{self._where} sent garbage instead of a POP3 reply: {raw[:80]!r}."
        )

    def _read_lines(self) -> list[str]:
        try:
            lines = self._reader.read_lines(self.max_line)
        except (StreamClosedError, LineTooLongError):
            self._broken = True
            raise Pop3ProtocolError(f"{self._where} sent a broken multi-line reply.") from None
        return [line.decode("utf-8", "replace") for line in lines]

    def request(self, line: str) -> Reply:
        """Send one command line and read its status line (the primitive authenticators use)."""
        if any(c in line for c in "\r\n\0"):  # the line may hold a password: not quoted
            raise ValueError("A POP3 command may not contain a line break or NUL character.")
        self._send(line.encode("utf-8") + b"\r\n")
        return self._read_reply()

    def _command(self, line: str) -> str:
        reply = self.request(line)
        if not reply.ok:
            verb = line.split(" ", 1)[0]
            raise Pop3ProtocolError(f"{self._where} answered -ERR to {verb}: {reply.text[:200]}")
        return reply.text

    def _multiline(self, line: str) -> list[str] | None:
        return self._read_lines() if self.request(line).ok else None

    # --- commands --------------------------------------------------------------------

    def capa(self) -> dict[str, list[str]] | None:
        """CAPA (RFC 2449) as {"SASL": ["PLAIN", ...], ...}, or None when unsupported."""
        lines = self._multiline("CAPA")
        caps = None if lines is None else {w[0].upper(): w[1:] for w in map(str.split, lines) if w}
        self.capabilities = caps
        return caps

    def login(self, username: str, password: str, *, method: str = "auto") -> None:
        """Log in; method is "auto", "user", "apop" or "sasl-plain"."""
        caps = self.capabilities or {}
        if method == "auto":
            if "PLAIN" in (m.upper() for m in caps.get("SASL", [])):
                method = "sasl-plain"
            elif caps and "USER" not in caps and self.apop_timestamp:
                method = "apop"
            else:
                method = "user"
        methods = {"user": UserPass, "apop": Apop, "sasl-plain": SaslPlain}
        if method not in methods:
            raise ValueError(f"Unknown POP3 login method {method!r}.")
        self.authenticate(methods[method](username, password))

    def authenticate(self, authenticator: Authenticator) -> None:
        """Log in with any Authenticator."""
        authenticator.authenticate(self)

    def stat(self) -> tuple[int, int]:
        """STAT: (message count, total octets)."""
        return self._parse_pair(self._command("STAT"))

    def list(self) -> dict[int, int]:
        """LIST: {message number: octets} (sizes as the server claims them)."""
        lines = self._multiline("LIST")
        if lines is None:
            raise Pop3ProtocolError(f"{self._where} refused LIST.")
        return dict(map(self._parse_pair, lines))

    def uidl(self) -> dict[int, str] | None:
        """UIDL: {message number: unique id}, or None when the server has no UIDL."""
        lines = self._multiline("UIDL")
        if lines is None:
            return None
        result = {}
        for line in lines:
            number, _, uid = line.strip().partition(" ")
            if not number.isdigit() or not uid.strip():
                raise Pop3ProtocolError(f"{self._where} sent a malformed UIDL line: {line[:80]!r}.")
            result[int(number)] = uid.strip()
        return result

    def _parse_pair(self, text: str) -> tuple[int, int]:
        words = text.split()
        if len(words) < 2 or not (words[0].isdigit() and words[1].isdigit()):
            raise Pop3ProtocolError(f"{self._where} sent a malformed reply: {text[:80]!r}.")
        return int(words[0]), int(words[1])

    def noop(self) -> None:
        """NOOP: keeps the session alive."""
        self._command("NOOP")

    def rset(self) -> None:
        """RSET: unmark every message marked deleted in this session."""
        self._command("RSET")

    def quit(self) -> None:
        """QUIT: the server enters UPDATE state and applies the deletions, then close."""
        try:
            reply = self.request("QUIT")
            if not reply.ok:
                raise Pop3ProtocolError(
                    f"{self._where} could not apply the deletions at QUIT ({reply.text[:200]})."
                )
        finally:
            self.close()
