"""A domain's alert settings: threshold, webhook URL through the guard, a write-only secret."""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from mapping import crypto, outbound
from tests import factories

pytestmark = pytest.mark.django_db

SECRET = "whsec-7d1c0e5a9b2f4e61"


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch):
    """hooks.example resolves to a documentation address (RFC 5737), never to the network."""

    def resolve(host, port, *args, **kwargs):
        assert str(host).endswith(".example"), host
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.80", port))]

    monkeypatch.setattr(outbound, "_getaddrinfo", resolve)


def _post(client, domain, **fields):
    data = {"alert_after_minutes": 30, "alert_webhook_url": "", "webhook_secret": ""}
    data.update(fields)
    return client.post(reverse("alert-settings", args=[domain.pk]), data)


def test_it_stores_the_secret_encrypted_and_never_shows_it(admin_client, domain):
    response = _post(
        admin_client, domain, alert_after_minutes=10,
        alert_webhook_url="https://hooks.example/aamail", webhook_secret=SECRET,
    )  # fmt: skip
    assert response.status_code == 302
    domain.refresh_from_db()
    assert domain.alert_after_minutes == 10
    assert SECRET not in domain.alert_webhook_secret_encrypted
    assert crypto.decrypt(domain.alert_webhook_secret_encrypted) == SECRET
    page = admin_client.get(reverse("alert-settings", args=[domain.pk])).content.decode()
    assert SECRET not in page
    assert "A webhook secret is stored." in page
    event = AuditEvent.objects.get(action="domain.changed")
    assert set(event.fields) == {"Alert after (minutes)", "Alert webhook URL", "Webhook secret"}
    assert SECRET not in repr(list(AuditEvent.objects.values()))


def test_it_asks_for_a_secret_with_a_webhook(admin_client, domain):
    response = _post(admin_client, domain, alert_webhook_url="https://hooks.example/x")
    assert response.status_code == 200
    assert "Type a secret: every POST is signed with it" in response.content.decode()


def test_it_refuses_a_webhook_the_outbound_guard_refuses(admin_client, domain, settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = False
    response = _post(
        admin_client, domain, alert_webhook_url="http://169.254.169.254/latest",
        webhook_secret=SECRET,
    )  # fmt: skip
    assert response.status_code == 200
    assert "AAMail does not connect to 169.254.169.254" in response.content.decode()


def test_another_domains_settings_are_not_found(admin_client):
    other = factories.DomainFactory()
    assert admin_client.get(reverse("alert-settings", args=[other.pk])).status_code == 404
