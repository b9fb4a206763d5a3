"""Writes to accounts that are more than one ModelForm.save()."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from domains.models import Domain
from mapping.models import Binding

from .models import Account


@dataclass(frozen=True)
class BindingSpec:
    """A remote POP3 account to create with the account; passwords never show in a repr."""

    host: str
    port: int
    security: str
    username: str
    isp_password: str = field(repr=False)
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    is_outgoing_relay: bool = True
    leave_policy: str = "keep"
    delete_after_days: int | None = None
    fetch_interval_minutes: int = 5
    enabled: bool = True


@transaction.atomic
def account_create_with_binding(
    *,
    domain: Domain,
    localpart: str,
    password: str,
    display_name: str = "",
    kind: str,
    quota_mb: int = 0,
    is_active: bool = True,
    binding: BindingSpec | None = None,
) -> tuple[Account, Binding | None]:
    """Create an account and, if given, its remote POP3 account: both or neither."""
    account = Account(
        domain=domain,
        localpart=localpart,
        display_name=display_name,
        kind=kind,
        quota_mb=quota_mb,
        is_active=is_active,
    )
    account.set_password(password)
    account.save()
    if binding is None:
        return account, None
    row = Binding(
        account=account,
        host=binding.host,
        port=binding.port,
        security=binding.security,
        username=binding.username,
        smtp_host=binding.smtp_host,
        smtp_port=binding.smtp_port,
        smtp_security=binding.smtp_security,
        smtp_username=binding.smtp_username,
        is_outgoing_relay=binding.is_outgoing_relay,
        leave_policy=binding.leave_policy,
        delete_after_days=binding.delete_after_days,
        fetch_interval_minutes=binding.fetch_interval_minutes,
        enabled=binding.enabled,
        # Due at once: the first fetch runs on the scheduler's next tick.
        next_fetch_at=timezone.now() if binding.enabled else None,
    )
    row.set_isp_password(binding.isp_password)
    row.set_smtp_password(binding.smtp_password)
    row.save()  # full_clean() inside: a refusal rolls the account back too
    return account, row
