"""Changing an account's local password, the one Dovecot and Postfix check.

The one way a local password changes after the account exists: self-service (/me/password/)
and the Account dialog's General tab both come here.
"""

from __future__ import annotations

from django.db import transaction

from accounts.backends import account_sessions_end
from accounts.models import Account

from .dovecot_cache import auth_cache_flush


def account_local_password_set(*, account: Account, raw: str) -> None:
    """Store a new local password, end the account's console sessions, tell Dovecot.

    The caller that made the change keeps its own session with
    django.contrib.auth.update_session_auth_hash(request, account.user).
    """
    with transaction.atomic():
        account.set_password(raw)
        account.save()
        account_sessions_end(account=account)
    # Flush once the new hash is committed, or Dovecot could re-cache the old one.
    address = account.address
    transaction.on_commit(lambda: auth_cache_flush(username=address))
