"""Login forms (console and Django admin) with the password-guess throttle (accounts.throttle)."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from . import throttle


def too_many_guesses(wait: int) -> forms.ValidationError:
    """The refusal shown once a name or an address has used up LOGIN_RATE_LIMIT."""
    return forms.ValidationError(
        f"Too many failed logins. Try again in {throttle.wait_in_words(wait)}.",
        code="throttled",
    )


class _Throttled:
    """clean() of an AuthenticationForm, counted against the name and the client address."""

    def clean(self):
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
