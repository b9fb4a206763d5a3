"""Alerts (issue 12, item 2): the last alert sent per binding, and the outbox of alerts.

`AlertMark` is what the domain's administrators were last told about one binding's fetching
or outgoing relay ("failing since …" or "ok"); a scan compares it with the binding's state
and writes an `Alert` only where they differ, so there is one alert per state change and
never a storm. An `Alert` groups a domain's changes of one scan (or a daily digest) and
records whether its e-mail and webhook POST went out.
"""

from __future__ import annotations

from django.db import models

from domains.models import Domain
from mapping.models import Binding


class AlertKind(models.TextChoices):
    FETCH = "fetch", "Remote POP3 account"
    RELAY = "relay", "Outgoing relay"


class MarkState(models.TextChoices):
    FAILING = "failing", "Failing"
    OK = "ok", "OK"


class AlertMark(models.Model):
    binding = models.ForeignKey(Binding, on_delete=models.CASCADE, related_name="alert_marks")
    kind = models.CharField(max_length=8, choices=AlertKind.choices)
    state = models.CharField(max_length=8, choices=MarkState.choices)
    # The failing_since of the failure that was told: another value is another failure.
    since = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["binding", "kind"], name="alertmark_one_per_kind")
        ]
        indexes = [models.Index(fields=["state"], name="alertmark_state_idx")]

    def __str__(self) -> str:
        return f"{self.kind} of binding {self.binding_id}: {self.state}"


class AlertType(models.TextChoices):
    CHANGE = "change", "State change"
    DIGEST = "digest", "Daily digest"


class Alert(models.Model):
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="alerts")
    type = models.CharField(max_length=8, choices=AlertType.choices)
    created_at = models.DateTimeField()
    # What it says: one dict per binding (alerts.compose.Event.as_dict()).
    events = models.JSONField(default=list)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    email_attempts = models.PositiveIntegerField(default=0)
    email_error = models.TextField(blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_attempts = models.PositiveIntegerField(default=0)
    webhook_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["domain", "type", "-created_at"], name="alert_domain_idx")]

    def __str__(self) -> str:
        return f"{self.type} alert for {self.domain_id} at {self.created_at:%Y-%m-%d %H:%M}"
