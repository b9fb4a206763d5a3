"""Alerts arrive: the e-mail through a real SMTP server (a real Postfix with TLS and AUTH,
as an ISP's submission port would be), the webhook at a real HTTP receiver that checks the
HMAC, with retries after a failing receiver and none after a refusal."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.core import mail

from alerts import tasks
from alerts.models import Alert
from mapping import crypto
from tests.servers.ispsmtp import FakeIspSmtp
from tests.servers.webhook_receiver import WebhookReceiver

from .conftest import fail, recover

pytestmark = pytest.mark.django_db

SECRET = "whsec-7d1c0e5a9b2f4e61"
SENDER = ("alerts-office", "Alerts:Secret 7731")


@pytest.fixture(scope="module")
def smtp_server():
    with FakeIspSmtp() as server:
        server.add_user(*SENDER)
        yield server


@pytest.fixture
def real_smtp(settings, smtp_server, monkeypatch):
    """Django's SMTP backend pointed at the real Postfix: STARTTLS, then AUTH."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_server.host, smtp_server.submission_port
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = SENDER
    settings.EMAIL_USE_TLS = True
    settings.ALERT_FROM_EMAIL = "AAMail <aamail@office.example.com>"
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_server.ca_file))  # trust its test CA
    return smtp_server


def _webhook(domain, url: str) -> None:
    domain.alert_webhook_url = url
    domain.alert_webhook_secret_encrypted = crypto.encrypt(SECRET)
    domain.save()


def _checked(received) -> dict:
    """What a receiver does: recompute the HMAC over the raw body, then read the JSON."""
    expected = "sha256=" + hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers["X-AAMail-Signature"], expected)
    assert received.headers["Content-Type"] == "application/json"
    return json.loads(received.body)


def test_the_administrators_receive_the_email_through_a_real_smtp_server(office, real_smtp):
    before = len(real_smtp.received())
    fail(office["binding"])
    tasks.alerts_scan()
    [message] = real_smtp.wait_for_messages(before + 1)[before:]
    assert message["To"] == "boss@example.com"
    assert message["Subject"] == "[AAMail] example.com: 1 failing"
    text = message.get_content()
    assert "The ISP refused the password of isp-support-7731." in text
    assert f"sasl_username={SENDER[0]}" in "\n".join(real_smtp.sasl_log_lines())
    alert = Alert.objects.get()
    assert alert.email_sent_at is not None
    assert alert.email_attempts == 1


def test_the_receiver_gets_a_post_it_can_verify_and_one_on_recovery(office):
    with WebhookReceiver() as receiver:
        _webhook(office["domain"], receiver.url)
        fail(office["binding"])
        tasks.alerts_scan()
        [first] = receiver.wait_for(1)
        payload = _checked(first)
        assert first.path == "/hooks/aamail?via=test"
        assert payload["domain"] == "example.com"
        assert payload["alert_type"] == "change"
        [event] = payload["events"]
        assert (event["account"], event["kind"], event["state"]) == (
            "support@example.com",
            "fetch",
            "failing",
        )
        assert event["error"] == "The ISP refused the password of isp-support-7731."
        recover(office["binding"])
        tasks.alerts_scan()
        tasks.alerts_scan()  # nothing new: no third POST
        second = receiver.wait_for(2)[1]
        assert _checked(second)["events"][0]["state"] == "recovered"
        assert len(receiver.requests) == 2


def test_a_failing_receiver_is_retried_until_it_takes_the_alert(office):
    with WebhookReceiver(fail_first=2) as receiver:
        _webhook(office["domain"], receiver.url)
        fail(office["binding"])
        tasks.alerts_scan()
        requests = receiver.wait_for(3)
    assert [r.status for r in requests] == [503, 503, 204]
    assert requests[0].body == requests[2].body  # the same alert, signed the same
    _checked(requests[2])
    alert = Alert.objects.get()
    assert alert.webhook_sent_at is not None
    assert (alert.webhook_attempts, alert.webhook_error) == (3, "")
    assert len(mail.outbox) == 1  # the e-mail went once, whatever the webhook did


def test_a_refusing_receiver_is_not_retried_and_the_error_is_kept_in_words(office):
    with WebhookReceiver(fail_first=99, fail_status=410) as receiver:
        _webhook(office["domain"], receiver.url)
        fail(office["binding"])
        tasks.alerts_scan()
        receiver.wait_for(1)
    alert = Alert.objects.get()
    assert len(receiver.requests) == 1
    assert alert.webhook_sent_at is None
    assert alert.webhook_error == "The webhook receiver answered HTTP 410."


def test_the_webhook_goes_through_the_outbound_guard(office, settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = False
    with WebhookReceiver() as receiver:
        _webhook(office["domain"], receiver.url)
        fail(office["binding"])
        tasks.alerts_scan()
    alert = Alert.objects.get()
    assert receiver.requests == []
    assert alert.webhook_error.startswith("AAMail does not connect to 127.0.0.1")
