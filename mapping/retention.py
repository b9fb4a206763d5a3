"""How long fetch history is kept: FetchRun rows and daily totals pruned in bounded batches.

One row per fetch run adds up (10,000 bindings every 5 minutes: 2.9 million rows a day), so
a beat task deletes rows older than FETCH_HISTORY_DAYS, FETCH_PRUNE_BATCH at a time, each
batch its own short statement (no long lock, no huge transaction), at most
FETCH_PRUNE_MAX_BATCHES per run; what is left is taken at the next run. The daily totals
(FetchDay) behind the Overview's chart are kept FETCH_DAILY_DAYS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Model, QuerySet
from django.utils import timezone

from .models import FetchDay, FetchRun


@dataclass(frozen=True)
class Pruned:
    runs: int
    days: int
    more: bool  # rows older than the limit remain for the next run


def fetch_history_prune(*, now: datetime | None = None) -> Pruned:
    """Delete fetch history and daily totals past their retention, in bounded batches."""
    now = now or timezone.now()
    budget = max(1, settings.FETCH_PRUNE_MAX_BATCHES)
    runs_cutoff = now - timedelta(days=settings.FETCH_HISTORY_DAYS)
    runs, left, more = _prune(FetchRun.objects.filter(started_at__lt=runs_cutoff), budget)
    days_cutoff = timezone.localdate(now) - timedelta(days=settings.FETCH_DAILY_DAYS)
    days, _, more_days = _prune(FetchDay.objects.filter(day__lt=days_cutoff), max(1, left))
    return Pruned(runs=runs, days=days, more=more or more_days)


def _prune(rows: QuerySet[Model], budget: int) -> tuple[int, int, bool]:
    """(rows deleted, batches left of the budget, whether rows remain)."""
    batch = max(1, settings.FETCH_PRUNE_BATCH)
    deleted = 0
    while budget > 0:
        ids = list(rows.order_by().values_list("pk", flat=True)[:batch])
        budget -= 1
        if ids:
            deleted += rows.model.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            return deleted, budget, False
    return deleted, budget, True
