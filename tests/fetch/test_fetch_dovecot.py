"""binding_fetch against a real Dovecot: exact bytes in every security mode, each policy."""

from __future__ import annotations

import hashlib
import os
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.mailbox import mailbox_path
from domains.models import Security
from mapping.fetch import binding_fetch
from mapping.models import BindingState, FetchOutcome, LeavePolicy, SeenUidl
from tests.fetch.conftest import (
    TRACE_PREFIX,
    as_fetched,
    assert_exactly,
    maildir_files,
    stored_messages,
)

pytestmark = pytest.mark.django_db


def corpus(seed: int, count: int = 40) -> list[bytes]:
    """Messages with what breaks fetchers: 8-bit bytes, dot lines, long lines, no final LF.

    Not a message whose very first line starts with ".": Dovecot 2.3 sends that line
    unstuffed (seen on the wire), so its dot is lost by any RFC 1939 reader. Such a first
    line is no valid header anyway; the fault server covers it (test_fetch_faults).
    """
    rnd = random.Random(seed)
    awkward = [
        b"From: a@example.com\nSubject: 8 bit \xe9\xe8\xff\x80\n\nCaf\xe9 \x00\x01 binary-ish\n",
        b"Subject: dots\n\n.\n..\n...\n.leading dot\n..two dots\n. space\nend\n",
        b"Subject: no final newline\n\nlast line has no LF",
        b"Subject: crlf\r\nX-Crlf: yes\r\n\r\nbare\rcr inside\nlf line\r\ncrlf line\n",
        b"Subject: 9000-byte line (fetchmail's limit)\n\n" + b"A" * 9000 + b"\nafter\n",
        b"Subject: 1.5 MiB line (getmail's limit)\n\n" + b"b64" * 524_288 + b"\n.\n",
        b"Subject: empty body\n\n",
    ]
    plain = [
        b"Subject: %d-%d\nMessage-ID: <%d@test>\n\n" % (seed, i, i)
        + os.urandom(rnd.randint(0, 6000)).hex().encode()
        + b"\n"
        for i in range(count - len(awkward))
    ]
    messages = awkward + plain
    rnd.shuffle(messages)
    return messages


@pytest.mark.parametrize("security", [Security.NONE, Security.STARTTLS, Security.SSL])
def test_it_stores_every_message_exactly_in_each_security_mode(isp, make_binding, security):
    binding = make_binding(security=security)
    messages = corpus(seed=len(security))
    for raw in messages:
        isp.deliver(binding.username, raw)

    run = binding_fetch(binding=binding)

    assert (run.outcome, run.error) == (FetchOutcome.OK, "")
    assert run.messages == len(messages)
    assert run.bytes == sum(len(as_fetched(m)) for m in messages)
    assert_exactly(binding, messages)
    assert len(isp.messages(binding.username)) == len(messages)  # keep is the default


def test_it_stores_a_message_over_20_mb_byte_exact(isp, make_binding):
    binding = make_binding(leave_policy=LeavePolicy.DELETE)
    line = b"y" * 997 + b"\r\n"
    raw = b"Subject: big\n\n" + line * 21_500 + b"." * 3_000_000 + b"\n.\nend"
    assert len(raw) > 20 * 1024 * 1024
    isp.deliver(binding.username, raw)
    want = hashlib.sha256(as_fetched(raw)).hexdigest()
    del raw

    run = binding_fetch(binding=binding)

    assert run.outcome == FetchOutcome.OK, run.error
    (path,) = maildir_files(mailbox_path(binding.account))
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        assert f.readline().startswith(TRACE_PREFIX)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    assert digest.hexdigest() == want
    assert run.bytes == size
    assert isp.messages(binding.username) == []


def test_it_fetches_only_new_messages_on_the_next_run(isp, make_binding):
    binding = make_binding()
    first = corpus(seed=11, count=12)
    for raw in first:
        isp.deliver(binding.username, raw)
    assert binding_fetch(binding=binding).messages == 12
    second = [b"Subject: later %d\n\nnew\n" % i for i in range(3)]
    for raw in second:
        isp.deliver(binding.username, raw)

    run = binding_fetch(binding=binding)

    assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 3, 0)
    assert_exactly(binding, first + second)
    assert binding_fetch(binding=binding).messages == 0


