"""One alert per binding per state change, after the domain's threshold; never a storm."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from alerts import tasks
from alerts.models import Alert, AlertType
from alerts.scan import alerts_digest, alerts_scan
from mailservice.models import RelayState
from mapping.models import BindingState
from tests import factories

from .conftest import fail, recover, relay_fail

pytestmark = pytest.mark.django_db


def states(alert: Alert) -> list[tuple[str, str, str]]:
    return [(e["isp_account"], e["kind"], e["state"]) for e in alert.events]


def test_it_alerts_needs_attention_at_once_and_only_once(office):
    fail(office["binding"], BindingState.NEEDS_ATTENTION, minutes=1)
    [alert] = alerts_scan()
    assert states(alert) == [("isp-support-7731", "fetch", "failing")]
    assert alert.events[0]["error"] == "The ISP refused the password of isp-support-7731."
    assert alerts_scan() == []
    assert alerts_scan(now=timezone.now() + timedelta(hours=3)) == []


def test_it_waits_for_the_domains_threshold_before_telling_a_retrying_failure(office):
    fail(office["binding"], BindingState.RETRYING, minutes=10)
    assert alerts_scan() == []  # 30 minutes by default
    [alert] = alerts_scan(now=timezone.now() + timedelta(minutes=21))
    assert states(alert) == [("isp-support-7731", "fetch", "failing")]
    office["domain"].alert_after_minutes = 5
    office["domain"].save()
    other = factories.BindingFactory(account=office["support"], username="isp-second")
    fail(other, BindingState.RETRYING, minutes=6)
    [alert] = alerts_scan()
    assert states(alert) == [("isp-second", "fetch", "failing")]


def test_it_tells_once_when_it_works_again(office):
    fail(office["binding"])
    alerts_scan()
    recover(office["binding"])
    [alert] = alerts_scan()
    assert states(alert) == [("isp-support-7731", "fetch", "recovered")]
    assert alerts_scan() == []


def test_a_new_failure_after_recovery_is_a_new_alert(office):
    fail(office["binding"])
    alerts_scan()
    recover(office["binding"])
    alerts_scan()
    fail(office["binding"], minutes=0)
    [alert] = alerts_scan()
    assert states(alert) == [("isp-support-7731", "fetch", "failing")]


def test_a_failing_relay_is_told_after_the_threshold_and_when_it_recovers(office):
    status = relay_fail(office["binding"], minutes=10)
    assert alerts_scan() == []
    status.failing_since = timezone.now() - timedelta(minutes=31)
    status.save()
    [alert] = alerts_scan()
    assert states(alert) == [("isp-support-7731", "relay", "failing")]
    assert "535 5.7.8" in alert.events[0]["error"]
    status.state, status.failing_since = RelayState.OK, None
    status.save()
    [alert] = alerts_scan()
    assert states(alert) == [("isp-support-7731", "relay", "recovered")]


def test_fifty_failures_at_once_are_one_email_per_domain(office):
    for n in range(50):
        binding = factories.BindingFactory(account=office["support"], username=f"isp-{n}")
        fail(binding)
    tasks.alerts_scan()
    [message] = mail.outbox
    assert message.to == ["boss@example.com"]
    assert message.subject == "[AAMail] example.com: 50 failing"
    assert message.body.count("— Needs attention since") == 50


def test_a_binding_switched_off_is_not_news(office):
    fail(office["binding"])
    alerts_scan()
    office["binding"].enabled = False
    office["binding"].save()
    assert alerts_scan() == []
    office["binding"].enabled = True
    office["binding"].save()
    [alert] = alerts_scan()  # still failing when switched on again: told again
    assert states(alert) == [("isp-support-7731", "fetch", "failing")]


def test_the_daily_digest_lists_what_stays_broken_once_a_day(office):
    fail(office["binding"])
    relay_fail(office["binding"], minutes=120)
    alerts_scan()
    assert alerts_digest() == []  # told minutes ago: not repeated yet
    tomorrow = timezone.now() + timedelta(days=1)
    [digest] = alerts_digest(now=tomorrow)
    assert digest.type == AlertType.DIGEST
    assert sorted(states(digest)) == [
        ("isp-support-7731", "fetch", "still failing"),
        ("isp-support-7731", "relay", "still failing"),
    ]
    assert alerts_digest(now=tomorrow + timedelta(hours=2)) == []
    recover(office["binding"])
    alerts_scan()
    [digest] = alerts_digest(now=tomorrow + timedelta(days=1))
    assert states(digest) == [("isp-support-7731", "relay", "still failing")]


def test_the_email_says_what_failed_why_and_where_to_fix_it(office, settings):
    settings.CONSOLE_URL = "https://mail.example.com"
    settings.TIME_ZONE = "Europe/Berlin"
    fail(office["binding"])
    tasks.alerts_scan()
    [message] = mail.outbox
    body = message.body
    assert "support@example.com: remote pop3 account isp-support-7731 on" in body
    assert "The ISP refused the password of isp-support-7731." in body
    link = f"https://mail.example.com/accounts/{office['support'].pk}/pop3/"
    assert f"Open: {link}" in body
    assert " CET" in body or " CEST" in body


def test_beat_runs_the_scan_every_minute_and_the_digest_daily(settings):
    assert settings.CELERY_BEAT_SCHEDULE["alerts-scan"]["schedule"] == 60
    digest = settings.CELERY_BEAT_SCHEDULE["alerts-digest"]["schedule"]
    assert digest.hour == {settings.ALERT_DIGEST_HOUR}


def test_a_mailbox_whose_sign_in_is_gone_is_told_at_once_but_not_one_being_set_up(office):
    binding = office["binding"]
    binding.state = BindingState.NEEDS_SIGN_IN
    binding.last_error = "Sign in again: Microsoft no longer accepts the saved sign-in."
    binding.last_error_at = timezone.now()
    binding.save()
    assert alerts_scan() == []  # never fetched: an administrator is still setting it up
    binding.last_success_at = timezone.now() - timedelta(days=1)
    binding.save()
    [alert] = alerts_scan()
    assert states(alert) == [("isp-support-7731", "fetch", "failing")]
    assert alert.events[0]["state_label"] == "Needs sign-in"
    assert alerts_scan() == []
