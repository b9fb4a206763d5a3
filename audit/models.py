"""The audit log: who did what and when in the console (issue 12, item 5).

An event names its domain, actor and target by value (ids and words), not by foreign key:
the history of a domain, account or remote POP3 account must outlive it, and this app sits
below every other one (`record()` is called from all of them; pyproject.toml's layers).
Field *names* of a change are kept, never values, so no secret can land here.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    DOMAIN_CREATED = "domain.created", "Domain created"
    DOMAIN_CHANGED = "domain.changed", "Domain changed"
    DOMAIN_DELETED = "domain.deleted", "Domain deleted"
    ACCOUNT_CREATED = "account.created", "Account created"
    ACCOUNT_CHANGED = "account.changed", "Account changed"
    ACCOUNT_DELETED = "account.deleted", "Account deleted"
    PASSWORD_SET = "account.password_set", "Local password set"
    BINDING_CREATED = "binding.created", "Remote POP3 account added"
    BINDING_CHANGED = "binding.changed", "Remote POP3 account changed"
    BINDING_DELETED = "binding.deleted", "Remote POP3 account deleted"
    DETECT_RUN = "detect.run", "Detect run"
    FETCH_NOW = "fetch.now", "Fetch now"
    SIGNED_IN = "binding.signed_in", "Signed in with the provider"
    HELD_RETRIED = "held.retried", "Set-aside message tried again"
    HELD_FORGOTTEN = "held.forgotten", "Set-aside message forgotten"
    HELD_DOWNLOADED = "held.downloaded", "Set-aside message downloaded"
    KEYS_ROTATED = "keys.rotated", "ISP keys rotated"
    LOGIN = "login", "Logged in"
    LOGIN_FAILED = "login.failed", "Failed login"


class AuditEvent(models.Model):
    at = models.DateTimeField("When", default=timezone.now)
    actor = models.CharField("Who", max_length=254)
    action = models.CharField("What", max_length=32, choices=AuditAction.choices)
    target_type = models.CharField(max_length=16, blank=True)  # domain | account | binding
    target_id = models.PositiveBigIntegerField(null=True, blank=True)
    target = models.CharField("On", max_length=300, blank=True)
    # The domain the event belongs to (its administrators see it); kept after a deletion.
    domain_id = models.PositiveBigIntegerField(null=True, blank=True)
    domain_name = models.CharField("Domain", max_length=253, blank=True)
    fields = models.JSONField("Changed", default=list, blank=True)
    detail = models.CharField("Detail", max_length=500, blank=True)
    ip = models.GenericIPAddressField("From", null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at", "-id"], name="audit_at_idx"),
            models.Index(fields=["domain_id", "-at"], name="audit_domain_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"
