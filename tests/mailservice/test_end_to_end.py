"""The whole story: a message arrives at the ISP, the real Celery worker fetches it over POP3
into the employee's Maildir, and the employee reads it over IMAP from the office Dovecot."""

from __future__ import annotations

import pytest

from domains.models import Security
from mapping.models import LeavePolicy
from tests import factories
from tests.servers.celeryworker import celery_worker
from tests.servers.dovecot import Dovecot

from .conftest import SALES_LOCAL, imap_login, wait_for_imap_message

ISP_POP3_PASSWORD = "Isp-Pop3-Sesame-7"

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def isp_pop3():
    with Dovecot() as server:
        yield server


def test_a_message_sent_at_the_isp_is_fetched_by_the_worker_and_read_over_imap(
    office, isp_pop3, tls_context, mail_settings, tmp_path
):
    domain = factories.DomainFactory()
    sales = factories.AccountFactory(domain=domain, localpart="sales", raw_password=SALES_LOCAL)
    isp_pop3.add_user("ispsales", ISP_POP3_PASSWORD)
    binding = factories.BindingFactory(
        account=sales,
        host="localhost",
        port=isp_pop3.pop3_port,
        security=Security.STARTTLS,
        username="ispsales",
        raw_password=ISP_POP3_PASSWORD,
        leave_policy=LeavePolicy.DELETE,
    )
    isp_pop3.deliver(
        "ispsales",
        b"From: customer@outside.test\nTo: sales@isp.example\nSubject: order 4711\n\n"
        b"Please send 3 boxes.\n",
    )

    env = {
        # The fetcher writes where the office Dovecot reads, as the user Dovecot runs mail as.
        "MAIL_ROOT": office.config.mail_root,
        "MAIL_UID": str(office.config.mail_uid),
        "MAIL_GID": str(office.config.mail_gid),
        "ISP_CA_FILE": str(isp_pop3.ca_pem),
    }
    with celery_worker(tmp_path, env) as worker:
        worker.tick()
        worker.wait_until_fetched(binding)

    raw = wait_for_imap_message(office, tls_context, sales.address, SALES_LOCAL, "order 4711")
    assert b"Please send 3 boxes." in raw
    assert isp_pop3.messages("ispsales") == []  # delete policy: gone from the ISP
    # Dovecot could move it new/ -> cur/ and flag it: the file belongs to the mail user.
    client = imap_login(office, tls_context, sales.address, SALES_LOCAL)
    try:
        client.select("INBOX")
        _typ, data = client.search(None, "SUBJECT", '"order 4711"')
        typ, _ = client.store(data[0].split()[-1], "+FLAGS", "\\Seen")
        assert typ == "OK"
    finally:
        client.logout()
