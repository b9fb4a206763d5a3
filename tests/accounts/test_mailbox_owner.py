"""Mail files belong to the user Dovecot reads mail as, whoever runs the fetcher (issue 10, 1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from accounts import mailbox
from accounts.mailbox import MailOwnerError, check_mail_owner, mail_owner, mailbox_prepare
from tests import factories

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")


def test_it_defaults_to_debians_mail_user(settings):
    settings.MAIL_UID = settings.MAIL_GID = None
    assert mail_owner() == (8, 8)


def test_it_refuses_root_as_the_mail_owner(settings):
    settings.MAIL_UID = 0
    with pytest.raises(MailOwnerError, match="must not be root"):
        mail_owner()


@needs_root
def test_root_may_store_mail_for_the_mail_user(settings):
    settings.MAIL_UID = settings.MAIL_GID = None
    assert check_mail_owner() == (8, 8)


def test_it_explains_why_another_user_cannot_store_mail(settings, monkeypatch):
    settings.MAIL_UID = settings.MAIL_GID = None
    monkeypatch.setattr(mailbox.os, "geteuid", lambda: 1000)
    with pytest.raises(MailOwnerError) as excinfo:
        check_mail_owner()
    text = str(excinfo.value)
    assert "uid 1000" in text
    assert "uid 8" in text
    assert "Run the worker as root" in text


def test_it_explains_an_unwritable_mail_root(settings, monkeypatch, tmp_path):
    settings.MAIL_ROOT = tmp_path / "mail"
    monkeypatch.setattr(mailbox.os, "access", lambda path, mode: False)
    with pytest.raises(MailOwnerError, match="is not writable"):
        check_mail_owner()


@needs_root
@pytest.mark.django_db
def test_it_gives_the_maildir_and_its_parents_to_the_mail_user(settings, tmp_path):
    settings.MAIL_ROOT = tmp_path / "mail"
    settings.MAIL_UID = settings.MAIL_GID = None
    account = factories.AccountFactory()
    maildir = mailbox_prepare(account)
    for path in (maildir.parent.parent, maildir.parent, maildir, maildir / "new"):
        assert (path.stat().st_uid, path.stat().st_gid) == (8, 8), path
    assert maildir.stat().st_mode & 0o777 == 0o700


def test_the_worker_refuses_to_start_without_a_usable_mail_owner(tmp_path):
    env = {
        **os.environ,
        "MAIL_UID": "0",
        "MAIL_ROOT": str(tmp_path / "mail"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "memory://",
    }
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "aamail", "worker", "--loglevel", "INFO"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "The Celery worker cannot start: MAIL_UID/MAIL_GID must not be root" in result.stderr
