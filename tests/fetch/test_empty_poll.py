"""Issue 13: an empty poll costs the database its claim and one release statement; history
is written when something happened (mail, a failure, a change of state), not for nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from domains.models import Security
from mapping import claim, claimer, fetch, status
from mapping.models import (
    Binding,
    BindingState,
    FetchDay,
    FetchOutcome,
    FetchRun,
    LeavePolicy,
    Schedule,
    SeenUidl,
)
from tests.factories import BindingFactory
from tests.fetch.conftest import assert_exactly
from tests.servers.emptypop import EmptyPop

pytestmark = pytest.mark.django_db


def due(binding: Binding, **fields) -> None:
    fields.setdefault("state", BindingState.OK)
    Binding.objects.filter(pk=binding.pk).update(**fields)
    Schedule.objects.filter(pk=binding.pk).update(
        next_fetch_at=timezone.now() - timedelta(seconds=1)
    )


def poll() -> list[fetch.FetchRun]:
    """What a claimer does, in this thread: one claim, then each claimed binding's fetch."""
    return [
        fetch.binding_fetch(binding=b, lease=lease)
        for b, lease in claim.bindings_claim(timezone.now(), 50)
    ]


def statements(queries: CaptureQueriesContext) -> list[str]:
    # Savepoints would be statements too; BEGIN/COMMIT of atomic blocks are not captured,
    # so the test also checks the fast path opens no transaction (no savepoint/atomic).
    return [q["sql"] for q in queries.captured_queries]


def empty_poll_statements() -> int:
    """An empty poll's claim and release: 2 on PostgreSQL; on SQLite the release is the
    fenced schedule and the status, two statements in one transaction."""
    return 2 if connection.vendor == "postgresql" else 3


def sent_unsaved(queries: CaptureQueriesContext) -> list[str]:
    # A release's own transaction is a savepoint inside the test's: not a statement.
    return [q for q in statements(queries) if "SAVEPOINT" not in q]


@pytest.fixture(scope="module")
def empty_pop():
    with EmptyPop(password="Empty-Sesame-1") as server:
        yield server


def on_empty_pop(server: EmptyPop, **fields) -> Binding:
    fields.setdefault("raw_password", "Empty-Sesame-1")
    return BindingFactory(
        host="127.0.0.1", port=server.port, security=Security.NONE, username="nobody",
        leave_policy=LeavePolicy.DELETE, **fields,
    )  # fmt: skip


def test_an_empty_poll_is_a_claim_and_one_release(empty_pop):
    binding = on_empty_pop(empty_pop)
    due(binding, fetch_rows=False)
    before = timezone.now()

    with CaptureQueriesContext(connection) as queries:
        [run] = poll()

    sent = statements(queries)
    assert sent[0].lstrip().startswith("UPDATE mapping_schedule")
    assert "RETURNING" in sent[0]
    if connection.vendor == "postgresql":  # the release: schedule fenced, status, one statement
        assert len(sent) == 2, sent
        assert sent[1].startswith("WITH r AS")
        assert "lease_token = r.token" in sent[1]
    else:  # SQLite: the fenced schedule, then the status, in one transaction
        sent = [q for q in sent if "SAVEPOINT" not in q]  # that transaction inside the test's
        assert len(sent) == 3, sent
        assert sent[1].startswith('UPDATE "mapping_schedule"')
        assert "lease_token" in sent[1]
        assert sent[2].startswith('UPDATE "mapping_binding"')
    assert run.outcome == FetchOutcome.OK
    assert run.pk is None
    binding.refresh_from_db()
    assert binding.state == BindingState.OK
    assert binding.schedule.lease_token is None
    assert binding.last_check_at >= before
    assert binding.last_success_at >= before
    interval = timedelta(minutes=binding.fetch_interval_minutes)
    assert binding.schedule.next_fetch_at - binding.last_check_at == interval
    assert not binding.fetch_runs.exists()
    assert not FetchDay.objects.exists()


def test_the_first_poll_writes_history_and_learns_there_is_nothing_to_read(empty_pop):
    binding = on_empty_pop(empty_pop)  # new: never fetched, fetch_rows True
    assert binding.fetch_rows

    [run] = poll()
    binding.refresh_from_db()
    assert run.pk is not None
    assert run.outcome == FetchOutcome.OK
    assert binding.state == BindingState.OK
    assert not binding.fetch_rows

    due(binding)
    with CaptureQueriesContext(connection) as queries:
        poll()
    assert len(sent_unsaved(queries)) == empty_poll_statements(), statements(queries)
    assert binding.fetch_runs.count() == 1


def test_a_failure_writes_history_and_the_days_totals(empty_pop):
    binding = on_empty_pop(empty_pop, raw_password="wrong")
    due(binding, fetch_rows=False)
    [run] = poll()
    binding.refresh_from_db()
    assert run.pk is not None
    assert run.outcome == FetchOutcome.AUTH_FAILED
    assert binding.state == BindingState.NEEDS_ATTENTION
    assert binding.schedule.lease_token is None
    assert FetchDay.objects.get(binding=binding).failures == 1


