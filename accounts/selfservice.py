"""An employee's own page: change the local password, see the remote POP3 accounts' status
and the settings to type into a mail program. Nothing of anyone else, no ISP password."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.password_validation import validate_password
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from audit import services as audit
from mailservice import layout
from mailservice.lookups import account_relay_binding
from mailservice.passwords import account_local_password_set

from . import throttle
from .access import account_of
from .mailbox import quota_status
from .models import Account


class LocalPasswordForm(forms.Form):
    current_password = forms.CharField(
        label="Current local password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    new_password = forms.CharField(
        label="New local password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="For the office mail server only; not your ISP password.",
    )
    new_password_again = forms.CharField(
        label="New local password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(
        self, *args: Any, account: Account, request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        self.request = request

    @sensitive_variables("password")
    def clean_current_password(self) -> str:
        password = self.cleaned_data["current_password"]
        # A guess like any login: same budget per account and per address (issue 11).
        attempt = throttle.password_attempt(self.request, name=self.account.address)
        if attempt.wait:
            raise forms.ValidationError(
                f"Too many wrong passwords. Try again in {throttle.wait_in_words(attempt.wait)}."
            )
        if not self.account.check_password(password):
            raise forms.ValidationError("That is not your current local password.")
        attempt.forget()
        return password

    @sensitive_variables("cleaned")
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        new, again = cleaned.get("new_password"), cleaned.get("new_password_again")
        if new and again and new != again:
            self.add_error("new_password_again", "The two new passwords differ.")
        elif new:
            try:
                validate_password(new, self.account.user)
            except forms.ValidationError as exc:
                self.add_error("new_password", exc)
        return cleaned


def _own_account(request: HttpRequest) -> Account:
    account = account_of(request.user)
    if account is None:
        raise Http404("This login has no mailbox.")
    return account


def client_settings(*, account: Account) -> list[dict]:
    """What to type into a mail program: the host name and ports the office box really uses."""
    host, ports = layout.hostname(), layout.Ports.from_settings()
    return [
        {"service": "Incoming (IMAP)", "host": host, "port": ports.imaps, "security": "SSL/TLS",
         "alt_port": ports.imap, "alt_security": "STARTTLS"},
        {"service": "Incoming (POP3)", "host": host, "port": ports.pop3s, "security": "SSL/TLS",
         "alt_port": ports.pop3, "alt_security": "STARTTLS"},
        {"service": "Outgoing (SMTP)", "host": host, "port": ports.submission,
         "security": "STARTTLS", "alt_port": ports.submissions, "alt_security": "SSL/TLS"},
    ]  # fmt: skip


def _page(
    request: HttpRequest, account: Account, form: LocalPasswordForm, status: int = 200
) -> HttpResponse:
    relay = account_relay_binding(account=account)
    context = {
        "account": account,
        "form": form,
        "bindings": account.bindings.select_related("schedule").order_by("id"),
        "relay": relay,
        "client_settings": client_settings(account=account),
        "quota": quota_status(account),
        "login_name": account.address,
    }
    return render(request, "accounts/selfservice.html", context, status=status)


@login_required
@require_http_methods(["GET"])
def selfservice(request: HttpRequest) -> HttpResponse:
    account = _own_account(request)
    return _page(request, account, LocalPasswordForm(account=account))


@sensitive_post_parameters("current_password", "new_password", "new_password_again")
@login_required
@require_http_methods(["POST"])
def selfservice_password(request: HttpRequest) -> HttpResponse:
    account = _own_account(request)
    form = LocalPasswordForm(request.POST, account=account, request=request)
    if not form.is_valid():
        return _page(request, account, form, status=400)
    account_local_password_set(account=account, raw=form.cleaned_data["new_password"])
    audit.record(request, "account.password_set", account)
    update_session_auth_hash(request, account.user)  # the account's other sessions end
    messages.success(
        request,
        "Your local password is changed. Use the new one in your mail program now "
        "(IMAP, POP3 and sending).",
    )
    return redirect("selfservice")
