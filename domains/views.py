"""Console pages for domains: list, create, edit."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpResponse
from django.urls import reverse
from django.views.generic import CreateView, ListView, UpdateView

from accounts.access import ConsoleMixin, SuperuserMixin, domains_for
from audit import services as audit
from mapping.models import BindingState
from mapping.selectors import fetch_lag

from .forms import DomainForm
from .models import Domain


class DomainListView(ConsoleMixin, ListView):
    template_name = "domains/domain_list.html"
    context_object_name = "domains"
    paginate_by = 50

    def get_queryset(self) -> QuerySet[Domain]:
        # Issue 12: the domain's remote POP3 accounts by state, for its badges.
        bindings = "accounts__bindings"
        enabled = Q(**{f"{bindings}__enabled": True})
        by_state = {
            f"{state}_count": Count(bindings, filter=enabled & Q(**{f"{bindings}__state": state}))
            for state in BindingState.values
        }
        return (
            domains_for(self.request.user)
            .annotate(
                account_count=Count("accounts", distinct=True),
                disabled_count=Count(bindings, filter=Q(**{f"{bindings}__enabled": False})),
                **by_state,
            )
            .order_by("name")
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # Issue 13: a schedule falling behind is said where the administrators look.
        return super().get_context_data(fetch_lag=fetch_lag(), **kwargs)


class DomainCreateView(SuperuserMixin, CreateView):
    model = Domain
    form_class = DomainForm
    template_name = "domains/domain_form.html"

    def form_valid(self, form: DomainForm) -> HttpResponse:
        response = super().form_valid(form)
        audit.record(self.request, "domain.created", self.object)
        return response

    def get_success_url(self) -> str:
        messages.success(self.request, f"Domain {self.object.name} created.")
        return reverse("account-list", args=[self.object.pk])


class DomainUpdateView(ConsoleMixin, UpdateView):
    form_class = DomainForm
    template_name = "domains/domain_form.html"

    def get_queryset(self) -> QuerySet[Domain]:
        return domains_for(self.request.user)

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs["name_editable"] = self.request.user.is_superuser
        return kwargs

    def form_valid(self, form: DomainForm) -> HttpResponse:
        response = super().form_valid(form)
        if form.has_changed():
            audit.record(self.request, "domain.changed", self.object, fields=form)
        return response

    def get_success_url(self) -> str:
        messages.success(self.request, f"Domain {self.object.name} saved.")
        return reverse("account-list", args=[self.object.pk])
