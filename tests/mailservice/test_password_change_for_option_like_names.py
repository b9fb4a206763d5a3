"""A local part may start with "-": the real doveadm must still flush that account's login."""

from __future__ import annotations

import imaplib
import logging

import pytest

from mailservice.passwords import account_local_password_set
from tests import factories
from tests.mailservice.conftest import imap_login

pytestmark = pytest.mark.mailservice

OLD, NEW = "Dash-Local-1", "Dash-Local-2"


def test_it_applies_a_password_change_at_once_for_a_name_starting_with_a_dash(
    transactional_db, office, mail_settings, tls_context, caplog
):
    caplog.set_level(logging.INFO, logger="mailservice")
    account = factories.AccountFactory(localpart="-dash", raw_password=OLD)
    login = account.address
    imap_login(office, tls_context, login, OLD).logout()  # Dovecot now caches this login

    account_local_password_set(account=account, raw=NEW)

    assert "not flushed" not in caplog.text  # doveadm did not read "-dash@…" as an option
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(office, tls_context, login, OLD)
    imap_login(office, tls_context, login, NEW).logout()
