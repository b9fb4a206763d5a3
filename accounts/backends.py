"""Console login for mail accounts: address + local password.

Each account that logs in gets a companion Django user (no usable password of its own) so
sessions, CSRF and the admin's machinery work unchanged; what it may do is decided from the
account's kind on every request (accounts.access).

The companion's password field is never a password, but Django signs every session with a
hash of it (get_session_auth_hash): renewing its unusable value when the account's local
password changes ends every session of that account, as a password change does for any
Django user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.hashers import make_password
from django.http import HttpRequest

from .models import Account

if TYPE_CHECKING:
    from django.contrib.auth.models import User  # AUTH_USER_MODEL


def _split_address(address: str) -> tuple[str, str] | None:
    localpart, sep, domain = (address or "").strip().lower().rpartition("@")
    return (localpart, domain) if sep and localpart and domain else None


def account_sessions_end(*, account: Account) -> None:
    """End every console session of `account` (a caller may then keep its own)."""
    if account.user_id is None:
        return  # never logged in: no session to end
    user = account.user
    user.set_unusable_password()  # "!" + random: a new session hash, still no password
    user.save(update_fields=["password"])


class MailAccountBackend(BaseBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None
    ) -> User | None:
        parts = _split_address(username or "")
        if parts is None or not password:
            return None
        account = (
            Account.objects.select_related("domain", "user")
            .filter(
                localpart=parts[0], domain__name=parts[1], is_active=True, domain__is_active=True
            )
            .first()
        )
        if account is None:
            make_password(password)  # same cost as a real check: no user-enumeration by timing
            return None
        if not account.check_password(password):
            return None
        return self._companion_user(account)

    def get_user(self, user_id: int) -> User | None:
        User = get_user_model()
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            return None
        account = getattr(user, "mail_account", None)
        if account is not None and not (account.is_active and account.domain.is_active):
            return None
        return user

    @staticmethod
    def _companion_user(account: Account) -> User:
        User = get_user_model()
        if account.user_id is None:
            user, _ = User.objects.get_or_create(
                username=f"account:{account.pk}", defaults={"password": make_password(None)}
            )
            Account.objects.filter(pk=account.pk).update(user=user)
            account.user = user
        return account.user
