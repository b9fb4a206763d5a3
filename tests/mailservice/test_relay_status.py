"""Outgoing mail made visible (issue 12): a relay the ISP refuses is marked failing, with
words an administrator acts on, and recovers once mail leaves; bounces are counted.

Real office Postfix, the ISP a second real Postfix whose AUTH refuses a wrong password; the
relay watch reads the office's queue (postqueue -j) and its bounce notices.
"""

from __future__ import annotations

import io
import time

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from alerts import tasks as alerts_tasks
from mailservice.models import RelayState, RelayStatus
from mailservice.relaywatch import relay_watch_once
from tests import factories

from .conftest import SUPPORT_LOCAL, message, smtp_auth, smtp_submit

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


def _send(office, context, sender: str, recipient: str, subject: str) -> None:
    with smtp_submit(office, context) as client:
        smtp_auth(client, sender, SUPPORT_LOCAL)
        client.sendmail(sender, [recipient], message(sender, [recipient], subject))


def _watch_until(office, binding, done, timeout: float = 20.0, flush=False) -> RelayStatus:
    """Run relay watch passes until `done(status)` holds (Postfix works in the background).

    With `flush`, Postfix retries what waits at each pass: the test ISP's Dovecot re-reads
    its users file at most once a second, so a login made in the second its account was
    added can be refused once (a deferral, not what the test is about).
    """
    deadline = time.monotonic() + timeout
    while True:
        if flush:
            office.flush_queue()
        relay_watch_once(postfix_dir=office.config.postfix_dir, mail_root=office.config.mail_root)
        status = RelayStatus.objects.filter(binding=binding).first()
        if status is not None and done(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"relay status never got there: {status and vars(status)}")
        time.sleep(1.0 if flush else 0.2)


def test_it_marks_the_relay_failing_when_the_isp_refuses_the_login_and_clears_it_after(
    office, fake_isp, office_people, tls_context
):
    binding = office_people["support_binding"]
    login, right_password = office_people["support_isp"]
    binding.set_isp_password("not the ISP password")
    binding.save()
    support = office_people["support"].address
    sent_at = time.time()
    _send(office, tls_context, support, "partner@outside.test", "refused login")

    status = _watch_until(office, binding, lambda s: s.state == RelayState.FAILING)
    assert status.deferred == 1
    assert status.last_error.startswith(f"The ISP refused the relay login of {login} (535 5.7.8")
    assert "mail to the outside waits in the queue" in status.last_error
    assert abs(status.failing_since.timestamp() - sent_at) < 5
    assert status.checked_at is not None

    # Fixed: the password is right again; Postfix retries and the queue empties.
    before = len(fake_isp.received())
    binding.set_isp_password(right_password)
    binding.save()
    office.flush_queue()
    fake_isp.wait_for_messages(before + 1)
    status = _watch_until(office, binding, lambda s: s.state == RelayState.OK)
    assert (status.deferred, status.failing_since, status.last_error) == (0, None, "")


def test_it_counts_a_message_the_isp_returns_to_the_sender(
    office, fake_isp, office_people, tls_context
):
    binding = office_people["support_binding"]
    support = office_people["support"].address
    _send(office, tls_context, support, "refused@outside.test", "refused recipient")

    status = _watch_until(office, binding, lambda s: s.bounced == 1, flush=True)
    assert status.state == RelayState.OK
    assert status.deferred == 0
    assert "refused@outside.test" in status.last_error
    assert "554 5.1.1" in status.last_error


def test_it_leaves_the_relays_of_other_accounts_alone(office, fake_isp, office_people, tls_context):
    support_binding = office_people["support_binding"]
    support_binding.set_isp_password("not the ISP password")
    support_binding.save()
    support = office_people["support"].address
    _send(office, tls_context, support, "partner@outside.test", "only support waits")
    _watch_until(office, support_binding, lambda s: s.state == RelayState.FAILING)

    assert not RelayStatus.objects.filter(binding=office_people["sales_binding"]).exists()
    # Leave the queue empty for the next test.
    support_binding.set_isp_password(office_people["support_isp"][1])
    support_binding.save()
    office.flush_queue()
    _watch_until(office, support_binding, lambda s: s.state == RelayState.OK)


def test_the_command_does_one_pass_and_says_what_it_saw(office, office_people, mail_settings):
    out = io.StringIO()
    call_command(
        "relaywatch", "--once", "--postfix-dir", str(office.config.postfix_dir), stdout=out
    )
    assert out.getvalue().strip().endswith("returned to their senders.")


def test_the_command_says_in_words_when_it_cannot_read_the_queue(tmp_path, db):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/nowhere\n")
    with pytest.raises(CommandError, match=r"postqueue -c .* -j failed: "):
        call_command("relaywatch", "--once", "--postfix-dir", str(tmp_path))


def test_a_refused_relay_login_is_alerted_like_a_fetch_failure(
    office, fake_isp, office_people, tls_context
):
    domain = office_people["domain"]
    domain.alert_after_minutes = 0  # tell at once: the test does not wait half an hour
    domain.save()
    factories.AdminAccountFactory(domain=domain, localpart="boss")
    binding = office_people["support_binding"]
    login, right_password = office_people["support_isp"]
    binding.set_isp_password("not the ISP password")
    binding.save()
    support = office_people["support"].address
    _send(office, tls_context, support, "partner@outside.test", "alerted relay")
    _watch_until(office, binding, lambda s: s.state == RelayState.FAILING)

    alerts_tasks.alerts_scan()
    [message] = mail.outbox
    assert message.to == [f"boss@{domain.name}"]
    assert f"outgoing relay {login} on localhost:" in message.body
    assert f"The ISP refused the relay login of {login} (535 5.7.8" in message.body

    binding.set_isp_password(right_password)
    binding.save()
    office.flush_queue()
    _watch_until(office, binding, lambda s: s.state == RelayState.OK)
    alerts_tasks.alerts_scan()
    assert "1 recovered" in mail.outbox[1].subject
