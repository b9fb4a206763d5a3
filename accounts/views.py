"""Console pages for accounts: home, the account list of a domain, the Account dialog."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import DeleteView, ListView, UpdateView, View

from audit import services as audit
from mailservice.passwords import account_local_password_set
from mapping.models import Binding

from .access import (
    ConsoleMixin,
    account_of,
    accounts_for,
    get_domain_for,
    may_use_console,
)
from .forms import AccountGeneralForm, AccountSearchForm
from .login import ThrottledAuthenticationForm
from .mailbox import quota_status
from .models import Account


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class ConsoleLoginView(LoginView):
    template_name = "registration/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True


class ConsoleHomeView(View):
    """Send each login where it belongs: the console's Overview, or self-service."""

    def get(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect("login")
        if not may_use_console(user):
            account = account_of(user)
            if account is not None:
                return redirect("selfservice")
            return redirect("login")
        return redirect("overview")  # issue 12: the Overview is the console's home


class AccountListView(ConsoleMixin, ListView):
    template_name = "accounts/account_list.html"
    context_object_name = "accounts"
    paginate_by = 25

    def get_queryset(self) -> QuerySet[Account]:
        self.domain = get_domain_for(self.request.user, self.kwargs["domain_id"])
        self.search = AccountSearchForm(self.request.GET or None)
        accounts = self.domain.accounts.annotate(binding_count=Count("bindings")).order_by(
            "localpart"
        )
        # Issue 12: a state badge per binding, one query for the page.
        states = Binding.objects.only("id", "account_id", "username", "state", "enabled")
        accounts = accounts.prefetch_related(Prefetch("bindings", queryset=states.order_by("id")))
        if self.search.is_valid() and self.search.cleaned_data["q"]:
            q = self.search.cleaned_data["q"].strip()
            accounts = accounts.filter(Q(localpart__icontains=q) | Q(display_name__icontains=q))
        return accounts

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(domain=self.domain, search=self.search, **kwargs)


class AccountDialogMixin(ConsoleMixin):
    """The Account dialog: tabs General and POP3 remote."""

    context_object_name = "account"

    def get_queryset(self) -> QuerySet[Account]:
        return accounts_for(self.request.user).select_related("domain")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(domain=self.object.domain, tab=self.tab, **kwargs)


@method_decorator(sensitive_post_parameters("new_password"), name="dispatch")
class AccountGeneralView(AccountDialogMixin, UpdateView):
    form_class = AccountGeneralForm
    template_name = "accounts/account_general.html"
    tab = "general"

    @transaction.atomic
    def form_valid(self, form: AccountGeneralForm) -> HttpResponse:
        response = super().form_valid(form)
        new_password = form.cleaned_data.get("new_password")
        if set(form.changed_data) - {"new_password"}:
            audit.record(self.request, "account.changed", self.object, fields=_without(form))
        if new_password:
            audit.record(self.request, "account.password_set", self.object)
            # Ends the account's sessions and tells Dovecot, as self-service does.
            account_local_password_set(account=self.object, raw=new_password)
            if self.object.user_id == self.request.user.pk:
                update_session_auth_hash(self.request, self.object.user)  # keep this one
        messages.success(self.request, f"Account {self.object.address} saved.")
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(quota=quota_status(self.object), **kwargs)

    def get_success_url(self) -> str:
        return reverse("account-general", args=[self.object.pk])


def _without(form: forms.Form) -> list[str]:
    # A new password is its own event ("Local password set"), not a changed field.
    return [str(form.fields[name].label) for name in form.changed_data if name != "new_password"]


class AccountDeleteView(AccountDialogMixin, DeleteView):
    template_name = "accounts/account_confirm_delete.html"
    tab = "general"

    def form_valid(self, form: forms.Form) -> HttpResponse:
        address, domain_id = self.object.address, self.object.domain_id
        audit.record(self.request, "account.deleted", self.object)
        self.object.delete()
        messages.success(
            self.request,
            f"Account {address} deleted. Its mail files were left in place on disk.",
        )
        return redirect("account-list", domain_id)
