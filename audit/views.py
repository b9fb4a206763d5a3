"""The audit log page: superusers see every event, a domain administrator their domain's."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.access import domains_for, may_use_console

from . import selectors
from .forms import AuditFilterForm

PAGE_SIZE = 50


@login_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """The events this console user may see, filtered by the form, newest first."""
    user = request.user
    if not may_use_console(user):
        raise PermissionDenied("The audit log is for administrators.")
    domains = list(domains_for(user).order_by("name").values_list("pk", "name"))
    form = AuditFilterForm(request.GET or None, domains=domains, serverwide=user.is_superuser)
    visible = None if user.is_superuser else [pk for pk, _name in domains]
    events = selectors.audit_events(domain_ids=visible, **form.filters())
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page_obj": page,
        "events": page.object_list,
        "query": query.urlencode(),
        "show_domain": user.is_superuser or len(domains) > 1,
        "retention_days": settings.AUDIT_RETENTION_DAYS,
        "time_zone": settings.TIME_ZONE,
    }
    return render(request, "audit/audit_log.html", context)
