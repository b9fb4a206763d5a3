"""The fetcher's database writes: the one-fetch-at-a-time lease, the live status of a
binding, its fetch history and its SeenUidl record (mapping.fetch calls these).

A fetch owns a binding through a lease: a random token and an expiry, taken with a
conditional UPDATE (healthchecks' `sendalerts` claim). A lease can expire under a paused
worker, so every later write is fenced: it names the token in its WHERE clause and raises
`LeaseLostError` when no row changed, so a worker that lost the lease cannot overwrite the
new owner's progress (design.md, "A lock that can expire needs a fence").
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import Binding, BindingState, FetchOutcome, FetchRun, SeenUidl


class LeaseLostError(Exception):
    """Another fetch took the binding over (our lease expired); stop writing."""


def lease_seconds() -> float:
    """How long a lease lasts without renewal.

    Renewed at least every quarter of it while a fetch makes progress; long enough to cover
    connect + TLS + login, each bounded by POP3_TIMEOUT, and short enough that a binding whose
    worker was killed is fetched again within minutes.
    """
    default = max(300.0, 6 * settings.POP3_TIMEOUT)
    return float(getattr(settings, "FETCH_LEASE_SECONDS", default))


def unleased(now) -> Q:
    """Bindings no fetch holds right now (no lease, or an expired one)."""
    return Q(lease_token__isnull=True) | Q(lease_expires_at__lt=now)


@dataclass
class Lease:
    """Our claim on one binding; `fence()` proves we still own it and extends it."""

    binding_id: int
    token: uuid.UUID
    renew_at: float = field(default=0.0)

    def _extend(self, **fields) -> None:
        ttl = lease_seconds()
        now = timezone.now()
        values = {"lease_expires_at": now + timedelta(seconds=ttl), **fields}
        changed = Binding.objects.filter(pk=self.binding_id, lease_token=self.token).update(
            **values
        )
        if changed != 1:
            raise LeaseLostError
        self.renew_at = time.monotonic() + ttl / 4

    def renew_if_due(self) -> None:
        """Extend the lease when a quarter of it has passed (called often, cheap otherwise)."""
        if time.monotonic() >= self.renew_at:
            self._extend()

    @contextmanager
    def fenced(self, **fields):
        """A transaction that starts by proving we own the lease (and extending it).

        On PostgreSQL the UPDATE also row-locks the binding until commit, so nobody can
        take the lease over in the middle of the block.
        """
        with transaction.atomic():
            self._extend(**fields)
            yield


def lease_acquire(binding_id: int) -> Lease | None:
    """Take the binding's lease, or None when another fetch holds it."""
    now = timezone.now()
    token = uuid.uuid4()
    taken = (
        Binding.objects.filter(pk=binding_id)
        .filter(unleased(now))
        .update(lease_token=token, lease_expires_at=now + timedelta(seconds=lease_seconds()))
    )
    if taken != 1:
        return None
    return Lease(binding_id, token, renew_at=time.monotonic() + lease_seconds() / 4)


def backoff_seconds(failures: int, interval_minutes: int) -> float:
    """Delay before retry number `failures` (1-based): doubling from a minute, capped, jittered."""
    base = float(getattr(settings, "FETCH_BACKOFF_BASE_SECONDS", 60))
    cap = max(float(getattr(settings, "FETCH_BACKOFF_CAP_SECONDS", 3600)), interval_minutes * 60)
    delay = min(cap, base * 2 ** min(max(failures, 1) - 1, 30))
    # +-10 % so the bindings of one ISP that failed together do not retry together.
    return delay * random.uniform(0.9, 1.1)


def _finish_run(run: FetchRun, outcome: str, error: str = "") -> None:
    run.finished_at = timezone.now()
    run.outcome = outcome
    run.error = error
    fields = ("finished_at", "outcome", "error", "messages", "bytes", "deleted")
    # update(), not save(): a binding deleted meanwhile took its history with it.
    FetchRun.objects.filter(pk=run.pk).update(**{name: getattr(run, name) for name in fields})


def record_success(lease: Lease, run: FetchRun, *, next_in: timedelta, note: str = "") -> None:
    """The run ended well: status OK, next fetch after the interval, lease released."""
    now = timezone.now()
    with lease.fenced(
        state=BindingState.OK,
        last_check_at=now,
        last_success_at=now,
        last_error="",
        consecutive_failures=0,
        next_fetch_at=now + next_in,
        lease_token=None,
        lease_expires_at=None,
    ):
        _finish_run(run, FetchOutcome.OK, note)


def record_failure(lease: Lease, run: FetchRun, *, message: str, kind: str) -> None:
    """The run failed; `kind` is "transient", "permanent" or "auth".

    transient: retry with backoff. permanent (untrusted certificate, STARTTLS refused, a
    password the keys cannot decrypt): needs attention, still retried with backoff since
    retrying costs the ISP nothing. auth: needs attention and no retry until the binding
    is edited or fetched by hand, so a wrong password does not get the ISP account locked.
    """
    now = timezone.now()
    binding = Binding.objects.only("consecutive_failures", "fetch_interval_minutes").get(
        pk=lease.binding_id
    )
    failures = binding.consecutive_failures + 1
    if kind == "auth":
        state, next_at = BindingState.NEEDS_ATTENTION, None
    else:
        delay = backoff_seconds(failures, binding.fetch_interval_minutes)
        state = BindingState.RETRYING if kind == "transient" else BindingState.NEEDS_ATTENTION
        next_at = now + timedelta(seconds=delay)
    with lease.fenced(
        state=state,
        last_check_at=now,
        last_error=message,
        last_error_at=now,
        consecutive_failures=F("consecutive_failures") + 1,
        next_fetch_at=next_at,
        lease_token=None,
        lease_expires_at=None,
    ):
        outcome = FetchOutcome.AUTH_FAILED if kind == "auth" else FetchOutcome.ERROR
        _finish_run(run, outcome, message)


