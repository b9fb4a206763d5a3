"""/metrics in Prometheus text format: the fetch counters of every process, and the state the
database holds, read at scrape time.

Two sources, each where it is true (mapping/metrics.py says why):
- counters of events (fetches by outcome, messages, bytes, the duration histogram) come
  from the per-process files in METRICS_DIR, added up by prometheus_client's
  ``MultiProcessCollector``, so every worker process's fetches count, whichever web
  process answers the scrape;
- gauges of state (bindings by state, fetches running, the due-but-not-started backlog
  set-aside messages, the outgoing relay) come from two aggregate queries per scrape, and
  the lag of the oldest due binding from ``mapping.selectors.fetch_lag`` (what the console
  says), so they are right whatever process answers.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from mapping.lease import unleased
from mapping.metrics import metrics_directory
from mapping.models import Binding, BindingState, QuarantinedMessage, QuarantineState, Schedule
from mapping.selectors import fetch_lag

from .selectors import relay_totals


class DatabaseCollector:
    """Gauges read from the database at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        aggregates = {
            state: Count("pk", filter=Q(enabled=True, state=state)) for state in BindingState.values
        }
        aggregates |= {
            "disabled": Count("pk", filter=Q(enabled=False)),
        }
        aggregates |= relay_totals()
        row = Binding.objects.aggregate(**aggregates)
        row |= Schedule.objects.aggregate(
            running=Count("pk", filter=Q(lease_token__isnull=False, lease_expires_at__gte=now)),
            backlog=Count("pk", filter=unleased(now) & Q(next_fetch_at__lte=now)),
        )

        states = GaugeMetricFamily(
            "aamail_bindings", "Remote POP3 accounts by state.", labels=["state"]
        )
        for state in BindingState.values:
            states.add_metric([state], row[state])
        states.add_metric(["disabled"], row["disabled"])
        yield states
        yield GaugeMetricFamily(
            "aamail_fetches_running", "Fetches holding a lease now.", value=row["running"]
        )
        yield GaugeMetricFamily(
            "aamail_fetch_backlog",
            "Enabled bindings whose fetch is due and not started (not claimed, no lease).",
            value=row["backlog"],
        )
        lag = fetch_lag(now=now)  # the same figure as the console's banner
        yield GaugeMetricFamily(
            "aamail_fetch_lag_seconds",
            "How long the oldest due, not started binding has been due (0 when none).",
            value=lag.seconds,
        )
        yield GaugeMetricFamily(
            "aamail_fetch_lag_acceptable_seconds",
            "The lag the settings accept (FETCH_LAG_ACCEPTABLE_SECONDS); above it the console "
            "says fetching is behind schedule.",
            value=lag.acceptable,
        )
        held = QuarantinedMessage.objects.filter(state=QuarantineState.HELD).count()
        yield GaugeMetricFamily(
            "aamail_quarantined_messages", "Messages set aside (poison messages).", value=held
        )
        relays = GaugeMetricFamily(
            "aamail_relays", "Outgoing relays (bindings) by state.", labels=["state"]
        )
        relays.add_metric(["ok"], row["relay_ok"])
        relays.add_metric(["failing"], row["relay_failing"])
        yield relays
        yield GaugeMetricFamily(
            "aamail_relay_deferred_messages",
            "Outgoing messages deferred by the ISP relays (Postfix queue).",
            value=row["relay_deferred"] or 0,
        )
        yield GaugeMetricFamily(
            "aamail_relay_bounced_messages",
            "Outgoing messages bounced by the ISP relays.",
            value=row["relay_bounced"] or 0,
        )


def metrics_scrape() -> tuple[bytes, str]:
    """The metrics page and its content type."""
    registry = CollectorRegistry()
    directory = metrics_directory()
    if directory.is_dir():
        MultiProcessCollector(registry, path=str(directory))
    registry.register(DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
