"""Reads for the console and the fetch command: fetch history, bindings by address."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from .models import Binding, FetchRun, QuarantinedMessage, QuarantineState


def binding_history(*, binding: Binding, limit: int = 10) -> QuerySet[FetchRun]:
    """The latest fetch runs of `binding`, newest first."""
    return binding.fetch_runs.order_by("-started_at", "-pk")[:limit]


def binding_run_started_since(*, binding: Binding, since: datetime) -> bool:
    """Whether a fetch of `binding` started at or after `since` (a queued "Fetch now" ran)."""
    return binding.fetch_runs.filter(started_at__gte=since).exists()


def bindings_for_addresses(*, addresses: list[str]) -> QuerySet[Binding]:
    """Bindings of the accounts with these addresses (local@domain), for `manage.py fetch`."""
    query = Binding.objects.none()
    for address in addresses:
        local, _, domain = address.strip().lower().rpartition("@")
        query = query | Binding.objects.filter(
            account__localpart=local, account__domain__name=domain
        )
    return query.select_related("account__domain").order_by("account__domain__name", "pk")


# --- Poison-message quarantine (issue 12) ---------------------------------------------------


def quarantine_held(*, account) -> QuerySet[QuarantinedMessage]:
    """The set-aside messages of an account's bindings, newest first."""
    return QuarantinedMessage.objects.filter(
        binding__account=account, state=QuarantineState.HELD
    ).select_related("binding__account__domain")
