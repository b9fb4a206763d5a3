"""Thin Celery tasks: load the row, call the service (mapping.fetch / mapping.claimer).

Acknowledgement after the task (``task_acks_late``, ``task_reject_on_worker_lost``) comes
from settings: a task whose worker died is delivered again, which is safe because a fetch
is idempotent (SeenUidl rows) and one at a time per binding (the lease), not because the
broker promises anything (design.md, "The broker is not the source of truth").
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import claimer, fetch, retention
from .models import Binding

# Its sessions are bounded by FETCH_TIME_LIMIT each and it stops claiming after
# FETCH_CLAIMER_SECONDS: Celery's limits only stop a claimer that hangs.
_CLAIMER_LIMIT = settings.FETCH_CLAIMER_SECONDS + settings.FETCH_TIME_LIMIT + 60


@shared_task(
    name="mapping.tasks.fetch_claim",
    ignore_result=True,
    soft_time_limit=_CLAIMER_LIMIT,
    time_limit=_CLAIMER_LIMIT + 60,
)
def fetch_claim() -> int:
    """Be a claimer: fetch due bindings, many sessions at once (mapping.claimer); beat sends
    this every SCHEDULER_TICK_SECONDS to the "fetch" queue. Returns the bindings fetched."""
    return claimer.claimer_run().fetched


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
