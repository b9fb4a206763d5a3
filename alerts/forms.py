"""A domain's alert settings: the threshold, the webhook URL and its signing secret."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.db import models

from accounts.forms import secret_field
from domains.models import Domain
from mapping import crypto, outbound

MIN_SECRET = 16


def _https_by_default(field: models.Field, **kwargs: Any) -> forms.Field | None:
    # A webhook typed without a scheme is https (Django 6's default, asked for now).
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class AlertSettingsForm(forms.ModelForm):
    webhook_secret = secret_field(
        "Webhook secret",
        "Each POST carries X-AAMail-Signature: sha256=<HMAC-SHA256 of the body under this "
        "secret>, for the receiver to check. Stored encrypted, never shown again; leave blank "
        "to keep the stored one.",
        required=False,
    )

    class Meta:
        model = Domain
        fields = ["alert_after_minutes", "alert_webhook_url"]
        formfield_callback = _https_by_default

    def clean_alert_webhook_url(self) -> str:
        url = self.cleaned_data["alert_webhook_url"].strip()
        if not url:
            return ""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise forms.ValidationError("Use an http:// or https:// address.")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            # The same guard the POST goes through: a refused receiver is refused now.
            policy = outbound.Policy.from_settings()
            outbound.resolve(parts.hostname or "", port, policy=policy, timeout=3.0)
        except outbound.TargetRefusedError as exc:
            raise forms.ValidationError(exc.message) from None
        except outbound.OutboundError:
            pass  # a name that does not resolve now may later; the alert says so then
        return url

    def clean(self) -> dict:
        cleaned = super().clean()
        secret = cleaned.get("webhook_secret") or ""
        if secret and len(secret) < MIN_SECRET:
            self.add_error("webhook_secret", f"Use at least {MIN_SECRET} characters.")
        elif secret:
            self.instance.alert_webhook_secret_encrypted = crypto.encrypt(secret)
        elif cleaned.get("alert_webhook_url") and not self.instance.alert_webhook_secret_encrypted:
            self.add_error(
                "webhook_secret",
                "Type a secret: every POST is signed with it, and the receiver checks it.",
            )
        return cleaned
