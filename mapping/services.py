"""Writes to remote POP3 accounts from the console (the fetcher's writes: lease, seen, status)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Account
from domains.models import Domain
from domains.rules import binding_rule_text

from .forms import BindingForm
from .models import Binding, BindingState

_SECRETS = ["password_encrypted", "smtp_password_encrypted"]
_RETRY_SOON = ["state", "consecutive_failures", "next_fetch_at"]


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
    if changed:
        # The administrator changed something: try again soon instead of waiting for backoff.
        if binding.state == BindingState.NEEDS_ATTENTION:
            binding.state = BindingState.RETRYING
        binding.consecutive_failures = 0
        binding.next_fetch_at = timezone.now()
    if creating:
        binding.save()
    else:
        # Only what the form edits: a fetch may have written status, counters and its lease
        # since the form was loaded, and a full save would put those stale values back.
        edited = [f.name for f in Binding._meta.concrete_fields if f.name in form.fields]
        status = _RETRY_SOON if changed else []
        binding.save(update_fields=[*edited, *_SECRETS, *status, "updated_at"])
    _one_outgoing_relay(binding)
    return binding


@sensitive_variables("password", "isp_password", "smtp_password")
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
) -> tuple[Account, Binding | None]:
    """Create an account and, if given, its remote POP3 account: both or neither.

    ``binding`` holds the Binding's fields (the Map settings step's, without passwords);
    the passwords come apart so that no dict of settings ever carries one.
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
    row = Binding(account=account, **binding)
    # Due at once: the first fetch runs on the scheduler's next claim.
    row.next_fetch_at = timezone.now() if row.enabled else None
    row.set_isp_password(isp_password)
    row.set_smtp_password(smtp_password)
    row.save()  # full_clean() inside: a refusal rolls the account back too
    _one_outgoing_relay(row)
    return account, row
