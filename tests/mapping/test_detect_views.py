"""The Detect endpoints: administrators only, CSRF, rate limit, passwords never echoed."""

from __future__ import annotations

import socket

import pytest
from django.test import Client
from django.urls import reverse

from accounts import throttle
from mapping import outbound
from tests import factories
from tests.servers.faultpop import FaultPop
from tests.windows import fresh_window

pytestmark = pytest.mark.django_db
PASSWORD = "Isp-Secret-7731"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    settings.DETECT_DEADLINE_SECONDS = 4
    settings.ISP_CA_FILE = None


@pytest.fixture(scope="module")
def isp(dovecot):
    dovecot.add_user("carol", PASSWORD)
    dovecot.deliver("carol", b"Subject: hello\n\nhi\n")
    return dovecot


def wizard_fields(**overrides) -> dict:
    fields = {
        "map-host": "127.0.0.1",
        "map-port": "995",
        "map-security": "ssl",
        "map-username": "carol",
        "map-isp_password": PASSWORD,
        "map-smtp_host": "127.0.0.1",
        "map-smtp_port": "587",
        "map-smtp_security": "starttls",
        "map-smtp_username": "",
        "map-smtp_password": "",
    }
    fields.update(overrides)
    return fields


def test_it_runs_detect_for_the_wizard_and_never_echoes_the_password(
    admin_client, domain, isp, settings
):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    url = reverse("account-create-detect", args=[domain.pk])
    relay = {"map-port": str(isp.pop3s_port), "map-is_outgoing_relay": "on"}
    response = admin_client.post(url, wizard_fields(**relay))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-step="Login" data-status="ok"' in html
    assert "1 message" in html
    assert PASSWORD not in html
    # The outgoing relay's SMTP half ran too (nothing listens on 587 here: refused, in
    # words), and the verdict says which part failed.
    assert "SMTP · 127.0.0.1:587 (STARTTLS)" in html
    assert "Connection refused on 127.0.0.1:587" in html
    assert "POP3 works; the SMTP relay failed at TCP connect" in html


def test_it_tests_smtp_only_for_the_outgoing_relay_or_when_asked(
    admin_client, domain, isp, settings
):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    url = reverse("account-create-detect", args=[domain.pk])
    html = admin_client.post(url, wizard_fields(**{"map-port": str(isp.pop3s_port)})).content
    assert b"SMTP \xc2\xb7" not in html
    assert b'data-ok="yes"' in html
    asked = {"map-port": str(isp.pop3s_port), "map-test_smtp": "on"}
    html = admin_client.post(url, wizard_fields(**asked)).content.decode()
    assert "SMTP · 127.0.0.1:587 (STARTTLS)" in html


def test_it_reports_what_is_wrong_with_the_fields(admin_client, domain):
    url = reverse("account-create-detect", args=[domain.pk])
    response = admin_client.post(url, wizard_fields(**{"map-host": "", "map-port": "99999"}))
    assert response.status_code == 400
    html = response.content.decode()
    assert "ISP server address: This field is required." in html
    assert "Port: " in html


def test_it_asks_for_a_password_it_does_not_hold(admin_client, domain):
    url = reverse("account-create-detect", args=[domain.pk])
    response = admin_client.post(url, wizard_fields(**{"map-isp_password": ""}))
    assert response.status_code == 400
    assert "ISP password: type it to test these settings" in response.content.decode()


def test_it_refuses_cloud_metadata_without_connecting(admin_client, domain, monkeypatch):
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: attempts.append(a))
    url = reverse("account-create-detect", args=[domain.pk])
    fields = {"map-host": "169.254.169.254", "map-smtp_host": "0.0.0.0"}
    response = admin_client.post(url, wizard_fields(**fields, **{"map-test_smtp": "on"}))
    html = response.content.decode()
    assert "AAMail does not connect to 169.254.169.254: it is a cloud metadata address." in html
    assert "AAMail does not connect to 0.0.0.0" in html
    assert attempts == []


def test_it_honours_the_allowed_targets_setting(admin_client, domain, settings, monkeypatch):
    settings.ISP_ALLOWED_TARGETS = ["mail.isp.example:995"]
    monkeypatch.setattr(outbound, "_getaddrinfo", lambda *a, **k: pytest.fail("looked up"))
    url = reverse("account-create-detect", args=[domain.pk])
    html = admin_client.post(url, wizard_fields()).content.decode()
    assert "127.0.0.1:995 is not in the list of servers AAMail may connect to" in html


