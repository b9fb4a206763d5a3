"""Console login form with throttling of failed attempts."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache


def _limit() -> tuple[int, int]:
    count, _, seconds = settings.LOGIN_RATE_LIMIT.partition("/")
    return int(count), int(seconds or 300)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses a login for a while after too many failures for that name or address."""

    username = forms.CharField(
        label="Address or user name",
        max_length=254,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )

    def _keys(self) -> list[str]:
        name = (self.data.get("username") or "").strip().lower()[:254]
        ip = self.request.META.get("REMOTE_ADDR", "") if self.request else ""
        return [f"login-fail:user:{name}", f"login-fail:ip:{ip}"]

    def clean(self):
        allowed, window = _limit()
        if any((cache.get(key) or 0) >= allowed for key in self._keys()):
            raise forms.ValidationError(
                f"Too many failed logins. Wait {window // 60} minutes, then try again.",
                code="throttled",
            )
        try:
            return super().clean()
        except forms.ValidationError:
            for key in self._keys():
                cache.add(key, 0, window)
                cache.incr(key)
            raise
