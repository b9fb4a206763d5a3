"""Reads for the Overview: a fixed number of queries whatever the number of bindings.

One aggregate gives the counts by state (and the outgoing relay's totals); the failing
bindings, the set-aside messages (with their total, by a window count) and the relay's
failing bindings are each one query limited to what the page shows; the chart is one
grouped query over the daily totals. A superuser sees every domain, a domain administrator
only theirs (``accounts.access.domains_for``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Sum, Value, When, Window
from django.utils import timezone

from accounts.access import domains_for
from mailservice.models import RelayState, RelayStatus
from mapping.models import (
    Binding,
    BindingState,
    FetchDay,
    QuarantinedMessage,
    QuarantineState,
)

FAILING_SHOWN = 50
HELD_SHOWN = 50
RELAY_FAILING_SHOWN = 50
CHART_DAYS = 30

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


@dataclass(frozen=True)
class StateCounts:
    ok: int = 0
    retrying: int = 0
    needs_attention: int = 0
    needs_sign_in: int = 0
    new: int = 0
    disabled: int = 0
    quarantined: int = 0

    @property
    def total(self) -> int:
        return (
            self.ok
            + self.retrying
            + self.needs_attention
            + self.needs_sign_in
            + self.new
            + self.disabled
        )

    @property
    def failing(self) -> int:
        return self.retrying + self.needs_attention + self.needs_sign_in


@dataclass(frozen=True)
class DayTotal:
    day: date
    messages: int = 0
    bytes: int = 0
    runs: int = 0
    failures: int = 0


@dataclass(frozen=True)
class RelayOverview:
    """The outgoing relays' state over the bindings in scope (mailservice.relaywatch)."""

    ok: int = 0
    failing: int = 0
    deferred: int = 0
    bounced: int = 0
    failing_rows: list[RelayStatus] = field(default_factory=list)  # binding joined


@dataclass(frozen=True)
class Overview:
    counts: StateCounts
    failing: list[Binding]
    held: list[QuarantinedMessage]
    days: list[DayTotal]
    relay: RelayOverview


def bindings_in_scope(*, user: User | AnonymousUser) -> QuerySet[Binding]:
    """The bindings of the domains `user` manages."""
    if user.is_superuser:
        return Binding.objects.all()
    return Binding.objects.filter(account__domain__in=domains_for(user))


def _scoped(queryset: QuerySet, user: User | AnonymousUser, path: str) -> QuerySet:
    """`queryset` limited to the domains `user` manages, `path` leading to the domain."""
    if user.is_superuser:
        return queryset
    return queryset.filter(**{f"{path}__in": domains_for(user)})


def overview_for(*, user: User | AnonymousUser) -> Overview:
    """Everything the Overview shows for `user`."""
    scope = bindings_in_scope(user=user)
    totals = _state_totals(scope)
    held = _held(user)
    counts = StateCounts(
        ok=totals["ok"],
        retrying=totals["retrying"],
        needs_attention=totals["needs_attention"],
        needs_sign_in=totals["needs_sign_in"],
        new=totals["new"],
        disabled=totals["disabled"],
        quarantined=held[0].total if held else 0,
    )
    relay = RelayOverview(
        ok=totals["relay_ok"],
        failing=totals["relay_failing"],
        deferred=totals["relay_deferred"] or 0,
        bounced=totals["relay_bounced"] or 0,
        failing_rows=_relay_failing(user) if totals["relay_failing"] else [],
    )
    failing = []
    if counts.failing:
        failing = list(
            scope.filter(enabled=True, state__in=_FAILING)
            .select_related("account__domain")
            .order_by(_severity(), F("failing_since").asc(nulls_last=True), "pk")[:FAILING_SHOWN]
        )
    return Overview(counts=counts, failing=failing, held=held, days=_days(user), relay=relay)


_FAILING = (BindingState.NEEDS_ATTENTION, BindingState.NEEDS_SIGN_IN, BindingState.RETRYING)


def _severity() -> Case:
    """Needs attention or sign-in before retrying: a person must act on those."""
    return Case(
        When(state__in=(BindingState.NEEDS_ATTENTION, BindingState.NEEDS_SIGN_IN), then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )


def relay_totals() -> dict[str, Count | Sum]:
    """Aggregates of the outgoing relays over a Binding queryset (the Overview, /metrics)."""
    # A one-to-one LEFT JOIN: one row per binding, so the counts stay right.
    return {
        "relay_ok": Count("relay_status", filter=Q(relay_status__state=RelayState.OK)),
        "relay_failing": Count("relay_status", filter=Q(relay_status__state=RelayState.FAILING)),
        "relay_deferred": Sum("relay_status__deferred"),
        "relay_bounced": Sum("relay_status__bounced"),
    }


def _state_totals(scope: QuerySet[Binding]) -> dict[str, int]:
    enabled = Q(enabled=True)
    aggregates = {
        "ok": Count("pk", filter=enabled & Q(state=BindingState.OK)),
        "retrying": Count("pk", filter=enabled & Q(state=BindingState.RETRYING)),
        "needs_attention": Count("pk", filter=enabled & Q(state=BindingState.NEEDS_ATTENTION)),
        "needs_sign_in": Count("pk", filter=enabled & Q(state=BindingState.NEEDS_SIGN_IN)),
        "new": Count("pk", filter=enabled & Q(state=BindingState.NEW)),
        "disabled": Count("pk", filter=Q(enabled=False)),
    }
    aggregates |= relay_totals()
    return scope.aggregate(**aggregates)


def _held(user: User | AnonymousUser) -> list[QuarantinedMessage]:
    """The newest set-aside messages, each carrying ``total`` (all of them in scope)."""
    held = QuarantinedMessage.objects.filter(state=QuarantineState.HELD)
    held = _scoped(held, user, "binding__account__domain")
    return list(
        held.select_related("binding__account__domain")
        .annotate(total=Window(Count("pk")))
        .order_by("-held_at", "-pk")[:HELD_SHOWN]
    )


def _relay_failing(user: User | AnonymousUser) -> list[RelayStatus]:
    failing = RelayStatus.objects.filter(state=RelayState.FAILING)
    rows = _scoped(failing, user, "binding__account__domain")
    return list(
        rows.select_related("binding__account__domain").order_by(
            F("failing_since").asc(nulls_last=True), "pk"
        )[:RELAY_FAILING_SHOWN]
    )


def _days(user: User | AnonymousUser) -> list[DayTotal]:
    """Messages, bytes, runs and failures per day for the last CHART_DAYS days, oldest first."""
    today = timezone.localdate()
    start = today - timedelta(days=CHART_DAYS - 1)
    rows = _scoped(FetchDay.objects.filter(day__gte=start), user, "binding__account__domain")
    found = {
        row["day"]: row
        for row in rows.values("day").annotate(
            m=Sum("messages"), b=Sum("bytes"), r=Sum("runs"), f=Sum("failures")
        )
    }
    days = []
    for offset in range(CHART_DAYS):
        day = start + timedelta(days=offset)
        row = found.get(day)
        if row is None:
            days.append(DayTotal(day))
        else:
            days.append(DayTotal(day, row["m"] or 0, row["b"] or 0, row["r"] or 0, row["f"] or 0))
    return days
