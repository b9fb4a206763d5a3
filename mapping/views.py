"""The POP3 remote tab: list, add, modify, delete remote POP3 accounts; Fetch now, history,
and Detect (htmx fragments), for the tab and for the wizard's Map settings step.

Views are doors: an access check (accounts.access), a form, one service call, then a page
or a fragment. Passwords typed on a page are used and never rendered back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_POST
from django.views.generic import CreateView, DeleteView, ListView, UpdateView

from accounts import throttle
from accounts.access import ConsoleMixin, get_account_for, get_domain_for, may_use_console
from accounts.wizard import MAP, detect_noted, oauth_held_token, sealed_secret
from audit import services as audit

from . import credentials, detect, selectors, services, tasks
from .forms import POP3_ENDPOINT, SMTP_ENDPOINT, BindingForm, MapConnectionForm, endpoint_moved
from .models import OAUTH_PROVIDERS, AuthMethod, Binding
from .oauth import grants
from .oauth.providers import ProviderError, provider

# Detect's seams, passed in by the tab and by the wizard.
Held = Callable[[str, dict], str]  # a stored secret for a field, if typed for these servers
SignIn = Callable[[dict], detect.OAuthLogin | str]  # the OAuth login, or why there is none
Noted = Callable[[detect.Report], None]  # told of each finished Detect

# --- the POP3 remote tab ------------------------------------------------------------------


class Pop3TabMixin(ConsoleMixin):
    tab = "pop3"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated:
            self.account = get_account_for(request.user, self.kwargs["account_id"])
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            account=self.account, domain=self.account.domain, tab=self.tab, **kwargs
        )

    def tab_url(self) -> str:
        return reverse("binding-list", args=[self.account.pk])


class BindingListView(Pop3TabMixin, ListView):
    template_name = "mapping/binding_list.html"
    context_object_name = "bindings"

    def get_queryset(self) -> QuerySet[Binding]:
        return self.account.bindings.select_related("schedule").order_by("id")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # Issue 12: the set-aside (poison) messages of this account's bindings.
        held = selectors.quarantine_held(account=self.account)
        return super().get_context_data(held=held, **kwargs)


class BindingObjectMixin(Pop3TabMixin):
    def get_object(self, queryset: QuerySet[Binding] | None = None) -> Binding:
        return get_object_or_404(Binding, pk=self.kwargs["pk"], account=self.account)


@method_decorator(sensitive_post_parameters("isp_password", "smtp_password"), name="dispatch")
class BindingCreateView(Pop3TabMixin, CreateView):
    form_class = BindingForm
    template_name = "mapping/binding_form.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.account.may_have_bindings:
            return self._refuse()
        return super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not self.account.may_have_bindings:
            return self._refuse()
        return super().post(request, *args, **kwargs)

    def _refuse(self) -> HttpResponse:
        messages.error(self.request, services.binding_refusal_text(self.account))
        return redirect(self.tab_url())

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "account": self.account}

    def form_valid(self, form: BindingForm) -> HttpResponse:
        self.object = services.binding_save(form=form)
        audit.record(self.request, "binding.created", self.object)
        messages.success(self.request, f"Remote POP3 account {self.object.username} added.")
        return redirect(self.tab_url())


@method_decorator(sensitive_post_parameters("isp_password", "smtp_password"), name="dispatch")
class BindingUpdateView(BindingObjectMixin, UpdateView):
    form_class = BindingForm
    template_name = "mapping/binding_form.html"
    context_object_name = "binding"

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "account": self.account}

    def form_valid(self, form: BindingForm) -> HttpResponse:
        self.object = services.binding_save(form=form)
        if form.has_changed():
            audit.record(self.request, "binding.changed", self.object, fields=form)
        messages.success(self.request, f"Remote POP3 account {self.object.username} saved.")
        return redirect(self.tab_url())


class BindingDeleteView(BindingObjectMixin, DeleteView):
    template_name = "mapping/binding_confirm_delete.html"
    context_object_name = "binding"

    def form_valid(self, form: forms.Form) -> HttpResponse:
        username = self.object.username
        audit.record(self.request, "binding.deleted", self.object)
        revoked = services.binding_delete(binding=self.object)  # and its OAuth grant (issue 15)
        messages.success(
            self.request,
            f"Remote POP3 account {username} deleted. Mail already fetched stays in the mailbox."
            + (f" {revoked}" if revoked else ""),
        )
        return redirect(self.tab_url())


# --- Fetch now and history (htmx fragments of a binding's row) ------------------------------

# How long a row keeps polling for a queued "Fetch now" that has not started yet.
QUEUED_POLL = timedelta(minutes=2)


def _binding_for(request: HttpRequest, account_id: int, pk: int) -> Binding:
    """The binding, if the user administers its domain (404 for other domains)."""
    if not may_use_console(request.user):
        raise PermissionDenied("This account has no access to the console.")
    account = get_account_for(request.user, account_id)
    return get_object_or_404(
        Binding.objects.select_related("account__domain", "schedule"), pk=pk, account=account
    )


def _row(
    request: HttpRequest, binding: Binding, queued_at: datetime | None, *, refused: str = ""
) -> HttpResponse:
    waiting = (
        queued_at is not None
        and timezone.now() - queued_at < QUEUED_POLL
        and not selectors.binding_run_started_since(binding=binding, since=queued_at)
    )
    context = {
        "binding": binding,
        "account": binding.account,
        # The query string that keeps the row polling until the queued fetch has started.
        "queued": urlencode({"queued": queued_at.isoformat()}) if waiting else "",
        "refused": refused,
    }
    return render(request, "mapping/_binding_row.html", context, status=429 if refused else 200)


@login_required
@require_POST
def binding_fetch_now(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """Queue a fetch of one binding now ("fetched by hand" also clears needs-attention)."""
    binding = _binding_for(request, account_id, pk)
    wait = throttle.fetch_now_hit(request)  # FETCH_NOW_RATE_LIMIT per console user
    if wait:
        text = f"Fetch now was pressed too often. Try again in {wait} s."
        if not request.htmx:
            messages.error(request, text)
            return redirect("binding-list", binding.account_id)
        return _row(request, binding, None, refused=text)
    queued_at = None
    if not binding.fetch_running:  # else the running fetch is already doing the job
        queued_at = timezone.now()
        transaction.on_commit(lambda: tasks.binding_fetch.delay(binding.pk, trigger="manual"))
        audit.record(request, "fetch.now", binding)
    if not request.htmx:
        messages.success(request, f"A fetch of {binding.username} was queued.")
        return redirect("binding-list", binding.account_id)
    binding.refresh_from_db()
    return _row(request, binding, queued_at)


@login_required
@require_GET
def binding_row(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """The binding's row, polled by htmx while a fetch is queued or running."""
    binding = _binding_for(request, account_id, pk)
    try:
        queued_at = parse_datetime(request.GET.get("queued", ""))
    except ValueError:
        queued_at = None
    if queued_at is not None and timezone.is_naive(queued_at):
        queued_at = None
    return _row(request, binding, queued_at)


