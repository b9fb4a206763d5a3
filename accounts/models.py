"""Internal mail accounts: one mailbox per employee, with a local password."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from domains import rules
from domains.models import Domain

# RFC 5321 dot-atom, lower-case; no leading/trailing/double dots. "/" is left out although
# RFC 5321 allows it: the local part names the Maildir directory (MAIL_ROOT/<domain>/<local>).
_LOCALPART = re.compile(r"^[a-z0-9!#$%&'*+=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+=?^_`{|}~-]+)*$")


def normalize_localpart(value: str) -> str:
    """Return `value` lower-cased, or raise ValidationError saying what is wrong."""
    localpart = (value or "").strip().lower()
    if not localpart:
        raise ValidationError("Account name is required.")
    if len(localpart) > 64:
        raise ValidationError("Account name is longer than 64 characters.")
    if not _LOCALPART.match(localpart):
        raise ValidationError(
            f"“{value}” cannot be a mail account name: use letters, digits and . _ - + "
            "(no spaces, no @, no dot at the start or end)."
        )
    return localpart


class AccountKind(models.TextChoices):
    NORMAL = "normal", "Normal"
    ADMINISTRATOR = "administrator", "Administrator"
    SPECIAL_MANAGER = "special_manager", "Special manager"
    SPECIAL_LOCAL_STAFF = rules.SPECIAL_LOCAL_STAFF, "Special local staff"


class Account(models.Model):
    domain = models.ForeignKey(Domain, on_delete=models.PROTECT, related_name="accounts")
    localpart = models.CharField("Account", max_length=64)
    display_name = models.CharField("Display name", max_length=200, blank=True)
    kind = models.CharField(
        "Kind", max_length=32, choices=AccountKind.choices, default=AccountKind.NORMAL
    )
    # Django's argon2 hash; Dovecot verifies it as stored (mail-service.md, §1).
    password = models.CharField(max_length=255, editable=False)
    quota_mb = models.PositiveIntegerField("Quota (MB)", default=0, help_text="0 means no limit.")
    is_active = models.BooleanField("Active", default=True)
    # The console session of an account that logs in (administrators, self-service).
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="mail_account",
        editable=False,
    )
    password_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain__name", "localpart"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "localpart"], name="account_unique_address"),
            models.CheckConstraint(
                condition=models.Q(kind__in=AccountKind.values), name="account_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(localpart=models.functions.Lower("localpart")),
                name="account_localpart_lower",
            ),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def address(self) -> str:
        return f"{self.localpart}@{self.domain.name}"

    def set_password(self, raw: str) -> None:
        """Hash and store the local password (never related to any ISP password)."""
        self.password = make_password(raw, hasher="argon2")
        self.password_changed_at = timezone.now()

    def check_password(self, raw: str) -> bool:
        return bool(self.password) and check_password(raw, self.password)

    @property
    def may_have_bindings(self) -> bool:
        return rules.binding_allowed(self.domain.domain_type, self.kind)

    def clean(self) -> None:
        self.localpart = normalize_localpart(self.localpart)
        if not self.password:
            raise ValidationError("A local password must be set.")
        if self.pk and self.domain_id and not self.may_have_bindings and self.bindings.exists():
            raise ValidationError(
                {
                    "kind": (
                        f"{self.address} cannot become {self.get_kind_display()}: "
                        f"{rules.binding_rule_text(self.domain.domain_type)} "
                        "Remove its remote POP3 accounts first."
                    )
                }
            )

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean()
        super().save(*args, **kwargs)
