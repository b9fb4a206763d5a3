"""Maildir delivery by djb's rules (https://cr.yp.to/proto/maildir.html); stdlib only.

A message is written to ``tmp/`` under a unique name, flushed and fsync'd, renamed into
``new/``, and then ``new/`` itself is fsync'd so the rename survives a power cut; only
after ``commit()`` returns may the caller record the message or delete it on the server.
A caller's token (say a hash of the UIDL) can ride in the name as ``X<token>`` so that a
start-up scan (``find_token``) closes the window between the rename and the database
record: a stored message is then recognised instead of fetched twice.

Usage::

    with writer.begin(unique_hint=token) as delivery:   # aborts on exception
        delivery.write(chunk)
        path = delivery.commit()
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import socket
import time
from pathlib import Path
from types import TracebackType

_SUBDIRS = ("tmp", "new", "cur")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


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
        for path in (self.root, *(self.root / sub for sub in _SUBDIRS)):
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._chown(path)
                created = True
        if created:  # make the new directories themselves durable before any delivery
            _fsync_dir(self.root)
            _fsync_dir(self.root.parent)

    def _chown(self, path: Path | int) -> None:
        if self.uid is not None or self.gid is not None:
            uid, gid = -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid
            if isinstance(path, int):
                os.fchown(path, uid, gid)
            else:
                os.chown(path, uid, gid)

    def unique_name(self, unique_hint: str | None = None) -> str:
        """``<time>.M<usec>P<pid>Q<counter>R<random>[X<hint>].<host>``."""
        if unique_hint is not None and not _TOKEN.fullmatch(unique_hint):
            raise ValueError("A Maildir name hint may hold only letters, digits, '-' and '_'.")
        now = time.time()
        seconds, usec = int(now), int((now % 1) * 1_000_000)
        name = f"{seconds}.M{usec}P{os.getpid()}Q{next(self._counter)}R{secrets.token_hex(8)}"
        if unique_hint:
            name += f"X{unique_hint}"
        return f"{name}.{self._host}"

    def begin(self, unique_hint: str | None = None) -> Delivery:
        """Start a delivery: opens ``tmp/<unique name>`` (O_CREAT|O_EXCL)."""
        return Delivery(self, self.unique_name(unique_hint))

    def sync_new(self) -> None:
        """fsync new/: makes every earlier ``commit(sync_dir=False)`` rename durable."""
        _fsync_dir(self.root / "new")

    def exists(self, name: str) -> bool:
        """Whether a delivered message of that name is in new/ or cur/ (cur/ adds ":2,<flags>")."""
        if (self.root / "new" / name).exists():
            return True
        with os.scandir(self.root / "cur") as entries:
            return any(e.name.split(":", 1)[0] == name for e in entries)

    def find_token(self, token: str) -> list[Path]:
        """Delivered messages whose name carries ``X<token>``, in new/ and cur/."""
        marker = f"X{token}."
        found = []
        for sub in ("new", "cur"):
            with os.scandir(self.root / sub) as entries:
                found += [Path(e.path) for e in entries if marker in e.name.split(":", 1)[0]]
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
    """One message on its way into ``new/``; a context manager that aborts unless committed."""

    def __init__(self, writer: MaildirWriter, name: str) -> None:
        self.writer = writer
        self.name = name
        self.tmp_path = writer.root / "tmp" / name
        self.path: Path | None = None
        self.size = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        # A small buffer: a pipelined fetch keeps many deliveries open at once, and the
        # client's 256 KiB chunks go straight to the file past a buffer this size.
        self._file = os.fdopen(os.open(self.tmp_path, flags, 0o600), "wb", buffering=64 * 1024)

    def __repr__(self) -> str:
        return f"<Delivery {self.name}>"

    def __enter__(self) -> Delivery:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        if self.path is None:  # an exception, or a block that never committed
            self.abort()

    def prepend_header(self, header: bytes) -> None:
        """Write a trace header line; allowed only before the first ``write``."""
        if self.size:
            raise RuntimeError("prepend_header() must come before the first write().")
        self.write(header if header.endswith(b"\n") else header + b"\n")

    def write(self, data: bytes) -> int:
        """Append bytes to the file in tmp/."""
        self.size += len(data)
        return self._file.write(data)

    def commit(self, *, sync_dir: bool = True) -> Path:
        """fsync the file, chown it, rename tmp/ -> new/, fsync new/; return the final path.

        With ``sync_dir=False`` the rename is not yet durable: call ``writer.sync_new()``
        before recording (or deleting on the server) any message committed that way. One
        directory fsync then covers a whole batch, which saves ~0.2 ms per message.
        """
        if self.path is not None:
            return self.path
        self._file.flush()
        os.fsync(self._file.fileno())
        self.writer._chown(self._file.fileno())  # before the rename: Dovecot never sees root's file
        self._file.close()
        final = self.writer.root / "new" / self.name
        os.rename(self.tmp_path, final)
        if sync_dir:
            _fsync_dir(final.parent)
        self.path = final
        return final

    def abort(self) -> None:
        """Close and unlink the tmp/ file; nothing reaches new/. Safe to call twice."""
        if self.path is not None:
            return
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)
