"""The claim: due bindings and their leases taken in one statement, cost bound by what is due."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from aamail.celery import app as celery_app
from mapping import claim, crypto, tasks
from mapping.claimer import claimer_run
from mapping.lease import Lease, LeaseLostError, lease_acquire, lease_seconds
from mapping.models import Binding, BindingState, FetchOutcome, LeavePolicy, Schedule
from tests.factories import AccountFactory, BindingFactory
from tests.fetch.conftest import assert_exactly

pytestmark = pytest.mark.django_db


def make_many(count: int, *, due: bool) -> list[int]:
    """`count` bindings of one account, inserted in bulk."""
    account = AccountFactory()
    secret = crypto.encrypt("x")
    when = timezone.now() + (timedelta(minutes=-1) if due else timedelta(hours=1))
    rows = Binding.objects.bulk_create(
        Binding(
            account=account,
            host="pop.isp.example",
            username=f"bulk{i}",
            password_encrypted=secret,
            state=BindingState.OK,
        )
        for i in range(count)
    )
    # bulk_create skips Binding.save: the schedule rows come in bulk too.
    Schedule.objects.bulk_create(Schedule(binding=b, next_fetch_at=when) for b in rows)
    return [b.pk for b in rows]


def claimed_ids(now, limit: int = 100) -> list[int]:
    return [binding.pk for binding, _ in claim.bindings_claim(now, limit)]


def test_it_claims_exactly_the_due_bindings_and_takes_their_leases():
    now = timezone.now()
    past, future = now - timedelta(seconds=1), now + timedelta(minutes=1)
    new = BindingFactory()  # state new: due since its creation
    overdue = BindingFactory(next_fetch_at=past, state=BindingState.OK)
    expired_lease = BindingFactory(next_fetch_at=past, lease_expires_at=past)
    BindingFactory(next_fetch_at=future)
    BindingFactory(enabled=False)  # not scheduled
    BindingFactory(next_fetch_at=None, state=BindingState.NEEDS_ATTENTION)
    leased = BindingFactory(next_fetch_at=past)
    assert isinstance(lease_acquire(leased.pk), Lease)
    Schedule.objects.filter(pk=expired_lease.pk).update(
        lease_token="6a1f6b1e-0000-4000-8000-000000000000"
    )
    now = timezone.now()

    with CaptureQueriesContext(connection) as queries:
        claimed = claim.bindings_claim(now, 100)
    assert len(queries) == 1  # one statement: the claim is the lease

    assert sorted(b.pk for b, _ in claimed) == sorted([new.pk, overdue.pk, expired_lease.pk])
    until = now + timedelta(seconds=lease_seconds())
    for binding, lease in claimed:
        row = Binding.objects.select_related("schedule").get(pk=binding.pk)
        held = row.schedule
        assert (held.lease_token, held.lease_expires_at) == (lease.token, until)
        assert held.next_fetch_at == until  # the claim marker: due again when the lease expires
        assert str(held.lease_holder).split("|")[1] == str(__import__("os").getpid())
        assert binding.account_id == row.account_id
        assert binding.host == row.host
        assert binding == row
        assert binding.state == row.state
        # Only what a fetch reads comes with the claim; the rest loads when asked for.
        assert "smtp_host" in binding.get_deferred_fields()
        assert binding.smtp_port == row.smtp_port
    assert claimed_ids(now) == []


def test_a_claimer_unschedules_a_disabled_binding_instead_of_fetching_it():
    # Disabled while its last fetch ran: that fetch's release made it due again.
    binding = BindingFactory(enabled=False)
    Schedule.objects.filter(pk=binding.pk).update(next_fetch_at=timezone.now())
    report = claimer_run(sessions=2, seconds=5)
    assert (report.claims, report.fetched) == (2, 0)  # the second claim found nothing
    row = Schedule.objects.get(pk=binding.pk)
    assert (row.next_fetch_at, row.lease_token) == (None, None)
    assert not binding.fetch_runs.exists()


def test_it_claims_the_most_overdue_first_up_to_the_limit():
    now = timezone.now()
    late = [BindingFactory(next_fetch_at=now - timedelta(minutes=m)) for m in (1, 30, 5, 60)]
    assert sorted(claimed_ids(now, 2)) == sorted([late[3].pk, late[1].pk])


def test_a_claimed_binding_is_due_again_when_its_claimer_died():
    binding = BindingFactory(next_fetch_at=timezone.now())
    now = timezone.now()
    assert claimed_ids(now) == [binding.pk]
    assert claimed_ids(now + timedelta(seconds=lease_seconds() - 1)) == []
    assert claimed_ids(now + timedelta(seconds=lease_seconds() + 1)) == [binding.pk]


def test_a_claimed_bindings_lease_fences_its_writes():
    binding = BindingFactory(next_fetch_at=timezone.now())
    now = timezone.now()
    [(_, first)] = claim.bindings_claim(now, 10)
    first.renew_if_due()  # ours: nothing to do yet
    later = now + timedelta(seconds=lease_seconds() + 1)
    [(_, second)] = claim.bindings_claim(later, 10)  # the first claimer stalled
    assert second.token != first.token
    with pytest.raises(LeaseLostError):
        first.release(state=BindingState.OK)
    with pytest.raises(LeaseLostError), first.fenced():
        pass
    second.release(state=BindingState.OK)
    binding.refresh_from_db()
    assert binding.schedule.lease_token is None
    assert binding.state == BindingState.OK


def test_fetch_now_waits_for_a_claimed_binding():
    binding = BindingFactory(next_fetch_at=timezone.now())
    claim.bindings_claim(timezone.now(), 10)
    assert not isinstance(lease_acquire(binding.pk), Lease)  # the claimer's lease holds


def test_the_claimer_routes_to_the_fetch_queue_and_fetch_now_too():
    for name in ("mapping.tasks.fetch_claim", "mapping.tasks.binding_fetch"):
        assert celery_app.amqp.router.route({}, name)["queue"].name == "fetch"


@pytest.mark.django_db(transaction=True)  # the session threads have their own connections
def test_the_claimer_fetches_into_the_maildir_and_writes_history(isp, make_binding):
    binding = make_binding(leave_policy=LeavePolicy.DELETE)
    messages = [b"Subject: claim %d\n\nx\n" % i for i in range(5)]
    for raw in messages:
        isp.deliver(binding.username, raw)

    assert tasks.fetch_claim() == 1

    binding.refresh_from_db()
    assert binding.state == BindingState.OK
    assert binding.schedule.lease_token is None
    run = binding.fetch_runs.get()
    assert (run.outcome, run.trigger, run.messages, run.deleted) == (
        FetchOutcome.OK,
        "schedule",
        5,
        5,
    )
    assert_exactly(binding, messages)
    assert isp.messages(binding.username) == []
    assert binding.fetch_rows  # its UIDL records: the next run reads them


def test_the_task_ignores_deleted_and_disabled_bindings():
    disabled = BindingFactory(enabled=False)
    assert tasks.binding_fetch(disabled.pk) == "disabled"
    assert tasks.binding_fetch(disabled.pk + 1000) == "deleted"
    assert not disabled.fetch_runs.exists()


@pytest.mark.postgres
def test_a_claim_reads_its_partial_index_not_every_binding():
    if connection.vendor != "postgresql":
        pytest.skip("EXPLAIN of the PostgreSQL plan")
    make_many(3000, due=False)
    due = make_many(3, due=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        now = timezone.now()
        sql = claim.claim_sql("postgresql").replace("UPDATE", "EXPLAIN UPDATE", 1)
        cursor.execute(sql, [claim.uuid.uuid4(), now, "x", now, now, now, 500])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "schedule_due_idx" in plan, plan
    assert "accounts_account" not in plan  # no join but the binding row it returns
    assert "Seq Scan" not in plan, plan  # the binding rows by primary key, one each
    assert sorted(claimed_ids(now, 500)) == sorted(due)


def race_claims(claimers: int, limit: int, rounds: int) -> list[list[int]]:
    """`claimers` threads with their own connections claiming batches until none is due."""
    barrier = threading.Barrier(claimers)
    results: list[list[int]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                got = claimed_ids(timezone.now(), limit)
                if not got:
                    break
                results[slot] += got
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()  # each thread had its own connection

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_claim_a_binding_twice():
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED need PostgreSQL (DATABASE_URL=postgres://...)")
    ids = set(make_many(600, due=True))
    for claimers in (2, 4):
        Schedule.objects.update(
            next_fetch_at=timezone.now() - timedelta(seconds=1), lease_token=None
        )
        results = race_claims(claimers, limit=25, rounds=100)
        every = [pk for got in results for pk in got]
        assert len(every) == len(set(every)), "a binding was claimed twice"
        assert set(every) == ids  # and none was left behind
        assert all(results), "a claimer got nothing while rows were due"


def test_the_sqlite_claim_takes_each_row_once():
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite form of the claim")
    ids = make_many(30, due=True)
    now = timezone.now()
    first, second = claimed_ids(now, 20), claimed_ids(now, 20)
    assert len(first) == 20
    assert len(second) == 10
    assert sorted(first + second) == sorted(ids)
    token = Schedule.objects.filter(pk=first[0]).values_list("lease_token", flat=True).get()
    assert token is not None
