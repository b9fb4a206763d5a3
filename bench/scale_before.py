"""The claim and the dispatcher as they were before issue 13, kept only to be measured.

Stage 1 measured them as the product (bench/README-scale.md, "the before"); the product now
claims with ``mapping.claim`` and has no beat dispatcher. This is that code, unchanged but
for its name and the claim marker setting it read (``FETCH_CLAIM_SECONDS``, 600 s), so the
benchmark can print the same "before" rows next to the new ones from the same run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q

from mapping.lease import lease_seconds, unleased
from mapping.models import Binding, BindingState

CLAIM_SECONDS = 600.0  # the old FETCH_CLAIM_SECONDS default


def _overdue(now: datetime) -> Q:
    return Q(next_fetch_at__lte=now)


def _new() -> Q:
    return Q(next_fetch_at__isnull=True, state=BindingState.NEW)


def _due(now: datetime, when: Q):
    return Binding.objects.filter(when, enabled=True).filter(unleased(now))


def _candidates(now: datetime, limit: int) -> list[int]:
    ids = list(
        _due(now, _overdue(now))
        .order_by("next_fetch_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    if len(ids) < limit:
        ids += _due(now, _new()).order_by("pk").values_list("pk", flat=True)[: limit - len(ids)]
    return ids


def bindings_claim_due(now: datetime, limit: int = 500) -> list[int]:
    """The stage-1 tick's claim: up to `limit` due binding ids, three statements."""
    until = now + timedelta(seconds=max(CLAIM_SECONDS, lease_seconds()))
    due = _overdue(now) | _new()
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            locked = _due(now, due).filter(pk__in=_candidates(now, limit))
            ids = sorted(locked.select_for_update(skip_locked=True).values_list("pk", flat=True))
            Binding.objects.filter(pk__in=ids).update(next_fetch_at=until)
        return ids
    candidates = _candidates(now, limit)
    return [pk for pk in candidates if _due(now, due).filter(pk=pk).update(next_fetch_at=until)]


def fetch_tick(limit: int) -> int:
    """The stage-1 beat tick: claim, then publish one ``binding_fetch`` task per binding."""
    from mapping.tasks import binding_fetch

    ids = bindings_claim_due(timezone_now(), limit)
    for pk in ids:
        transaction.on_commit(lambda pk=pk: binding_fetch.delay(pk))
    return len(ids)


def timezone_now() -> datetime:
    from django.utils import timezone

    return timezone.now()
