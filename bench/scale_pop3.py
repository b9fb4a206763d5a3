"""The raw POP3 client floor: empty-mailbox polls per second from a minimal client.

    python -m bench.scale_pop3 poll --port P --mode asyncio --sessions 64 --seconds 3
    python -m bench.scale_pop3 hold --port P --mode threads --sessions 500

A poll is one whole session, commands sent one at a time as a real client does:
connect (TLS with ``--tls``), greeting, CAPA, USER, PASS, UIDL, QUIT. ``--mode asyncio``
runs ``--sessions`` concurrent sessions on one event loop; ``--mode threads`` runs them in
that many threads with blocking sockets (the two ways stage 2 can run many sessions per
process). ``poll`` prints one JSON line: polls, seconds, the process's CPU seconds in the
measured window and failures. ``hold`` opens ``--sessions`` sessions, logs them in, keeps
them open and prints the process's RSS before and with them (memory per session).
No Django here: this is the floor the product is compared with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

USER, PASSWORD = b"floor", b"floor-pass"
# Sessions `hold` opens at once: a burst of 1,000 connects once overflowed the server's
# accept queue (asyncio listened again with its default 100; emptypop now asks for 4,096)
# and the client waited forever for a greeting. RSS is still read with every session held.
OPEN_AT_ONCE = 50


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process now, from /proc (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _context(ca: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca) if ca else None


class PollError(Exception):
    """The server answered something a poll of an empty mailbox does not expect."""


# --- asyncio --------------------------------------------------------------------------


async def _ok(reader: asyncio.StreamReader) -> None:
    line = await reader.readline()
    if not line.startswith(b"+OK"):
        raise PollError(line[:80])


async def _multi(reader: asyncio.StreamReader) -> None:
    await _ok(reader)
    while (await reader.readline()) not in (b".\r\n", b""):
        pass


async def _session_open(host, port, context):
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="localhost" if context else None
    )
    await _ok(reader)
    writer.write(b"CAPA\r\n")
    await _multi(reader)
    for line in (b"USER " + USER + b"\r\n", b"PASS " + PASSWORD + b"\r\n"):
        writer.write(line)
        await _ok(reader)
    return reader, writer


async def _session_close(reader, writer) -> None:
    writer.write(b"QUIT\r\n")
    await _ok(reader)
    writer.close()
    await writer.wait_closed()


async def _poll_async(host, port, context) -> None:
    reader, writer = await _session_open(host, port, context)
    writer.write(b"UIDL\r\n")
    await _multi(reader)
    await _session_close(reader, writer)


async def _run_async(host, port, context, sessions: int, seconds: float, warm: float) -> dict:
    done, failed = 0, 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from, until = start + warm, start + warm + seconds
    mark: dict[str, float] = {}

    async def lane() -> None:
        nonlocal done, failed
        while (now := loop.time()) < until:
            if now >= measure_from and "cpu" not in mark:
                mark.update(cpu=_cpu(), wall=time.perf_counter(), base=done)
            try:
                await _poll_async(host, port, context)
                done += 1
            except (OSError, PollError, asyncio.IncompleteReadError):
                failed += 1

    await asyncio.gather(*(lane() for _ in range(sessions)))
    return _result(mark, done, failed)


async def _hold_async(host, port, context, sessions: int) -> dict:
    before = rss_mb()
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one():
        async with gate:
            return await _session_open(host, port, context)

    opened = await asyncio.gather(*(open_one() for _ in range(sessions)))
    held = rss_mb()
    await asyncio.gather(*(_session_close(r, w) for r, w in opened))
    return {"sessions": sessions, "rss_before_mb": before, "rss_held_mb": held}


# --- threads with blocking sockets -------------------------------------------------------


class _Blocking:
    def __init__(self, host, port, context) -> None:
        sock = socket.create_connection((host, port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        self.sock, self.file = sock, sock.makefile("rb")
        self.ok()
        self.send(b"CAPA\r\n")
        self.multi()
        for line in (b"USER " + USER + b"\r\n", b"PASS " + PASSWORD + b"\r\n"):
            self.send(line)
            self.ok()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ok(self) -> None:
        line = self.file.readline()
        if not line.startswith(b"+OK"):
            raise PollError(line[:80])

    def multi(self) -> None:
        self.ok()
        while self.file.readline() not in (b".\r\n", b""):
            pass

    def quit(self) -> None:
        self.send(b"QUIT\r\n")
        self.ok()
        self.file.close()
        self.sock.close()


def _poll_blocking(host, port, context) -> None:
    session = _Blocking(host, port, context)
    session.send(b"UIDL\r\n")
    session.multi()
    session.quit()


def _run_threads(host, port, context, sessions: int, seconds: float, warm: float) -> dict:
    lock = threading.Lock()
    counts = {"done": 0, "failed": 0}
    start = time.monotonic()
    measure_from, until = start + warm, start + warm + seconds
    mark: dict[str, float] = {}

    def lane() -> None:
        while (now := time.monotonic()) < until:
            if now >= measure_from and "cpu" not in mark:
                with lock:
                    if "cpu" not in mark:
                        mark.update(cpu=_cpu(), wall=time.perf_counter(), base=counts["done"])
            try:
                _poll_blocking(host, port, context)
                key = "done"
            except (OSError, PollError):
                key = "failed"
            with lock:
                counts[key] += 1

    threads = [threading.Thread(target=lane) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _result(mark, counts["done"], counts["failed"])


def _hold_threads(host, port, context, sessions: int) -> dict:
    before = rss_mb()
    opened: list[_Blocking] = []
    ready, release = threading.Barrier(sessions + 1), threading.Event()
    gate = threading.Semaphore(OPEN_AT_ONCE)

    def lane() -> None:
        with gate:
            session = _Blocking(host, port, context)
        opened.append(session)
        ready.wait()
        release.wait()
        session.quit()

    threads = [threading.Thread(target=lane) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    ready.wait()
    held = rss_mb()
    release.set()
    for thread in threads:
        thread.join()
    return {"sessions": sessions, "rss_before_mb": before, "rss_held_mb": held}


def _result(mark: dict, done: int, failed: int) -> dict:
    wall = time.perf_counter() - mark.get("wall", time.perf_counter())
    return {
        "polls": done - int(mark.get("base", done)),
        "seconds": wall,
        "cpu_s": _cpu() - mark.get("cpu", _cpu()),
        "failed": failed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Raw POP3 client floor (empty mailbox).")
    parser.add_argument("command", choices=["poll", "hold"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["asyncio", "threads"], default="asyncio")
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warm", type=float, default=0.5, help="seconds not measured first")
    parser.add_argument("--ca", help="CA file: connect with implicit TLS (POP3S)")
    args = parser.parse_args(argv)
    context = _context(args.ca)
    where = (args.host, args.port, context)
    if args.command == "poll" and args.mode == "asyncio":
        result = asyncio.run(_run_async(*where, args.sessions, args.seconds, args.warm))
    elif args.command == "poll":
        result = _run_threads(*where, args.sessions, args.seconds, args.warm)
    elif args.mode == "asyncio":
        result = asyncio.run(_hold_async(*where, args.sessions))
    else:
        result = _hold_threads(*where, args.sessions)
    result.update(mode=args.mode, sessions=args.sessions, tls=bool(args.ca))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