def test_it_keeps_messages_on_the_server_in_keep_mode(isp, make_binding):
    binding = make_binding(leave_policy=LeavePolicy.KEEP)
    for i in range(5):
        isp.deliver(binding.username, b"Subject: %d\n\nkeep me\n" % i)
    binding_fetch(binding=binding)
    binding_fetch(binding=binding)
    assert len(isp.messages(binding.username)) == 5
    assert len(stored_messages(binding)) == 5


def test_it_deletes_on_the_server_once_stored(isp, make_binding):
    binding = make_binding(security=Security.SSL, leave_policy=LeavePolicy.DELETE)
    messages = corpus(seed=5, count=30)
    for raw in messages:
        isp.deliver(binding.username, raw)

    run = binding_fetch(binding=binding)

    assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 30, 30)
    assert isp.messages(binding.username) == []
    assert_exactly(binding, messages)
    assert SeenUidl.objects.filter(binding=binding, deleted_on_server_at__isnull=True).count() == 0
    # The rows of deleted messages go at the next successful listing.
    binding_fetch(binding=binding)
    assert not SeenUidl.objects.filter(binding=binding).exists()


def test_it_deletes_after_n_days_counted_from_first_seen(isp, make_binding):
    binding = make_binding(leave_policy=LeavePolicy.DELETE_AFTER, delete_after_days=7)
    for i in range(4):
        isp.deliver(binding.username, b"Subject: %d\n\nold or young\n" % i)
    run = binding_fetch(binding=binding)
    assert (run.messages, run.deleted) == (4, 0)
    rows = list(SeenUidl.objects.filter(binding=binding).order_by("pk"))
    old = rows[:2]
    SeenUidl.objects.filter(pk__in=[r.pk for r in old]).update(
        first_seen_at=timezone.now() - timedelta(days=7, minutes=1)
    )
    SeenUidl.objects.filter(pk=rows[2].pk).update(
        first_seen_at=timezone.now() - timedelta(days=6, hours=23)
    )

    run = binding_fetch(binding=binding)

    assert (run.outcome, run.messages, run.deleted) == (FetchOutcome.OK, 0, 2)
    assert len(isp.messages(binding.username)) == 2
    assert len(stored_messages(binding)) == 4
    deleted = SeenUidl.objects.filter(binding=binding, deleted_on_server_at__isnull=False)
    assert {r.uidl for r in deleted} == {rows[0].uidl, rows[1].uidl}
    binding_fetch(binding=binding)  # the next listing forgets what the server no longer has
    left = set(SeenUidl.objects.filter(binding=binding).values_list("uidl", flat=True))
    assert left == {rows[2].uidl, rows[3].uidl}


def test_it_records_status_counters_and_the_next_fetch(isp, make_binding):
    binding = make_binding(fetch_interval_minutes=7)
    for i in range(3):
        isp.deliver(binding.username, b"Subject: %d\n\n12345\n" % i)
    before = timezone.now()

    run = binding_fetch(binding=binding, trigger="manual")

    binding.refresh_from_db()
    assert binding.state == BindingState.OK
    assert binding.last_error == ""
    assert before <= binding.last_success_at == binding.last_check_at
    assert binding.messages_fetched == 3
    assert binding.bytes_fetched == run.bytes == 3 * len(b"Subject: 0\n\n12345\n")
    assert binding.schedule.next_fetch_at - binding.last_success_at == timedelta(minutes=7)
    assert binding.schedule.lease_token is None
    assert not binding.fetch_running
    assert (run.trigger, run.finished_at is not None) == ("manual", True)


def test_it_writes_files_as_the_mail_user(isp, make_binding, settings):
    settings.MAIL_UID = settings.MAIL_GID = 8  # Debian's mail user, as Dovecot runs
    binding = make_binding()
    isp.deliver(binding.username, b"Subject: owner\n\nx\n")
    binding_fetch(binding=binding)
    root = mailbox_path(binding.account)
    for path in [root, root / "new", root / "cur", root / "tmp", *maildir_files(root)]:
        assert (path.stat().st_uid, path.stat().st_gid) == (8, 8), path


def test_it_refuses_an_untrusted_certificate_and_says_why(isp, make_binding, settings):
    binding = make_binding(security=Security.SSL)
    settings.ISP_CA_FILE = None  # the private CA is not in the system store
    isp.deliver(binding.username, b"Subject: x\n\nx\n")

    run = binding_fetch(binding=binding)

    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert "not trusted" in binding.last_error
    assert binding.state == BindingState.NEEDS_ATTENTION
    assert binding.schedule.next_fetch_at is not None  # retried with backoff: the ISP may fix it
    assert stored_messages(binding) == []
