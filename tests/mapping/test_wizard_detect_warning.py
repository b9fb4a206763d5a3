"""The wizard warns before Finish when Detect was not run on the Map settings, or failed,
and says what will happen (issue 12, the browser walk). Detect against a real Dovecot."""

from __future__ import annotations

import pytest
from django.urls import reverse

from devserver.processes import free_port
from tests.accounts.test_wizard import basic, map_settings, post_step, step_url

pytestmark = pytest.mark.django_db

PASSWORD = "Isp-Secret-7731"


@pytest.fixture(autouse=True)
def _loopback(settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    settings.POP3_TIMEOUT = 5.0
    settings.DETECT_DEADLINE_SECONDS = 5.0


@pytest.fixture
def isp(dovecot, settings):
    dovecot.add_user("alice", PASSWORD)
    settings.ISP_CA_FILE = str(dovecot.ca_pem)
    return dovecot


def _map(port: int) -> dict:
    return map_settings(host="127.0.0.1", port=str(port), security="ssl", username="alice",
                        isp_password=PASSWORD, is_outgoing_relay="", smtp_password="")  # fmt: skip


def _detect(client, domain, fields: dict) -> str:
    data = {f"map-{k}": v for k, v in fields.items()}
    return client.post(reverse("account-create-detect", args=[domain.pk]), data).content.decode()


def _finish_page(client, domain, fields: dict) -> str:
    post_step(client, domain, "basic", basic())
    post_step(client, domain, "map", fields)
    return client.get(step_url(domain, "finish")).content.decode()


def test_it_warns_when_detect_was_not_run(admin_client, domain):
    admin_client.get(reverse("account-create", args=[domain.pk]))
    page = _finish_page(admin_client, domain, _map(995))
    assert 'id="detect-warning"' in page
    assert "Detect was not run with these Map settings." in page
    assert "created anyway" in page
    assert "“Needs attention”" in page
    assert "click “Back” and then “Detect”" in page


def test_it_warns_with_detects_verdict_when_it_failed(admin_client, domain):
    admin_client.get(reverse("account-create", args=[domain.pk]))
    closed = _map(free_port())  # nothing listens there
    assert "failed" in _detect(admin_client, domain, closed)
    page = _finish_page(admin_client, domain, closed)
    assert "Detect failed with these Map settings: POP3 failed at TCP connect." in page


def test_it_does_not_warn_once_detect_passed_on_these_settings(admin_client, domain, isp):
    admin_client.get(reverse("account-create", args=[domain.pk]))
    fields = _map(isp.pop3s_port)
    assert "POP3 works" in _detect(admin_client, domain, fields)
    page = _finish_page(admin_client, domain, fields)
    assert 'id="detect-warning"' not in page
    assert "Detect succeeded with these Map settings." in page


def test_it_warns_again_when_the_settings_changed_after_detect(admin_client, domain, isp):
    admin_client.get(reverse("account-create", args=[domain.pk]))
    fields = _map(isp.pop3s_port)
    _detect(admin_client, domain, fields)
    page = _finish_page(admin_client, domain, {**fields, "username": "bob"})
    assert "Detect was not run with these Map settings." in page
