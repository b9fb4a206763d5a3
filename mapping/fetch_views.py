"""Fetch now and fetch history on the POP3 remote tab (htmx fragments of the binding row)."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from accounts.access import get_account_for, may_use_console

from . import selectors, tasks
from .models import Binding

# How long a row keeps polling for a queued "Fetch now" that has not started yet.
QUEUED_POLL = timedelta(minutes=2)


def _binding_for(request: HttpRequest, account_id: int, pk: int) -> Binding:
    """The binding, if the user administers its domain (404 for other domains)."""
    if not may_use_console(request.user):
        raise PermissionDenied("This account has no access to the console.")
    account = get_account_for(request.user, account_id)
    return get_object_or_404(
        Binding.objects.select_related("account__domain"), pk=pk, account=account
    )


def _row(request: HttpRequest, binding: Binding, queued_at: datetime | None) -> HttpResponse:
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
    }
    return render(request, "mapping/_binding_row.html", context)


@login_required
@require_POST
def binding_fetch_now(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """Queue a fetch of one binding now ("fetched by hand" also clears needs-attention)."""
    binding = _binding_for(request, account_id, pk)
    queued_at = None
    if not binding.fetch_running:  # else the running fetch is already doing the job
        queued_at = timezone.now()
        transaction.on_commit(lambda: tasks.binding_fetch.delay(binding.pk, trigger="manual"))
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
