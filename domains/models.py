"""Internal mail domains and their ISP defaults."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from . import rules
from .names import normalize_domain_name


class DomainType(models.TextChoices):
    STANDARD = rules.STANDARD, "Standard mode"
    MAP = rules.MAP, "Map mail server mode"
    SHARE = rules.SHARE, "Share mode"


class Security(models.TextChoices):
    """Transport security for an ISP server; `none` only when explicitly chosen."""

    SSL = "ssl", "SSL/TLS"
    STARTTLS = "starttls", "STARTTLS"
    NONE = "none", "None (plain text, not recommended)"


PORT_VALIDATORS = [MinValueValidator(1), MaxValueValidator(65535)]


class Domain(models.Model):
    name = models.CharField(
        max_length=253,
        unique=True,
        help_text="Internal domain name, e.g. example.com. Usually the same as the ISP's.",
    )
    domain_type = models.CharField(
        "Domain type", max_length=16, choices=DomainType.choices, default=DomainType.MAP
    )
    pop3_host = models.CharField("ISP POP3 server", max_length=253, blank=True)
    pop3_port = models.PositiveIntegerField("POP3 port", default=995, validators=PORT_VALIDATORS)
    pop3_security = models.CharField(
        "POP3 security", max_length=16, choices=Security.choices, default=Security.SSL
    )
    smtp_host = models.CharField("ISP SMTP server", max_length=253, blank=True)
    smtp_port = models.PositiveIntegerField("SMTP port", default=587, validators=PORT_VALIDATORS)
    smtp_security = models.CharField(
        "SMTP security", max_length=16, choices=Security.choices, default=Security.STARTTLS
    )
    is_active = models.BooleanField("Active", default=True)
    # Alerts (issue 12): who is told when this domain's remote POP3 accounts fail. The
    # webhook secret is encrypted with the ISP keys (alerts.forms writes it, rotate_isp_keys
    # re-encrypts it), never shown again.
    alert_after_minutes = models.PositiveIntegerField(
        "Alert after (minutes)",
        default=30,
        db_default=30,
        validators=[MaxValueValidator(10080)],
        help_text=(
            "How long a remote POP3 account or an outgoing relay may fail before the domain's "
            "administrators are told. “Needs attention” (e.g. a rejected ISP password) is told "
            "at once."
        ),
    )
    alert_webhook_url = models.URLField(
        "Alert webhook URL",
        max_length=500,
        blank=True,
        default="",
        db_default="",
        help_text="Optional: alerts are also POSTed here as JSON, signed with the secret below.",
    )
    alert_webhook_secret_encrypted = models.TextField(
        editable=False, blank=True, default="", db_default=""
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(domain_type__in=DomainType.values), name="domain_type_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(name=models.functions.Lower("name")), name="domain_name_lower"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.name = normalize_domain_name(self.name)
        for field in ("pop3_host", "smtp_host"):
            value = getattr(self, field)
            if value:
                setattr(self, field, normalize_domain_name(value, field_label="Server address"))
        if self.pk:
            self._check_bindings_still_allowed()

    def _check_bindings_still_allowed(self) -> None:
        # A type change that would strand bindings is refused, never applied by deleting them.
        # Through the reverse relations only: domains knows no other app's code.
        bound = self.accounts.filter(bindings__isnull=False).distinct().order_by("localpart")
        stranded = [
            f"{localpart}@{self.name}"
            for localpart, kind in bound.values_list("localpart", "kind")
            if not rules.binding_allowed(self.domain_type, kind)
        ]
        if stranded:
            raise ValidationError(
                {
                    "domain_type": (
                        f"Cannot switch to {self.get_domain_type_display()}: "
                        f"{rules.binding_rule_text(self.domain_type)} "
                        f"Remove the remote POP3 accounts of {', '.join(stranded)} first."
                    )
                }
            )

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean()
        super().save(*args, **kwargs)

    def allows_binding(self, kind: str) -> bool:
        """Whether an account of `kind` in this domain may have remote POP3 accounts."""
        return rules.binding_allowed(self.domain_type, kind)
