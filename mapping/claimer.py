"""A claimer: many POP3 sessions in one worker process, fed straight from the database.

Issue 13. Celery beat only keeps claimers busy: every ``SCHEDULER_TICK_SECONDS`` it sends
``mapping.tasks.fetch_claim`` to the "fetch" queue, and a worker process that runs it
becomes a claimer for at most ``FETCH_CLAIMER_SECONDS``. The claimer keeps a bounded pool
of ``FETCH_SESSIONS_PER_PROCESS`` session threads full: it claims (``mapping.claim``) only
as many due bindings as it has free sessions, hands each thread a binding with its lease,
wakes when a session ends, and stops when nothing is due and nothing runs, or when its
time is up (then it claims no more and waits for its sessions, each bounded by
``FETCH_TIME_LIMIT``, so Celery's time limits and warm shutdown behave). A busy cluster
therefore runs as many claimers as beat's ticks find worker processes free; an idle one
runs one short claim per tick. No dispatcher and no per-binding publish sit on the path:
more worker processes or boxes add throughput.

Threads, not an event loop: the POP3 client, the Maildir writer and the fence are the
same code as a single fetch (design.md's contract is proven once); a session mostly waits
on sockets, which releases the GIL, and fsync/rename already run on the fetch's
``Syncer`` threads. Memory per session stays what a fetch takes (bodies are streamed).

An empty poll's release (its status and the lease given back) is not written by its
session: the claimer writes the releases that ended meanwhile in one statement just before
its next claim (``status.QuietReleases``), so an empty poll costs a fraction of a statement
and of a commit, not one of each.

Each session thread keeps one persistent database connection for the claimer's life and
closes it when the claimer ends; the claimer's own connection (the claims) is the task's,
kept between tasks by ``CELERY_DB_REUSE_MAX`` and ``CONN_MAX_AGE`` (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.utils import timezone

from . import claim, fetch, metrics, status
from .lease import Lease, LeaseLostError
from .models import Binding

logger = logging.getLogger(__name__)


@dataclass
class ClaimerReport:
    """What one claimer did: claims sent, bindings fetched, outcomes, how long it ran."""

    claims: int = 0
    fetched: int = 0
    outcomes: Counter = field(default_factory=Counter)
    seconds: float = 0.0


class _Sessions:
    """A bounded set of session threads; each fetches one claimed binding at a time."""

    def __init__(self, size: int, releases: status.QuietReleases) -> None:
        self.size = size
        self.releases = releases
        self.inbox: queue.SimpleQueue[tuple[Binding, Lease] | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, binding: Binding, lease: Lease, busy: int) -> None:
        if busy > len(self.threads) and len(self.threads) < self.size:
            thread = threading.Thread(target=self._serve, name=f"fetch-session-{len(self.threads)}")
            thread.start()
            self.threads.append(thread)
        self.inbox.put((binding, lease))

    def _serve(self) -> None:
        try:
            while (job := self.inbox.get()) is not None:
                binding, lease = job
                try:
                    outcome = fetch.binding_fetch(
                        binding=binding, lease=lease, releases=self.releases
                    ).outcome
                except Exception:  # a bug: recorded on the binding by the fetch; go on
                    logger.exception("fetch of binding %s stopped unexpectedly", binding.pk)
                    connection.close()  # a connection in an unknown state is not reused
                    outcome = "crashed"
                self.done.put(outcome)
        finally:
            connection.close()  # this thread's persistent connection ends with the claimer

    def close(self) -> None:
        for _ in self.threads:
            self.inbox.put(None)
        for thread in self.threads:
            thread.join()


def _ended_meanwhile(done: queue.SimpleQueue[str]) -> list[str]:
    """The outcomes of every other session that ended while the claimer waited."""
    ended = []
    with contextlib.suppress(queue.Empty):
        while True:
            ended.append(done.get_nowait())
    return ended


def _unschedule(lease: Lease) -> None:
    # Disabled while its last fetch ran (that fetch's release scheduled it again): the claim
    # cannot see ``enabled`` without reading the wide row, so it is dropped here, once.
    with contextlib.suppress(LeaseLostError):
        lease.release(next_fetch_at=None)


def claimer_run(*, sessions: int | None = None, seconds: float | None = None) -> ClaimerReport:
    """Claim and fetch due bindings with up to `sessions` at once, for up to `seconds`."""
    sessions = max(1, int(sessions or settings.FETCH_SESSIONS_PER_PROCESS))
    budget = float(settings.FETCH_CLAIMER_SECONDS if seconds is None else seconds)
    # Claim when a quarter of the sessions are free (or all are): one claim serves a batch,
    # so an empty poll's share of a claim stays a fraction of a statement.
    batch = max(1, sessions // 4)
    metrics.metrics_prepare()
    releases = status.QuietReleases()
    report, pool, busy = ClaimerReport(), _Sessions(sessions, releases), 0
    started = time.monotonic()
    deadline, last_claim = started + budget, 0.0
    try:
        while True:
            now = time.monotonic()
            free = sessions - busy
            claimed = 0
            wants = free >= batch or busy == 0 or now - last_claim >= 1.0
            if now < deadline and free and wants:
                releases.flush()  # the empty polls that ended: one statement with the claim's
                rows = claim.bindings_claim(timezone.now(), free)
                report.claims += 1
                last_claim = now
                for binding, lease in rows:
                    if not binding.enabled:
                        _unschedule(lease)
                        continue
                    busy += 1
                    pool.submit(binding, lease, busy)
                claimed = len(rows)
            if busy == 0:
                if claimed:
                    continue  # every binding claimed was disabled: claim again
                break  # nothing due and nothing running, or the time is up
            # Wait for a session to end; at most a second while sessions are free, so
            # bindings falling due meanwhile are claimed without waiting for one.
            timeout = None if free - claimed <= 0 else 1.0
            try:
                ended = [pool.done.get(timeout=timeout)]
            except queue.Empty:
                continue
            ended += _ended_meanwhile(pool.done)
            busy -= len(ended)
            report.fetched += len(ended)
            report.outcomes.update(ended)
            if now >= deadline:
                releases.flush()  # no claim is coming to take them along: write them now
    finally:
        pool.close()
        releases.flush()
        report.seconds = time.monotonic() - started
    return report
