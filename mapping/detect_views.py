"""Detect over htmx: the wizard's Map settings step and the POP3 remote tab.

Each endpoint takes the settings on the page, runs ``detect.detect`` under its deadline and
answers with the ``_detect_report.html`` fragment. Administrators only, CSRF-protected
(the middleware; nothing here is exempt), rate-limited per user. A password typed on the
page is used for the run and never rendered back; a blank one means the one already held
(the binding's stored password, or the one sealed in the wizard's session).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from accounts.access import get_account_for, get_domain_for, may_use_console
from accounts.wizard import MAP, sealed_secret
from accounts.wizard_forms import MapConnectionForm
from domains.models import Domain

from . import detect, ratelimit
from .models import Binding

_PASSWORDS = ("isp_password", "smtp_password", "map-isp_password", "map-smtp_password")
_FIELDS = (
    "host",
    "port",
    "security",
    "username",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_username",
)


@sensitive_post_parameters(*_PASSWORDS)
@require_POST
def wizard_detect(request: HttpRequest, domain_id: int) -> HttpResponse:
    """Detect for the wizard's Map settings step (fields prefixed "map-")."""
    _require_console(request)
    domain = get_domain_for(request.user, domain_id)
    form = MapConnectionForm(request.POST, prefix=MAP, domain=domain)

    def held(name: str) -> str:
        return sealed_secret(request, domain_id, MAP, name)

    return _run(request, form, domain, held)


@sensitive_post_parameters(*_PASSWORDS)
@require_POST
def binding_detect(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """Detect for an existing remote POP3 account; blank fields fall back to the stored ones."""
    _require_console(request)
    account = get_account_for(request.user, account_id)
    binding = get_object_or_404(Binding, pk=pk, account=account)
    stored = {name: getattr(binding, name) for name in _FIELDS}
    data = {**stored, **{k: v for k, v in request.POST.items() if k in (*_FIELDS, *_PASSWORDS)}}
    form = MapConnectionForm(data, domain=account.domain)

    @sensitive_variables()
    def held(name: str) -> str:
        if name == "isp_password":
            return binding.get_isp_password()
        return binding.smtp_credentials()[1] if binding.smtp_password_encrypted else ""

    return _run(request, form, account.domain, held)


@sensitive_post_parameters(*_PASSWORDS)
@require_POST
def account_detect(request: HttpRequest, account_id: int) -> HttpResponse:
    """Detect for a remote POP3 account being added on the POP3 remote tab."""
    _require_console(request)
    account = get_account_for(request.user, account_id)
    form = MapConnectionForm(request.POST, domain=account.domain)
    return _run(request, form, account.domain, lambda name: "")


def _require_console(request: HttpRequest) -> None:
    if not may_use_console(request.user):
        raise PermissionDenied("Detect is for administrators.")


@sensitive_variables()
def _run(request: HttpRequest, form: MapConnectionForm, domain: Domain, held) -> HttpResponse:
    if not form.is_valid():
        errors = []
        for name, messages in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            errors.append(f"{label}: {' '.join(messages)}" if label else " ".join(messages))
        return _fragment(request, errors=errors, status=400)
    data = form.cleaned_data
    isp_password = data["isp_password"] or held("isp_password")
    if not isp_password:
        return _fragment(
            request, errors=["ISP password: type it to test the settings."], status=400
        )
    smtp_password = data["smtp_password"] or held("smtp_password") or isp_password
    wait = ratelimit.hit("detect", request.user.pk)
    if wait:
        return _fragment(
            request,
            errors=[f"Detect was run too often. Try again in {wait} s."],
            status=429,
        )
    report = detect.detect(
        pop3=detect.Target(
            data["host"], data["port"], data["security"], data["username"], isp_password
        ),
        smtp=detect.Target(
            data["smtp_host"] or domain.smtp_host or data["host"],
            data["smtp_port"],
            data["smtp_security"],
            data["smtp_username"] or data["username"],
            smtp_password,
        ),
    )
    return _fragment(request, report=report)


def _fragment(request, *, report=None, errors=(), status: int = 200) -> HttpResponse:
    return render(
        request, "mapping/_detect_report.html", {"report": report, "errors": errors}, status=status
    )
