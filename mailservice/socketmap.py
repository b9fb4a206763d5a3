"""Postfix's socketmap protocol and a threaded unix-socket server for it; stdlib only.

socketmap_table(5): the client sends one netstring ``<name> <key>`` per lookup on a
connection it keeps open; the server answers one netstring ``OK <data>``, ``NOTFOUND ``,
``TEMP <reason>``, ``TIMEOUT <reason>`` or ``PERM <reason>`` (at most 100000 characters).
Netstrings (https://cr.yp.to/proto/netstrings.txt): ``<length>:<bytes>,``.

The decoder has no I/O (bytes in, requests out, as h11 does) and bounds everything: a length
field longer than `MAX_LENGTH_DIGITS`, a request longer than `max_request`, or anything that is
not a netstring raises `SocketmapProtocolError`; the server then answers ``PERM`` and closes.

The manual warns that the map "cannot be used for security-sensitive information, because
neither the connection nor the server are authenticated". The server therefore listens on a
unix socket in a directory that must not be writable by others, and checks the connecting
process's uid (SO_PEERCRED) against an allow-list before reading anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REPLY = 100_000  # socketmap_table(5): Postfix refuses longer replies
MAX_LENGTH_DIGITS = 6
DEFAULT_MAX_REQUEST = 4096  # name + key; an address is at most 254 octets (RFC 5321)


class SocketmapProtocolError(Exception):
    """The peer sent something that is not a valid, bounded socketmap request."""


@dataclass(frozen=True)
class Request:
    name: str
    key: str


@dataclass(frozen=True)
class Reply:
    status: str  # OK, NOTFOUND, TEMP, TIMEOUT, PERM
    data: str = ""

    def encode(self) -> bytes:
        return encode_netstring(f"{self.status} {self.data}".encode())


def ok(data: str) -> Reply:
    return Reply("OK", data)


NOTFOUND = Reply("NOTFOUND", "")


def temp(reason: str) -> Reply:
    return Reply("TEMP", reason)


def perm(reason: str) -> Reply:
    return Reply("PERM", reason)


def encode_netstring(data: bytes) -> bytes:
    if len(data) > MAX_REPLY:
        raise SocketmapProtocolError(f"reply longer than {MAX_REPLY} bytes")
    return b"%d:%s," % (len(data), data)


class NetstringDecoder:
    """Incremental netstring parser: `feed()` bytes, get complete requests back."""

    def __init__(self, max_request: int = DEFAULT_MAX_REQUEST) -> None:
        self.max_request = max_request
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Request]:
        self._buffer += data
        requests = []
        while True:
            payload = self._next_payload()
            if payload is None:
                return requests
            requests.append(parse_request(payload))

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _next_payload(self) -> bytes | None:
        buf = self._buffer
        colon = buf.find(b":", 0, MAX_LENGTH_DIGITS + 1)
        if colon < 0:
            if len(buf) > MAX_LENGTH_DIGITS or (buf and not buf.isdigit()):
                raise SocketmapProtocolError("bad netstring length")
            return None
        digits = bytes(buf[:colon])
        if not digits.isdigit() or (len(digits) > 1 and digits.startswith(b"0")):
            raise SocketmapProtocolError("bad netstring length")
        length = int(digits)
        if length > self.max_request:
            raise SocketmapProtocolError(f"request longer than {self.max_request} bytes")
        end = colon + 1 + length
        if len(buf) < end + 1:
            return None
        if buf[end : end + 1] != b",":
            raise SocketmapProtocolError("netstring not terminated by ','")
        payload = bytes(buf[colon + 1 : end])
        del buf[: end + 1]
        return payload


def parse_request(payload: bytes) -> Request:
    """``<name> <key>`` → Request; names are ASCII words, keys UTF-8 without controls."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SocketmapProtocolError("request is not UTF-8") from exc
    name, sep, key = text.partition(" ")
    if not sep or not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise SocketmapProtocolError("request is not '<name> <key>'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise SocketmapProtocolError("control character in key")
    return Request(name, key)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


Handler = Callable[[Request], Reply]


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: SocketmapServer

    def setup(self) -> None:
        self.server.connection_opened(self.request)

    def handle(self) -> None:
        server = self.server
        sock: socket.socket = self.request
        uid = peer_uid(sock)
        if uid not in server.allowed_uids:
            log.warning("socketmap: refused a connection from uid %d (not allowed)", uid)
            return
        sock.settimeout(server.idle_timeout)
        decoder = NetstringDecoder(server.max_request)
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, OSError):
                return  # idle or gone: Postfix reconnects when it needs us
            if not data:
                return
            try:
                requests = decoder.feed(data)
            except SocketmapProtocolError as exc:
                log.warning("socketmap: bad request from uid %d: %s", uid, exc)
                self._send(perm(f"protocol error: {exc}"))
                return
            for request in requests:
                if not self._send(server.answer(request)):
                    return

    def _send(self, reply: Reply) -> bool:
        try:
            self.request.sendall(reply.encode())
            return True
        except SocketmapProtocolError:
            return self._send(temp("reply too long"))
        except OSError:
            return False

    def finish(self) -> None:
        self.server.connection_closed(self.request)


class SocketmapServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One thread per Postfix connection (Postfix keeps a few open and reuses them)."""

    daemon_threads = True
    allow_reuse_address = False
    # listen() backlog. socketserver's default, 5, is too small: when Postfix starts a burst of
    # smtp/smtpd processes, each connects at once, and a full backlog makes connect() fail
    # with EAGAIN — a lookup error, so Postfix defers the message for minutes (seen in the
    # benchmark's warm-up).
    request_queue_size = 128

    def __init__(
        self,
        path: str | Path,
        handler: Handler,
        *,
        allowed_uids: set[int],
        group: int | None = None,
        max_request: int = DEFAULT_MAX_REQUEST,
        idle_timeout: float = 300.0,
        max_connections: int = 200,
        on_connection_closed: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.handler = handler
        self.allowed_uids = set(allowed_uids)
        self.max_request = max_request
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._on_closed = on_connection_closed
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()
        _prepare_socket_dir(self.path.parent, group)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise FileExistsError(f"{self.path} exists and is not a socket")
            self.path.unlink()  # a stale socket of a previous run
        old_umask = os.umask(0o117)  # the socket is created 0660, never world-accessible
        try:
            super().__init__(str(self.path), _ConnectionHandler)
        finally:
            os.umask(old_umask)
        if group is not None and os.getuid() == 0:
            os.chown(self.path, 0, group)
        self.path.chmod(0o660)

    def answer(self, request: Request) -> Reply:
        try:
            return self.handler(request)
        except Exception:  # never NOTFOUND for an error: the mail must wait, not bounce
            log.exception("socketmap: lookup %s failed", request.name)
            return temp("lookup failed")

    def verify_request(self, request: socket.socket, client_address: object) -> bool:
        if not self._slots.acquire(blocking=False):
            log.warning("socketmap: too many connections; refusing one")
            return False
        return True

    def connection_opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.add(sock)

    def connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._active.discard(sock)
        self._slots.release()
        if self._on_closed is not None:
            self._on_closed()

    def server_close(self) -> None:
        """Stop listening and hang up on every client (Postfix reconnects to a new server)."""
        super().server_close()
        with self._lock:
            active = list(self._active)
        for sock in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # Let the connection threads finish (they close their database connections).
        deadline = time.monotonic() + 5
        while self._active and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _prepare_socket_dir(directory: Path, group: int | None) -> None:
    """Create the socket directory root-owned 0750 (group postfix), or check an existing one.

    Anyone who can write the directory could replace the socket with their own server and
    answer Postfix's questions (socketmap_table(5), SECURITY): refuse such a directory.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    st = directory.stat()
    if st.st_mode & stat.S_IWOTH:
        raise PermissionError(f"{directory} is writable by everyone; refusing to listen there")
    if os.getuid() == 0 and group is not None and st.st_uid == 0:
        os.chown(directory, 0, group)
        directory.chmod(0o750)


class SocketmapClient:
    """A small client (for `manage.py mailmap --query`, tests and the benchmark)."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._buffer = b""

    def query(self, name: str, key: str) -> Reply:
        self.sock.sendall(encode_netstring(f"{name} {key}".encode()))
        return self.read_reply()

    def read_reply(self) -> Reply:
        while True:
            colon = self._buffer.find(b":")
            if colon > 0:
                length = int(self._buffer[:colon])
                end = colon + 1 + length
                if len(self._buffer) > end:
                    payload = self._buffer[colon + 1 : end].decode()
                    self._buffer = self._buffer[end + 1 :]
                    status, _, data = payload.partition(" ")
                    return Reply(status, data)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("socketmap server closed the connection")
            self._buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SocketmapClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
