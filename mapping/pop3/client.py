"""The POP3 client: the socket, TLS, commands and pipelining over ``protocol.Reader``.

RFC 1939, CAPA (RFC 2449), STLS (RFC 2595), SASL (RFC 5034), UTF8 (RFC 6856). Stdlib only.

Why not ``poplib``: it refuses lines over 2,048 bytes, holds whole messages in memory, has
no default timeout and no limit on a reply's size, can raise ``UnicodeDecodeError`` from
``capa()``, sends CR/LF inside ``user()``/``pass_()`` as new commands and cannot pipeline.

Contract:

- ``Client(host, port, security, ...)``, then ``connect()`` (or ``connect(sock=s)`` with a
  TCP socket the caller opened to an address it vetted, ``mapping.outbound``); TLS as
  ``security`` says, the certificate checked against ``server_hostname or host``.
  ``security="starttls"`` requires STLS in CAPA and +OK to it: never a plain-text
  fallback (fetchmail CVE-2021-39272). When CAPA offers UTF8, it is enabled before login
  (RFC 6856): a server may otherwise hand out a notice instead of an 8-bit message.
- ``login()`` / ``authenticate(Authenticator)``: ``auth.py`` has the pluggable contract.
- ``retrieve(numbers, listed)`` is an iterator of ``Message``; each is an iterator of body
  pieces as they are to be stored. ``batch.proof`` then says which replies are proven
  (``protocol.BatchProof``): only those may be stored or deleted.
- Every read is bounded by ``timeout``, and the session by a minimum progress rule: a
  server that sends less than ``min_progress`` bytes per ``progress_window`` seconds of
  waiting (over at least four reads) is a trickle, and the session ends.
- Every failure is a ``Pop3Error`` with ``.message`` in words. After any error other than
  ``Pop3RefusedError`` the session is unusable: close it. A server that does not speak
  POP3 never gets its bytes quoted back (they could be any service's banner).
- Deletions take effect only at ``quit()`` (RFC 1939 §6); ``close()`` drops the
  connection without QUIT, so nothing is deleted.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from itertools import islice

from .auth import Apop, Authenticator, SaslPlain, UserPass
from .errors import (
    Pop3ConnectError,
    Pop3Error,
    Pop3ProtocolError,
    Pop3RefusedError,
    Pop3StartTlsRefusedError,
    Pop3TimeoutError,
    Pop3TlsError,
)
from .protocol import (
    CHUNK,
    NEED_DATA,
    BatchProof,
    Data,
    End,
    Event,
    Expect,
    Reader,
    RemoteProtocolError,
    Reply,
    Status,
    size_words,
)
from .session import TlsInfo


class Security(StrEnum):
    """How the connection is protected; values are what settings and forms store."""

    SSL = "ssl"
    STARTTLS = "starttls"
    NONE = "none"


class _Progress:
    """The minimum progress rule: bytes per second of waiting, judged over several reads."""

    READS = 4  # one long silence followed by a short reply is not a trickle

    def __init__(self, min_bytes: int, window: float) -> None:
        self.min_bytes, self.window = min_bytes, window
        self.waited = 0.0
        self.bytes = 0
        self.reads = 0

    def check(self, received: int, waited: float) -> str | None:
        """Account for one read; words when the server is trickling, else None."""
        self.waited += waited
        self.bytes += received
        self.reads += 1
        if self.window <= 0 or self.waited < self.window:
            return None
        if self.reads >= self.READS and self.bytes < self.min_bytes * self.waited / self.window:
            return (
                f"sent only {self.bytes} bytes in {self.waited:.0f} s of waiting (less than "
                f"{self.min_bytes} bytes per {self.window:g} s): too slow to be a working "
                "server, so the session was ended"
            )
        if self.reads >= self.READS or self.bytes >= self.min_bytes:
            self.waited, self.bytes, self.reads = 0.0, 0, 0
        return None


class Client:
    """One POP3 session; see the module docstring for the contract."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security | str,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        max_line: int = 8192,
        min_progress: int = 1024,
        progress_window: float = 30.0,
    ) -> None:
        self.host, self.port, self.security = host, port, Security(security)
        self.timeout, self.max_line = timeout, max_line
        self._ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.greeting: str | None = None
        self.apop_timestamp: str | None = None
        self.capabilities: dict[str, list[str]] | None = None
        self.utf8 = False
        self._min_progress, self._window = min_progress, progress_window
        self._progress = _Progress(min_progress, progress_window)
        self._sock: socket.socket | None = None
        self._reader = Reader(max_line)
        self._tls: TlsInfo | None = None
        self._broken = False
        self._doing = "the greeting"  # what the current reply answers, for messages

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
        """What the TLS handshake negotiated, or None on a plain-text session.

        Like ``greeting``, it stays readable after ``close()`` and after a failed
        ``connect()``, so a caller can tell a refused handshake from a later failure.
        """
        return self._tls

    @property
    def broken(self) -> bool:
        """The session cannot be used any more (an earlier error, or closed)."""
        return self._broken

    @property
    def pipelining(self) -> bool:
        """Whether the server announced PIPELINING (RFC 2449 §6.6)."""
        return "PIPELINING" in (self.capabilities or {})

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # --- connection -------------------------------------------------------------------

    def connect(self, sock: socket.socket | None = None) -> str:
        """Connect (or adopt a connected TCP socket), TLS, CAPA, UTF8; return the greeting."""
        try:
            self._attach(sock if sock is not None else self._open_tcp())
            if self.security is Security.SSL:
                self._attach(self._handshake(after_stls=False))
            greeting = self._status(Expect.STATUS)
            if not greeting.ok:
                raise Pop3ProtocolError(f"{self._where} refused service: {greeting.text[:200]}")
            self.greeting = greeting.text
            stamp = re.search(r"<[^<>\s]+@[^<>\s]+>", greeting.text)
            self.apop_timestamp = stamp.group(0) if stamp else None
            if self.security is Security.STARTTLS:
                self._starttls()
            else:
                self.capa()
            self._enable_utf8()
        except BaseException:
            self.close()
            raise
        return self.greeting

    def _open_tcp(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.gaierror as exc:
            raise Pop3ConnectError(
                f"The name {self.host} could not be resolved ({exc.strerror})."
            ) from None
        except TimeoutError:
            raise Pop3TimeoutError(
                f"No answer from {self._where} after {self.timeout:g} s."
            ) from None
        except ConnectionRefusedError:
            raise Pop3ConnectError(f"Connection refused on {self._where}.") from None
        except OSError as exc:
            raise Pop3ConnectError(
                f"Could not reach {self._where} ({exc.strerror or exc})."
            ) from exc

    def _attach(self, sock: socket.socket) -> None:
        sock.settimeout(self.timeout)  # every later read and write is bounded
        with contextlib.suppress(OSError):  # a command must not wait for a delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._broken = sock, False
        self._reader = Reader(self.max_line)
        self._tls = TlsInfo.of(sock) if isinstance(sock, ssl.SSLSocket) else None

    def _handshake(self, *, after_stls: bool) -> ssl.SSLSocket:
        """TLS on the connected socket, checked against ``server_hostname``; errors in words."""
        accepted = "The server accepted STARTTLS, but then " if after_stls else ""
        try:
            return self.ssl_context.wrap_socket(self._sock, server_hostname=self.server_hostname)
        except ssl.SSLCertVerificationError as exc:
            raise Pop3TlsError(
                f"{accepted}the certificate of {self.server_hostname} is not trusted "
                f"({exc.verify_message}). Check the server name, or install the ISP's CA "
                "certificate if it uses its own.",
                ssl_error=exc,
            ) from exc
        except ssl.SSLError as exc:
            hint = "" if after_stls else f" Check that port {self.port} expects SSL/TLS."
            raise Pop3TlsError(
                f"{accepted}the TLS handshake with {self._where} failed "
                f"({exc.reason or exc}).{hint}",
                ssl_error=exc,
            ) from exc
        except TimeoutError:
            raise Pop3TimeoutError(
                f"{accepted}no TLS answer came from {self._where} after {self.timeout:g} s."
            ) from None
        except OSError as exc:
            raise Pop3TlsError(
                f"{accepted}{self._where} closed the connection during the TLS handshake.",
                ssl_error=exc,
                transient=True,
            ) from exc

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
        if self._reader.pending:
            # Bytes before the handshake would be read as if they came over TLS.
            raise Pop3TlsError(
                f"The server accepted STARTTLS, but then {self._where} sent data ahead of the "
                "TLS handshake; refusing it (nothing was sent in plain text)."
            )
        self._attach(self._handshake(after_stls=True))
        self.capa()  # RFC 2595 §4: capabilities learnt before TLS are discarded

    def _enable_utf8(self) -> None:
        # RFC 6856 §2: in the AUTHORIZATION state, before login. Without it a server may
        # replace a message with 8-bit headers by a notice or a downgraded copy.
        if "UTF8" not in (self.capabilities or {}):
            return
        reply = self.request("UTF8")
        if not reply.ok:
            raise Pop3ProtocolError(
                f"{self._where} offers UTF-8 mode (RFC 6856) but refused to enable it "
                f"({reply.text[:200]}). Without it the server may hand out a notice instead "
                "of a message with 8-bit headers, so nothing was fetched; ask the ISP.",
                transient=False,
            )
        self.utf8 = True

    def close(self) -> None:
        """Drop the connection without QUIT: pending deletions are not applied."""
        sock, self._sock, self._broken = self._sock, None, True
        if sock is not None:
            sock.close()

    # --- I/O: the one place socket errors become Pop3Error ---------------------------

    def _send(self, data: bytes) -> None:
        if self._broken or self._sock is None:
            raise Pop3ProtocolError("The POP3 session is closed after an earlier error.")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise self._lost(exc) from exc

    def _fill(self) -> None:
        started = time.monotonic()
        try:
            data = self._sock.recv(CHUNK)
        except OSError as exc:
            raise self._lost(exc) from exc
        if not data:
            self._reader.receive_eof()
            return
        self._reader.receive_data(data)
        trickle = self._progress.check(len(data), time.monotonic() - started)
        if trickle:
            self._broken = True
            raise Pop3TimeoutError(f"{self._where} {trickle} (during {self._doing}).")

    def _lost(self, exc: OSError) -> Pop3Error:
        self._broken = True
        if isinstance(exc, TimeoutError):
            return Pop3TimeoutError(
                f"No answer from {self._where} after {self.timeout:g} s (during {self._doing})."
            )
        return Pop3ProtocolError(
            f"The connection to {self._where} was lost during {self._doing} ({exc})."
        )

    def _event(self) -> Event:
        """The next event of the incoming stream, reading from the socket as needed."""
        while True:
            try:
                event = self._reader.next_event()
            except RemoteProtocolError as exc:
                self._broken = True
                raise self._garbled(exc) from None
            if event is not NEED_DATA:
                return event
            if self._sock is None:
                raise Pop3ProtocolError("The POP3 session is closed after an earlier error.")
            self._fill()

    def _garbled(self, exc: RemoteProtocolError) -> Pop3ProtocolError:
        if self.greeting is None:
            # Maybe not a POP3 server at all: never quote its bytes (issue 11).
            what = (
                "closed the connection without a POP3 greeting"
                if exc.closed
                else "does not speak POP3 (its first line is not a POP3 greeting)"
            )
            return Pop3ProtocolError(
                f"{self._where} {what}: check the server address, port and security."
            )
        return Pop3ProtocolError(f"{self._where} broke the reply to {self._doing}: {exc.what}.")

    def _status(self, kind: Expect) -> Status:
        self._reader.expect(kind)
        event = self._event()
        assert isinstance(event, Status), event  # the reader gives a Status first
        return event

    # --- commands ---------------------------------------------------------------------

    def request(self, line: str) -> Status:
        """Send one command line and read its status line (the primitive authenticators use)."""
        if any(c in line for c in "\r\n\0"):  # the line may hold a password: not quoted
            raise ValueError("A POP3 command may not contain a line break or NUL character.")
        verb = line.split(" ", 1)[0].upper()
        # A SASL response line is base64 of credentials: never named in a message.
        self._doing = verb if verb in _VERBS else "the login exchange"
        self._send(line.encode("utf-8") + b"\r\n")
        return self._status(Expect.STATUS)

    def _multiline(self, verb: str) -> list[bytes] | None:
        self._doing = verb
        self._send(verb.encode() + b"\r\n")
        if not self._status(Expect.LINES).ok:
            return None
        lines = []
        while not isinstance(event := self._event(), End):
            lines.append(event.data)
        return lines

    def capa(self) -> dict[str, list[str]] | None:
        """CAPA (RFC 2449) as {"SASL": ["PLAIN", ...], ...}, or None when unsupported."""
        lines = self._multiline("CAPA")
        if lines is None:
            caps = None
        else:
            words = (line.decode("utf-8", "replace").split() for line in lines)
            caps = {w[0].upper(): w[1:] for w in words if w}
        self.capabilities = caps
        return caps

    def login(self, username: str, password: str, *, method: str = "auto") -> None:
        """Log in with a password; method is "auto", "user", "apop" or "sasl-plain"."""
        self.authenticate(self.password_authenticator(username, password, method=method))

    def password_authenticator(
        self, username: str, password: str, *, method: str = "auto"
    ) -> Authenticator:
        """The password login this server takes best: SASL PLAIN, else APOP, else USER/PASS."""
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
        return methods[method](username, password)

    def authenticate(self, authenticator: Authenticator) -> None:
        """Log in with any Authenticator."""
        authenticator.authenticate(self)

    def stat(self) -> tuple[int, int]:
        """STAT: (message count, total octets)."""
        reply = self.request("STAT")
        if not reply.ok:
            raise Pop3ProtocolError(f"{self._where} answered -ERR to STAT: {reply.text[:200]}")
        return self._pair(reply.text.encode(), "STAT")

    def list(self) -> dict[int, int]:
        """LIST: {message number: octets} (sizes as the server claims them)."""
        lines = self._multiline("LIST")
        if lines is None:
            raise Pop3ProtocolError(f"{self._where} refused LIST.")
        return dict(self._pair(line, "LIST") for line in lines)

    def uidl(self) -> dict[int, str] | None:
        """UIDL: {message number: unique id}, or None when the server has no UIDL."""
        lines = self._multiline("UIDL")
        if lines is None:
            return None
        result = {}
        for number, line in enumerate(lines, 1):
            msgno, _, uid = line.decode("utf-8", "replace").strip().partition(" ")
            if not msgno.isdigit() or not uid.strip():
                raise Pop3ProtocolError(
                    f"{self._where} broke the reply to UIDL: line {number} is not "
                    "“number unique-id”."
                )
            result[int(msgno)] = uid.strip()
        return result

    def _pair(self, text: bytes, verb: str) -> tuple[int, int]:
        words = text.split()
        if len(words) < 2 or not (words[0].isdigit() and words[1].isdigit()):
            raise Pop3ProtocolError(
                f"{self._where} broke the reply to {verb}: expected two numbers, got "
                f"{text[:60].decode('ascii', 'replace')!r}."
            )
        return int(words[0]), int(words[1])

    def noop(self) -> None:
        """NOOP: keeps the session alive."""
        if not self.request("NOOP").ok:
            raise Pop3ProtocolError(f"{self._where} answered -ERR to NOOP.")

    def retrieve(
        self,
        numbers: Iterable[int],
        listed: Mapping[int, int],
        *,
        pipeline: bool = True,
        window: int = 64,
    ) -> Batch:
        """RETR ``numbers`` in order: an iterator of ``Message`` (see ``Batch``)."""
        return Batch(self, [int(n) for n in numbers], listed, pipeline and self.pipelining, window)

    def dele_many(self, numbers: Iterable[int]) -> tuple[list[int], list[Pop3RefusedError]]:
        """Mark messages deleted (applied only at QUIT, RFC 1939 §6); pipelined when allowed.

        Returns (marked, refused): -ERR for one message does not stop the others.
        """
        numbers = [int(n) for n in numbers]
        marked, refused = [], []
        step = len(numbers) if self.pipelining else 1
        for start in range(0, len(numbers), max(step, 1)):
            chunk = numbers[start : start + max(step, 1)]
            self._doing = "DELE"
            self._send(b"".join(b"DELE %d\r\n" % n for n in chunk))
            for number in chunk:
                reply = self._status(Expect.STATUS)
                if reply.ok:
                    marked.append(number)
                else:
                    refused.append(
                        Pop3RefusedError(
                            f"The server refused to delete message {number} ({reply.text[:200]}).",
                            msgno=number,
                        )
                    )
        return marked, refused

    def quit(self, *, deletions: bool = True) -> None:
        """QUIT: the server enters UPDATE state and applies the deletions, then close.

        With ``deletions=False`` (nothing was marked) a -ERR to QUIT changes nothing
        anybody asked for, so it is not an error.
        """
        try:
            reply = self.request("QUIT")
            if not reply.ok and deletions:
                raise Pop3ProtocolError(
                    f"{self._where} could not apply the deletions at QUIT ({reply.text[:200]})."
                )
        finally:
            self.close()


_SENTINEL = -1  # the NOOP that follows a batch's last RETR
_VERBS = frozenset(
    {"USER", "PASS", "APOP", "AUTH", "STAT", "LIST", "UIDL", "RETR"}
    | {"DELE", "NOOP", "RSET", "QUIT", "CAPA", "STLS", "UTF8", "TOP"}
)


class Message:
    """One reply of a batch: iterate it for the body's pieces (nothing if ``refused``)."""

    def __init__(self, batch: Batch, reply: Reply) -> None:
        self._batch, self.reply = batch, reply
        self._done = reply.refused is not None

    @property
    def number(self) -> int:
        return self.reply.number

    @property
    def refused(self) -> str | None:
        """The server's -ERR text when it would not hand this message out."""
        return self.reply.refused

    def __iter__(self) -> Iterator[bytes]:
        while not self._done:
            try:
                event = self._batch.client._event()
            except Pop3Error as exc:
                self._batch._failed(exc)
                raise
            if isinstance(event, Data):
                yield event.data
            else:
                assert isinstance(event, End), event
                self._done = True
                self._batch._ended(self.reply, event.octets)

    def drain(self) -> None:
        """Read the rest of the body without keeping it."""
        for _ in self:
            pass


class Batch:
    """RETR of several messages, pipelined (RFC 2449 §6.6) or one at a time.

    Iterate it for ``Message``s in order and each message for its body. A NOOP follows the
    last RETR, so the batch knows whether its last reply ended where it should. When the
    iteration ends (normally or by a ``Pop3Error``), ``proof`` says which replies are
    proven; ``leftover`` lists the numbers to read again one at a time (``proof.in_step``
    says whether this session still can). A pipelined batch stops sending RETRs at the
    first reply whose size differs from what was announced.
    """

    def __init__(
        self,
        client: Client,
        numbers: list[int],
        listed: Mapping[int, int],
        pipelined: bool,
        window: int,
    ) -> None:
        self.client, self.numbers, self.listed = client, numbers, listed
        self.window = max(1, window) if pipelined else 1
        self.proof = BatchProof(pipelined=pipelined)
        self._last: Message | None = None
        self._stop_sending = False

    @property
    def leftover(self) -> list[int]:
        """Numbers neither proven nor refused: read them again, one at a time."""
        settled = {r.number for r in self.proof.proven}
        settled |= {r.number for r in self.proof.replies if r.refused is not None and r.confirmed}
        return [n for n in self.numbers if n not in settled]

    def _ended(self, reply: Reply, octets: int) -> None:
        self.proof.end(reply, octets)
        if self.proof.pipelined and not reply.exact and self.proof.in_step:
            self._stop_sending = True

    def __iter__(self) -> Iterator[Message]:
        client, proof = self.client, self.proof
        todo = iter(self.numbers)
        in_flight: deque[int] = deque()
        sentinel_sent = False
        try:
            while True:
                if not sentinel_sent and len(in_flight) <= self.window // 2:
                    # Top up in one send per half window; the NOOP goes after the last RETR.
                    room = 0 if self._stop_sending else self.window - len(in_flight)
                    more = list(islice(todo, room))
                    lines = [b"RETR %d\r\n" % n for n in more]
                    in_flight.extend(more)
                    if len(more) < room or self._stop_sending:
                        lines.append(b"NOOP\r\n")
                        in_flight.append(_SENTINEL)
                        sentinel_sent = True
                    if lines:
                        client._send(b"".join(lines))
                if not in_flight:
                    break
                number = in_flight.popleft()
                if number == _SENTINEL:
                    client._doing = "the NOOP after the last RETR"
                    if not client._status(Expect.STATUS).ok:
                        raise Pop3ProtocolError(f"{client._where} answered -ERR to NOOP.")
                    proof.sentinel()
                    continue
                client._doing = f"RETR {number}"
                status = client._status(Expect.BODY)
                message = Message(self, proof.status(number, self.listed.get(number), status))
                self._last = message
                yield message
                message.drain()  # a caller that stopped reading must not desync the stream
        except Pop3Error as exc:
            self._failed(exc)
            raise

    def _failed(self, exc: Pop3Error) -> None:
        self.proof.broken(self._words(exc))
        self.client._broken = True

    def _words(self, exc: Pop3Error) -> str:
        message = self._last
        if message is not None and not message._done and message.reply.refused is None:
            got = self.client._reader.octets
            said = message.reply.announced or message.reply.listed
            of = f" ({size_words(got, said)})" if said is not None else ""
            return f"{exc.message} The reply to {self.client._doing} broke off{of}."
        return exc.message
