"""Thin Celery task: the audit log's retention (beat, daily)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="audit.tasks.audit_prune", ignore_result=True)
def audit_prune() -> int:
    """Delete events older than AUDIT_RETENTION_DAYS."""
    return services.audit_prune()