def test_mail_that_arrives_is_fetched_with_history_then_polls_are_empty_again(isp, make_binding):
    binding = make_binding(leave_policy=LeavePolicy.DELETE)
    poll()  # the first run: new -> OK
    due(binding)
    with CaptureQueriesContext(connection) as queries:
        [run] = poll()
    assert len(sent_unsaved(queries)) == empty_poll_statements()
    assert run.pk is None

    messages = [b"Subject: arrived %d\n\nhello\n" % i for i in range(3)]
    for raw in messages:
        isp.deliver(binding.username, raw)
    due(binding)
    [run] = poll()
    assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 3, 3)
    assert binding.fetch_runs.filter(pk=run.pk, messages=3).exists()
    assert FetchDay.objects.get(binding=binding).messages == 3
    assert_exactly(binding, messages)
    binding.refresh_from_db()
    assert binding.fetch_rows  # UIDL records of the deleted messages: read next time

    due(binding)
    poll()  # STAT 0 with records: they are forgotten, the flag goes down
    binding.refresh_from_db()
    assert not binding.fetch_rows
    assert not SeenUidl.objects.filter(binding=binding).exists()
    due(binding)
    with CaptureQueriesContext(connection) as queries:
        poll()
    assert len(sent_unsaved(queries)) == empty_poll_statements(), statements(queries)
    assert binding.fetch_runs.count() == 2  # the first run and the one with mail


def test_a_keep_mode_mailbox_with_stored_mail_reads_its_records_and_fetches_nothing_twice(
    isp, make_binding
):
    binding = make_binding(leave_policy=LeavePolicy.KEEP)
    messages = [b"Subject: kept %d\n\nx\n" % i for i in range(2)]
    for raw in messages:
        isp.deliver(binding.username, raw)
    poll()
    for _ in range(2):
        due(binding)
        [run] = poll()
        assert run.messages == 0
        assert run.outcome == FetchOutcome.OK
    assert_exactly(binding, messages)
    binding.refresh_from_db()
    assert binding.fetch_rows
    assert binding.state == BindingState.OK


def test_a_batch_of_releases_is_one_statement_and_a_lost_lease_is_left_alone(empty_pop):
    bindings = [on_empty_pop(empty_pop) for _ in range(3)]
    for binding in bindings:
        due(binding, fetch_rows=False)
    releases = status.QuietReleases()
    claimed = claim.bindings_claim(timezone.now(), 50)
    runs = [fetch.binding_fetch(binding=b, lease=lease, releases=releases) for b, lease in claimed]
    assert len(releases) == 3
    assert all(run.outcome == FetchOutcome.OK for run in runs)
    assert Schedule.objects.filter(lease_token__isnull=False).count() == 3  # not written yet
    stolen = claimed[1][0].pk
    thief = uuid.uuid4()  # the lease expired meanwhile and another claimer took the binding
    Schedule.objects.filter(pk=stolen).update(lease_token=thief)
    Binding.objects.filter(pk=stolen).update(state=BindingState.RETRYING)

    with CaptureQueriesContext(connection) as queries:
        assert releases.flush() == 2
    if connection.vendor == "postgresql":  # one statement for the batch (then the lost run)
        writes = [q for q in statements(queries) if "UPDATE" in q and "RETURNING" in q]
        assert writes == statements(queries)[:1]
        assert "lease_token = r.token" in writes[0]

    rows = Binding.objects.select_related("schedule").filter(pk__in=[b.pk for b in bindings])
    for binding in rows:
        if binding.pk == stolen:  # the new holder's row, untouched; our run closed as lost
            assert (binding.schedule.lease_token, binding.state) == (thief, BindingState.RETRYING)
            assert binding.fetch_runs.get().error.startswith("This fetch was stopped")
        else:
            assert binding.schedule.lease_token is None
            assert binding.state == BindingState.OK
            interval = timedelta(minutes=binding.fetch_interval_minutes)
            assert binding.schedule.next_fetch_at - binding.last_check_at == interval
            assert not binding.fetch_runs.exists()
    assert len(releases) == 0
    assert releases.flush() == 0


@pytest.mark.django_db(transaction=True)  # the session threads have their own connections
def test_a_claimer_writes_its_empty_polls_releases_a_batch_at_a_time(empty_pop):
    bindings = [on_empty_pop(empty_pop) for _ in range(12)]
    for binding in bindings:
        due(binding, fetch_rows=False)
    with CaptureQueriesContext(connection) as queries:  # the claimer's own connection
        report = claimer.claimer_run(sessions=4, seconds=10)
    assert report.outcomes == {"ok": 12}
    released = [q["sql"] for q in queries.captured_queries if "lease_token = r.token" in q["sql"]]
    if connection.vendor == "postgresql":
        assert 1 <= len(released) <= report.claims  # several polls per statement
        assert len(released) < 12
    for binding in Binding.objects.select_related("schedule"):
        assert (binding.state, binding.schedule.lease_token) == (BindingState.OK, None)
        assert binding.last_check_at is not None
    assert not FetchRun.objects.exists()
