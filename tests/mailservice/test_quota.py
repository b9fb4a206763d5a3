"""Dovecot enforces the account's quota, and counts what the POP3 fetcher stored (issue 10, 6).

Real office Postfix + Dovecot: LMTP refuses a message that does not fit with 552 5.2.2 and
a sentence, Postfix returns it to the sender, nothing lands in the Maildir.
"""

from __future__ import annotations

import os

import pytest

from accounts.mailbox import mailbox_prepare, quota_add, quota_allows, quota_usage
from mailservice.config import QUOTA_MESSAGE

from .conftest import (
    SALES_LOCAL,
    SUPPORT_LOCAL,
    message,
    smtp_auth,
    smtp_submit,
    wait_for_imap_message,
)

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]

LINE = b"x" * 76 + b"\r\n"


def _send(office, context, sender: str, recipient: str, subject: str, size: int) -> None:
    body = message(sender, [recipient], subject) + LINE * (size // len(LINE))
    with smtp_submit(office, context) as client:
        smtp_auth(client, sender, SUPPORT_LOCAL)
        assert client.sendmail(sender, [recipient], body) == {}


def _bounce_text(office, context, sender: str) -> str:
    raw = wait_for_imap_message(
        office, context, sender, SUPPORT_LOCAL, "Undelivered Mail Returned to Sender", 30
    )
    return " ".join(raw.decode(errors="replace").split())  # Postfix folds long replies


def _delivered(account) -> list:
    maildir = mailbox_prepare(account)
    return [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]


def test_it_returns_a_message_larger_than_the_quota_to_its_sender(
    office, office_people, tls_context
):
    support, sales = office_people["support"], office_people["sales"]
    sales.quota_mb = 1
    sales.save()
    _send(office, tls_context, support.address, sales.address, "too big", 1_500_000)

    bounce = _bounce_text(office, tls_context, support.address)
    assert "552 5.2.2" in bounce
    assert QUOTA_MESSAGE in bounce
    assert _delivered(sales) == []


def test_it_counts_what_the_fetcher_stored_against_the_quota(office, office_people, tls_context):
    support, sales = office_people["support"], office_people["sales"]
    sales.quota_mb = 1
    sales.save()
    # A first delivery through Dovecot: it now keeps the Maildir's maildirsize.
    _send(office, tls_context, support.address, sales.address, "small one", 10_000)
    wait_for_imap_message(office, tls_context, sales.address, SALES_LOCAL, "small one")
    maildir = mailbox_prepare(sales)
    assert (maildir / "maildirsize").exists()

    # What the fetcher does: store a 900 KB message itself, then count it.
    fetched = b"Subject: fetched\n\n" + b"y" * 900_000
    assert quota_allows(sales, len(fetched))
    path = maildir / "new" / "1700000000.M1P1.fetcher"
    path.write_bytes(fetched)
    os.chown(path, office.config.mail_uid, office.config.mail_gid)
    quota_add(sales, len(fetched))

    used, messages = quota_usage(sales)
    assert messages == 2
    assert used > 900_000
    report = office.doveadm("quota", "get", "-u", sales.address)
    assert report.returncode == 0, report.stderr
    storage = next(line.split() for line in report.stdout.splitlines() if "STORAGE" in line)
    assert int(storage[-3]) == -(-used // 1024)  # Dovecot counts the same, in KiB rounded up
    assert not quota_allows(sales, 200_000)

    _send(office, tls_context, support.address, sales.address, "no room", 200_000)
    assert QUOTA_MESSAGE in _bounce_text(office, tls_context, support.address)
    assert len(_delivered(sales)) == 2
