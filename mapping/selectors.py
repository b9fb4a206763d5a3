"""Reads for the console and the fetch command: fetch history, bindings by address, lag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .lease import unleased
from .models import Binding, FetchRun, QuarantinedMessage, QuarantineState, Schedule

if TYPE_CHECKING:
    from accounts.models import Account


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


def quarantine_held(*, account: Account) -> QuerySet[QuarantinedMessage]:
    """The set-aside messages of an account's bindings, newest first."""
    return QuarantinedMessage.objects.filter(
        binding__account=account, state=QuarantineState.HELD
    ).select_related("binding__account__domain")


# --- Lag of the schedule (issue 13) ---------------------------------------------------------


@dataclass(frozen=True)
class FetchLag:
    """How far fetching is behind schedule: now - due time of the oldest due binding."""

    seconds: float
    acceptable: float

    @property
    def behind(self) -> bool:
        """Past FETCH_LAG_ACCEPTABLE_SECONDS: more workers or sessions are needed."""
        return self.seconds > self.acceptable

    @property
    def words(self) -> str:
        minutes = round(self.seconds / 60)
        if minutes < 2:
            return f"{round(self.seconds)} seconds"
        return f"{minutes} minutes" if minutes < 120 else f"{minutes / 60:.1f} hours"


def fetch_lag(*, now: datetime | None = None) -> FetchLag:
    """The lag of the oldest due binding no fetch holds. One ordered read of the schedule's
    due index (a new binding is due since its creation; unscheduled ones are not in it)."""
    now = now or timezone.now()
    due = Schedule.objects.filter(unleased(now), next_fetch_at__lte=now)
    since = due.order_by("next_fetch_at").values_list("next_fetch_at", flat=True).first()
    seconds = max(0.0, (now - since).total_seconds()) if since else 0.0
    return FetchLag(seconds, float(settings.FETCH_LAG_ACCEPTABLE_SECONDS))
