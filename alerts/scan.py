"""Which bindings changed state since their domain's administrators were last told.

A beat task runs `alerts_scan` every ALERT_SCAN_SECONDS. It compares each failing binding
(fetching: `Binding.state`/`failing_since`; outgoing relay: `RelayStatus`) with the binding's
`AlertMark` — the last thing told — and writes one `Alert` per domain holding only the
changes: a binding that has failed longer than its domain's `alert_after_minutes` ("Needs
attention" at once), and one that works again after an alert. Each change is claimed with a
conditional update of its mark, so two scans at once cannot both send it. The fetch and the
relay watch know nothing of this: they write state, the scan reads it.

`alerts_digest` (daily, beat) writes one digest per domain listing what stays broken.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from domains.models import Domain
from mailservice.models import RelayState, RelayStatus
from mapping.models import Binding, BindingState

from . import compose
from .models import Alert, AlertKind, AlertMark, AlertType, MarkState

_FAILING_STATES = (BindingState.RETRYING, BindingState.NEEDS_ATTENTION, BindingState.NEEDS_SIGN_IN)
# Told at once: only a person can fix these (a refused password, a sign-in that is gone).
_AT_ONCE = (BindingState.NEEDS_ATTENTION, BindingState.NEEDS_SIGN_IN)
# A digest repeats only what was told at least this long before it.
DIGEST_MIN_AGE = timedelta(hours=1)
DIGEST_MIN_GAP = timedelta(hours=20)


@dataclass(frozen=True)
class Failure:
    """A binding's fetching or relay failing now, as the domain's administrators see it."""

    binding: Binding
    kind: str
    since: datetime
    label: str
    error: str
    at_once: bool

    @property
    def key(self) -> tuple[int, str]:
        return self.binding.pk, self.kind

    def due(self, now: datetime) -> bool:
        """Failing long enough to tell (the domain's threshold), or at once."""
        wait = timedelta(minutes=self.binding.account.domain.alert_after_minutes)
        return self.at_once or now - self.since >= wait


def _fetch_failure(binding: Binding) -> Failure | None:
    if not binding.enabled or binding.state not in _FAILING_STATES:
        return None
    since = binding.failing_since
    if since is None and binding.state == BindingState.NEEDS_SIGN_IN and binding.last_success_at:
        # A sign-in found gone outside a fetch (issue 15) marks no failing_since; a mailbox
        # that never worked yet is still being set up, and is not news.
        since = binding.last_error_at or binding.updated_at
    if since is None:
        return None
    return Failure(
        binding,
        AlertKind.FETCH,
        since,
        binding.get_state_display(),
        binding.last_error,
        at_once=binding.state in _AT_ONCE,
    )


def _relay_failure(binding: Binding) -> Failure | None:
    try:
        status = binding.relay_status
    except RelayStatus.DoesNotExist:
        return None
    if status.state != RelayState.FAILING or status.failing_since is None:
        return None
    return Failure(
        binding, AlertKind.RELAY, status.failing_since, "Relay failing", status.last_error, False
    )


def _failure(binding: Binding, kind: str) -> Failure | None:
    return _fetch_failure(binding) if kind == AlertKind.FETCH else _relay_failure(binding)


def failures_now() -> list[Failure]:
    """Every binding whose fetching or outgoing relay fails right now."""
    related = ("account__domain", "relay_status")
    fetching = Binding.objects.select_related(*related).filter(
        Q(failing_since__isnull=False) | Q(last_success_at__isnull=False),
        enabled=True,
        state__in=_FAILING_STATES,
    )
    relaying = Binding.objects.select_related(*related).filter(
        relay_status__state=RelayState.FAILING
    )
    found = [_fetch_failure(b) for b in fetching] + [_relay_failure(b) for b in relaying]
    return [f for f in found if f is not None]


def _claim_failing(failure: Failure, mark: AlertMark | None, now: datetime) -> bool:
    if mark is None:
        try:
            with transaction.atomic():  # a savepoint: a racing scan may have made it
                AlertMark.objects.create(
                    binding=failure.binding,
                    kind=failure.kind,
                    state=MarkState.FAILING,
                    since=failure.since,
                    changed_at=now,
                )
        except IntegrityError:
            return False
        return True
    claimed = AlertMark.objects.filter(pk=mark.pk, state=mark.state, since=mark.since).update(
        state=MarkState.FAILING, since=failure.since, changed_at=now
    )
    return claimed == 1


def _claim_ok(mark: AlertMark, now: datetime) -> bool:
    claimed = AlertMark.objects.filter(pk=mark.pk, state=MarkState.FAILING, since=mark.since)
    return claimed.update(state=MarkState.OK, since=None, changed_at=now) == 1


def alerts_scan(*, now: datetime | None = None) -> list[Alert]:
    """Write an Alert per domain for the state changes not told yet; return them."""
    now = now or timezone.now()
    events: dict[Domain, list[dict]] = defaultdict(list)
    with transaction.atomic():
        due = {f.key: f for f in failures_now() if f.due(now)}
        marks = {
            (m.binding_id, m.kind): m
            for m in AlertMark.objects.select_related(
                "binding__account__domain", "binding__relay_status"
            ).filter(Q(state=MarkState.FAILING) | Q(binding_id__in={pk for pk, _ in due}))
        }
        for key, failure in due.items():
            mark = marks.get(key)
            if mark is not None and mark.state == MarkState.FAILING and mark.since == failure.since:
                continue  # told already
            if _claim_failing(failure, mark, now):
                domain = failure.binding.account.domain
                events[domain].append(_event(failure, compose.FAILING))
        for key, mark in marks.items():
            if mark.state != MarkState.FAILING or key in due:
                continue
            now_failing = _failure(mark.binding, mark.kind)
            if now_failing is not None and now_failing.since == mark.since:
                continue  # still the failure that was told (e.g. the threshold was raised)
            disabled = mark.kind == AlertKind.FETCH and not mark.binding.enabled
            if _claim_ok(mark, now) and not disabled:
                # A binding switched off by an administrator is not news: nothing is sent.
                domain = mark.binding.account.domain
                events[domain].append(_recovered(mark))
        alerts = [_alert(domain, AlertType.CHANGE, items, now) for domain, items in events.items()]
    return alerts


def _event(failure: Failure, state: str) -> dict:
    return compose.event(
        failure.binding,
        failure.kind,
        state,
        since=failure.since,
        label=failure.label,
        error=failure.error,
    )


def _recovered(mark: AlertMark) -> dict:
    label = "Working again"
    return compose.event(
        mark.binding, mark.kind, compose.RECOVERED, since=mark.since, label=label, error=""
    )


def _alert(domain: Domain, type_: str, items: list[dict], now: datetime) -> Alert:
    # Sent by the caller (alerts.tasks) once this transaction has committed.
    return Alert.objects.create(domain=domain, type=type_, created_at=now, events=items)


def alerts_digest(*, now: datetime | None = None) -> list[Alert]:
    """One digest per domain of what was told failing and still fails; none twice a day."""
    now = now or timezone.now()
    told = AlertMark.objects.select_related("binding__account__domain", "binding__relay_status")
    items: dict[Domain, list[dict]] = defaultdict(list)
    with transaction.atomic():
        for mark in told.filter(state=MarkState.FAILING, changed_at__lte=now - DIGEST_MIN_AGE):
            failure = _failure(mark.binding, mark.kind)
            if failure is not None:
                items[mark.binding.account.domain].append(_event(failure, compose.STILL_FAILING))
        recent = set(
            Alert.objects.filter(
                type=AlertType.DIGEST, created_at__gt=now - DIGEST_MIN_GAP
            ).values_list("domain_id", flat=True)
        )
        return [
            _alert(domain, AlertType.DIGEST, events, now)
            for domain, events in items.items()
            if domain.pk not in recent
        ]
