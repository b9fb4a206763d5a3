"""Writes to bindings from the console (the fetcher's writes live in mapping.fetch_state)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
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
    if binding.is_outgoing_relay:
        # One outgoing relay per account.
        Binding.objects.filter(account=binding.account_id).exclude(pk=binding.pk).update(
            is_outgoing_relay=False
        )
    return binding
