"""The tick: due bindings claimed atomically, one fetch task each, cost bound by what is due."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from aamail.celery import app as celery_app
from mapping import crypto, scheduler, tasks
from mapping.lease import Lease, lease_acquire
from mapping.models import Binding, BindingState, FetchOutcome, LeavePolicy
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
            next_fetch_at=when,
            state=BindingState.OK,
        )
        for i in range(count)
    )
    return [b.pk for b in rows]


def test_it_claims_exactly_the_due_bindings():
    now = timezone.now()
    past, future = now - timedelta(seconds=1), now + timedelta(minutes=1)
    new = BindingFactory()  # next_fetch_at empty, state new
    overdue = BindingFactory(next_fetch_at=past, state=BindingState.OK)
    expired_lease = BindingFactory(next_fetch_at=past, lease_expires_at=past)
    BindingFactory(next_fetch_at=future)
    BindingFactory(next_fetch_at=past, enabled=False)
    BindingFactory(next_fetch_at=None, state=BindingState.NEEDS_ATTENTION)
    leased = BindingFactory(next_fetch_at=past)
    assert isinstance(lease_acquire(leased.pk), Lease)
    Binding.objects.filter(pk=expired_lease.pk).update(
        lease_token="6a1f6b1e-0000-4000-8000-000000000000"
    )

    claimed = scheduler.bindings_claim_due(now, limit=100)

    assert sorted(claimed) == sorted([new.pk, overdue.pk, expired_lease.pk])
    marker = now + timedelta(seconds=scheduler.claim_seconds())
    assert set(Binding.objects.filter(pk__in=claimed).values_list("next_fetch_at", flat=True)) == {
        marker
    }
    assert scheduler.bindings_claim_due(now, limit=100) == []


def test_it_claims_the_most_overdue_first_up_to_the_limit():
    now = timezone.now()
    late = [BindingFactory(next_fetch_at=now - timedelta(minutes=m)) for m in (1, 30, 5, 60)]
    claimed = scheduler.bindings_claim_due(now, limit=2)
    assert sorted(claimed) == sorted([late[3].pk, late[1].pk])


def test_a_claimed_binding_is_due_again_when_its_task_was_lost():
    binding = BindingFactory(next_fetch_at=timezone.now())
    now = timezone.now()
    assert scheduler.bindings_claim_due(now) == [binding.pk]
    later = now + timedelta(seconds=scheduler.claim_seconds() + 1)
    assert scheduler.bindings_claim_due(later) == [binding.pk]


def test_the_tick_enqueues_one_fetch_per_due_binding(
    monkeypatch, django_capture_on_commit_callbacks
):
    due = [BindingFactory(next_fetch_at=timezone.now()) for _ in range(3)]
    BindingFactory(next_fetch_at=timezone.now() + timedelta(hours=1))
    queued: list[int] = []
    monkeypatch.setattr(tasks.binding_fetch, "delay", lambda pk, **kw: queued.append(pk))

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.fetch_tick() == 3
        assert tasks.fetch_tick() == 0

    assert sorted(queued) == sorted(b.pk for b in due)


def test_the_tick_routes_fetches_to_the_fetch_queue():
    route = celery_app.amqp.router.route({}, "mapping.tasks.binding_fetch")
    assert route["queue"].name == "fetch"


def test_a_tick_fetches_into_the_maildir(
    isp, make_binding, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    binding = make_binding(leave_policy=LeavePolicy.DELETE)
    messages = [b"Subject: tick %d\n\nx\n" % i for i in range(5)]
    for raw in messages:
        isp.deliver(binding.username, raw)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.fetch_tick()

    binding.refresh_from_db()
    assert binding.state == BindingState.OK
    assert binding.fetch_runs.get().outcome == FetchOutcome.OK
    assert_exactly(binding, messages)
    assert isp.messages(binding.username) == []


def test_the_task_ignores_deleted_and_disabled_bindings():
    disabled = BindingFactory(enabled=False)
    assert tasks.binding_fetch(disabled.pk) == "disabled"
    assert tasks.binding_fetch(disabled.pk + 1000) == "deleted"
    assert not disabled.fetch_runs.exists()


def test_a_tick_reads_the_due_index_not_every_binding():
    make_many(3000, due=False)
    due = make_many(3, due=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    now = timezone.now()
    overdue = scheduler._due(now, scheduler._overdue(now)).order_by("next_fetch_at", "pk")
    assert "binding_due_idx" in overdue.values_list("pk")[:500].explain()
    assert sorted(scheduler.bindings_claim_due(now)) == sorted(due)


def race_two_ticks(limit: int) -> tuple[set[int], set[int]]:
    """Two ticks on two connections, released at the same instant."""
    barrier = threading.Barrier(2)
    results: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def tick(slot: int) -> None:
        try:
            barrier.wait()
            results[slot] = scheduler.bindings_claim_due(timezone.now(), limit=limit)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()  # each thread had its own connection

    threads = [threading.Thread(target=tick, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return set(results[0]), set(results[1])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_ticks_never_claim_the_same_binding():
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED need PostgreSQL (DATABASE_URL=postgres://...)")
    ids = set(make_many(300, due=True))
    for _ in range(8):
        Binding.objects.update(next_fetch_at=timezone.now() - timedelta(seconds=1))
        first, second = race_two_ticks(limit=200)
        assert not first & second
        assert first | second <= ids
        assert len(first) + len(second) >= 200
