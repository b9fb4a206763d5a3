"""The one door into the audit log, `record()`, and its retention, `audit_prune()`.

Every app calls `record()` at its few write points, in one line:

    audit.record(request, "binding.changed", binding, fields=form)

The actor is a request (its logged-in user), a user, or words ("manage.py rotate_isp_keys");
the target a domain, account or remote POP3 account, whose domain the event is filed under
(read through its attributes: this app imports no other). `fields` are changed field names
or a bound form (its changed fields' labels): names only, never values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.utils import timezone
from django.utils.text import capfirst

from .models import AuditAction, AuditEvent


def record(
    actor: object,
    action: str,
    target: object = None,
    *,
    fields: object = (),
    detail: str = "",
    domain: object = None,
    ip: str = "",
) -> AuditEvent:
    """Write one event: who (`actor`) did what (`action`) to what (`target`), now."""
    if action not in AuditAction.values:
        raise ValueError(f"{action!r} is not an audit action")
    owner = domain if domain is not None else _domain_of(target)
    return AuditEvent.objects.create(
        actor=_actor(actor)[:254],
        action=action,
        target_type=target._meta.model_name if target is not None else "",
        target_id=getattr(target, "pk", None),
        target=_label(target)[:300],
        domain_id=getattr(owner, "pk", None),
        domain_name=getattr(owner, "name", "")[:253],
        fields=_field_labels(fields, target),
        detail=" ".join(str(detail).split())[:500],
        ip=ip or None,
    )


def _actor(actor: object) -> str:
    if isinstance(actor, str):
        return actor
    user = getattr(actor, "user", actor)  # a request, or a user
    if user is None or not getattr(user, "is_authenticated", False):
        return "(not logged in)"
    try:
        return user.mail_account.address
    except ObjectDoesNotExist:
        return user.get_username()


def _domain_of(target: object) -> object:
    if target is None:
        return None
    if target._meta.model_name == "domain":
        return target
    if hasattr(target, "domain"):  # an account
        return target.domain
    account = getattr(target, "account", None)  # a remote POP3 account
    return getattr(account, "domain", None)


def _label(target: object) -> str:
    if target is None:
        return ""
    account = getattr(target, "account", None)
    if account is not None and hasattr(target, "username"):
        return f"{target.username} on {target.host} ({account.address})"
    return str(target)


def _field_labels(fields: object, target: object) -> list[str]:
    if hasattr(fields, "changed_data"):  # a bound form: the labels people saw
        return [str(fields.fields[name].label or name) for name in fields.changed_data]
    labels = []
    for name in fields if isinstance(fields, Iterable) else ():
        try:
            labels.append(capfirst(str(target._meta.get_field(name).verbose_name)))
        except (AttributeError, FieldDoesNotExist):
            labels.append(str(name))
    return labels


def audit_prune(*, now: datetime | None = None, batch: int = 5000, batches: int = 200) -> int:
    """Delete events older than AUDIT_RETENTION_DAYS, in bounded batches; how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    deleted = 0
    for _ in range(batches):
        ids = list(
            AuditEvent.objects.filter(at__lt=cutoff)
            .order_by("id")
            .values_list("id", flat=True)[:batch]
        )
        if not ids:
            break
        deleted += AuditEvent.objects.filter(id__in=ids).delete()[0]
    return deleted
