"""binding_fetch against a misbehaving server: every fault ends with nothing lost or doubled."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.mailbox import mailbox_path
from accounts.models import Account
from domains.models import Security
from mapping import claim, lease
from mapping.fetch import binding_fetch
from mapping.models import Binding, BindingState, FetchOutcome, LeavePolicy, SeenUidl
from tests.factories import BindingFactory
from tests.fetch.conftest import assert_exactly, stored_messages
from tests.servers.dovecot import free_port
from tests.servers.faultpop import FaultPop

pytestmark = pytest.mark.django_db

MESSAGES = [
    b"Subject: one\n\nfirst\n",
    b".first line starts with a dot\nSubject: two\n\n.dot line\n..two dots\nsecond\n",
    b"Subject: three\n\nno final newline",
    b"Subject: four\n\n" + b"8-bit \xe9\xff " * 1000 + b"\n",
]


@pytest.fixture(autouse=True)
def _short_timeout(settings):
    settings.POP3_TIMEOUT = 1.0


def bind(pop: FaultPop, **fields) -> Binding:
    fields.setdefault("leave_policy", LeavePolicy.KEEP)
    fields.setdefault("security", Security.NONE)
    return BindingFactory(
        host="127.0.0.1",
        port=pop.port,
        username="user",
        **{"raw_password": "pass", **fields},
    )


def move_to(binding: Binding, pop: FaultPop) -> None:
    """The ISP's server came back (on another port) with a changed mailbox."""
    Binding.objects.filter(pk=binding.pk).update(port=pop.port)
    binding.refresh_from_db()


def tmp_is_clean(binding: Binding) -> bool:
    return not any((mailbox_path(binding.account) / "tmp").iterdir())


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("drop_mid_retr", "closed the connection in the middle of a message"),
        ("garbage_retr", "broke the reply to RETR 1"),
        ("long_reply", "broke the reply to RETR 1"),
        ("hang_mid_retr", "No answer"),
    ],
)
def test_it_survives_a_broken_retr_and_recovers(fault, words):
    with FaultPop(MESSAGES, faults={fault}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        started = time.monotonic()

        run = binding_fetch(binding=binding)

        assert time.monotonic() - started < 5  # a hang is bounded by POP3_TIMEOUT
        binding.refresh_from_db()
        assert run.outcome == FetchOutcome.ERROR
        assert words in binding.last_error, binding.last_error
        print(binding.last_error)
        assert binding.state == BindingState.RETRYING
        assert pop.deleted == []  # no QUIT: nothing deleted
        assert tmp_is_clean(binding)

        pop.faults.discard(fault)
        run = binding_fetch(binding=binding)

        assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 4, 4)
        assert_exactly(binding, MESSAGES)
        assert sorted(pop.deleted) == [1, 2, 3, 4]


def test_it_stores_a_10_mb_line_exactly():
    huge = b"Subject: one line\n\n" + b"=" * (10 * 1024 * 1024) + b"\n"
    with FaultPop([huge, *MESSAGES]) as pop:
        binding = bind(pop)
        run = binding_fetch(binding=binding)
    assert run.outcome == FetchOutcome.OK, run.error
    assert_exactly(binding, [huge, *MESSAGES])


def test_it_goes_on_when_the_server_refuses_one_message():
    with FaultPop(MESSAGES, gone={2}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 3, 3)
        # -ERR to RETR of a listed message is a refusal, in those words (issue 9).
        assert "refused to hand out 1 listed message(s) (-ERR to RETR: 2;" in run.error
        assert "vanished" not in run.error
        assert sorted(pop.deleted) == [1, 3, 4]
    # Another client had only hidden it: it shows up again and is fetched once.
    with FaultPop([MESSAGES[1]], uidls=["uid-2"]) as later:
        move_to(binding, later)
        assert binding_fetch(binding=binding).messages == 1
    assert_exactly(binding, MESSAGES)