def record_lost(run: FetchRun) -> None:
    """Our lease was taken over: close our history row, touch nothing of the binding."""
    _finish_run(
        run,
        FetchOutcome.ERROR,
        "This fetch was stopped: it took too long and another fetch took the mailbox over.",
    )


def record_skipped(binding: Binding, trigger: str) -> FetchRun:
    """Another fetch holds the lease: note it in the history and leave the binding alone."""
    now = timezone.now()
    return FetchRun.objects.create(
        binding=binding,
        started_at=now,
        finished_at=now,
        outcome=FetchOutcome.SKIPPED,
        trigger=trigger,
    )


def close_interrupted_runs(lease: Lease, run: FetchRun) -> None:
    """Runs still "running" under our lease were killed before they could say so."""
    FetchRun.objects.filter(binding_id=lease.binding_id, outcome=FetchOutcome.RUNNING).exclude(
        pk=run.pk
    ).update(
        outcome=FetchOutcome.ERROR,
        finished_at=timezone.now(),
        error="Interrupted (the worker stopped); what it had stored is kept.",
    )


# --- SeenUidl: the record of what is stored, written in the contract's order ----------


def seen_load(binding_id: int) -> dict[str, datetime]:
    """Identity -> first_seen_at of every message recorded for the binding."""
    rows = SeenUidl.objects.filter(binding_id=binding_id).values_list("uidl", "first_seen_at")
    return dict(rows)


def intents_reconcile(lease: Lease, root: Path) -> None:
    """Resolve intents a killed run left: stored if the file reached new/ or cur/, else
    dropped, so that the message is fetched again."""
    pending = list(
        SeenUidl.objects.filter(binding_id=lease.binding_id, stored_at__isnull=True).values_list(
            "pk", "maildir_name", "size"
        )
    )
    if not pending:
        return
    present = _delivered(root, [name for _, name, _ in pending])
    stored = [(pk, size) for pk, name, size in pending if name in present]
    dropped = [pk for pk, name, _ in pending if name not in present]
    now = timezone.now()
    # A run killed before it marked them stored never counted them either.
    with lease.fenced(**_counters(len(stored), sum(size for _, size in stored))):
        SeenUidl.objects.filter(pk__in=[pk for pk, _ in stored]).update(stored_at=now)
        SeenUidl.objects.filter(pk__in=dropped).delete()


def intents_add(lease: Lease, rows: list[tuple[str, str, int]]) -> None:
    """Record (identity, Maildir file name, size) intents; commit before any rename."""
    now = timezone.now()
    with lease.fenced():
        SeenUidl.objects.bulk_create(
            SeenUidl(
                binding_id=lease.binding_id,
                uidl=key,
                maildir_name=name,
                size=size,
                first_seen_at=now,
            )
            for key, name, size in rows
        )


def intents_stored(
    lease: Lease, run: FetchRun, stored: list[tuple[int, str, int]], *, dropped: list[str]
) -> datetime:
    """Mark (msgno, identity, size) messages stored once their files are in new/, count
    them, and drop the intents of messages that were never downloaded."""
    count, size = len(stored), sum(s for _, _, s in stored)
    now = timezone.now()
    with lease.fenced(**_counters(count, size)):
        mine = SeenUidl.objects.filter(binding_id=lease.binding_id)
        for chunk in _chunks([key for _, key, _ in stored]):
            mine.filter(uidl__in=chunk).update(stored_at=now)
        for chunk in _chunks(dropped):
            mine.filter(uidl__in=chunk, stored_at__isnull=True).delete()
        if count:
            FetchRun.objects.filter(pk=run.pk).update(
                messages=run.messages + count, bytes=run.bytes + size
            )
    run.messages += count
    run.bytes += size
    return now


def seen_forget(lease: Lease, keys: list[str]) -> None:
    """Drop the records of messages no longer on the server."""
    with lease.fenced():
        for chunk in _chunks(keys):
            SeenUidl.objects.filter(binding_id=lease.binding_id, uidl__in=chunk).delete()


def seen_deleted(lease: Lease, keys: list[str]) -> None:
    """Note that the server applied our DELEs (QUIT answered +OK)."""
    now = timezone.now()
    with lease.fenced():
        for chunk in _chunks(keys):
            SeenUidl.objects.filter(binding_id=lease.binding_id, uidl__in=chunk).update(
                deleted_on_server_at=now
            )


def _counters(count: int, size: int) -> dict:
    if not count:
        return {}
    return {
        "messages_fetched": F("messages_fetched") + count,
        "bytes_fetched": F("bytes_fetched") + size,
    }


def _chunks(items: list, size: int = 500) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _delivered(root: Path, names: list[str]) -> set[str]:
    """Which of `names` are in new/ or in cur/ (where a reader adds ":2,<flags>")."""
    found = {name for name in names if (root / "new" / name).exists()}
    if len(found) < len(names):
        with os.scandir(root / "cur") as entries:
            cur = {entry.name.split(":", 1)[0] for entry in entries}
        found |= cur.intersection(names)
    return found
