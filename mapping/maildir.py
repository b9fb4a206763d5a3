"""Maildir delivery by djb's rules (https://cr.yp.to/proto/maildir.html); stdlib only.

A message is written to ``tmp/`` under a unique name, flushed, fsync'd and given to the
mail owner (``Delivery.sync``, on the ``Syncer``'s threads while the next message
downloads: ext4 commits concurrent fsyncs together); once the caller has proven the
message is the one it asked for, ``publish`` renames it into ``new/`` and fsyncs ``new/``
once for the whole lot, so the renames survive a power cut. Only after ``publish``
returns may the caller record the messages or delete them on the server.

Usage::

    delivery = writer.begin(name)          # tmp/<name>, O_CREAT|O_EXCL
    delivery.write(chunk) ...
    syncer.submit(delivery)                # fsync on a thread
    failures = syncer.wait()               # every fsync done
    writer.publish([delivery, ...])        # tmp/ -> new/, one fsync of new/
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

_SUBDIRS = ("tmp", "new", "cur")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildirWriter:
    """Delivers messages into one Maildir, creating ``tmp/ new/ cur/`` (0700) if missing."""

    def __init__(self, root: Path, *, uid: int | None = None, gid: int | None = None) -> None:
        self.root = Path(root)
        self.uid, self.gid = uid, gid
        # djb: "/" and ":" in the host name would break the name's syntax.
        host = socket.gethostname() or "localhost"
        self._host = host.replace("/", r"\057").replace(":", r"\072")
        self._counter = itertools.count()
        created = False
        # The domain's directory too: Dovecot, as the mail owner, creates its colleagues'
        # mailboxes in it when LMTP delivers to them first.
        for path in (self.root.parent, self.root, *(self.root / sub for sub in _SUBDIRS)):
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.chown(path)
                created = True
        if created:  # make the new directories themselves durable before any delivery
            _fsync_dir(self.root)
            _fsync_dir(self.root.parent)

    def chown(self, path: Path | int) -> None:
        """Give a path (or an open file descriptor) to the mail owner, if one is set."""
        if self.uid is None and self.gid is None:
            return
        uid, gid = -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid
        if isinstance(path, int):
            os.fchown(path, uid, gid)
        else:
            os.chown(path, uid, gid)

    def unique_name(self) -> str:
        """``<time>.M<usec>P<pid>Q<counter>R<random>.<host>`` (djb's unique name)."""
        now = time.time()
        seconds, usec = int(now), int((now % 1) * 1_000_000)
        name = f"{seconds}.M{usec}P{os.getpid()}Q{next(self._counter)}R{secrets.token_hex(8)}"
        return f"{name}.{self._host}"

    def begin(self, name: str | None = None) -> Delivery:
        """Start a delivery: opens ``tmp/<name>`` (a fresh unique name if none is given)."""
        return Delivery(self, name or self.unique_name())

    def publish(self, deliveries: Iterable[Delivery]) -> list[Path]:
        """Rename synced deliveries into new/, then fsync new/ once; return the new paths."""
        paths = [delivery.publish() for delivery in deliveries]
        if paths:
            _fsync_dir(self.root / "new")
        return paths

    def delivered(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` are in new/ or cur/ (where a reader adds ":2,<flags>")."""
        names = set(names)
        found = {name for name in names if (self.root / "new" / name).exists()}
        if len(found) < len(names):
            with os.scandir(self.root / "cur") as entries:
                found |= names.intersection(e.name.split(":", 1)[0] for e in entries)
        return found

    def cleanup_tmp(self, older_than_s: float = 36 * 3600) -> int:
        """Remove files left in tmp/ by crashed deliveries (djb: after 36 hours); return count."""
        limit = time.time() - older_than_s
        removed = 0
        with os.scandir(self.root / "tmp") as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < limit:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed


class Delivery:
    """One message on its way into ``new/``: write, ``sync``, ``publish`` (or ``abort``)."""

    def __init__(self, writer: MaildirWriter, name: str) -> None:
        self.writer = writer
        self.name = name
        self.tmp_path = writer.root / "tmp" / name
        self.path: Path | None = None
        self.size = 0
        self.synced = False
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        # A small buffer: a pipelined fetch keeps several deliveries open at once, and the
        # client's 256 KiB pieces go straight to the file past a buffer this size.
        self._file = os.fdopen(os.open(self.tmp_path, flags, 0o600), "wb", buffering=64 * 1024)

    def __repr__(self) -> str:
        return f"<Delivery {self.name}>"

    def prepend_header(self, header: bytes) -> None:
        """Write a trace header line; allowed only before the first ``write``."""
        if self.size:
            raise RuntimeError("prepend_header() must come before the first write().")
        self.write(header if header.endswith(b"\n") else header + b"\n")

    def write(self, data: bytes) -> int:
        """Append bytes to the file in tmp/."""
        self.size += len(data)
        return self._file.write(data)

    def sync(self) -> None:
        """Flush, fsync, give to the mail owner and close the file in tmp/ (any thread)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self.writer.chown(self._file.fileno())  # before the rename: Dovecot never sees root's
        self._file.close()
        self.synced = True

    def publish(self) -> Path:
        """Rename tmp/ -> new/ (not yet durable: ``MaildirWriter.publish`` fsyncs new/)."""
        if not self.synced:
            raise RuntimeError("publish() needs sync() first: the file must be durable.")
        final = self.writer.root / "new" / self.name
        os.rename(self.tmp_path, final)
        self.path = final
        return final

    def abort(self) -> None:
        """Close and unlink the tmp/ file; nothing reaches new/. Safe to call twice."""
        if self.path is not None:
            return
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


class Syncer:
    """Runs ``Delivery.sync()`` on a few threads while the download goes on; bounded."""

    def __init__(self, threads: int = 8, in_flight: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="maildir-sync")
        self._slots = threading.BoundedSemaphore(max(1, in_flight))
        self._pending: list[tuple[Delivery, Future]] = []

    def __enter__(self) -> Syncer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)

    def submit(self, delivery: Delivery) -> None:
        """fsync this delivery on a thread (waits while ``in_flight`` files are open)."""
        self._slots.acquire()  # open files hold write buffers: keep memory flat
        self._pending.append((delivery, self._pool.submit(self._sync, delivery)))

    def _sync(self, delivery: Delivery) -> None:
        try:
            delivery.sync()
        finally:
            self._slots.release()

    def wait(self) -> list[tuple[Delivery, BaseException]]:
        """Wait for every submitted sync; return the deliveries that failed (aborted)."""
        failed = []
        for delivery, future in self._pending:
            try:
                future.result()
            except Exception as exc:
                delivery.abort()
                failed.append((delivery, exc))
        self._pending = []
        return failed
