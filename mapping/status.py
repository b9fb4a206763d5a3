"""A binding's live status and its fetch history, as the fetch writes them.

Every write that touches the binding is fenced by the fetch's lease (``lease.Lease``):
a fetch that lost its lease closes its own history row and leaves the binding alone.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import daily, metrics
from .lease import Holder, Lease, leases_release
from .models import Binding, BindingState, FetchOutcome, FetchRun
from .scheduler import backoff_seconds


def run_new(binding: Binding, trigger: str) -> FetchRun:
    """The history of a claimed fetch, in memory until something happens (issue 13)."""
    return FetchRun(binding=binding, started_at=timezone.now(), trigger=trigger)


def run_open(run: FetchRun, lease: Lease) -> None:
    """Write the run's history row now (mail is coming); runs a killed worker left are closed.

    ``fetch_rows`` goes up with it: a worker killed from here on leaves a RUNNING row (and
    maybe intents) that the next fetch must read, not skip as an empty poll would.
    """
    if run.pk is not None:
        return
    with lease.fenced(fetch_rows=True):
        run.save(force_insert=True)
        runs_interrupted_close(lease.binding_id, but=run.pk)


def run_start(binding: Binding, lease: Lease, trigger: str) -> FetchRun:
    """The history row of a fetch that starts now; runs a killed worker left are closed."""
    run = run_new(binding, trigger)
    run_open(run, lease)
    return run


def runs_interrupted_close(binding_id: int, *, but: int | None = None) -> None:
    """Close the history rows that runs killed in the middle left RUNNING."""
    FetchRun.objects.filter(binding_id=binding_id, outcome=FetchOutcome.RUNNING).exclude(
        pk=but
    ).update(
        outcome=FetchOutcome.ERROR,
        finished_at=timezone.now(),
        error="Interrupted (the worker stopped); what it had stored is kept.",
    )


def _finish_run(run: FetchRun, outcome: str, error: str = "") -> None:
    run.finished_at = timezone.now()
    run.outcome = outcome
    run.error = error
    fields = ("finished_at", "outcome", "error", "messages", "bytes", "deleted")
    if run.pk is None:
        # A claimed run that never needed its row before: written once, finished. Savepoint:
        # a binding deleted meanwhile (record_lost is not fenced) just loses its history.
        with contextlib.suppress(IntegrityError), transaction.atomic():
            run.save(force_insert=True)
    else:
        # update(), not save(): a binding deleted meanwhile took its history with it.
        FetchRun.objects.filter(pk=run.pk).update(**{name: getattr(run, name) for name in fields})
    # Issue 12: the day's totals (only when the run stored mail or failed) and the
    # process's counters for /metrics (no statement).
    daily.fetch_day_add(run)
    _observed(run)


def _observed(run: FetchRun) -> None:
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    metrics.fetch_observed(outcome=run.outcome, messages=run.messages, size=run.bytes, seconds=took)


def record_success(
    lease: Lease,
    run: FetchRun,
    *,
    next_in: timedelta,
    note: str = "",
    one_at_a_time: bool,
    rows_left: bool = True,
    quiet: bool = False,
    releases: QuietReleases | None = None,
) -> None:
    """The run ended well: status OK, next fetch after the interval, lease released.

    ``one_at_a_time`` is whether the next session must RETR one message at a time (a
    pipelined batch of this one could not be trusted); a clean session clears it.
    ``rows_left``: UIDL records remain for the next fetch to read (``Binding.fetch_rows``).
    ``quiet``: the binding was OK before; a run that then opened no history row, stored,
    deleted and noted nothing, is an empty poll: one statement, the release, and no
    history row (issue 13; /metrics still counts it, in this process). With ``releases``
    (a claimer's) that statement is shared: the release waits there for the claimer to
    write it with the others that ended meanwhile.
    """
    now = timezone.now()
    fields = dict(
        state=BindingState.OK,
        last_check_at=now,
        last_success_at=now,
        last_error="",
        failing_since=None,
        consecutive_failures=0,
        next_fetch_at=now + next_in,
        retr_one_at_a_time=one_at_a_time,
        fetch_rows=rows_left,
    )
    if quiet and run.pk is None and not (run.messages or run.deleted or note):
        run.finished_at, run.outcome = now, FetchOutcome.OK
        if releases is not None:
            releases.add(lease, run, fields)  # observed when written
            return
        lease.release(**fields)  # LeaseLostError: the caller records the run as lost
        _observed(run)
        return
    with lease.fenced(**fields, lease_token=None, lease_expires_at=None, lease_holder=""):
        _finish_run(run, FetchOutcome.OK, note)


class QuietReleases:
    """Empty polls' releases waiting for their claimer to write them together (issue 13).

    Session threads add; the claimer's thread flushes before each claim and when it stops,
    in one statement (``lease.leases_release``). A release waits milliseconds, a second at
    most; a claimer killed meanwhile leaves those leases to expire (the bindings are polled
    again then: they were empty, nothing is lost or fetched twice).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[tuple[Lease, FetchRun, dict]] = []

    def add(self, lease: Lease, run: FetchRun, fields: dict) -> None:
        with self._lock:
            self._waiting.append((lease, run, fields))

    def __len__(self) -> int:
        return len(self._waiting)

    def flush(self) -> int:
        """Write every waiting release; a lost lease closes its run as lost. Returns how
        many were written."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        lost = {id(lease) for lease in leases_release([(lease, f) for lease, _, f in batch])}
        for lease, run, _ in batch:
            if id(lease) in lost:
                record_lost(run)
            else:
                _observed(run)
        return len(batch) - len(lost)


def record_failure(
    lease: Lease, run: FetchRun, *, message: str, kind: str, one_at_a_time: bool | None = None
) -> None:
    """The run failed; `kind` is "transient", "permanent", "auth" or "sign_in".

    transient: retry with backoff. permanent (untrusted certificate, STARTTLS refused, a
    server the outbound guard refuses, a password the keys cannot decrypt): needs attention,
    still retried with backoff since retrying costs the ISP nothing. auth: needs attention
    and no retry until the binding is edited or fetched by hand, so a wrong password does
    not get the ISP account locked. sign_in (issue 15): the OAuth grant is gone or was never
    made; needs sign-in, no retry until a person signs the mailbox in again.
    """
    now = timezone.now()
    binding = Binding.objects.only("consecutive_failures", "fetch_interval_minutes").get(
        pk=lease.binding_id
    )
    failures = binding.consecutive_failures + 1
    if kind == "auth":
        state, next_at = BindingState.NEEDS_ATTENTION, None
    elif kind == "sign_in":
        state, next_at = BindingState.NEEDS_SIGN_IN, None
    else:
        delay = backoff_seconds(failures, binding.fetch_interval_minutes)
        state = BindingState.RETRYING if kind == "transient" else BindingState.NEEDS_ATTENTION
        next_at = now + timedelta(seconds=delay)
    extra = {} if one_at_a_time is None else {"retr_one_at_a_time": one_at_a_time}
    with lease.fenced(
        state=state,
        last_check_at=now,
        last_error=message,
        last_error_at=now,
        failing_since=Coalesce(F("failing_since"), now),
        consecutive_failures=F("consecutive_failures") + 1,
        next_fetch_at=next_at,
        lease_token=None,
        lease_expires_at=None,
        lease_holder="",
        **extra,
    ):
        outcome = {"auth": FetchOutcome.AUTH_FAILED, "sign_in": FetchOutcome.NEEDS_SIGN_IN}.get(
            kind, FetchOutcome.ERROR
        )
        _finish_run(run, outcome, message)


def record_lost(run: FetchRun) -> None:
    """Our lease was taken over: close our history row, touch nothing of the binding."""
    _finish_run(
        run,
        FetchOutcome.ERROR,
        "This fetch was stopped: another fetch took the mailbox over while it was stalled.",
    )


def record_skipped(binding: Binding, trigger: str, holder: Holder) -> FetchRun:
    """Another fetch holds the lease: say who in the history, leave the binding alone."""
    now = timezone.now()
    run = FetchRun.objects.create(
        binding=binding,
        started_at=now,
        finished_at=now,
        outcome=FetchOutcome.SKIPPED,
        trigger=trigger,
        error=f"Another fetch holds this mailbox: {holder.describe()}.",
    )
    _observed(run)
    return run
