"""How full a mailbox is, counted as Dovecot's Maildir++ quota counts it, and where it shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from accounts.mailbox import (
    MIB,
    mailbox_prepare,
    quota_add,
    quota_allows,
    quota_status,
    quota_usage,
)
from tests import factories

pytestmark = pytest.mark.django_db


def _store(maildir: Path, name: str, size: int, folder: str = "") -> None:
    target = maildir / folder / "cur" if folder else maildir / "new"
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_bytes(b"x" * size)


@pytest.fixture
def account():
    return factories.AccountFactory(quota_mb=1)


def test_it_counts_the_files_when_dovecot_keeps_no_maildirsize(account):
    maildir = mailbox_prepare(account)
    assert quota_usage(account) == (0, 0)
    _store(maildir, "a", 1000)
    _store(maildir, "b", 2000, folder=".Sent")
    (maildir / "tmp" / "half-written").write_bytes(b"x" * 5000)  # not a message yet
    assert quota_usage(account) == (3000, 2)


def test_it_reads_dovecots_maildirsize_and_appends_what_the_fetcher_stored(account):
    maildir = mailbox_prepare(account)
    (maildir / "maildirsize").write_text(f"{MIB}S\n4000 2\n-1000 -1\n")
    assert quota_usage(account) == (3000, 1)
    quota_add(account, 500)
    assert (maildir / "maildirsize").read_text().endswith("-1000 -1\n500 1\n")
    assert quota_usage(account) == (3500, 2)


def test_it_leaves_a_missing_maildirsize_to_dovecot(account):
    maildir = mailbox_prepare(account)
    quota_add(account, 500)
    assert not (maildir / "maildirsize").exists()


def test_it_allows_what_fits_and_nothing_more(account):
    maildir = mailbox_prepare(account)
    (maildir / "maildirsize").write_text(f"{MIB}S\n{MIB - 100} 3\n")
    assert quota_allows(account, 100)
    assert not quota_allows(account, 101)
    account.quota_mb = 0  # no limit
    assert quota_allows(account, 10 * MIB)


def test_it_reports_usage_against_the_limit(account):
    maildir = mailbox_prepare(account)
    (maildir / "maildirsize").write_text(f"{MIB}S\n{MIB // 4} 3\n")
    usage = quota_status(account)
    assert (usage.bytes, usage.messages, usage.limit, usage.percent) == (MIB // 4, 3, MIB, 25)
    assert not usage.full
    account.quota_mb = 0
    assert quota_status(account).percent is None


def test_it_shows_usage_on_the_general_tab(admin_client_su, account):
    _store(mailbox_prepare(account), "a", 300_000)
    response = admin_client_su.get(reverse("account-general", args=[account.pk]))
    text = " ".join(response.content.decode().split())  # also turns \xa0 into spaces
    assert response.status_code == 200
    assert "Mailbox: <strong>293.0 KB</strong> in 1 message of a 1.0 MB quota (29 %)." in text


def test_it_shows_usage_on_the_self_service_page(client):
    account = factories.AccountFactory(quota_mb=0)
    _store(mailbox_prepare(account), "a", 2048)
    _store(mailbox_prepare(account), "b", 2048)
    assert client.login(username=account.address, password=factories.LOCAL_PASSWORD)
    text = " ".join(client.get(reverse("selfservice")).content.decode().split())
    assert "Mailbox: <strong>4.0 KB</strong> in 2 messages (no quota)." in text
