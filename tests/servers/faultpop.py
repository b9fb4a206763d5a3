"""A real threaded POP3 server on 127.0.0.1 with scriptable faults.

    with FaultPop([b"Subject: a\\n\\nbody\\n"], faults={"no_pipelining"}) as pop:
        Client("127.0.0.1", pop.port, Security.NONE, timeout=1) ...
        pop.log      # every command line received, in order, across sessions
        pop.deleted  # original message numbers deleted at a QUIT (UPDATE state)

Messages are given as stored bytes (LF line ends); the server sends them as RFC 1939
requires: LF -> CRLF, lines starting with "." stuffed, CRLF added when the last line has
none, then ".". DELE takes effect only at QUIT, as in RFC 1939 §6.

Faults (names in ``faults``):
  garbage_greeting   greeting is not a POP3 reply
  hang_greeting      accept the connection and never speak
  no_capa            CAPA answers -ERR
  no_pipelining      CAPA does not list PIPELINING
  no_uidl            UIDL answers -ERR
  wrong_list_sizes   LIST and STAT report 10 octets more than sent
  offer_stls         CAPA lists STLS, but STLS answers -ERR
  stls_then_plain    CAPA lists STLS, STLS answers +OK, then the server goes on in plain
                     text instead of a TLS handshake
  reject_password    PASS / AUTH / APOP answer "-ERR [AUTH] ..."
  echo_password      PASS / AUTH PLAIN are refused quoting the password back (careless servers do)
  in_use             PASS / AUTH answer "-ERR [IN-USE] ..."
  drop_mid_retr      close the connection halfway through a RETR body
  hang_mid_retr      stop halfway through a RETR body and keep the connection open
  garbage_retr       answer RETR with a line that is not a POP3 reply
  long_reply         answer RETR with a 100 KB status line
  trickle            send every reply one byte at a time, ``trickle_delay`` s apart
  utf8               CAPA lists UTF8 and the UTF8 command enables it (RFC 6856)
  utf8_notice        as utf8, and without UTF8 mode a message with 8-bit bytes is replaced
                     by a notice ("cannot display Unicode"), as RFC 6856 servers may do
  utf8_refused       CAPA lists UTF8 but the UTF8 command answers -ERR
  quit_err           QUIT answers -ERR (and applies nothing)
``tls`` (a server-side SSLContext) makes it a POP3S server (implicit TLS).
``gone`` holds message numbers whose RETR answers -ERR (the server refuses to hand them out).
``broken`` maps a message number to how its RETR reply is misframed:
  no_terminator      the body is sent without its terminating "." line, so the next
                     reply runs on inside it
  early_dot          a lone "." line is sent unstuffed in the middle of the body (the
                     reader sees the end there; the rest arrives where a status belongs)
  garbage_status     the status line is not a POP3 reply (this message only)
  lie_size           LIST and "+OK n octets" announce a tenth of the real size
"""

from __future__ import annotations

import base64
import hashlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterable

NOTICE = (
    b"Subject: Message could not be displayed\n\n"
    b"This message contains Unicode that cannot be displayed without UTF-8 mode.\n"
)


def wire_body(stored: bytes) -> bytes:
    """The bytes a POP3 server sends for a stored message, terminator included."""
    if stored and not stored.endswith(b"\n"):
        stored += b"\n"
    wire = stored.replace(b"\n", b"\r\n")
    if wire.startswith(b"."):
        wire = b"." + wire
    return wire.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def wire_size(stored: bytes) -> int:
    """RFC 1939 octets of a stored message: CRLF line ends, final CRLF, no stuffing."""
    if stored and not stored.endswith(b"\n"):
        stored += b"\n"
    return len(stored) + stored.count(b"\n")


