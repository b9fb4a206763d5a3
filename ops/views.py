"""The Overview (the console's home), the set-aside messages' actions, and /metrics.

Views are doors: an access check, one selector or service call, a page or a redirect.
"""

from __future__ import annotations

import hmac
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts.access import domains_for, may_use_console
from audit import services as audit
from mapping import quarantine, tasks
from mapping.models import QuarantinedMessage, QuarantineState
from mapping.selectors import fetch_lag

from . import charts, selectors
from .metrics import metrics_scrape


def _require_console(request: HttpRequest) -> None:
    if not may_use_console(request.user):
        raise PermissionDenied("This account has no access to the console.")


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """Bindings by state, the failing ones first, set-aside messages, 30 days, the relay."""
    _require_console(request)
    data = selectors.overview_for(user=request.user)
    context = {
        "overview": data,
        "charts": [
            charts.bar_chart(
                "Messages fetched per day",
                [(d.day, d.messages) for d in data.days],
                lambda n: f"{n:,} message{'s' if n != 1 else ''}",
            ),
            charts.bar_chart(
                "Bytes fetched per day",
                [(d.day, d.bytes) for d in data.days],
                lambda n: filesizeformat(n).replace("\xa0", " "),
            ),
        ],
        "month_messages": sum(d.messages for d in data.days),
        "month_bytes": sum(d.bytes for d in data.days),
        "month_failures": sum(d.failures for d in data.days),
        "fetch_lag": fetch_lag(),  # issue 13: said in words when past the acceptable lag
    }
    return render(request, "ops/overview.html", context)


# --- set-aside messages: retry, download, forget ---------------------------------------------


def _held_for(request: HttpRequest, pk: int) -> QuarantinedMessage:
    """A set-aside message of a domain the user administers (404 for any other)."""
    _require_console(request)
    held = QuarantinedMessage.objects.select_related("binding__account__domain").filter(
        binding__account__domain__in=domains_for(request.user), state=QuarantineState.HELD
    )
    return get_object_or_404(held, pk=pk)


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return redirect(target)
    return redirect("overview")


@login_required
@require_POST
def held_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Try a set-aside message again, in a fetch queued now."""
    message = _held_for(request, pk)
    binding = message.binding
    quarantine.quarantine_retry(message=message)
    audit.record(request, "held.retried", binding, detail=f"message {message.uidl}")
    transaction.on_commit(lambda: tasks.binding_fetch.delay(binding.pk, trigger="manual"))
    messages.success(
        request,
        f"Message {message.uidl} of {binding.username} is tried again in a fetch queued now; "
        "if it fails once more it is set aside again.",
    )
    return _back(request)


@login_required
@require_POST
def held_forget(request: HttpRequest, pk: int) -> HttpResponse:
    """Stop listing a set-aside message; it stays on the ISP's server, not fetched."""
    message = _held_for(request, pk)
    quarantine.quarantine_forget(message=message)
    audit.record(request, "held.forgotten", message.binding, detail=f"message {message.uidl}")
    messages.success(
        request,
        f"Message {message.uidl} of {message.binding.username} is forgotten: it stays on the "
        "ISP's server and is not fetched. Delete it there with a mail program if it is not "
        "wanted.",
    )
    return _back(request)


@login_required
@require_GET
def held_download(request: HttpRequest, pk: int) -> HttpResponse:
    """The bytes kept of a set-aside message, as an .eml file (as read, trace line first)."""
    message = _held_for(request, pk)
    if message.kept_bytes is None:
        raise Http404("No copy of this message was kept: it could not be read whole.")
    # Reading an employee's message is worth a line in the audit log.
    audit.record(request, "held.downloaded", message.binding, detail=f"message {message.uidl}")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", message.uidl)[:80] or "message"
    response = StreamingHttpResponse(
        quarantine.quarantine_bytes(message=message), content_type="message/rfc822"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}.eml"'
    response["Content-Length"] = str(message.kept_bytes)
    response["Cache-Control"] = "private, no-store"
    return response


# --- /metrics -------------------------------------------------------------------------------


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for "Authorization: Bearer <METRICS_TOKEN>" only."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off (METRICS_TOKEN is not set).")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("A bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_scrape()
    return HttpResponse(body, content_type=content_type)
