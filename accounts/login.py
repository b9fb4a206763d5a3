"""Login forms (console and Django admin) with the password-guess throttle (accounts.throttle)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest

from audit import services as audit
from domains.models import Domain

from . import throttle
from .access import account_of

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def too_many_guesses(wait: int) -> forms.ValidationError:
    """The refusal shown once a name or an address has used up LOGIN_RATE_LIMIT."""
    return forms.ValidationError(
        f"Too many failed logins. Try again in {throttle.wait_in_words(wait)}.",
        code="throttled",
    )


class _Throttled:
    """clean() of an AuthenticationForm, counted against the name and the client address."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if not (username and self.cleaned_data.get("password")):
            return super().clean()  # a field is missing: nothing is checked, nothing counted
        attempt = throttle.password_attempt(self.request, name=username)
        if attempt.wait:
            raise too_many_guesses(attempt.wait)
        cleaned = super().clean()  # raises on a wrong password: the guess stays counted
        attempt.forget()
        return cleaned


class ThrottledAuthenticationForm(_Throttled, AuthenticationForm):
    """The console login: address (or the superuser's name) and password."""

    username = forms.CharField(
        label="Address or user name",
        max_length=254,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )


class ThrottledAdminAuthenticationForm(_Throttled, AdminAuthenticationForm):
    """Django admin's login (/admin/login/), on the same budget as the console's."""


# --- the audit log's logins (Django's auth signals, connected in apps.py) -----------------


def login_recorded(sender: type, request: HttpRequest, user: User, **kwargs: Any) -> None:
    """user_logged_in: console, /me/ and /admin/ logins, filed under the account's domain."""
    address = throttle.client_address(request)
    audit.record(request or user, "login", account_of(user), ip=address)


def login_failure_recorded(
    sender: str, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """user_login_failed: the name as typed (never the password), under the domain it names."""
    name = str(credentials.get("username") or "")[:254]
    domain_name = name.rpartition("@")[2].strip().lower() if "@" in name else ""
    domain = Domain.objects.filter(name=domain_name).first() if domain_name else None
    address = throttle.client_address(request)
    audit.record(name or "(no name)", "login.failed", domain=domain, ip=address)
