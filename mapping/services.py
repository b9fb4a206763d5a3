"""Writes to remote POP3 accounts from the console (the fetcher's writes: lease, seen, status)."""

from __future__ import annotations

import time

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Account
from domains.models import Domain
from domains.rules import binding_rule_text

from .forms import BindingForm
from .models import Binding, BindingState, OAuthCredential, Schedule
from .oauth import grants
from .oauth.tokens import TokenSet

_SECRETS = ["password_encrypted", "smtp_password_encrypted"]
_RETRY_SOON = ["state", "consecutive_failures"]


def binding_refusal_text(account: Account) -> str:
    """Why `account` may not have remote POP3 accounts, in the seed's words."""
    return (
        f"{account.address} ({account.get_kind_display()}) cannot have remote POP3 accounts: "
        f"{binding_rule_text(account.domain.domain_type)}"
    )


def _one_outgoing_relay(binding: Binding) -> None:
    if binding.is_outgoing_relay:
        Binding.objects.filter(account=binding.account_id).exclude(pk=binding.pk).update(
            is_outgoing_relay=False
        )


@transaction.atomic
def binding_save(*, form: BindingForm) -> Binding:
    """Save a binding edited in the console; an edit clears "needs attention" and refetches."""
    binding = form.save(commit=False)
    creating = binding.pk is None
    changed = creating or form.has_changed()
    # Still waiting for a sign-in (issue 15): no edit but a new sign-in can change that.
    waiting = bool(binding.oauth_provider) and binding.state == BindingState.NEEDS_SIGN_IN
    reschedule, due = False, None  # the schedule's next fetch stays unless an edit moves it
    if changed and not waiting:
        # The administrator changed something: try again soon instead of waiting for backoff.
        if binding.state in (BindingState.NEEDS_ATTENTION, BindingState.NEEDS_SIGN_IN):
            binding.state = BindingState.RETRYING
        binding.consecutive_failures = 0
        reschedule, due = True, timezone.now() if binding.enabled else None
    if binding.oauth_provider and (creating or form.discards_sign_in):
        _await_sign_in(binding)
        reschedule, due = True, None
    if creating:
        binding.save()  # with its schedule (Binding.save)
    else:
        if reschedule:  # the schedule first: a fetch's fenced writes lock it first too
            Schedule.objects.filter(pk=binding.pk).update(next_fetch_at=due)
        # Only what the form edits: a fetch may have written status, counters and its lease
        # since the form was loaded, and a full save would put those stale values back.
        edited = [f.name for f in Binding._meta.concrete_fields if f.name in form.fields]
        status = _RETRY_SOON if changed and not waiting else []
        status = _SIGN_IN if form.discards_sign_in else status
        binding.save(update_fields=[*edited, *_SECRETS, *status, "updated_at"])
        if form.discards_sign_in:
            grants.credential_discard(binding)
    _one_outgoing_relay(binding)
    return binding


_SIGN_IN = [*_RETRY_SOON, "last_error"]


def _await_sign_in(binding: Binding) -> None:
    # Issue 15: a new OAuth binding, or one whose server, mailbox or provider changed, has
    # no usable sign-in: paused with the words saying what to press, not fetched in vain.
    binding.state = BindingState.NEEDS_SIGN_IN  # not scheduled (Binding._first_fetch_at)
    binding.last_error = grants.not_signed_in(binding)


def binding_delete(*, binding: Binding) -> str:
    """Delete a binding; revoke its OAuth grant where the provider can (after the commit).

    Returns a sentence about the revocation for the administrator, or "".
    """
    cred = OAuthCredential.objects.filter(binding=binding).first()
    binding.delete()
    if cred is None:
        return ""
    return grants.credential_revoke(
        provider_name=cred.provider,
        remote_login=cred.remote_login,
        refresh_token_encrypted=cred.refresh_token_encrypted,
    )


@sensitive_variables("password", "isp_password", "smtp_password", "oauth")
@transaction.atomic
def account_create_with_binding(
    *,
    domain: Domain,
    localpart: str,
    password: str,
    display_name: str = "",
    kind: str,
    quota_mb: int = 0,
    is_active: bool = True,
    binding: dict | None = None,
    isp_password: str = "",
    smtp_password: str = "",
    oauth: dict | None = None,
    signed_in_by: str = "",
) -> tuple[Account, Binding | None]:
    """Create an account and, if given, its remote POP3 account: both or neither.

    ``binding`` holds the Binding's fields (the Map settings step's, without passwords);
    the passwords come apart so that no dict of settings ever carries one. ``oauth`` is the
    wizard's unsealed sign-in (issue 15) for a binding that signs in instead.
    """
    account = Account(
        domain=domain,
        localpart=localpart,
        display_name=display_name,
        kind=kind,
        quota_mb=quota_mb,
        is_active=is_active,
    )
    account.set_password(password)
    account.save()
    if binding is None:
        return account, None
    row = Binding(account=account, **binding)  # due at once when enabled (Binding.save)
    if row.oauth_provider:
        row.save()  # full_clean() inside: a refusal rolls the account back too
        grants.credential_save(
            binding=row,
            tokens=_held_tokens(oauth or {}),
            remote_login=(oauth or {}).get("remote_login", ""),
            signed_in_by=signed_in_by,
        )
        row.refresh_from_db()
    else:
        row.set_isp_password(isp_password)
        row.set_smtp_password(smtp_password)
        row.save()  # full_clean() inside: a refusal rolls the account back too
    _one_outgoing_relay(row)
    return account, row


@sensitive_variables()
def _held_tokens(held: dict) -> TokenSet:
    if not held.get("refresh_token"):
        raise grants.NeedsSignInError("The sign-in of the Map settings step is missing.")
    return TokenSet(
        access_token=held["access_token"],
        expires_in=max(0, int(held["expires_at"] - time.time())),
        refresh_token=held["refresh_token"],
        scope=held.get("scope", ""),
        id_token=None,
    )