class FaultPop:
    """Context manager: a POP3 server with the given messages, UIDLs and faults."""

    def __init__(
        self,
        messages: list[bytes],
        uidls: list[str] | None = None,
        *,
        faults: Iterable[str] = (),
        gone: Iterable[int] = (),
        broken: dict[int, str] | None = None,
        trickle_delay: float = 1.0,
        username: str = "user",
        password: str = "pass",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.messages = list(messages)
        # Encoded once here, so a session allocates nothing per RETR (tests measure memory).
        self._wire = [wire_body(m) for m in self.messages]
        self.uidls = (
            list(uidls) if uidls is not None else [f"uid-{i}" for i in range(1, len(messages) + 1)]
        )
        self.faults = set(faults)
        self.gone = set(gone)
        self.broken = dict(broken or {})
        self.trickle_delay = trickle_delay
        self.username, self.password = username, password
        self.log: list[str] = []
        self.deleted: list[int] = []
        self.timestamp = "<1234.5678@faultpop.test>"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        fault_pop = self

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                if tls is not None:  # implicit TLS, as on a POP3S port
                    self.request = tls.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                _Session(fault_pop, self).run()

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )

    def __enter__(self) -> FaultPop:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, release hanging sessions, close the listener."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def commands(self) -> list[str]:
        """The verbs received, e.g. ["CAPA", "USER", "PASS", ...]."""
        return [line.split(" ", 1)[0].upper() for line in self.log]

    def _visible(self) -> list[int]:
        with self._lock:
            return [i for i in range(1, len(self.messages) + 1) if i not in self.deleted]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # failed handshakes and dropped clients are what the tests provoke