def test_it_is_rate_limited_per_user(admin_client, domain, settings, monkeypatch):
    settings.DETECT_RATE_LIMIT = "2/60"
    fresh_window("2/60")
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: None)
    url = reverse("account-create-detect", args=[domain.pk])
    fields = wizard_fields(**{"map-host": "169.254.169.254", "map-smtp_host": "169.254.169.254"})
    assert admin_client.post(url, fields).status_code == 200
    assert admin_client.post(url, fields).status_code == 200
    response = admin_client.post(url, fields)
    assert response.status_code == 429
    assert "Detect was run too often. Try again in" in response.content.decode()
    other = Client()
    other.force_login(factories.SuperuserFactory())
    assert other.post(url, fields).status_code == 200


def test_it_is_for_administrators_only(client, domain):
    url = reverse("account-create-detect", args=[domain.pk])
    assert client.post(url, wizard_fields()).status_code == 403
    employee = factories.AccountFactory(domain=domain)
    assert client.login(username=employee.address, password=factories.LOCAL_PASSWORD)
    assert client.post(url, wizard_fields()).status_code == 403


def test_it_hides_other_domains_from_their_administrators(admin_client):
    elsewhere = factories.DomainFactory()
    url = reverse("account-create-detect", args=[elsewhere.pk])
    assert admin_client.post(url, wizard_fields()).status_code == 404


def test_it_wants_post_with_a_csrf_token(domain, domain_admin):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=domain_admin.address, password=factories.LOCAL_PASSWORD)
    url = reverse("account-create-detect", args=[domain.pk])
    assert client.get(url).status_code == 405
    assert client.post(url, wizard_fields()).status_code == 403


def test_it_uses_the_stored_password_of_a_binding_when_the_field_is_blank(
    admin_client, domain, isp, settings
):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    account = factories.AccountFactory(domain=domain)
    binding = factories.BindingFactory(
        account=account,
        host="127.0.0.1",
        port=isp.pop3s_port,
        username="carol",
        raw_password=PASSWORD,
        smtp_host="127.0.0.1",
    )
    url = reverse("binding-detect", args=[account.pk, binding.pk])
    html = admin_client.post(url, {"isp_password": ""}).content.decode()
    assert 'data-step="Login" data-status="ok"' in html
    assert PASSWORD not in html
    # A password typed on the tab is tried instead of the stored one.
    html = admin_client.post(url, {"isp_password": "Typed-wrong-1"}).content.decode()
    assert 'data-step="Login" data-status="fail"' in html
    assert "Typed-wrong-1" not in html


def test_it_never_sends_a_stored_password_to_another_server(admin_client, domain, isp):
    # Issue 11: edit the host to one you control, leave the password blank, press Detect.
    account = factories.AccountFactory(domain=domain)
    binding = factories.BindingFactory(
        account=account, host="127.0.0.1", port=isp.pop3s_port, username="carol",
        raw_password=PASSWORD, smtp_host="127.0.0.1",
    )  # fmt: skip
    url = reverse("binding-detect", args=[account.pk, binding.pk])
    with FaultPop([b"Subject: x\n\nx\n"], username="carol", password=PASSWORD) as attacker:
        for changed in ({"port": attacker.port, "security": "none"}, {"username": "other"}):
            response = admin_client.post(url, {"isp_password": "", **changed})
            assert response.status_code == 400
            assert "only sent to the server it was typed for" in response.content.decode()
        smtp_moved = {"is_outgoing_relay": "on", "smtp_port": attacker.port}
        response = admin_client.post(url, {"isp_password": "", **smtp_moved})
    assert PASSWORD not in " ".join(attacker.log)
    assert not {"USER", "PASS", "AUTH"} & set(attacker.commands())


def test_it_keeps_bindings_of_other_accounts_apart(admin_client, domain):
    account = factories.AccountFactory(domain=domain)
    stranger = factories.BindingFactory()  # another domain's account
    url = reverse("binding-detect", args=[account.pk, stranger.pk])
    assert admin_client.post(url, {}).status_code == 404


def test_it_tests_a_binding_being_added(admin_client, domain, isp, settings):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    account = factories.AccountFactory(domain=domain)
    url = reverse("binding-detect-new", args=[account.pk])
    fields = {k.removeprefix("map-"): v for k, v in wizard_fields().items()}
    fields["port"] = str(isp.pop3s_port)
    html = admin_client.post(url, fields).content.decode()
    assert 'data-step="STAT" data-status="ok"' in html


def test_it_answers_busy_beyond_detect_concurrency(admin_client, domain, settings):
    settings.DETECT_CONCURRENCY = 1
    with throttle.detect_place() as held:
        assert held
        url = reverse("account-create-detect", args=[domain.pk])
        response = admin_client.post(url, wizard_fields())
    assert response.status_code == 503
    assert throttle.DETECT_BUSY in response.content.decode()
