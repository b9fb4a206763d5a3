"""The audit log's filter (a GET form)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from .models import AuditAction

SERVERWIDE = "server"


class AuditFilterForm(forms.Form):
    domain = forms.ChoiceField(label="Domain", required=False)
    action = forms.ChoiceField(
        label="What", required=False, choices=[("", "Everything"), *AuditAction.choices]
    )
    who = forms.CharField(label="Who", required=False, max_length=254)
    what = forms.CharField(
        label="On", required=False, max_length=300, help_text="Domain, account or ISP account."
    )
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(
        self, *args: Any, domains: list[tuple[int, str]], serverwide: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", "Every domain"), *((str(pk), name) for pk, name in domains)]
        if serverwide:  # superusers: key rotations and their own logins belong to no domain
            choices.append((SERVERWIDE, "Server-wide (no domain)"))
        self.fields["domain"].choices = choices

    def filters(self) -> dict:
        """Keyword arguments for selectors.audit_events (none when the form is invalid)."""
        if not self.is_bound or not self.is_valid():
            return {}
        data = self.cleaned_data
        domain = data["domain"]
        return {
            "domain_id": int(domain) if domain and domain != SERVERWIDE else None,
            "serverwide": domain == SERVERWIDE,
            "action": data["action"],
            "who": data["who"].strip(),
            "what": data["what"].strip(),
            # Days of the box's time zone, the one every time on the page is shown in.
            "since": _midnight(data["since"]),
            "until": _midnight(data["until"] + timedelta(days=1) if data["until"] else None),
        }


def _midnight(day: date | None) -> datetime | None:
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time.min))
