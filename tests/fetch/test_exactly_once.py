"""Intent rows close the rename/record window; the lease keeps one fetch per binding."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.mailbox import mailbox_path
from mapping import lease as leases
from mapping import status
from mapping.fetch import binding_fetch
from mapping.lease import LeaseLostError
from mapping.models import (
    Binding,
    BindingState,
    FetchOutcome,
    FetchRun,
    LeavePolicy,
    Schedule,
    SeenUidl,
)
from tests.fetch.conftest import assert_exactly

pytestmark = pytest.mark.django_db

MESSAGES = [b"Subject: %d\n\nbody %d\n" % (i, i) for i in range(6)]


@pytest.fixture
def fetched(isp, make_binding):
    """A binding whose six messages were fetched once (kept on the server)."""
    binding = make_binding(leave_policy=LeavePolicy.KEEP)
    for raw in MESSAGES:
        isp.deliver(binding.username, raw)
    assert binding_fetch(binding=binding).messages == 6
    return binding


def test_it_recognises_files_renamed_just_before_a_kill(fetched):
    # A kill after the rename into new/ but before stored_at was written leaves intents
    # whose files exist; a reader may already have moved one to cur/ with flags.
    rows = list(SeenUidl.objects.filter(binding=fetched).order_by("pk")[:3])
    SeenUidl.objects.filter(pk__in=[r.pk for r in rows]).update(stored_at=None)
    root = mailbox_path(fetched.account)
    (root / "new" / rows[0].maildir_name).rename(root / "cur" / f"{rows[0].maildir_name}:2,S")

    run = binding_fetch(binding=fetched)

    assert (run.outcome, run.messages) == (FetchOutcome.OK, 0)
    assert not SeenUidl.objects.filter(binding=fetched, stored_at__isnull=True).exists()
    assert_exactly(fetched, MESSAGES)


def test_it_fetches_again_what_never_reached_new(fetched):
    # A kill after the intent committed but before the rename: the file is still in tmp/.
    row = SeenUidl.objects.filter(binding=fetched).order_by("pk").first()
    root = mailbox_path(fetched.account)
    (root / "new" / row.maildir_name).rename(root / "tmp" / row.maildir_name)
    SeenUidl.objects.filter(pk=row.pk).update(stored_at=None)

    run = binding_fetch(binding=fetched)

    assert (run.outcome, run.messages) == (FetchOutcome.OK, 1)
    assert_exactly(fetched, MESSAGES)


def test_it_skips_a_binding_another_fetch_holds(fetched, isp):
    isp.deliver(fetched.username, b"Subject: new\n\nx\n")
    seen: list[FetchRun] = []

    def progress(done: int, total: int, size: int) -> None:
        if not seen:  # while this fetch runs, a second one for the same binding starts
            seen.append(binding_fetch(binding=fetched, trigger="manual"))

    run = binding_fetch(binding=fetched, progress=progress)

    assert seen[0].outcome == FetchOutcome.SKIPPED
    assert seen[0].messages == 0
    assert (run.outcome, run.messages) == (FetchOutcome.OK, 1)
    assert_exactly(fetched, [*MESSAGES, b"Subject: new\n\nx\n"])


def test_it_takes_over_an_expired_lease(fetched, isp):
    lease = leases.lease_acquire(fetched.pk)
    assert binding_fetch(binding=fetched).outcome == FetchOutcome.SKIPPED
    Schedule.objects.filter(pk=fetched.pk).update(lease_expires_at=timezone.now())  # expired
    isp.deliver(fetched.username, b"Subject: after\n\nx\n")

    run = binding_fetch(binding=fetched)

    assert (run.outcome, run.messages) == (FetchOutcome.OK, 1)
    with pytest.raises(LeaseLostError):
        status.record_success(lease, run, next_in=timedelta(minutes=5), one_at_a_time=False)


def test_a_worker_whose_lease_was_stolen_cannot_write(fetched, isp):
    for i in range(3):
        isp.deliver(fetched.username, b"Subject: stolen %d\n\nx\n" % i)
    thief: list[leases.Lease] = []

    def progress(done: int, total: int, size: int) -> None:
        if not thief:  # the worker pauses past its lease; another fetch takes the binding
            Schedule.objects.filter(pk=fetched.pk).update(lease_expires_at=timezone.now())
            thief.append(leases.lease_acquire(fetched.pk))

    before = Binding.objects.select_related("schedule").get(pk=fetched.pk)
    run = binding_fetch(binding=fetched, progress=progress)

    after = Binding.objects.select_related("schedule").get(pk=fetched.pk)
    assert run.outcome == FetchOutcome.ERROR
    assert "another fetch took the mailbox over" in run.error
    assert after.schedule.lease_token == thief[0].token  # still the new owner's
    for name in ("state", "last_check_at", "last_error", "messages_fetched"):
        assert getattr(after, name) == getattr(before, name), name
    assert after.schedule.next_fetch_at == before.schedule.next_fetch_at
    assert SeenUidl.objects.filter(binding=fetched).count() == 6  # no intent got in

    # The new owner finishes; then everything is there exactly once.
    status.record_success(
        thief[0],
        FetchRun.objects.create(binding=fetched, started_at=timezone.now()),
        next_in=timedelta(),
        one_at_a_time=False,
    )
    assert binding_fetch(binding=fetched).messages == 3
    assert_exactly(fetched, [*MESSAGES, *(b"Subject: stolen %d\n\nx\n" % i for i in range(3))])


def test_it_closes_the_history_of_runs_that_were_killed(fetched):
    killed = FetchRun.objects.create(binding=fetched, started_at=timezone.now())

    binding_fetch(binding=fetched)

    killed.refresh_from_db()
    assert killed.outcome == FetchOutcome.ERROR
    assert "Interrupted" in killed.error
    fetched.refresh_from_db()
    assert fetched.state == BindingState.OK


def test_a_fetch_in_progress_keeps_its_own_history_row_running(isp, fetched):
    # The console shows a Fetch now's row while it runs: closing killed runs' rows at the
    # start must not close this run's own.
    isp.deliver(fetched.username, b"Subject: later\n\nnew\n")
    seen = []

    def progress(done: int, total: int, size: int) -> None:
        seen.append(FetchRun.objects.filter(binding=fetched).latest("started_at").outcome)

    run = binding_fetch(binding=fetched, progress=progress)

    assert run.messages == 1
    assert seen
    assert set(seen) == {FetchOutcome.RUNNING}
