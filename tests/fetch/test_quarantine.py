"""Poison messages: what fails three runs in a row is set aside, the rest of the mailbox flows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from domains.models import Security
from mapping.fetch import binding_fetch
from mapping.models import Binding, FetchOutcome, LeavePolicy, QuarantinedMessage, QuarantineState
from tests.factories import LOCAL_PASSWORD, AccountFactory, AdminAccountFactory, BindingFactory
from tests.fetch.conftest import assert_exactly, stored_messages
from tests.servers.faultpop import FaultPop

pytestmark = pytest.mark.django_db

NUMBERED = [b"Subject: message %d\n\nbody %d\n" % (i, i) for i in range(1, 7)]


@pytest.fixture(autouse=True)
def _short_timeout(settings):
    settings.POP3_TIMEOUT = 1.0


def bind(pop: FaultPop, **fields) -> Binding:
    fields.setdefault("leave_policy", LeavePolicy.DELETE)
    return BindingFactory(
        host="127.0.0.1",
        port=pop.port,
        security=Security.NONE,
        username="user",
        raw_password="pass",
        **fields,
    )


def held(binding: Binding) -> list[QuarantinedMessage]:
    return list(binding.quarantine.filter(state=QuarantineState.HELD))


def test_it_sets_aside_a_message_the_server_refuses_three_runs_in_a_row():
    with FaultPop(NUMBERED, gone={3}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.KEEP)
        for run_no in (1, 2):
            run = binding_fetch(binding=binding)
            assert "RETR 3" in pop.log[-3:] or "RETR 3" in pop.log, pop.log
            assert held(binding) == []
            assert binding.quarantine.get().failures == run_no
        run = binding_fetch(binding=binding)
        assert "set aside after 3 failed run(s)" in run.error

        [message] = held(binding)
        assert message.uidl == "uid-3"
        assert message.failures == 3
        assert "refused to hand it out" in message.reason
        assert "Message cannot be read" in message.reason
        assert message.kept_bytes is None  # never read: nothing to download

        # Not retried every run: the next run does not ask for it.
        pop.log.clear()
        run = binding_fetch(binding=binding)
        assert run.outcome == FetchOutcome.OK
        assert run.error == ""
        assert "RETR 3" not in pop.log
    assert_exactly(binding, NUMBERED[:2] + NUMBERED[3:])  # the rest flowed at the first run


def test_it_never_deletes_a_set_aside_message_at_the_isp(settings):
    settings.QUARANTINE_AFTER_FAILURES = 1
    with FaultPop(NUMBERED, gone={2}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        assert (run.messages, run.deleted) == (5, 5)
        assert [m.uidl for m in held(binding)] == ["uid-2"]
        binding_fetch(binding=binding)
        binding_fetch(binding=binding)
        assert 2 not in pop.deleted
        assert "DELE 2" not in pop.log
    binding.refresh_from_db()
    assert binding.quarantine_entries == 1


def test_it_sets_aside_a_message_at_which_the_download_breaks_and_keeps_its_bytes():
    # A lone "." inside message 4: one at a time, the rest of it stands where the next
    # status line belongs, so its reply is never proven and every run breaks there.
    with FaultPop(NUMBERED, broken={4: "early_dot"}, faults={"no_pipelining"}) as pop:
        binding = bind(pop)
        runs = [binding_fetch(binding=binding) for _ in range(3)]
        assert [r.outcome for r in runs] == [FetchOutcome.ERROR] * 3
        [message] = held(binding)
        assert message.uidl == "uid-4"
        assert "The download broke at this message" in message.reason
        assert message.kept_bytes
        assert message.kept_bytes == sum(len(c.data) for c in message.chunks.all())

        run = binding_fetch(binding=binding)  # the rest of the mailbox flows now
        assert (run.outcome, run.messages) == (FetchOutcome.OK, 2), run.error
        assert 4 not in pop.deleted
    assert_exactly(binding, NUMBERED[:3] + NUMBERED[4:])
    kept = b"".join(bytes(c.data) for c in message.chunks.order_by("seq"))
    assert kept.startswith(b"Received: from 127.0.0.1")  # as it would have been delivered
    assert b"Subject: message 4" in kept


def test_it_blames_nobody_when_a_pipeline_falls_out_of_step():
    with FaultPop(NUMBERED, broken={3: "no_terminator"}) as pop:
        binding = bind(pop)
        run = binding_fetch(binding=binding)  # pipelined: nothing proven, nobody to blame
        assert run.outcome == FetchOutcome.ERROR
        assert binding.quarantine.count() == 0
        binding_fetch(binding=binding)  # one at a time: 1 and 2 stored, 3 never ends
        assert binding.quarantine.get().uidl == "uid-3"
        pop.broken.clear()
        run = binding_fetch(binding=binding)
        assert run.outcome == FetchOutcome.OK
    assert binding.quarantine.count() == 0  # stored at last: its record went
    binding.refresh_from_db()
    assert binding.quarantine_entries == 0
    assert_exactly(binding, NUMBERED)


def test_it_counts_failures_in_a_row_only(settings):
    with FaultPop(NUMBERED[:2], gone={2}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.KEEP)
        binding_fetch(binding=binding)
        binding_fetch(binding=binding)
        pop.gone.clear()
        binding_fetch(binding=binding)  # handed out at last: stored, the count is gone
    assert binding.quarantine.count() == 0
    assert_exactly(binding, NUMBERED[:2])


def test_it_forgets_the_record_once_the_message_leaves_the_server(settings):
    settings.QUARANTINE_AFTER_FAILURES = 1
    with FaultPop(NUMBERED[:3], gone={2}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.KEEP)
        binding_fetch(binding=binding)
        assert [m.uidl for m in held(binding)] == ["uid-2"]
    with FaultPop([NUMBERED[0], NUMBERED[2]], uidls=["uid-1", "uid-3"]) as later:
        Binding.objects.filter(pk=binding.pk).update(port=later.port)
        binding.refresh_from_db()
        binding_fetch(binding=binding)
    assert binding.quarantine.count() == 0
    binding.refresh_from_db()
    assert binding.quarantine_entries == 0


def test_it_costs_an_empty_poll_no_statement(settings):
    with FaultPop(NUMBERED[:2]) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.KEEP)
        binding_fetch(binding=binding)
        with CaptureQueriesContext(connection) as captured:
            run = binding_fetch(binding=binding)
    assert (run.outcome, run.messages) == (FetchOutcome.OK, 0)
    mine = ('"mapping_quarantinedmessage"', '"mapping_quarantinechunk"', '"mapping_fetchday"')
    touched = [q["sql"] for q in captured if any(table in q["sql"] for table in mine)]
    assert touched == []
    print(f"an empty poll: {len(captured)} statements")


@pytest.mark.django_db(transaction=True)
def test_an_administrator_retries_downloads_and_forgets_from_the_console(client, settings):
    settings.QUARANTINE_AFTER_FAILURES = 1
    with FaultPop(NUMBERED[:4], broken={2: "early_dot"}, faults={"no_pipelining"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.KEEP)
        binding_fetch(binding=binding)
        [message] = held(binding)
        admin = AdminAccountFactory(domain=binding.account.domain)
        assert client.login(username=admin.address, password=LOCAL_PASSWORD)

        tab = client.get(reverse("binding-list", args=[binding.account_id])).content.decode()
        assert "uid-2" in tab
        assert "The download broke at this message" in tab

        download = client.get(reverse("held-download", args=[message.pk]))
        assert download["Content-Type"] == "message/rfc822"
        assert 'filename="uid-2.eml"' in download["Content-Disposition"]
        body = b"".join(download.streaming_content)
        assert len(body) == message.kept_bytes
        assert b"Subject: message 2" in body

        # Retry: mended at the ISP, the fetch queued now takes it.
        pop.broken.clear()
        response = client.post(reverse("held-retry", args=[message.pk]))
        assert response.status_code == 302
        assert binding.quarantine.count() == 0
        assert_exactly(binding, NUMBERED[:4])

    with FaultPop([b"Subject: poison\n\n"], uidls=["uid-p"], gone={1}) as pop:
        Binding.objects.filter(pk=binding.pk).update(port=pop.port)
        binding.refresh_from_db()
        binding_fetch(binding=binding)
        [message] = held(binding)
        client.post(reverse("held-forget", args=[message.pk]))
        message.refresh_from_db()
        assert message.state == QuarantineState.FORGOTTEN
        assert held(binding) == []
        pop.log.clear()
        binding_fetch(binding=binding)  # forgotten: left on the server, not fetched
        assert "RETR 1" not in pop.log
        assert pop.deleted == []
        overview = client.get(reverse("overview")).content.decode()
        assert "is forgotten" in overview
        assert 'id="held-messages"' not in overview

    # Each act on an employee's message is in the domain's audit log, by whom and which.
    events = AuditEvent.objects.filter(
        domain_id=binding.account.domain_id, action__startswith="held."
    )
    assert sorted((e.action, e.actor, e.detail) for e in events) == [
        ("held.downloaded", admin.address, "message uid-2"),
        ("held.forgotten", admin.address, "message uid-p"),
        ("held.retried", admin.address, "message uid-2"),
    ]


def test_only_that_domains_administrators_may_download(client, settings):
    settings.QUARANTINE_AFTER_FAILURES = 1
    with FaultPop(NUMBERED[:2], broken={1: "early_dot"}, faults={"no_pipelining"}) as pop:
        binding = bind(pop)
        binding_fetch(binding=binding)
    [message] = held(binding)
    assert message.kept_bytes
    stranger = AdminAccountFactory(domain=AccountFactory().domain)
    employee = AccountFactory(domain=binding.account.domain)
    assert client.login(username=stranger.address, password=LOCAL_PASSWORD)
    assert client.get(reverse("held-download", args=[message.pk])).status_code == 404
    assert client.post(reverse("held-forget", args=[message.pk])).status_code == 404
    client.logout()
    assert client.login(username=employee.address, password=LOCAL_PASSWORD)
    assert client.get(reverse("held-download", args=[message.pk])).status_code == 403
    assert stored_messages(binding) == []
