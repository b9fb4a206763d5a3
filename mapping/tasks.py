"""Thin Celery tasks: load the row, call the service (mapping.fetch / mapping.scheduler).

Acknowledgement after the task (``task_acks_late``, ``task_reject_on_worker_lost``) comes
from settings: a task whose worker died is delivered again, which is safe because a fetch
is idempotent (SeenUidl rows) and one at a time per binding (the lease), not because the
broker promises anything (design.md, "The broker is not the source of truth").
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import fetch, retention, scheduler
from .models import Binding


@shared_task(name="mapping.tasks.fetch_tick", ignore_result=True)
def fetch_tick() -> int:
    """Claim the due bindings and enqueue one fetch each on the "fetch" queue."""
    limit = getattr(settings, "FETCH_TICK_LIMIT", 500)
    ids = scheduler.bindings_claim_due(timezone.now(), limit)
    for pk in ids:
        transaction.on_commit(lambda pk=pk: binding_fetch.delay(pk))
    return len(ids)


@shared_task(name="mapping.tasks.binding_fetch", ignore_result=True)
def binding_fetch(binding_id: int, trigger: str = "schedule") -> str:
    """Fetch one binding (its id only: never a password in a task argument)."""
    binding = Binding.objects.select_related("account__domain").filter(pk=binding_id).first()
    if binding is None:
        return "deleted"  # removed after it was queued
    if trigger == "schedule" and not binding.enabled:
        return "disabled"
    return fetch.binding_fetch(binding=binding, trigger=trigger).outcome


# --- Retention (issue 12) -------------------------------------------------------------------


@shared_task(name="mapping.tasks.fetch_history_prune", ignore_result=True)
def fetch_history_prune() -> int:
    """Prune fetch history and daily totals past their retention (bounded batches)."""
    return retention.fetch_history_prune().runs