@login_required
@require_GET
def binding_history(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """The last fetch runs of one binding, as a table row under the binding's row."""
    binding = _binding_for(request, account_id, pk)
    runs = list(selectors.binding_history(binding=binding, limit=10))
    for run in runs:
        run.took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return render(request, "mapping/_binding_history.html", {"binding": binding, "runs": runs})


# --- Detect (htmx) ----------------------------------------------------------------------------

_PASSWORDS = ("isp_password", "smtp_password", "map-isp_password", "map-smtp_password")
_ENDPOINT_FIELDS = (*POP3_ENDPOINT, *SMTP_ENDPOINT)


@sensitive_post_parameters(*_PASSWORDS)
@require_POST
def wizard_detect(request: HttpRequest, domain_id: int) -> HttpResponse:
    """Detect for the wizard's Map settings step (fields prefixed "map-")."""
    _require_console(request)
    domain = get_domain_for(request.user, domain_id)
    form = MapConnectionForm(request.POST, prefix=MAP, domain=domain)

    @sensitive_variables()
    def held(name: str, cleaned: dict) -> str:
        return sealed_secret(request, domain_id, MAP, name, endpoint=cleaned)

    relay = bool(request.POST.get(f"{MAP}-is_outgoing_relay"))
    # The wizard's Finish step warns when Detect was not run on these settings, or failed.
    return _run(
        request,
        form,
        held,
        relay=relay,
        oauth=_wizard_sign_in(request, domain_id),
        noted=lambda report: detect_noted(request, form, report),
    )


@sensitive_post_parameters(*_PASSWORDS)
@require_POST
def binding_detect(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """Detect for an existing remote POP3 account; blank fields fall back to the stored ones.

    A stored password is used only for the server it was typed for: with another server,
    port, security or account on the page, the password must be typed (issue 11).
    """
    _require_console(request)
    account = get_account_for(request.user, account_id)
    binding = get_object_or_404(Binding, pk=pk, account=account)
    names = (*_ENDPOINT_FIELDS, "auth_method")
    stored = {name: getattr(binding, name) for name in names}
    posted = {k: v for k, v in request.POST.items() if k in (*names, *_PASSWORDS)}
    form = MapConnectionForm({**stored, **posted, **_flags(request)}, domain=account.domain)

    @sensitive_variables()
    def held(name: str, cleaned: dict) -> str:
        if not binding.password_encrypted:  # signs in (issue 15): no password is stored
            return ""
        if name == "isp_password" and not endpoint_moved(binding, cleaned, POP3_ENDPOINT):
            return binding.get_isp_password()
        if name == "smtp_password" and not endpoint_moved(binding, cleaned, SMTP_ENDPOINT):
            return binding.smtp_credentials()[1]
        return ""

    def signed_in(cleaned: dict) -> detect.OAuthLogin | str:
        # A stored sign-in serves only the servers and mailbox it was made for (issue 15).
        moved = endpoint_moved(binding, cleaned, POP3_ENDPOINT) or endpoint_moved(
            binding, cleaned, SMTP_ENDPOINT[:3]
        )
        if cleaned["auth_method"] != binding.auth_method or moved:
            return SIGN_IN_FIRST
        return credentials.detect_login(binding)

    relay = bool(request.POST.get("is_outgoing_relay"))
    return _run(request, form, held, relay=relay, oauth=signed_in)


@sensitive_post_parameters(*_PASSWORDS)
@require_POST
def account_detect(request: HttpRequest, account_id: int) -> HttpResponse:
    """Detect for a remote POP3 account being added on the POP3 remote tab."""
    _require_console(request)
    account = get_account_for(request.user, account_id)
    form = MapConnectionForm(request.POST, domain=account.domain)
    relay = bool(request.POST.get("is_outgoing_relay"))
    return _run(request, form, lambda name, cleaned: "", relay=relay, oauth=lambda c: SIGN_IN_FIRST)


def _flags(request: HttpRequest) -> dict:
    return {"test_smtp": request.POST["test_smtp"]} if request.POST.get("test_smtp") else {}


def _require_console(request: HttpRequest) -> None:
    if not may_use_console(request.user):
        raise PermissionDenied("Detect is for administrators.")


SIGN_IN_FIRST = (
    "Sign-in: save the remote POP3 account, then press its Sign in button; Detect tests the "
    "sign-in after that (a sign-in serves only the server and mailbox it was made for)."
)


def _wizard_sign_in(request: HttpRequest, domain_id: int) -> SignIn:
    """The wizard's sealed sign-in as Detect's login, if made for these servers."""

    @sensitive_variables()
    def signed_in(cleaned: dict) -> detect.OAuthLogin | str:
        held = oauth_held_token(request, domain_id, cleaned)
        if held is None:
            return "Sign-in: press the Sign in button first; Detect then tests the sign-in."
        method = cleaned["auth_method"]
        label = dict(AuthMethod.choices)[method].removeprefix("Sign in with ")
        try:
            mechanism = provider(OAUTH_PROVIDERS[method]).mechanism
        except ProviderError as exc:
            return f"Sign-in: {exc.message}"
        return detect.OAuthLogin(
            label, mechanism, lambda: grants.held_access_token(held, mechanism=mechanism)
        )

    return signed_in


@sensitive_variables()
def _run(
    request: HttpRequest,
    form: MapConnectionForm,
    held: Held,
    *,
    relay: bool,
    oauth: SignIn,
    noted: Noted | None = None,
) -> HttpResponse:
    """Run Detect on the form's settings: POP3 always, SMTP when it carries outgoing mail."""
    if not form.is_valid():
        errors = []
        for name, problems in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            errors.append(f"{label}: {' '.join(problems)}" if label else " ".join(problems))
        return _fragment(request, errors=errors, status=400)
    data = form.cleaned_data

    def after(report: detect.Report) -> None:
        # Issue 12: every Detect is audited; the wizard remembers it for its Finish step.
        where = f"{data['username']} on {data['host']}:{data['port']}"
        audit.record(request, "detect.run", form.domain, detail=f"{where}: {report.verdict}")
        if noted is not None:
            noted(report)

    if data.get("auth_method", AuthMethod.PASSWORD) != AuthMethod.PASSWORD:
        login = oauth(data)
        if isinstance(login, str):
            return _fragment(request, errors=[login], status=400)
        return _detect(
            request, data, "", login, relay=relay or bool(data.get("test_smtp")), after=after
        )
    isp_password = data["isp_password"] or held("isp_password", data)
    if not isp_password:
        return _fragment(
            request,
            errors=[
                "ISP password: type it to test these settings (a stored password is only "
                "sent to the server it was typed for)."
            ],
            status=400,
        )
    smtp_password = ""
    if relay or data.get("test_smtp"):
        smtp_password = data["smtp_password"] or held("smtp_password", data) or isp_password
    return _detect(
        request,
        data,
        isp_password,
        None,
        relay=relay or bool(data.get("test_smtp")),
        smtp_password=smtp_password,
        after=after,
    )


@sensitive_variables()
def _detect(
    request: HttpRequest,
    data: dict,
    isp_password: str,
    oauth: detect.OAuthLogin | None,
    *,
    relay: bool,
    smtp_password: str = "",
    after: Noted | None = None,
) -> HttpResponse:
    smtp = None
    if relay:
        smtp = detect.Target(
            data["smtp_host"] or data["host"],
            data["smtp_port"],
            data["smtp_security"],
            data["username"] if oauth else (data["smtp_username"] or data["username"]),
            smtp_password,
            oauth,
        )
    wait = throttle.detect_hit(request)  # DETECT_RATE_LIMIT per console user
    if wait:
        return _fragment(
            request, errors=[f"Detect was run too often. Try again in {wait} s."], status=429
        )
    pop3 = detect.Target(
        data["host"], data["port"], data["security"], data["username"], isp_password, oauth
    )
    # At most DETECT_CONCURRENCY runs at once across every web process: a Detect holds a
    # web thread for up to DETECT_DEADLINE_SECONDS, and the console must stay usable.
    with throttle.detect_place() as got_place:
        if not got_place:
            return _fragment(request, errors=[throttle.DETECT_BUSY], status=503)
        report = detect.detect(pop3=pop3, smtp=smtp)
    if after is not None:
        after(report)
    return _fragment(request, report=report)


def _fragment(
    request: HttpRequest,
    *,
    report: detect.Report | None = None,
    errors: Sequence[str] = (),
    status: int = 200,
) -> HttpResponse:
    return render(
        request, "mapping/_detect_report.html", {"report": report, "errors": errors}, status=status
    )