def test_it_identifies_messages_by_content_without_uidl():
    with FaultPop(MESSAGES, faults={"no_uidl"}) as pop:
        binding = bind(pop)
        assert binding_fetch(binding=binding).messages == 4
        assert binding_fetch(binding=binding).messages == 0
    assert all(
        key.startswith("sha256:") for key in binding.seen_uidls.values_list("uidl", flat=True)
    )
    new = b"Subject: five\n\nlater\n"
    with FaultPop([*MESSAGES[1:], new], faults={"no_uidl"}) as later:
        move_to(binding, later)
        run = binding_fetch(binding=binding)
    assert run.messages == 1
    assert_exactly(binding, [*MESSAGES, new])
    # The row of the message no longer on the server is forgotten after a complete run.
    assert binding.seen_uidls.count() == 4


def test_it_deletes_without_uidl_once_stored():
    with FaultPop([*MESSAGES, MESSAGES[0]], faults={"no_uidl"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        # Two byte-identical messages are one message by content: stored once, both deleted.
        assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 4, 5)
        assert sorted(pop.deleted) == [1, 2, 3, 4, 5]
    assert_exactly(binding, MESSAGES)


def test_it_stores_each_message_of_a_duplicated_uidl_once():
    uidls = ["same", "same", "other", "same"]
    with FaultPop(MESSAGES, uidls=uidls) as pop:
        binding = bind(pop)
        assert binding_fetch(binding=binding).messages == 4
        assert binding_fetch(binding=binding).messages == 0
    assert_exactly(binding, MESSAGES)
    # Later only one message carries "same": still recognised by its content.
    with FaultPop([MESSAGES[1], MESSAGES[2]], uidls=["same", "other"]) as later:
        move_to(binding, later)
        assert binding_fetch(binding=binding).messages == 0
    assert_exactly(binding, MESSAGES)


def test_it_deletes_messages_of_duplicated_uidls_once_stored():
    with FaultPop(MESSAGES, uidls=["a", "a", "a", "b"]) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        assert (run.messages, run.deleted) == (4, 4)
        assert sorted(pop.deleted) == [1, 2, 3, 4]
    assert_exactly(binding, MESSAGES)


def test_it_needs_attention_after_a_rejected_password_and_stops_retrying():
    with FaultPop(MESSAGES, faults={"reject_password"}) as pop:
        binding = bind(pop)
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
        assert run.outcome == FetchOutcome.AUTH_FAILED
        assert binding.state == BindingState.NEEDS_ATTENTION
        assert "rejected the username or password" in binding.last_error
        assert binding.schedule.next_fetch_at is None
        later = timezone.now() + timedelta(days=9)
        assert binding.pk not in [b.pk for b, _ in claim.bindings_claim(later, 100)]
        assert stored_messages(binding) == []

        # Fixed at the ISP, then fetched by hand: back to the schedule.
        pop.faults.discard("reject_password")
        run = binding_fetch(binding=binding, trigger="manual")
        binding.refresh_from_db()
        assert (run.outcome, run.messages) == (FetchOutcome.OK, 4)
        assert binding.state == BindingState.OK
        assert binding.consecutive_failures == 0
        assert binding.schedule.next_fetch_at is not None


@pytest.mark.parametrize(
    ("password", "shown"),
    [
        # A long password is hidden wherever it appears.
        ("correct horse battery", "password *** is wrong"),
        # A one-letter password is hidden where it stands alone, and the server's words keep
        # every "e" they had: masking each one would hide nothing and leave nothing readable.
        ("e", "Authentication failed: password *** is wrong"),
    ],
)
def test_a_password_the_server_echoes_back_is_never_stored(password, shown):
    with FaultPop(MESSAGES, faults={"echo_password"}) as pop:
        binding = bind(pop, raw_password=password)
        run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.AUTH_FAILED
    assert shown in binding.last_error
    assert shown in run.error
    if len(password) > 1:
        assert password not in binding.last_error
        assert password not in run.error


def test_it_retries_a_busy_mailbox_as_transient():
    with FaultPop(MESSAGES, faults={"in_use"}) as pop:
        binding = bind(pop)
        run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert binding.state == BindingState.RETRYING
    assert binding.schedule.next_fetch_at is not None
    assert "busy" in binding.last_error


def test_it_backs_off_exponentially_up_to_a_cap(settings):
    settings.FETCH_BACKOFF_BASE_SECONDS = 60
    settings.FETCH_BACKOFF_CAP_SECONDS = 3600
    binding = BindingFactory(host="127.0.0.1", port=free_port(), security=Security.NONE)
    delays = []
    for _ in range(8):
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
        delays.append((binding.schedule.next_fetch_at - binding.last_check_at).total_seconds())
    assert run.outcome == FetchOutcome.ERROR
    assert "Connection refused" in binding.last_error
    assert binding.consecutive_failures == 8
    for attempt, delay in enumerate(delays[:6]):
        assert 0.9 * 60 * 2**attempt <= delay <= 1.1 * 60 * 2**attempt
    assert 0.9 * 3600 <= delays[7] <= 1.1 * 3600


def test_it_refuses_to_fall_back_to_plain_text_when_starttls_is_missing():
    with FaultPop(MESSAGES) as pop:
        binding = bind(pop, security=Security.STARTTLS)
        run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert binding.state == BindingState.NEEDS_ATTENTION
    assert "nothing was sent in plain text" in binding.last_error
    assert not {"USER", "PASS", "AUTH", "APOP"} & set(pop.commands())


@pytest.mark.parametrize("fault", ["no_pipelining", "wrong_list_sizes", "no_capa"])
def test_it_copes_with_servers_that_lack_or_misstate_things(fault):
    with FaultPop(MESSAGES, faults={fault}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 4, 4), run.error
        assert sorted(pop.deleted) == [1, 2, 3, 4]
    assert_exactly(binding, MESSAGES)
    assert SeenUidl.objects.filter(binding=binding, stored_at__isnull=True).count() == 0


def test_it_stops_at_the_time_limit_and_continues_at_the_next_tick(settings):
    settings.FETCH_TIME_LIMIT = 0  # already past the point where new batches may start
    with FaultPop(MESSAGES) as pop:
        binding = bind(pop)
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
        assert (run.outcome, run.messages) == (FetchOutcome.OK, 0)
        assert "time limit; 4 messages follow" in run.error
        assert binding.schedule.next_fetch_at <= timezone.now()  # due again at once
        settings.FETCH_TIME_LIMIT = 60
        assert binding_fetch(binding=binding).messages == 4
    assert_exactly(binding, MESSAGES)


def test_it_never_sends_a_password_with_a_line_break():
    with FaultPop(MESSAGES) as pop:
        binding = bind(pop)
        binding.set_isp_password("pass\r\nDELE 1")
        binding.save()
        run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.AUTH_FAILED
    assert "line break" in binding.last_error
    assert "DELE" not in binding.last_error
    assert binding.state == BindingState.NEEDS_ATTENTION
    assert not {"PASS", "AUTH", "DELE"} & set(pop.commands())


def test_it_needs_attention_when_the_keys_cannot_decrypt_the_password():
    with FaultPop(MESSAGES) as pop:
        binding = bind(pop)
        Binding.objects.filter(pk=binding.pk).update(password_encrypted="not-a-fernet-token")
        run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert "ISP_SECRET_KEYS" in binding.last_error
    assert binding.state == BindingState.NEEDS_ATTENTION


def test_a_long_fetch_keeps_renewing_its_lease(settings, monkeypatch):
    big = b"Subject: long\n\n" + b"z" * (8 * 1024 * 1024) + b"\n"
    extensions = []
    original = lease.Lease._extend

    def spy(self, **fields):
        extensions.append(fields)
        return original(self, **fields)

    monkeypatch.setattr(lease.Lease, "_extend", spy)
    with FaultPop([big]) as pop:
        baseline = binding_fetch(binding=bind(pop))  # the default lease outlives this fetch
        fenced_writes = len(extensions)
        extensions.clear()
        settings.FETCH_LEASE_SECONDS = 0  # due for renewal at every chunk received
        run = binding_fetch(binding=bind(pop))
    assert baseline.outcome == run.outcome == FetchOutcome.OK, run.error
    assert len(extensions) > fenced_writes + 10  # heartbeats while the bytes flowed


# --- issue 9: what the POP3 engine may never do, whatever the server sends -------------------

NUMBERED = [b"Subject: %d\n\nbody of message %d\n" % (n, n) for n in range(1, 9)]


def test_a_reply_that_runs_on_in_a_pipeline_stores_and_deletes_nothing_of_its_batch():
    # Message 3 lacks its terminating line: pipelined, every reply after it would be
    # credited to the wrong message. Delete mode: the ISP must keep all of them.
    with FaultPop(NUMBERED, broken={3: "no_terminator"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
        assert run.outcome == FetchOutcome.ERROR
        assert run.messages == 0
        assert pop.deleted == []
        assert stored_messages(binding) == []
        assert "fell out of step" in binding.last_error
        assert "one message at a time" in binding.last_error
        assert binding.retr_one_at_a_time is True
        assert SeenUidl.objects.filter(binding=binding).count() == 0  # intents dropped
        assert tmp_is_clean(binding)

        # Next run, one at a time: 1 and 2 are proven by the status line after them and
        # stored; 3 never ends, so it and what follows wait.
        run = binding_fetch(binding=binding)
        assert run.outcome == FetchOutcome.ERROR
        assert_exactly(binding, NUMBERED[:2])
        assert pop.deleted == []  # the session broke before QUIT: nothing applied

        # The server is mended: a clean session one at a time takes the rest, deletes all,
        # and lets pipelining back in.
        pop.broken.clear()
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
        assert (run.outcome, run.messages) == (FetchOutcome.OK, 6), run.error
        assert sorted(pop.deleted) == list(range(1, 9))
        assert binding.retr_one_at_a_time is False
    assert_exactly(binding, NUMBERED)


def test_a_lying_size_is_evidence_not_an_error():
    # The server announces a tenth of message 4's size. Pipelined that cannot be proven;
    # read again one at a time, the message is proven and stored, nothing is lost.
    with FaultPop(NUMBERED, broken={4: "lie_size"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        assert (run.outcome, run.messages) == (FetchOutcome.OK, 8), run.error
        assert "did not arrive with the size announced" in run.error
        assert sorted(pop.deleted) == list(range(1, 9))
    binding.refresh_from_db()
    assert binding.retr_one_at_a_time is True  # until a session goes clean
    assert_exactly(binding, NUMBERED)


def test_a_lone_dot_line_inside_a_message_is_never_stored_as_the_message():
    with FaultPop(NUMBERED, broken={5: "early_dot"}, faults={"no_pipelining"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        assert run.outcome == FetchOutcome.ERROR
        assert "broke the reply to RETR 6" in run.error  # the rest of 5 stood there
        assert pop.deleted == []
    assert_exactly(binding, NUMBERED[:4])


def test_it_stores_the_8_bit_message_not_the_servers_notice():
    eight_bit = (
        b"Subject: =?utf-8?q?caf=C3=A9?=\nFrom: Ren\xc3\xa9 <r@example.com>\n\nna\xc3\xafve\n"
    )
    with FaultPop([eight_bit, *MESSAGES], faults={"utf8_notice"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 5, 5), run.error
        assert "UTF8" in pop.commands()
    assert_exactly(binding, [eight_bit, *MESSAGES])


def test_it_fetches_nothing_from_a_server_that_refuses_utf8_mode():
    with FaultPop(MESSAGES, faults={"utf8_refused"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
        assert run.outcome == FetchOutcome.ERROR
        assert binding.state == BindingState.NEEDS_ATTENTION
        assert "refused to enable it" in binding.last_error
        assert pop.deleted == []


def test_it_ends_a_trickle_in_bounded_time_and_keeps_what_was_proven(settings):
    settings.POP3_TIMEOUT = 5.0
    settings.POP3_MIN_PROGRESS_BYTES = 1024
    settings.POP3_MIN_PROGRESS_SECONDS = 1.0
    with FaultPop(MESSAGES, faults={"trickle"}, trickle_delay=0.02) as pop:
        binding = bind(pop)
        started = time.monotonic()
        run = binding_fetch(binding=binding)
        took = time.monotonic() - started
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert took < 5
    assert "too slow to be a working server" in binding.last_error
    assert binding.state == BindingState.RETRYING


def test_a_keep_mode_session_never_reports_deletions_it_did_not_ask_for():
    with FaultPop(MESSAGES, faults={"quit_err"}) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.KEEP)
        run = binding_fetch(binding=binding)
    assert (run.outcome, run.messages, run.error) == (FetchOutcome.OK, 4, "")
    assert_exactly(binding, MESSAGES)


def test_it_explains_a_starttls_that_was_accepted_and_then_failed():
    with FaultPop(MESSAGES, faults={"stls_then_plain"}) as pop:
        binding = bind(pop, security=Security.STARTTLS)
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert binding.last_error.startswith("The server accepted STARTTLS, but then")
    assert not {"USER", "PASS", "AUTH"} & set(pop.commands())


def test_it_refuses_a_server_the_outbound_guard_refuses_and_says_why(settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = False
    with FaultPop(MESSAGES) as pop:
        binding = bind(pop)
        run = binding_fetch(binding=binding)
        assert pop.log == []  # not even a connection
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert binding.state == BindingState.NEEDS_ATTENTION
    assert "AAMail does not connect to 127.0.0.1" in binding.last_error


def test_it_never_quotes_a_service_that_is_not_pop3(settings):
    with FaultPop(MESSAGES, faults={"garbage_greeting"}) as pop:
        binding = bind(pop)
        binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert "does not speak POP3" in binding.last_error
    assert "Welcome" not in binding.last_error


def test_it_notes_since_when_a_binding_has_been_failing():
    binding = BindingFactory(
        host="127.0.0.1", port=free_port(), security=Security.NONE, username="user",
        raw_password="pass",
    )  # fmt: skip
    binding_fetch(binding=binding)
    binding.refresh_from_db()
    first = binding.failing_since
    assert first is not None
    binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert binding.failing_since == first  # the same run of failures
    with FaultPop(MESSAGES) as pop:
        move_to(binding, pop)
        binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert binding.failing_since is None


def test_it_leaves_at_the_isp_what_the_quota_has_no_room_for():
    # Issue 10: a 3.1 MB message was delivered into a 1 MB quota, and deleted at the ISP.
    big = [b"Subject: %d\n\n" % n + b"x" * 400_000 + b"\n" for n in range(1, 4)]
    with FaultPop(big) as pop:
        binding = bind(pop, leave_policy=LeavePolicy.DELETE)
        Account.objects.filter(pk=binding.account_id).update(quota_mb=1)
        binding.refresh_from_db()
        run = binding_fetch(binding=binding)
        binding.refresh_from_db()
        assert run.outcome == FetchOutcome.ERROR
        assert (run.messages, run.deleted) == (2, 2)
        assert sorted(pop.deleted) == [1, 2]  # the third is still at the ISP
        assert binding.state == BindingState.NEEDS_ATTENTION
        assert "is full (quota 1 MB): 1 message(s) wait at the ISP" in binding.last_error
        assert_exactly(binding, big[:2])

        Account.objects.filter(pk=binding.account_id).update(quota_mb=5)
        run = binding_fetch(binding=binding, trigger="manual")
        assert (run.outcome, run.messages) == (FetchOutcome.OK, 1), run.error
        assert sorted(pop.deleted) == [1, 2, 3]
    assert_exactly(binding, big)