class _Session:
    def __init__(self, pop: FaultPop, handler: socketserver.StreamRequestHandler) -> None:
        self.pop, self.faults = pop, pop.faults
        self.sock, self.rfile = handler.request, handler.rfile
        # Without this, Nagle holds a RETR body behind its status line for a delayed ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.user: str | None = None
        self.authed = False
        self.view = pop._visible()  # message number -> original number (1-based)
        self.marked: set[int] = set()
        self.utf8 = False

    def send(self, data: bytes | str) -> None:
        data = data.encode() if isinstance(data, str) else bytes(data)
        if "trickle" in self.faults:
            for i in range(len(data)):
                if self.pop._stop.wait(self.pop.trickle_delay):
                    return
                self.sock.sendall(data[i : i + 1])
            return
        self.sock.sendall(data)

    def hang(self) -> None:
        self.pop._stop.wait(30)

    def run(self) -> None:
        if "hang_greeting" in self.faults:
            return self.hang()
        if "garbage_greeting" in self.faults:
            return self.send("Welcome to something else\r\n")
        self.send(f"+OK FaultPop ready {self.pop.timestamp}\r\n")
        while not self.pop._stop.is_set():
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self.pop._lock:
                self.pop.log.append(line)
            verb, _, arg = line.partition(" ")
            handler = getattr(self, f"do_{verb.upper()}", None)
            if handler is None:
                self.send("-ERR unknown command\r\n")
            elif handler(arg) is False:
                return

    def do_CAPA(self, arg: str) -> None:
        if "no_capa" in self.faults:
            return self.send("-ERR no CAPA here\r\n")
        caps = ["TOP", "USER", "SASL PLAIN", "RESP-CODES", "AUTH-RESP-CODE"]
        caps += [] if "no_uidl" in self.faults else ["UIDL"]
        caps += [] if "no_pipelining" in self.faults else ["PIPELINING"]
        caps += ["STLS"] if {"offer_stls", "stls_then_plain"} & self.faults else []
        if {"utf8", "utf8_notice", "utf8_refused"} & self.faults:
            caps += ["UTF8"]
        self.send("+OK\r\n" + "".join(f"{c}\r\n" for c in caps) + ".\r\n")

    def do_STLS(self, arg: str) -> None:
        if "stls_then_plain" in self.faults:
            self.send("+OK Begin TLS negotiation\r\n")
            self.pop._stop.wait(0.2)  # the client is in its handshake by now
            return self.send("+OK still plain text\r\n")
        self.send("-ERR TLS not available\r\n")

    def do_UTF8(self, arg: str) -> None:
        if self.authed or "utf8_refused" in self.faults:
            return self.send("-ERR UTF8 not available\r\n")
        self.utf8 = True
        self.send("+OK UTF8 enabled\r\n")

    def do_USER(self, arg: str) -> None:
        self.user = arg
        self.send("+OK\r\n")

    def _login(self, user: str | None, ok: bool, password: str = "") -> None:
        if "echo_password" in self.faults:
            return self.send(f"-ERR [AUTH] Authentication failed: password {password} is wrong\r\n")
        if "in_use" in self.faults:
            return self.send("-ERR [IN-USE] Mailbox is locked by another session\r\n")
        if "reject_password" in self.faults or not ok or user != self.pop.username:
            return self.send("-ERR [AUTH] Authentication failed.\r\n")
        self.authed = True
        self.send("+OK Logged in.\r\n")

    def do_PASS(self, arg: str) -> None:
        self._login(self.user, arg == self.pop.password, arg)

    def do_APOP(self, arg: str) -> None:
        user, _, digest = arg.partition(" ")
        secret = (self.pop.timestamp + self.pop.password).encode()
        self._login(user, digest == hashlib.md5(secret, usedforsecurity=False).hexdigest())

    def do_AUTH(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() != "PLAIN":
            return self.send("-ERR Unsupported mechanism\r\n")
        if not initial:
            self.send("+ \r\n")
            initial = self.rfile.readline(65536).decode().strip()
        _, user, password = base64.b64decode(initial).decode().split("\0")
        self._login(user, password == self.pop.password, password)

    def _content(self, orig: int) -> bytes:
        message = self.pop.messages[orig - 1]
        if "utf8_notice" in self.faults and not self.utf8 and any(b > 127 for b in message):
            return NOTICE
        return message

    def _size(self, orig: int) -> int:
        # RFC 1939 size: what is sent with CRLF line ends, without stuffing or terminator.
        size = wire_size(self._content(orig))
        if self.pop.broken.get(orig) == "lie_size":
            return size // 10
        return size + (10 if "wrong_list_sizes" in self.faults else 0)

    def _msg(self, arg: str) -> int | None:
        if not self.authed:
            self.send("-ERR not logged in\r\n")
            return None
        number = int(arg) if arg.strip().isdigit() else 0
        if 1 <= number <= len(self.view) and number not in self.marked:
            return self.view[number - 1]
        self.send("-ERR no such message\r\n")
        return None

    def _listing(self) -> list[int]:
        return [n for n in range(1, len(self.view) + 1) if n not in self.marked]

    def do_STAT(self, arg: str) -> None:
        numbers = self._listing()
        total = sum(self._size(self.view[n - 1]) for n in numbers)
        self.send(f"+OK {len(numbers)} {total}\r\n")

    def do_LIST(self, arg: str) -> None:
        lines = "".join(f"{n} {self._size(self.view[n - 1])}\r\n" for n in self._listing())
        self.send(f"+OK\r\n{lines}.\r\n")

    def do_UIDL(self, arg: str) -> None:
        if "no_uidl" in self.faults:
            return self.send("-ERR UIDL not supported\r\n")
        uidls = "".join(f"{n} {self.pop.uidls[self.view[n - 1] - 1]}\r\n" for n in self._listing())
        self.send(f"+OK\r\n{uidls}.\r\n")

    def do_RETR(self, arg: str) -> bool | None:  # noqa: C901 - one branch per injected fault
        if "garbage_retr" in self.faults:
            return self.send("HTTP/1.1 400 Bad Request\r\n")
        if "long_reply" in self.faults:
            return self.send(b"+OK " + b"x" * 100_000)
        orig = self._msg(arg)
        if orig is None:
            return None
        if int(arg) in self.pop.gone:
            return self.send("-ERR [SYS/PERM] Message cannot be read\r\n")
        content = self._content(orig)
        body = self.pop._wire[orig - 1] if content is self.pop.messages[orig - 1] else None
        body = body if body is not None else wire_body(content)
        how = self.pop.broken.get(orig)
        if how == "garbage_status":
            return self.send("This is not a status line\r\n" + body.decode("latin-1"))
        if how == "no_terminator":
            body = body[: -len(b".\r\n")]
        elif how == "early_dot":
            middle = body.find(b"\r\n", len(body) // 3) + 2
            body = body[:middle] + b".\r\n" + body[middle:]
        self.send(f"+OK {self._size(orig)} octets\r\n")
        if "drop_mid_retr" in self.faults or "hang_mid_retr" in self.faults:
            self.send(body[: len(body) // 2])
            if "hang_mid_retr" in self.faults:
                self.hang()
            return False
        view = memoryview(body)
        for start in range(0, len(body), 1 << 20):
            self.send(view[start : start + (1 << 20)])
        return None

    def do_DELE(self, arg: str) -> None:
        if self._msg(arg) is not None:
            self.marked.add(int(arg))
            self.send("+OK marked\r\n")

    def do_NOOP(self, arg: str) -> None:
        self.send("+OK\r\n")

    def do_RSET(self, arg: str) -> None:
        self.marked.clear()
        self.send("+OK\r\n")

    def do_QUIT(self, arg: str) -> bool:
        if "quit_err" in self.faults:
            self.send("-ERR [SYS/TEMP] could not update the mailbox\r\n")
            return False
        if self.authed:  # UPDATE state: only now do the DELEs take effect
            with self.pop._lock:
                self.pop.deleted += [self.view[n - 1] for n in sorted(self.marked)]
        self.send("+OK bye\r\n")
        return False
