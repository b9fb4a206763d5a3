"""Forms of accounts: the Account dialog's General tab, the account list's search, and the
Account creation wizard's own steps (Basic information, Remaining settings)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from domains.models import Domain

from .models import Account, AccountKind, normalize_localpart

KEPT = "Already entered: leave blank to keep it."


def secret_field(label: str, help_text: str = "", *, required: bool = True) -> forms.CharField:
    """A password field whose value is never sent back to the page (render_value=False)."""
    return forms.CharField(
        label=label,
        required=required,
        strip=False,
        help_text=help_text,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class AccountGeneralForm(forms.ModelForm):
    """The Account dialog's General tab; a new local password is optional here."""

    new_password = secret_field(
        "New local password",
        "Leave blank to keep the current one. Not related to any ISP password.",
        required=False,
    )

    class Meta:
        model = Account
        fields = ["display_name", "kind", "quota_mb", "is_active"]

    def clean_new_password(self) -> str:
        # Only checked here; the view stores it through the one local-password service.
        password = self.cleaned_data.get("new_password", "")
        if password:
            validate_password(password, self.instance)
        return password


class AccountSearchForm(forms.Form):
    q = forms.CharField(label="Search accounts", required=False, max_length=100)


class WizardStepForm(forms.Form):
    """Common: the domain, and which secrets the wizard already holds (sealed)."""

    def __init__(
        self, *args: Any, domain: Domain, kept_secrets: frozenset = frozenset(), **kwargs: Any
    ) -> None:
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
    password1 = secret_field(
        "Password",
        "The password of this internal account. It has no relationship with the ISP "
        "mailbox's password.",
    )
    password2 = secret_field("Confirm password")
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
