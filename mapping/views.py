"""The Account dialog's POP3 remote tab: list, add, modify, delete remote POP3 accounts."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from accounts.access import ConsoleMixin, get_account_for

from . import services
from .forms import BindingForm
from .models import Binding


class Pop3TabMixin(ConsoleMixin):
    tab = "pop3"

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            self.account = get_account_for(request.user, self.kwargs["account_id"])
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            account=self.account, domain=self.account.domain, tab=self.tab, **kwargs
        )

    def tab_url(self) -> str:
        return reverse("binding-list", args=[self.account.pk])


class BindingListView(Pop3TabMixin, ListView):
    template_name = "mapping/binding_list.html"
    context_object_name = "bindings"

    def get_queryset(self):
        return self.account.bindings.order_by("id")


class BindingObjectMixin(Pop3TabMixin):
    def get_object(self, queryset=None) -> Binding:
        return get_object_or_404(Binding, pk=self.kwargs["pk"], account=self.account)


@method_decorator(sensitive_post_parameters("isp_password", "smtp_password"), name="dispatch")
class BindingCreateView(Pop3TabMixin, CreateView):
    form_class = BindingForm
    template_name = "mapping/binding_form.html"

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        return response

    def get(self, request, *args, **kwargs):
        if not self.account.may_have_bindings:
            return self._refuse()
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        if not self.account.may_have_bindings:
            return self._refuse()
        return super().post(request, *args, **kwargs)

    def _refuse(self):
        messages.error(self.request, services.binding_refusal_text(self.account))
        return redirect(self.tab_url())

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "account": self.account}

    def form_valid(self, form):
        self.object = services.binding_save(form=form)
        messages.success(self.request, f"Remote POP3 account {self.object.username} added.")
        return redirect(self.tab_url())


@method_decorator(sensitive_post_parameters("isp_password", "smtp_password"), name="dispatch")
class BindingUpdateView(BindingObjectMixin, UpdateView):
    form_class = BindingForm
    template_name = "mapping/binding_form.html"
    context_object_name = "binding"

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "account": self.account}

    def form_valid(self, form):
        self.object = services.binding_save(form=form)
        messages.success(self.request, f"Remote POP3 account {self.object.username} saved.")
        return redirect(self.tab_url())


class BindingDeleteView(BindingObjectMixin, DeleteView):
    template_name = "mapping/binding_confirm_delete.html"
    context_object_name = "binding"

    def form_valid(self, form):
        username = self.object.username
        self.object.delete()
        messages.success(
            self.request,
            f"Remote POP3 account {username} deleted. Mail already fetched stays in the mailbox.",
        )
        return redirect(self.tab_url())
