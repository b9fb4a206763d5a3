"""Step 2 of the fetch contract (see ``fetch.py``): the renames into new/ while RETR goes on.

Each downloaded message goes to a pool thread that fsyncs its file, renames it into new/
and fsyncs new/ (``Delivery.commit``); ext4 commits concurrent fsyncs together, so a few
threads cost less than one fsync after the other. No Django here: ``fetch.py`` records
what ``Committer.wait`` reports as stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .maildir import Delivery


class DeliverySink:
    """Where RETR writes one message: the delivery, a hash when identity is by content."""

    __slots__ = ("delivery", "hasher", "size", "tick")

    def __init__(self, delivery: Delivery, hasher, tick: Callable[[], None]) -> None:
        self.delivery, self.hasher, self.size, self.tick = delivery, hasher, 0, tick

    def write(self, data: bytes) -> None:
        self.delivery.write(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.size += len(data)
        self.tick()


class Committer:
    """Runs ``Delivery.commit()`` on the pool's threads while RETR goes on; bounded."""

    def __init__(self, pool: ThreadPoolExecutor, in_flight: int = 8) -> None:
        self.pool, self.slots = pool, threading.BoundedSemaphore(in_flight)
        self.pending: list[tuple[int, str, int, Future]] = []
        self.submitted: set[str] = set()

    def submit(self, msgno: int, key: str, sink: DeliverySink) -> None:
        self.slots.acquire()  # open deliveries hold write buffers: keep memory flat
        self.submitted.add(key)
        self.pending.append((msgno, key, sink.size, self.pool.submit(self._commit, sink)))

    def _commit(self, sink: DeliverySink) -> None:
        try:
            sink.delivery.commit()  # fsync the file, rename into new/, fsync new/
        except BaseException:
            sink.delivery.abort()
            raise
        finally:
            self.slots.release()

    def wait(self) -> tuple[list[tuple[int, str, int]], BaseException | None]:
        """(msgno, identity, size) of the messages now in new/, and the first failure."""
        stored, error = [], None
        for msgno, key, size, future in self.pending:
            try:
                future.result()
                stored.append((msgno, key, size))
            except Exception as exc:
                error = error or exc
        self.pending = []
        return stored, error
