"""The office box against real servers: private Postfix + Dovecot, the fake ISP a real Postfix.

The replies asserted are the ones of mail-service.md §4.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import time
from pathlib import Path

import pytest

from accounts.mailbox import mailbox_prepare
from accounts.models import AccountKind
from mailservice.passwords import account_local_password_set
from tests import factories

from .conftest import (
    DESK_LOCAL,
    SALES_LOCAL,
    SUPPORT_LOCAL,
    imap_login,
    message,
    smtp_auth,
    smtp_submit,
    wait_for_imap_message,
)

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


def _addr(account) -> str:
    return account.address


def test_it_delivers_internal_mail_readable_over_imap_and_pop3(
    office, fake_isp, office_people, tls_context
):
    support, sales = office_people["support"], office_people["sales"]
    before = len(fake_isp.received())
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(support), SUPPORT_LOCAL)
        refused = client.sendmail(
            _addr(support), [_addr(sales)], message(_addr(support), [_addr(sales)], "inside 1")
        )
    assert refused == {}

    raw = wait_for_imap_message(office, tls_context, _addr(sales), SALES_LOCAL, "inside 1")
    assert b"Hello from the test." in raw
    # The same Maildir the POP3 fetcher writes: MAIL_ROOT/<domain>/<localpart>/
    maildir = Path(office.config.mail_root) / sales.domain.name / "sales"
    assert list((maildir / "new").iterdir()) or list((maildir / "cur").iterdir())

    pop = poplib.POP3_SSL("localhost", office.config.ports.pop3s, context=tls_context, timeout=20)
    try:
        pop.user(_addr(sales))
        pop.pass_(SALES_LOCAL)
        count, _size = pop.stat()
        assert count == 1
    finally:
        pop.quit()
    assert len(fake_isp.received()) == before  # nothing went to the ISP


def test_it_relays_outside_mail_with_each_senders_own_isp_login(
    office, fake_isp, office_people, tls_context
):
    support, sales = office_people["support"], office_people["sales"]
    before = len(fake_isp.received())
    # support's binding uses STARTTLS (587-style), sales's SSL/TLS (465-style), same host.
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(support), SUPPORT_LOCAL)
        client.sendmail(
            _addr(support),
            ["partner@outside.test"],
            message(_addr(support), ["partner@outside.test"], "out from support"),
        )
    with smtp_submit(office, tls_context, port="submissions") as client:
        smtp_auth(client, _addr(sales), SALES_LOCAL)
        client.sendmail(
            _addr(sales),
            ["partner@outside.test"],
            message(_addr(sales), ["partner@outside.test"], "out from sales"),
        )

    received = fake_isp.wait_for_messages(before + 2)[before:]
    by_subject = {m["Subject"]: m for m in received}
    support_login = office_people["support_isp"][0]
    sales_login = office_people["sales_isp"][0]
    assert f"(Authenticated sender: {support_login})" in str(
        by_subject["out from support"]["Received"]
    )
    assert f"(Authenticated sender: {sales_login})" in str(by_subject["out from sales"]["Received"])
    lines = fake_isp.sasl_log_lines()
    assert any(
        "isp-postfix/submission/" in line and f"sasl_username={support_login}" in line
        for line in lines
    )
    assert any(
        "isp-postfix/smtps/" in line and f"sasl_username={sales_login}" in line for line in lines
    )
    # The relay's certificate was verified against the ISP host name.
    assert any(
        "Verified TLS connection established to localhost" in line
        for line in office.postfix_log_lines()
    )


def test_it_keeps_special_local_staff_inside(office, fake_isp, office_people, tls_context):
    desk, sales = office_people["desk"], office_people["sales"]
    before = len(fake_isp.received())
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(desk), DESK_LOCAL)
        client.mail(_addr(desk))
        code, reply = client.rcpt("partner@outside.test")
        assert code == 554
        assert b"Special local staff accounts may only send to internal addresses" in reply
        code, _ = client.rcpt(_addr(sales))
        assert code == 250
        code, _ = client.data(message(_addr(desk), [_addr(sales)], "from the desk"))
        assert code == 250
    wait_for_imap_message(office, tls_context, _addr(sales), SALES_LOCAL, "from the desk")
    assert len(fake_isp.received()) == before


def test_it_refuses_wrong_and_isp_passwords_at_imap_and_submission(
    office, office_people, tls_context
):
    support = office_people["support"]
    isp_password = office_people["support_isp"][1]
    for wrong in ("not-the-password", isp_password):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap_login(office, tls_context, _addr(support), wrong)
        with smtp_submit(office, tls_context) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
                smtp_auth(client, _addr(support), wrong)
            assert excinfo.value.smtp_code == 535
    imap_login(office, tls_context, _addr(support), SUPPORT_LOCAL).logout()


def test_it_refuses_sending_as_someone_else(office, office_people, tls_context):
    support, sales = office_people["support"], office_people["sales"]
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(support), SUPPORT_LOCAL)
        client.mail(_addr(sales))
        code, reply = client.rcpt(_addr(support))
    assert code == 553
    assert f"not owned by user {_addr(support)}".encode() in reply


def test_it_refuses_submission_without_tls_or_auth(office, office_people):
    client = smtplib.SMTP("localhost", office.config.ports.submission, timeout=20)
    try:
        client.ehlo()
        assert "auth" not in client.esmtp_features  # AUTH only after STARTTLS
        client.mail("someone@outside.test")
        code, _ = client.rcpt("partner@outside.test")
        assert code == 530  # 5.7.0 Must issue a STARTTLS command first
    finally:
        client.close()


def test_it_applies_a_password_change_at_once(office, office_people, tls_context):
    support = office_people["support"]
    imap_login(office, tls_context, _addr(support), SUPPORT_LOCAL).logout()  # now cached
    account_local_password_set(account=support, raw="Brand-New-Local-9")

    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(office, tls_context, _addr(support), SUPPORT_LOCAL)
    imap_login(office, tls_context, _addr(support), "Brand-New-Local-9").logout()
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(support), "Brand-New-Local-9")


def test_it_delivers_plus_extension_addresses_to_the_account(office, office_people, tls_context):
    support, sales = office_people["support"], office_people["sales"]
    extension = f"sales+news@{sales.domain.name}"
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(support), SUPPORT_LOCAL)
        client.sendmail(_addr(support), [extension], message(_addr(support), [extension], "ext"))
    raw = wait_for_imap_message(office, tls_context, _addr(sales), SALES_LOCAL, "ext")
    assert f"To: {extension}".encode() in raw  # headers untouched


def test_it_refuses_outside_mail_for_an_account_without_relay(office, office_people, tls_context):
    lonely = factories.AccountFactory(
        domain=office_people["domain"], localpart="lonely", raw_password="Lonely-Local-5"
    )
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, lonely.address, "Lonely-Local-5")
        client.mail(lonely.address)
        code, reply = client.rcpt("partner@outside.test")
        assert code == 554
        assert b"no outgoing ISP relay" in reply
        code, _ = client.rcpt(_addr(office_people["sales"]))
        assert code == 250


def test_it_applies_a_kind_change_on_the_next_lookup(office, office_people, tls_context):
    support = office_people["support"]
    support.kind = AccountKind.SPECIAL_LOCAL_STAFF
    support.save()
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(support), SUPPORT_LOCAL)
        client.mail(_addr(support))
        code, reply = client.rcpt("partner@outside.test")
    assert code == 554
    assert b"Special local staff" in reply


def test_it_reads_a_message_the_fetcher_wrote_into_the_maildir(office, office_people, tls_context):
    # What mapping/maildir.py does: write tmp/, rename into new/, as the mail owner.
    sales = office_people["sales"]
    maildir = mailbox_prepare(sales)
    assert maildir == Path(office.config.mail_root) / sales.domain.name / "sales"
    name = f"{int(time.time())}.fetched.test"
    tmp = maildir / "tmp" / name
    tmp.write_bytes(b"From: isp@outside.test\nSubject: fetched one\n\nbody\n")
    os.chown(tmp, office.config.mail_uid, office.config.mail_gid)
    tmp.rename(maildir / "new" / name)
    wait_for_imap_message(office, tls_context, _addr(sales), SALES_LOCAL, "fetched one")


def test_it_delivers_to_a_colleague_whose_domain_directory_the_fetcher_made(
    office, office_people, tls_context
):
    # The fetcher (root) made the domain's directory for sales; frontdesk never fetched, so
    # Dovecot (as the mail user) must be able to create frontdesk's Maildir next to it.
    support, desk = office_people["support"], office_people["desk"]
    mailbox_prepare(office_people["sales"])
    domain_dir = Path(office.config.mail_root) / desk.domain.name
    assert domain_dir.stat().st_uid == office.config.mail_uid
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, _addr(support), SUPPORT_LOCAL)
        client.sendmail(_addr(support), [_addr(desk)], message(_addr(support), [_addr(desk)], "hi"))
    wait_for_imap_message(office, tls_context, _addr(desk), DESK_LOCAL, "hi")
