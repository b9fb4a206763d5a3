"""Thin Celery tasks: the scan and the digest (beat), and sending each alert with retries.

The e-mail and the webhook are separate tasks, so a receiver that is down is retried
without sending the e-mail again. A transient failure retries after 1, 2, 4 … minutes
(capped at an hour), ALERT_RETRIES times; a permanent one (no recipient, a refused address,
HTTP 4xx) stops at once. Either way the Alert row keeps the last error in words.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Task, shared_task
from django.conf import settings

from . import delivery, scan
from .models import Alert


def retry_delay(retries: int) -> int:
    """Seconds before the next try: one minute, doubling, at most an hour."""
    return min(60 * 2**retries, 3600)


def _send(alerts: list[Alert]) -> int:
    for alert in alerts:
        alert_email_send.delay(alert.pk)
        alert_webhook_send.delay(alert.pk)
    return len(alerts)


@shared_task(name="alerts.tasks.alerts_scan", ignore_result=True)
def alerts_scan() -> int:
    """Compare every failing binding with what was told; send the changes."""
    return _send(scan.alerts_scan())


@shared_task(name="alerts.tasks.alerts_digest", ignore_result=True)
def alerts_digest() -> int:
    """The daily digest of what stays broken, one per domain."""
    return _send(scan.alerts_digest())


def _deliver(task: Task, send: Callable[..., None], alert_id: int) -> str:
    alert = Alert.objects.select_related("domain").filter(pk=alert_id).first()
    if alert is None:
        return "deleted"
    try:
        send(alert=alert)
    except delivery.DeliveryError as exc:
        if exc.permanent:
            return "failed"
        raise task.retry(countdown=retry_delay(task.request.retries), exc=exc) from None
    return "sent"


@shared_task(
    bind=True,
    name="alerts.tasks.alert_email_send",
    ignore_result=True,
    max_retries=settings.ALERT_RETRIES,
)
def alert_email_send(self: Task, alert_id: int) -> str:
    """E-mail one alert to its domain's administrators."""
    return _deliver(self, delivery.alert_email_send, alert_id)


@shared_task(
    bind=True,
    name="alerts.tasks.alert_webhook_send",
    ignore_result=True,
    max_retries=settings.ALERT_RETRIES,
)
def alert_webhook_send(self: Task, alert_id: int) -> str:
    """POST one alert, signed, to its domain's webhook URL."""
    return _deliver(self, delivery.alert_webhook_send, alert_id)
