"""Reads of the audit log for the console: filtered, newest first."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from .models import AuditEvent


def audit_events(
    *,
    domain_ids: list[int] | None,
    domain_id: int | None = None,
    serverwide: bool = False,
    action: str = "",
    who: str = "",
    what: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """Events in `domain_ids` (None: every domain and the server-wide ones), filtered."""
    events = AuditEvent.objects.all()
    if domain_ids is not None:
        events = events.filter(domain_id__in=domain_ids)
    if domain_id is not None:
        events = events.filter(domain_id=domain_id)
    elif serverwide:
        events = events.filter(domain_id__isnull=True)
    if action:
        events = events.filter(action=action)
    if who:
        events = events.filter(actor__icontains=who)
    if what:
        events = events.filter(Q(target__icontains=what) | Q(detail__icontains=what))
    if since is not None:
        events = events.filter(at__gte=since)
    if until is not None:
        events = events.filter(at__lt=until)
    return events.order_by("-at", "-id")
