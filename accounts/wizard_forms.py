"""The Account creation wizard's steps: Basic information, Map settings, Remaining settings."""

from __future__ import annotations

from types import SimpleNamespace

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

from domains.models import Domain, Security
from domains.names import normalize_domain_name
from mapping.models import LeavePolicy

from .models import Account, AccountKind, normalize_localpart

KEPT = "Already entered: leave blank to keep it."


def _secret(label: str, help_text: str = "", *, required: bool = True) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        strip=False,
        help_text=help_text,
        # render_value=False: a password typed in the wizard is never sent back to the page.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


def _no_line_breaks(value: str, label: str) -> str:
    # These values go into POP3/SMTP command lines: CR/LF would start a new command.
    if any(ch in value for ch in "\r\n\0"):
        raise ValidationError(f"The {label} cannot contain line breaks or NUL characters.")
    return value


class WizardStepForm(forms.Form):
    """Common: the domain, and which secrets the wizard already holds (sealed)."""

    def __init__(self, *args, domain: Domain, kept_secrets: frozenset = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.domain = domain
        for name in kept_secrets:
            if name in self.fields:
                self.fields[name].help_text = KEPT


class BasicInformationForm(WizardStepForm):
    title = "Basic information"

    localpart = forms.CharField(
        label="Account",
        max_length=64,
        help_text="The name before the @, e.g. support.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    display_name = forms.CharField(label="Display name", max_length=200, required=False)
    password1 = _secret(
        "Password",
        "The password of this internal account. It has no relationship with the ISP "
        "mailbox's password.",
    )
    password2 = _secret("Confirm password")
    kind = forms.ChoiceField(label="Kind", choices=AccountKind.choices, initial=AccountKind.NORMAL)
    quota_mb = forms.IntegerField(
        label="Quota (MB)", min_value=0, initial=0, help_text="0 means no limit."
    )

    def clean_localpart(self) -> str:
        localpart = normalize_localpart(self.cleaned_data["localpart"])
        if Account.objects.filter(domain=self.domain, localpart=localpart).exists():
            raise ValidationError(f"{localpart}@{self.domain.name} already exists.")
        return localpart

    def clean(self) -> dict:
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        elif password1:
            localpart = cleaned.get("localpart", "")
            candidate = SimpleNamespace(
                username=localpart,
                email=f"{localpart}@{self.domain.name}",
                first_name=cleaned.get("display_name", ""),
                last_name="",
            )
            try:
                validate_password(password1, user=candidate)
            except ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class MapConnectionForm(WizardStepForm):
    """Where and how to reach the ISP: what Detect needs (passwords may be blank here)."""

    host = forms.CharField(label="ISP server address", max_length=253)
    port = forms.IntegerField(
        label="Port", validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    security = forms.ChoiceField(label="Security", choices=Security.choices)
    username = forms.CharField(label="ISP account", max_length=255)
    isp_password = _secret(
        "ISP password", "The password of the mailbox at the ISP. Stored encrypted.", required=False
    )
    smtp_host = forms.CharField(
        label="SMTP server",
        max_length=253,
        required=False,
        help_text="Leave blank to use the ISP server address.",
    )
    smtp_port = forms.IntegerField(
        label="SMTP port", validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    smtp_security = forms.ChoiceField(label="SMTP security", choices=Security.choices)
    smtp_username = forms.CharField(
        label="SMTP account",
        max_length=255,
        required=False,
        help_text="Leave blank to use the ISP account.",
    )
    smtp_password = _secret("SMTP password", "Leave blank to use the ISP password.", required=False)

    def clean_host(self) -> str:
        return normalize_domain_name(self.cleaned_data["host"], field_label="ISP server address")

    def clean_smtp_host(self) -> str:
        value = self.cleaned_data["smtp_host"]
        return normalize_domain_name(value, field_label="SMTP server") if value else ""

    def clean_username(self) -> str:
        return _no_line_breaks(self.cleaned_data["username"], "ISP account")

    def clean_smtp_username(self) -> str:
        return _no_line_breaks(self.cleaned_data["smtp_username"], "SMTP account")

    def clean_isp_password(self) -> str:
        return _no_line_breaks(self.cleaned_data["isp_password"], "ISP password")

    def clean_smtp_password(self) -> str:
        return _no_line_breaks(self.cleaned_data["smtp_password"], "SMTP password")


class MapSettingsForm(MapConnectionForm):
    title = "Map settings"

    is_outgoing_relay = forms.BooleanField(
        label="Send this account's outgoing mail through this ISP SMTP server",
        required=False,
        initial=True,
    )
    leave_policy = forms.ChoiceField(
        label="Messages on the server", choices=LeavePolicy.choices, initial=LeavePolicy.KEEP
    )
    delete_after_days = forms.IntegerField(
        label="Delete after (days)",
        required=False,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Only for “Delete from the server after N days”.",
    )
    fetch_interval_minutes = forms.IntegerField(
        label="Fetch every (minutes)",
        initial=5,
        validators=[MinValueValidator(1), MaxValueValidator(1440)],
    )

    field_order = [
        "host", "port", "security", "username", "isp_password",
        "smtp_host", "smtp_port", "smtp_security", "smtp_username", "smtp_password",
        "is_outgoing_relay", "leave_policy", "delete_after_days", "fetch_interval_minutes",
    ]  # fmt: skip

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("isp_password") and "isp_password" not in self.errors:
            self.add_error("isp_password", "The ISP password is required.")
        if cleaned.get("leave_policy") == LeavePolicy.DELETE_AFTER:
            if not cleaned.get("delete_after_days"):
                self.add_error("delete_after_days", "Say after how many days messages go.")
        else:
            cleaned["delete_after_days"] = None
        return cleaned


class RemainingSettingsForm(WizardStepForm):
    title = "Remaining settings"

    is_active = forms.BooleanField(
        label="Active", required=False, initial=True, help_text="An inactive account cannot log in."
    )
    fetch_enabled = forms.BooleanField(
        label="Start fetching the ISP mailbox now",
        required=False,
        initial=True,
        help_text="Off: the remote POP3 account is saved but not fetched until enabled.",
    )
