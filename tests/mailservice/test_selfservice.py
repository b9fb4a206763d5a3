"""An employee's own page: password change, remote POP3 status, client settings."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account, AccountKind
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def employee():
    domain = factories.DomainFactory(name="example.com")
    account = factories.AccountFactory(domain=domain, localpart="support")
    binding = factories.BindingFactory(
        account=account, username="isp-support-7731", is_outgoing_relay=True
    )
    binding.last_check_at = binding.last_success_at = timezone.now()
    binding.last_error = "The ISP refused the password: check it with your administrator."
    binding.save()
    return account


@pytest.fixture
def employee_client(client, employee):
    assert client.login(username=employee.address, password=factories.LOCAL_PASSWORD)
    return client


def test_it_sends_an_employee_to_their_own_page(client, employee):
    response = client.post(
        reverse("login"),
        {"username": "Support@Example.com", "password": factories.LOCAL_PASSWORD},
    )
    assert response.status_code == 302
    assert client.get(response.url).url == reverse("selfservice")


def test_it_shows_status_and_client_settings_without_isp_passwords(employee_client, settings):
    settings.MAIL_HOSTNAME = "mail.example.com"
    other = factories.BindingFactory(username="someone-elses-isp-login")
    response = employee_client.get(reverse("selfservice"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "isp-support-7731" in body
    assert "The ISP refused the password" in body
    assert "Outgoing relay" in body
    assert "mail.example.com" in body
    assert "993" in body
    assert "587" in body
    assert factories.ISP_PASSWORD not in body
    assert other.username not in body


def test_it_shows_the_host_and_ports_the_office_box_really_uses(employee_client, settings):
    settings.MAIL_HOSTNAME = "office.example.net"
    settings.MAIL_IMAPS_PORT, settings.MAIL_IMAP_PORT = 10993, 10143
    settings.MAIL_POP3S_PORT, settings.MAIL_POP3_PORT = 10995, 10110
    settings.MAIL_SUBMISSION_PORT, settings.MAIL_SUBMISSIONS_PORT = 10587, 10465
    text = " ".join(employee_client.get(reverse("selfservice")).content.decode().split())
    for service, port, alt in [
        ("Incoming (IMAP)", 10993, 10143),
        ("Incoming (POP3)", 10995, 10110),
        ("Outgoing (SMTP)", 10587, 10465),
    ]:
        assert f"<td>{service}</td><td>office.example.net</td><td>{port}</td>" in text
        assert f"port {alt}," in text


def test_it_says_outside_mail_needs_a_relay_once_it_is_unticked(employee_client, employee):
    employee.bindings.update(is_outgoing_relay=False)
    body = employee_client.get(reverse("selfservice")).content.decode()
    assert "Outgoing relay: your outside mail" not in body
    assert "Mail to outside addresses cannot be sent from this mailbox" in body


def test_it_changes_the_local_password_and_flushes_dovecots_cache(
    employee_client, employee, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO, logger="mailservice")
    with django_capture_on_commit_callbacks(execute=True):
        response = employee_client.post(
            reverse("selfservice-password"),
            {
                "current_password": factories.LOCAL_PASSWORD,
                "new_password": "Brand-New-Local-9",
                "new_password_again": "Brand-New-Local-9",
            },
        )
    assert response.status_code == 302
    employee.refresh_from_db()
    assert employee.check_password("Brand-New-Local-9")
    assert not employee.check_password(factories.LOCAL_PASSWORD)
    assert "no auth cache to flush for support@example.com" in caplog.text
    assert "Brand-New-Local-9" not in caplog.text


@pytest.mark.parametrize(
    ("current", "new", "again", "error"),
    [
        ("wrong", "Brand-New-Local-9", "Brand-New-Local-9", "not your current local password"),
        (factories.LOCAL_PASSWORD, "Brand-New-Local-9", "Other-New-Local-9", "differ"),
        (factories.LOCAL_PASSWORD, "short", "short", "too short"),
    ],
)
def test_it_refuses_a_bad_password_change(employee_client, employee, current, new, again, error):
    response = employee_client.post(
        reverse("selfservice-password"),
        {"current_password": current, "new_password": new, "new_password_again": again},
    )
    assert response.status_code == 400
    assert error in response.content.decode()
    employee.refresh_from_db()
    assert employee.check_password(factories.LOCAL_PASSWORD)


def test_it_explains_the_rule_for_special_local_staff(client):
    desk = factories.AccountFactory(localpart="desk", kind=AccountKind.SPECIAL_LOCAL_STAFF)
    client.login(username=desk.address, password=factories.LOCAL_PASSWORD)
    body = client.get(reverse("selfservice")).content.decode()
    assert "addresses of this office only" in body


def test_it_has_no_page_for_a_login_without_mailbox(admin_client_su):
    assert admin_client_su.get(reverse("selfservice")).status_code == 404


def test_it_sends_anonymous_visitors_to_the_login(client):
    response = client.get(reverse("selfservice"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert Account.objects.count() == 0
