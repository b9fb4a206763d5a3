"""The audit log page: a domain's administrators see their domain, superusers everything;
filters by domain, what, who, on what and dates; kept for AUDIT_RETENTION_DAYS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent
from audit.services import audit_prune
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(domain, domain_admin, superuser):
    other = factories.DomainFactory(name="other.example")
    mine = factories.AccountFactory(domain=domain, localpart="support")
    theirs = factories.AccountFactory(domain=other, localpart="sales")
    audit.record(domain_admin.address, "account.created", mine)
    audit.record("boss@other.example", "account.deleted", theirs)
    audit.record("manage.py rotate_isp_keys", "keys.rotated", detail="3 bindings re-encrypted")
    audit.record("mallory@" + domain.name, "login.failed", domain=domain, ip="198.51.100.7")
    return {"mine": mine, "theirs": theirs, "other": other}


def rows(response) -> str:
    body = response.content.decode()
    return body[body.index('id="audit-events"') :]


def test_it_shows_a_domain_administrator_only_their_domain(admin_client, history):
    table = rows(admin_client.get(reverse("audit-log")))
    assert history["mine"].address in table
    assert "mallory@" in table
    assert "198.51.100.7" in table
    assert history["theirs"].address not in table
    assert "ISP keys rotated" not in table


def test_it_shows_a_superuser_everything_and_the_server_wide_events(admin_client_su, history):
    table = rows(admin_client_su.get(reverse("audit-log")))
    assert history["mine"].address in table
    assert history["theirs"].address in table
    assert "ISP keys rotated" in table
    server = rows(admin_client_su.get(reverse("audit-log"), {"domain": "server"}))
    assert "ISP keys rotated" in server
    assert history["theirs"].address not in server


def test_it_filters_by_what_who_and_on_what(admin_client_su, history):
    url = reverse("audit-log")
    failed = rows(admin_client_su.get(url, {"action": "login.failed"}))
    assert "mallory@" in failed
    assert history["mine"].address not in failed
    by_who = rows(admin_client_su.get(url, {"who": "boss@other"}))
    assert history["theirs"].address in by_who
    assert "mallory@" not in by_who
    by_what = rows(admin_client_su.get(url, {"what": "sales@"}))
    assert history["theirs"].address in by_what
    assert history["mine"].address not in by_what
    by_domain = rows(admin_client_su.get(url, {"domain": history["other"].pk}))
    assert history["theirs"].address in by_domain
    assert "mallory@" not in by_domain


def test_it_filters_by_days_of_the_box_time_zone(admin_client_su, history, settings):
    AuditEvent.objects.filter(action="keys.rotated").update(at=timezone.now() - timedelta(days=3))
    today = timezone.localdate().isoformat()
    recent = rows(admin_client_su.get(reverse("audit-log"), {"since": today}))
    assert "ISP keys rotated" not in recent
    assert "mallory@" in recent


def test_it_names_the_time_zone_on_every_time(admin_client, history, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    table = rows(admin_client.get(reverse("audit-log")))
    assert timezone.localtime().strftime("%Y-%m-%d") in table
    assert " CET<" in table or " CEST<" in table


def test_it_refuses_an_employee(client, domain):
    employee = factories.AccountFactory(domain=domain)
    assert client.login(username=employee.address, password=factories.LOCAL_PASSWORD)
    assert client.get(reverse("audit-log")).status_code == 403


def test_it_prunes_events_older_than_the_retention(history, settings):
    settings.AUDIT_RETENTION_DAYS = 30
    AuditEvent.objects.filter(action="keys.rotated").update(at=timezone.now() - timedelta(days=31))
    before = AuditEvent.objects.count()
    assert audit_prune(batch=1) == 1
    assert not AuditEvent.objects.filter(action="keys.rotated").exists()
    assert AuditEvent.objects.count() == before - 1


def test_a_daily_beat_task_prunes_the_log(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["audit-prune"]
    assert entry["task"] == "audit.tasks.audit_prune"
    assert entry["schedule"] == 86400
