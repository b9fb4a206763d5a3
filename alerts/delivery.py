"""Sending one Alert: its e-mail to the domain's administrators and its webhook POST.

Each is done once (a sent alert is never sent again) and records its attempts and last
error on the Alert in words; a transient failure raises `DeliveryError` for the Celery task
to retry with backoff (alerts.tasks). The webhook body is signed with HMAC-SHA256 under the
domain's secret: header `X-AAMail-Signature: sha256=<hex of HMAC(secret, body)>`.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db.models import F
from django.utils import timezone

from accounts.models import AccountKind
from mapping import crypto

from . import compose
from .models import Alert
from .webhook import WebhookError, webhook_post

SIGNATURE_HEADER = "X-AAMail-Signature"


class DeliveryError(Exception):
    """Sending failed; ``permanent`` when a retry cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def signature(secret: str, body: bytes) -> str:
    """The X-AAMail-Signature value: "sha256=" + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def recipients(alert: Alert) -> list[str]:
    """The domain's active administrators; without any, superusers with an e-mail address."""
    admins = alert.domain.accounts.filter(kind=AccountKind.ADMINISTRATOR, is_active=True)
    localparts = admins.order_by("localpart").values_list("localpart", flat=True)
    addresses = [f"{localpart}@{alert.domain.name}" for localpart in localparts]
    if addresses:
        return addresses
    superusers = get_user_model().objects.filter(is_superuser=True, is_active=True)
    return sorted({email for email in superusers.values_list("email", flat=True) if email})


def _attempt(alert: Alert, channel: str) -> None:
    Alert.objects.filter(pk=alert.pk).update(
        **{f"{channel}_attempts": F(f"{channel}_attempts") + 1}
    )


def _failed(alert: Alert, channel: str, message: str, *, permanent: bool) -> DeliveryError:
    Alert.objects.filter(pk=alert.pk).update(**{f"{channel}_error": message})
    return DeliveryError(message, permanent=permanent)


def _sent(alert: Alert, channel: str) -> None:
    Alert.objects.filter(pk=alert.pk).update(
        **{f"{channel}_sent_at": timezone.now(), f"{channel}_error": ""}
    )


def alert_email_send(*, alert: Alert) -> None:
    """E-mail the alert to the domain's administrators (Django's EMAIL_* settings)."""
    if alert.email_sent_at is not None:
        return
    to = recipients(alert)
    _attempt(alert, "email")
    if not to:
        raise _failed(
            alert,
            "email",
            f"{alert.domain.name} has no active administrator account, and no superuser has "
            "an e-mail address: nobody to send the alert to.",
            permanent=True,
        )
    message = EmailMessage(
        compose.subject(alert),
        compose.body(alert),
        from_email=settings.ALERT_FROM_EMAIL,
        to=to,
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _reply in exc.recipients.values()]
        permanent = all(code >= 500 for code in codes)
        raise _failed(alert, "email", _refused_words(exc), permanent=permanent) from None
    except smtplib.SMTPResponseException as exc:
        words = f"The mail server {settings.EMAIL_HOST} answered {exc.smtp_code} " + (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        raise _failed(alert, "email", words, permanent=exc.smtp_code >= 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        server = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        words = f"The mail server {server} could not be reached ({exc or type(exc).__name__})."
        raise _failed(alert, "email", words, permanent=False) from None
    _sent(alert, "email")


def _refused_words(exc: smtplib.SMTPRecipientsRefused) -> str:
    refused = "; ".join(
        f"{address}: {code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
        for address, (code, reply) in exc.recipients.items()
    )
    return f"The mail server {settings.EMAIL_HOST} refused the recipients ({refused})."


def alert_webhook_send(*, alert: Alert) -> None:
    """POST the alert's JSON, signed, to the domain's webhook URL (none set: nothing to do)."""
    domain = alert.domain
    if alert.webhook_sent_at is not None or not domain.alert_webhook_url:
        return
    _attempt(alert, "webhook")
    if not domain.alert_webhook_secret_encrypted:
        raise _failed(
            alert,
            "webhook",
            "The webhook has no secret to sign with: set one in the domain's alert settings.",
            permanent=True,
        )
    try:
        secret = crypto.decrypt(domain.alert_webhook_secret_encrypted)
    except crypto.SecretKeyError:
        raise _failed(
            alert,
            "webhook",
            "The webhook secret can no longer be read (the ISP keys changed): type it again "
            "in the domain's alert settings.",
            permanent=True,
        ) from None
    body = compose.webhook_json(alert)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "AAMail-alerts",
        "X-AAMail-Alert-Id": str(alert.pk),
        SIGNATURE_HEADER: signature(secret, body),
    }
    try:
        webhook_post(
            domain.alert_webhook_url, body, headers, timeout=settings.ALERT_WEBHOOK_TIMEOUT
        )
    except WebhookError as exc:
        raise _failed(alert, "webhook", exc.message, permanent=exc.permanent) from None
    _sent(alert, "webhook")
