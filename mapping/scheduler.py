"""Which bindings are due, claimed atomically so that each is enqueued once per due time;
and how long a failing binding waits before its next try (backoff).

Due-ness lives in the database (design.md, "Scheduling"): a binding is due when it is
enabled, its ``next_fetch_at`` has passed (or it is new and has none yet), and no fetch
holds its lease. Claiming pushes ``next_fetch_at`` forward by ``claim_seconds()``: the
claim marker. The fetch sets the real next time when it ends; if the task is lost (broker
restart, worker killed before the fetch started), the binding is due again once the
marker passes.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from .lease import lease_seconds, unleased
from .models import Binding, BindingState


def claim_seconds() -> float:
    """How long a claimed binding stays out of the ticks while its task waits to run."""
    return max(float(settings.FETCH_CLAIM_SECONDS), lease_seconds())


def backoff_seconds(failures: int, interval_minutes: int) -> float:
    """Delay before retry number `failures` (1-based): doubling from a minute, capped, jittered."""
    base = float(settings.FETCH_BACKOFF_BASE_SECONDS)
    cap = max(float(settings.FETCH_BACKOFF_CAP_SECONDS), interval_minutes * 60)
    delay = min(cap, base * 2 ** min(max(failures, 1) - 1, 30))
    # +-10 % so the bindings of one ISP that failed together do not retry together.
    return delay * random.uniform(0.9, 1.1)


# A NULL next_fetch_at means "never scheduled" only for a new binding: one whose password
# was rejected has none either, and waits for a person (an edit or "Fetch now").
def _overdue(now: datetime) -> Q:
    return Q(next_fetch_at__lte=now)


def _new() -> Q:
    return Q(next_fetch_at__isnull=True, state=BindingState.NEW)


def _due(now: datetime, when: Q):
    return Binding.objects.filter(when, enabled=True).filter(unleased(now))


def _candidates(now: datetime, limit: int) -> list[int]:
    # Two index range scans (the partial index on next_fetch_at of enabled bindings,
    # migration 0002), so a tick costs what is due, not what exists.
    ids = list(
        _due(now, _overdue(now))
        .order_by("next_fetch_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    if len(ids) < limit:
        ids += _due(now, _new()).order_by("pk").values_list("pk", flat=True)[: limit - len(ids)]
    return ids


def bindings_claim_due(now: datetime, limit: int = 500) -> list[int]:
    """Claim up to `limit` due bindings, most overdue first; return their ids."""
    until = now + timedelta(seconds=claim_seconds())
    due = _overdue(now) | _new()
    if connection.features.has_select_for_update_skip_locked:
        # PostgreSQL: rows another tick has locked are skipped, not waited for, and a row it
        # has pushed forward and committed no longer matches (READ COMMITTED re-checks the
        # WHERE clause of a locking read), so two ticks never claim the same binding.
        with transaction.atomic():
            locked = _due(now, due).filter(pk__in=_candidates(now, limit))
            ids = sorted(locked.select_for_update(skip_locked=True).values_list("pk", flat=True))
            Binding.objects.filter(pk__in=ids).update(next_fetch_at=until)
        return ids
    # SQLite has no row locks but serialises writers: a conditional UPDATE per candidate
    # changes the row only while it is still due, so of two ticks exactly one gets it.
    candidates = _candidates(now, limit)
    return [pk for pk in candidates if _due(now, due).filter(pk=pk).update(next_fetch_at=until)]
