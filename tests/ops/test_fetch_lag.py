"""Issue 13: no binding silently falls behind. The lag of the oldest due binding is measured,
compared with FETCH_LAG_ACCEPTABLE_SECONDS, said in words on the Overview and the domain
list, and exported on /metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse
from django.utils import timezone

from mapping import claim
from mapping.models import Binding, BindingState, Schedule
from mapping.selectors import fetch_lag
from tests.factories import BindingFactory
from tests.ops.test_metrics import TOKEN, samples, scrape

pytestmark = pytest.mark.django_db

BANNER = "behind schedule; add workers or sessions"


def overdue(minutes: float, **fields) -> Binding:
    binding = BindingFactory(**fields)
    Binding.objects.filter(pk=binding.pk).update(state=BindingState.OK)
    # A disabled binding is not scheduled (Binding.save, services.binding_save).
    Schedule.objects.filter(pk=binding.pk, binding__enabled=True).update(
        next_fetch_at=timezone.now() - timedelta(minutes=minutes)
    )
    return binding


def test_the_lag_is_the_age_of_the_oldest_due_unleased_enabled_binding(settings):
    settings.FETCH_LAG_ACCEPTABLE_SECONDS = 120
    assert fetch_lag().seconds == 0
    assert not fetch_lag().behind
    overdue(1)
    overdue(30, enabled=False)  # disabled: not due
    oldest = overdue(10)
    lag = fetch_lag()
    assert 590 < lag.seconds < 610
    assert lag.behind
    assert lag.words == "10 minutes"
    claim.bindings_claim(timezone.now(), 1)  # a claimer took the oldest: no longer waiting
    assert Schedule.objects.get(pk=oldest.pk).lease_token is not None
    assert 50 < fetch_lag().seconds < 70
    assert not fetch_lag().behind


def test_a_new_binding_waits_since_its_creation(settings):
    binding = BindingFactory()  # new: due from the moment it is saved
    assert fetch_lag(now=binding.created_at + timedelta(hours=3)).words == "3.0 hours"


def test_the_overview_and_the_domain_list_say_it_in_words_past_the_limit(admin_client_su, settings):
    settings.FETCH_LAG_ACCEPTABLE_SECONDS = 600
    overdue(5)
    for name in ("overview", "domain-list"):
        assert BANNER not in admin_client_su.get(reverse(name)).content.decode()
    overdue(25)
    for name in ("overview", "domain-list"):
        page = admin_client_su.get(reverse(name)).content.decode()
        assert "Fetching is 25 minutes behind schedule; add workers or sessions" in page
        assert "Sizing a deployment" in page


@pytest.mark.django_db(transaction=True)
def test_metrics_export_the_lag_and_the_acceptable_lag(live_server, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.FETCH_LAG_ACCEPTABLE_SECONDS = 300
    overdue(20)
    status, text = scrape(live_server.url + reverse("metrics"))
    assert status == 200
    values = samples(text)
    assert 1190 < values[("aamail_fetch_lag_seconds", ())] < 1300
    assert values[("aamail_fetch_lag_acceptable_seconds", ())] == 300


def test_the_settings_check_refuses_a_lag_shorter_than_a_tick(settings):
    settings.FETCH_LAG_ACCEPTABLE_SECONDS = 2
    settings.SCHEDULER_TICK_SECONDS = 5
    with pytest.raises(SystemCheckError, match="FETCH_LAG_ACCEPTABLE_SECONDS must be at least"):
        call_command("check")
    settings.FETCH_LAG_ACCEPTABLE_SECONDS = 0
    with pytest.raises(SystemCheckError, match="FETCH_LAG_ACCEPTABLE_SECONDS must be at least 1"):
        call_command("check")
