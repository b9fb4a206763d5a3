"""Changing an account's local password, the one Dovecot and Postfix check."""

from __future__ import annotations

from django.db import transaction

from accounts.models import Account

from .dovecot_cache import auth_cache_flush


def account_local_password_set(*, account: Account, raw: str) -> None:
    """Store a new local password and make IMAP/POP3/SMTP use it at once."""
    account.set_password(raw)
    account.save()
    # Flush once the new hash is committed, or Dovecot could re-cache the old one.
    address = account.address
    transaction.on_commit(lambda: auth_cache_flush(username=address))
