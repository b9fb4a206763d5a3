"""Logins and failed logins are audited, with the client address and never a password."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def test_it_records_a_login_under_the_accounts_domain(client, domain_admin):
    client.post(
        reverse("login"),
        {"username": domain_admin.address, "password": factories.LOCAL_PASSWORD},
        REMOTE_ADDR="192.0.2.44",
    )
    event = AuditEvent.objects.get(action="login")
    assert event.actor == domain_admin.address
    assert event.domain_id == domain_admin.domain_id
    assert event.ip == "192.0.2.44"


def test_it_records_a_failed_login_with_the_name_typed_and_no_password(client, domain_admin):
    client.post(
        reverse("login"),
        {"username": domain_admin.address, "password": "Guessed-Wrong-1"},
        REMOTE_ADDR="198.51.100.7",
    )
    event = AuditEvent.objects.get(action="login.failed")
    assert event.actor == domain_admin.address
    assert event.domain_id == domain_admin.domain_id  # its administrators see it
    assert event.ip == "198.51.100.7"
    assert "Guessed-Wrong-1" not in repr(list(AuditEvent.objects.values()))


def test_it_files_a_failed_login_of_an_unknown_domain_server_wide(client, db):
    client.post(reverse("login"), {"username": "nobody@nowhere.example", "password": "x-1"})
    event = AuditEvent.objects.get(action="login.failed")
    assert (event.actor, event.domain_id) == ("nobody@nowhere.example", None)
