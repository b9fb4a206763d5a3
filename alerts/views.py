"""A domain's alert settings and the alerts sent lately (who was told, did it arrive)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import UpdateView

from accounts.access import ConsoleMixin, domains_for
from audit import services as audit
from domains.models import Domain

from .forms import AlertSettingsForm

RECENT = 10


@method_decorator(sensitive_post_parameters("webhook_secret"), name="dispatch")
class AlertSettingsView(ConsoleMixin, UpdateView):
    form_class = AlertSettingsForm
    template_name = "alerts/alert_settings.html"
    context_object_name = "domain"

    def get_queryset(self) -> QuerySet[Domain]:
        return domains_for(self.request.user)

    def form_valid(self, form: AlertSettingsForm) -> HttpResponse:
        response = super().form_valid(form)
        if form.has_changed():
            audit.record(self.request, "domain.changed", self.object, fields=form)
        messages.success(self.request, f"Alert settings of {self.object.name} saved.")
        return response

    def get_success_url(self) -> str:
        return reverse("alert-settings", args=[self.object.pk])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        recent = self.object.alerts.order_by("-created_at", "-id")[:RECENT]
        return super().get_context_data(recent=recent, **kwargs)
