"""A fast real POP3 server for an empty mailbox (asyncio), for scale benchmarks and tests.

    with EmptyPop() as pop:                       # its own process(es), 127.0.0.1, free ports
        Client("127.0.0.1", pop.port, Security.NONE, timeout=2) ...
        pop.pids                                  # for CPU accounting from /proc

    python -m tests.servers.emptypop [--processes 2] [--tls-cert C --tls-key K] [--password P]

Every mailbox is empty: any user logs in (or only with ``--password``), STAT is ``0 0``,
LIST and UIDL are empty lists, QUIT says goodbye. It answers CAPA (TOP, USER, UIDL,
PIPELINING, RESP-CODES; no SASL, so clients log in with USER/PASS), NOOP and RSET, and
``-ERR`` to everything else, as RFC 1939 / 2449 say. With a certificate it also listens
for implicit TLS (POP3S). A server process pre-forks ``--processes`` children that accept
on the same listening sockets, so the server need not be the bottleneck of a floor
measured on a multi-core box. It prints one JSON line with its ports, then serves until
SIGTERM; at exit each child prints how many sessions it served.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

GREETING = b"+OK AAMail empty-mailbox POP3 server ready\r\n"
CAPA = b"+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\n.\r\n"
MAX_LINE = 512  # RFC 2449 §4: a command line is at most 255 octets; be lenient, not unbounded


class _Session(asyncio.Protocol):
    """One POP3 session on an empty mailbox (AUTHORIZATION, then TRANSACTION state)."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buffer = b""
        self.user: bytes | None = None
        self.authorized = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(GREETING)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies = []
        while (end := self.buffer.find(b"\n")) >= 0:
            line, self.buffer = self.buffer[:end].rstrip(b"\r"), self.buffer[end + 1 :]
            reply = self._answer(line)
            if reply is None:  # QUIT
                replies.append(b"+OK Bye\r\n")
                self.transport.write(b"".join(replies))
                self.server.sessions += 1
                self.transport.close()
                return
            replies.append(reply)
        if len(self.buffer) > MAX_LINE:
            replies.append(b"-ERR Line too long\r\n")
            self.transport.write(b"".join(replies))
            self.transport.close()
            return
        if replies:  # pipelined commands are answered in one write
            self.transport.write(b"".join(replies))

    def _answer(self, line: bytes) -> bytes | None:
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb == b"QUIT":
            return None
        if verb == b"CAPA":
            return CAPA
        if verb in (b"NOOP", b"RSET"):
            return b"+OK\r\n"
        if not self.authorized:
            return self._authorization(verb, arg)
        if verb == b"STAT":
            return b"+OK 0 0\r\n"
        if verb == b"LIST":
            return b"+OK 0 messages\r\n.\r\n" if not arg else b"-ERR No such message\r\n"
        if verb == b"UIDL":
            return b"+OK\r\n.\r\n" if not arg else b"-ERR No such message\r\n"
        if verb in (b"RETR", b"DELE", b"TOP"):
            return b"-ERR No such message\r\n"
        return b"-ERR Unknown command\r\n"

    def _authorization(self, verb: bytes, arg: bytes) -> bytes:
        if verb == b"USER" and arg:
            self.user = arg
            return b"+OK\r\n"
        if verb == b"PASS" and self.user is not None:
            password = self.server.password
            if password is not None and arg != password:
                self.user = None
                return b"-ERR [AUTH] Authentication failed.\r\n"
            self.authorized = True
            return b"+OK Logged in.\r\n"
        return b"-ERR Unknown command or not logged in\r\n"


class _Server:
    def __init__(self, password: bytes | None) -> None:
        self.password = password
        self.sessions = 0


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)  # benchmarks open hundreds of sessions at once
    sock.setblocking(False)
    return sock


def _serve(socks: list[tuple[socket.socket, ssl.SSLContext | None]], password) -> None:
    """One child: an event loop accepting on the inherited sockets until SIGTERM."""
    server = _Server(password)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
        for sock, tls in socks:
            await loop.create_server(lambda: _Session(server), sock=sock, ssl=tls, backlog=4096)
        await stop

    asyncio.run(main())
    sys.stdout.write(json.dumps({"pid": os.getpid(), "sessions": server.sessions}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="POP3 server for an empty mailbox.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-port", type=int, default=0)
    parser.add_argument("--tls-cert", help="PEM certificate (chain) for POP3S")
    parser.add_argument("--tls-key", help="PEM private key for POP3S")
    parser.add_argument("--password", help="the one accepted password (default: any)")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)

    plain = _listen(args.port)
    socks: list[tuple[socket.socket, ssl.SSLContext | None]] = [(plain, None)]
    tls_port = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        secure = _listen(args.tls_port)
        socks.append((secure, context))
        tls_port = secure.getsockname()[1]
    password = args.password.encode() if args.password is not None else None
    children = []
    for _ in range(max(1, args.processes)):
        pid = os.fork()
        if pid == 0:
            try:
                _serve(socks, password)
            finally:
                os._exit(0)
        children.append(pid)
    info = {"port": plain.getsockname()[1], "tls_port": tls_port, "pids": children}
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()

    def forward(signum, frame) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    return 0


class EmptyPop:
    """Context manager: ``python -m tests.servers.emptypop`` as a child process."""

    def __init__(
        self,
        *,
        processes: int = 1,
        password: str | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.argv = [sys.executable, "-m", "tests.servers.emptypop"]
        self.argv += ["--processes", str(processes)]
        if password is not None:
            self.argv += ["--password", password]
        if tls_cert is not None:
            self.argv += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.tls_port: int | None = None
        self.pids: list[int] = []
        self.served: dict[int, int] = {}  # child pid -> sessions, filled at exit

    def __enter__(self) -> EmptyPop:
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(
            self.argv, cwd=root, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
        )
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RuntimeError("the empty-mailbox POP3 server did not start")
        info = json.loads(line)
        self.port, self.tls_port, self.pids = info["port"], info["tls_port"], info["pids"]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> dict[int, int]:
        """Stop the server; return {child pid: sessions served}."""
        if self.process is None:
            return self.served
        self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        for line in out.splitlines():
            with contextlib.suppress(ValueError, KeyError):
                item = json.loads(line)
                self.served[item["pid"]] = item["sessions"]
        self.process = None
        return self.served

    @property
    def sessions(self) -> int:
        """Sessions that ended with QUIT (known once the server stopped)."""
        return sum(self.served.values())


if __name__ == "__main__":
    sys.exit(main())
