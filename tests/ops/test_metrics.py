"""/metrics: Prometheus text format behind a bearer token, right across processes."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from domains.models import Security
from mailservice.models import RelayState, RelayStatus
from mapping.fetch import binding_fetch
from mapping.models import (
    Binding,
    BindingState,
    LeavePolicy,
    QuarantinedMessage,
    QuarantineState,
    Schedule,
)
from tests.factories import BindingFactory
from tests.servers.celeryworker import celery_worker
from tests.servers.faultpop import FaultPop

TOKEN = "scrape-me-0123456789"


def scrape(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.django_db
def test_it_does_not_exist_without_a_token_setting(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.django_db
def test_it_refuses_a_missing_or_wrong_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_it_reports_fetches_state_backlog_lag_and_quarantine(live_server, settings):
    settings.METRICS_TOKEN = TOKEN
    url = live_server.url + reverse("metrics")
    before = samples(scrape(url)[1])
    messages = [b"Subject: m%d\n\nbody\n" % i for i in range(1, 4)]
    with FaultPop(messages, gone={3}) as pop:
        binding = BindingFactory(
            host="127.0.0.1", port=pop.port, security=Security.NONE, username="user",
            raw_password="pass", leave_policy=LeavePolicy.KEEP,
        )  # fmt: skip
        binding_fetch(binding=binding)
    broken = BindingFactory()
    Binding.objects.filter(pk=broken.pk).update(state=BindingState.NEEDS_ATTENTION)
    Schedule.objects.filter(pk=broken.pk).update(next_fetch_at=None)  # as a failure leaves it
    overdue = BindingFactory()
    Binding.objects.filter(pk=overdue.pk).update(state=BindingState.OK)
    Schedule.objects.filter(pk=overdue.pk).update(
        next_fetch_at=timezone.now() - timedelta(minutes=10)
    )
    BindingFactory(enabled=False)
    now = timezone.now()
    QuarantinedMessage.objects.create(
        binding=broken, uidl="u", state=QuarantineState.HELD, failures=3, reason="r",
        first_failed_at=now, last_failed_at=now, held_at=now,
    )  # fmt: skip

    status, text = scrape(url)
    assert status == 200
    after = samples(text)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("aamail_fetches_total", outcome="ok") == 1
    assert grew("aamail_fetched_messages_total") == 2
    assert grew("aamail_fetched_bytes_total") == sum(len(m) for m in messages[:2])
    assert grew("aamail_fetch_duration_seconds_count") == 1
    assert after[("aamail_bindings", (("state", "ok"),))] == 2
    assert after[("aamail_bindings", (("state", "needs_attention"),))] == 1
    assert after[("aamail_bindings", (("state", "disabled"),))] == 1
    # The new "broken" one is not due (needs attention, no next fetch); the overdue one is.
    assert after[("aamail_fetch_backlog", ())] == 1
    assert 590 < after[("aamail_fetch_lag_seconds", ())] < 900
    assert after[("aamail_quarantined_messages", ())] == 1
    print(text[:2000])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_it_adds_up_the_fetches_of_every_worker_process(live_server, settings, tmp_path):
    """Two Celery worker processes fetch; the web process's /metrics counts both."""
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_DIR = tmp_path / "metrics"  # this test's processes only
    pops = [FaultPop([b"Subject: %d\n\nx\n" % i] * 2, uidls=["a", "b"]) for i in range(4)]
    with pops[0], pops[1], pops[2], pops[3]:
        bindings = [
            BindingFactory(host="127.0.0.1", port=pop.port, security=Security.NONE,
                           username="user", raw_password="pass")
            for pop in pops
        ]  # fmt: skip
        env = {"MAIL_ROOT": str(settings.MAIL_ROOT), "METRICS_DIR": str(settings.METRICS_DIR)}
        with celery_worker(tmp_path, env, concurrency=2) as worker:
            worker.tick()
            for binding in bindings:
                worker.wait_until_fetched(binding)
    files = sorted(path.name for path in settings.METRICS_DIR.glob("*.db"))
    assert files, "the worker processes wrote no counter files"
    after = samples(scrape(live_server.url + reverse("metrics"))[1])
    assert after[("aamail_fetches_total", (("outcome", "ok"),))] == 4
    assert after[("aamail_fetched_messages_total", ())] == 8
    assert after[("aamail_fetch_duration_seconds_count", ())] == 4
    print("counter files:", files)


@pytest.mark.django_db
def test_the_sample_grafana_dashboard_asks_only_for_metrics_that_exist(client, settings):
    import json
    import re

    from django.conf import settings as conf

    settings.METRICS_TOKEN = TOKEN
    BindingFactory()
    binding_fetch_counters_exist()
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    exposed = {name for name, _ in samples(text)}
    dashboard = json.loads((conf.BASE_DIR / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    asked = {name for expr in exprs for name in re.findall(r"aamail_[a-z_]+", expr)}
    assert asked
    assert asked - exposed == set()


def binding_fetch_counters_exist() -> None:
    """Count one run so that every counter family has a sample."""
    from mapping.metrics import fetch_observed

    fetch_observed(outcome="ok", messages=1, size=10, seconds=0.1)


@pytest.mark.django_db
def test_it_exposes_the_outgoing_relays(client, settings):
    settings.METRICS_TOKEN = TOKEN
    stuck, fine = BindingFactory(), BindingFactory()
    RelayStatus.objects.create(
        binding=stuck, state=RelayState.FAILING, deferred=3, bounced=1, failing_since=timezone.now()
    )
    RelayStatus.objects.create(binding=fine, state=RelayState.OK, bounced=2)
    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert found[("aamail_relays", (("state", "failing"),))] == 1
    assert found[("aamail_relays", (("state", "ok"),))] == 1
    assert found[("aamail_relay_deferred_messages", ())] == 3
    assert found[("aamail_relay_bounced_messages", ())] == 3
