"""Writes to bindings from the console (the fetcher's writes live in mapping.fetch)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from domains.rules import binding_rule_text

from .forms import BindingForm
from .models import Binding, BindingState


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
    if binding.pk is None or form.has_changed():
        # The administrator changed something: try again soon instead of waiting for backoff.
        if binding.state == BindingState.NEEDS_ATTENTION:
            binding.state = BindingState.RETRYING
        binding.consecutive_failures = 0
        binding.next_fetch_at = timezone.now()
    binding.save()
    if binding.is_outgoing_relay:
        # One outgoing relay per account.
        Binding.objects.filter(account=binding.account_id).exclude(pk=binding.pk).update(
            is_outgoing_relay=False
        )
    return binding
