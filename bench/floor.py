"""The floor: the least work a correct POP3 fetch into a Maildir can do, on a raw socket.

USER/PASS, UIDL, then RETR for every message pipelined (a window of requests in flight),
each body streamed (bounded memory, lines of any length) into ``tmp/``, dot-stuffing undone
and CRLF turned into LF, then renamed into ``new/``. With ``--fsync`` each file is fsync'd
before its rename (the "durable floor" of issue 4: one fsync per message); ``--dirfsync``
also fsyncs ``new/`` after each rename, as a real Maildir delivery must. No database, no
UIDL bookkeeping, no deletion. QUIT at the end, like every fetcher measured.

Run as a child process by ``fetch_bench.py``; prints one JSON line with its own timing::

    python -m bench.floor --port 1100 --user mixed --password pw --maildir DIR [--fsync]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections import deque

CHUNK = 256 * 1024
TERMINATOR = b"\r\n.\r\n"


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def fill(self) -> None:
        data = self.sock.recv(CHUNK)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf = self.buf[self.pos :] + data
        self.pos = 0

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n", self.pos)) < 0:
            self.fill()
        line = self.buf[self.pos : end]
        self.pos = end + 2
        return line

    def ok(self) -> bytes:
        line = self.line()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"server said {line[:200]!r}")
        return line

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.ok()

    def body(self, write) -> None:
        """Stream one multi-line body to ``write``: unstuffed, LF line endings."""
        line_start = True
        while True:
            buf, pos = self.buf, self.pos
            if line_start and buf.startswith(b".\r\n", pos):
                self.pos = pos + 3
                return
            end = buf.find(TERMINATOR, pos)
            if end >= 0:
                _emit(buf[pos : end + 2], line_start, write)
                self.pos = end + len(TERMINATOR)
                return
            cut = len(buf) - (len(TERMINATOR) - 1)
            if cut > pos and buf[cut - 1] == 0x0D:
                cut -= 1  # keep a CRLF pair in one segment
            if cut > pos:
                segment = buf[pos:cut]
                _emit(segment, line_start, write)
                line_start = segment.endswith(b"\r\n")
                self.pos = cut
            self.fill()


def _emit(segment: bytes, line_start: bool, write) -> None:
    if line_start and segment.startswith(b"."):
        segment = segment[1:]
    segment = segment.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n")
    if segment:
        write(segment)


def fetch(
    host: str,
    port: int,
    user: str,
    password: str,
    maildir: str,
    *,
    fsync: bool,
    dirfsync: bool,
    window: int = 64,
) -> dict:
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    new_dir = os.path.join(maildir, "new")
    new_fd = os.open(new_dir, os.O_RDONLY | os.O_DIRECTORY)
    start = time.perf_counter()
    conn = Conn(host, port)
    conn.ok()  # greeting
    conn.command(f"USER {user}")
    conn.command(f"PASS {password}")
    conn.command("UIDL")
    numbers = []
    while (line := conn.line()) != b".":
        numbers.append(int(line.split()[0]))
    todo = iter(numbers)
    in_flight: deque[int] = deque()
    stored = 0
    pid = os.getpid()
    while True:
        if len(in_flight) <= window // 2:
            batch = [n for _, n in zip(range(window - len(in_flight)), todo, strict=False)]
            if batch:
                conn.sock.sendall(b"".join(b"RETR %d\r\n" % n for n in batch))
                in_flight.extend(batch)
        if not in_flight:
            break
        number = in_flight.popleft()
        conn.ok()
        name = f"{int(time.time())}.M{number}P{pid}.floor"
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb", buffering=CHUNK) as f:
            conn.body(f.write)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.rename(tmp, os.path.join(new_dir, name))
        if dirfsync:
            os.fsync(new_fd)
        stored += 1
    conn.command("QUIT")
    conn.sock.close()
    elapsed = time.perf_counter() - start
    os.close(new_fd)
    return {"fetch_s": elapsed, "messages": stored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument("--dirfsync", action="store_true")
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args(argv)
    result = fetch(
        args.host,
        args.port,
        args.user,
        args.password,
        args.maildir,
        fsync=args.fsync,
        dirfsync=args.dirfsync,
        window=args.window,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
