"""The Account creation wizard: steps, the seed's binding rules, one transaction, no leaks."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts.models import Account
from domains.models import DomainType
from mapping import crypto, services
from mapping.models import Binding
from tests import factories

pytestmark = pytest.mark.django_db

LOCAL = "Office-Local-4711"
ISP = "Isp:Secret support"
SMTP = "Smtp-Only-Secret"


def step_url(domain, step):
    return reverse("account-create-step", kwargs={"domain_id": domain.pk, "step": step})


def post_step(client, domain, step, fields):
    data = {f"account_creation_{domain.pk}-current_step": step}
    data.update({f"{step}-{k}": v for k, v in fields.items()})
    return client.post(step_url(domain, step), data)


def basic(**overrides):
    fields = {
        "localpart": "Support",
        "display_name": "Support desk",
        "password1": LOCAL,
        "password2": LOCAL,
        "kind": "normal",
        "quota_mb": "500",
    }
    return {**fields, **overrides}


def map_settings(**overrides):
    fields = {
        "host": "pop.isp.example",
        "port": "995",
        "security": "ssl",
        "username": "isp-support-7731",
        "isp_password": ISP,
        "smtp_host": "smtp.isp.example",
        "smtp_port": "465",
        "smtp_security": "ssl",
        "smtp_username": "",
        "smtp_password": SMTP,
        "is_outgoing_relay": "on",
        "leave_policy": "delete_after",
        "delete_after_days": "14",
        "fetch_interval_minutes": "10",
    }
    return {**fields, **overrides}


def session_text(client) -> str:
    return json.dumps(dict(client.session.items()), default=str)


def test_the_account_button_opens_the_wizard_at_basic_information(admin_client, domain):
    response = admin_client.get(reverse("account-create", args=[domain.pk]))
    assert response.status_code == 302
    assert response["Location"] == step_url(domain, "basic")
    html = admin_client.get(response["Location"]).content.decode()
    assert "Account creation wizard" in html
    assert "Basic information" in html
    assert '<label for="id_basic-localpart">Account</label>' in html
    assert ">Next</button>" in html
    assert "no relationship with the ISP mailbox&#x27;s password" in html


def test_it_creates_the_account_and_its_binding_in_one_go(admin_client, domain):
    response = post_step(admin_client, domain, "basic", basic())
    assert response["Location"] == step_url(domain, "map")
    html = admin_client.get(step_url(domain, "map")).content.decode()
    assert "Map settings" in html
    assert 'value="mail.isp.example"' in html  # pre-filled from the domain's defaults
    assert ">Detect</button>" in html
    assert '<label for="id_map-isp_password">ISP password</label>' in html

    response = post_step(admin_client, domain, "map", map_settings())
    assert response["Location"] == step_url(domain, "finish")
    html = admin_client.get(step_url(domain, "finish")).content.decode()
    assert f"support@{domain.name}" in html
    assert "isp-support-7731 on pop.isp.example:995 (SSL/TLS)" in html

    response = post_step(admin_client, domain, "finish", {"is_active": "on", "fetch_enabled": "on"})
    assert response.status_code == 302
    response = admin_client.get(response["Location"])
    account = Account.objects.get(domain=domain, localpart="support")
    assert response["Location"] == reverse("account-general", args=[account.pk])
    assert account.display_name == "Support desk"
    assert account.quota_mb == 500
    assert account.check_password(LOCAL)
    binding = account.bindings.get()
    assert (binding.host, binding.port, binding.security) == ("pop.isp.example", 995, "ssl")
    assert binding.username == "isp-support-7731"
    assert binding.get_isp_password() == ISP
    assert binding.smtp_credentials() == ("isp-support-7731", SMTP)
    assert (binding.smtp_host, binding.smtp_port) == ("smtp.isp.example", 465)
    assert binding.leave_policy == "delete_after"
    assert binding.delete_after_days == 14
    assert binding.fetch_interval_minutes == 10
    assert binding.enabled
    assert binding.is_outgoing_relay
    assert binding.schedule.next_fetch_at
    assert f"wizard_account_creation_{domain.pk}" not in dict(admin_client.session.items()) or (
        not admin_client.session[f"wizard_account_creation_{domain.pk}"]["step_data"]
    )


def test_the_session_never_holds_a_password_in_clear(admin_client, domain):
    post_step(admin_client, domain, "basic", basic())
    post_step(admin_client, domain, "map", map_settings())
    stored = session_text(admin_client)
    for secret in (LOCAL, ISP, SMTP):
        assert secret not in stored
    step_data = admin_client.session[f"wizard_account_creation_{domain.pk}"]["step_data"]
    assert crypto.decrypt(step_data["map"]["map-isp_password__sealed"][0]) == ISP
    assert "map-isp_password" not in step_data["map"]


def test_no_page_renders_a_password_back(admin_client, domain):
    post_step(admin_client, domain, "basic", basic())
    post_step(admin_client, domain, "map", map_settings())
    for step in ("basic", "map", "finish"):
        html = admin_client.get(step_url(domain, step)).content.decode()
        for secret in (LOCAL, ISP, SMTP):
            assert secret not in html
    # Even a failing post (the page comes back with errors) does not echo them.
    html = post_step(admin_client, domain, "map", map_settings(port="0")).content.decode()
    assert ISP not in html
    assert SMTP not in html


def test_a_reload_keeps_the_state_and_blank_passwords_keep_the_sealed_ones(admin_client, domain):
    post_step(admin_client, domain, "basic", basic())
    html = admin_client.get(step_url(domain, "basic")).content.decode()
    assert 'value="Support"' in html or 'value="support"' in html
    assert "Already entered: leave blank to keep it." in html
    # Back on Basic information, change the display name only.
    response = post_step(
        admin_client, domain, "basic", basic(display_name="Help desk", password1="", password2="")
    )
    assert response["Location"] == step_url(domain, "map")
    post_step(admin_client, domain, "map", map_settings())
    post_step(admin_client, domain, "map", map_settings(isp_password="", smtp_password=""))
    response = post_step(admin_client, domain, "finish", {"is_active": "on"})
    admin_client.get(response["Location"])
    account = Account.objects.get(localpart="support")
    assert account.display_name == "Help desk"
    assert account.check_password(LOCAL)
    binding = account.bindings.get()
    assert binding.get_isp_password() == ISP
    assert binding.smtp_credentials()[1] == SMTP
    assert not binding.enabled  # "Start fetching now" was left unticked


def test_it_ignores_a_sealed_value_posted_by_the_browser(admin_client, domain):
    post_step(admin_client, domain, "basic", basic())
    forged = map_settings(isp_password="")
    forged["isp_password__sealed"] = crypto.encrypt("attacker-chosen")
    response = post_step(admin_client, domain, "map", forged)
    assert response.status_code == 200
    assert "The ISP password is required." in response.content.decode()


def test_detect_in_the_wizard_uses_the_password_already_entered(admin_client, domain, settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    post_step(admin_client, domain, "basic", basic())
    # A name that does not resolve: the step takes it (DNS may be down for a moment).
    typed_for = {"host": "pop.isp.invalid", "smtp_host": "smtp.isp.invalid"}
    post_step(admin_client, domain, "map", map_settings(**typed_for))
    detect_url = reverse("account-create-detect", args=[domain.pk])

    def detect(**changes):
        settings_now = map_settings(**typed_for, isp_password="", smtp_password="", **changes)
        return admin_client.post(detect_url, {f"map-{k}": v for k, v in settings_now.items()})

    response = detect()
    assert response.status_code == 200  # not "type the password": the sealed one is used
    assert "The name pop.isp.invalid could not be resolved" in response.content.decode()


def test_detect_in_the_wizard_never_sends_a_sealed_password_elsewhere(admin_client, domain):
    post_step(admin_client, domain, "basic", basic())
    post_step(admin_client, domain, "map", map_settings())
    detect_url = reverse("account-create-detect", args=[domain.pk])
    for changed in ({"host": "evil.example"}, {"port": "110"}, {"username": "someone-else"}):
        fields = map_settings(isp_password="", smtp_password="", **changed)
        response = admin_client.post(detect_url, {f"map-{k}": v for k, v in fields.items()})
        assert response.status_code == 400, changed
        assert "only sent to the server it was typed for" in response.content.decode()
    # Going back to the step with another server also asks for the password again.
    html = post_step(
        admin_client, domain, "map", map_settings(host="evil.example", isp_password="")
    ).content.decode()
    assert "The ISP password is required." in html


@pytest.mark.parametrize(
    ("domain_type", "kind", "shown"),
    [
        (DomainType.MAP, "special_local_staff", True),
        (DomainType.SHARE, "administrator", True),
        (DomainType.SHARE, "special_local_staff", False),
        (DomainType.STANDARD, "normal", False),
    ],
)
def test_map_settings_appear_only_where_the_domain_type_allows_a_binding(
    admin_client_su, domain_type, kind, shown
):
    domain = factories.DomainFactory(domain_type=domain_type)
    response = post_step(admin_client_su, domain, "basic", basic(kind=kind))
    expected = "map" if shown else "finish"
    assert response["Location"] == step_url(domain, expected)
    html = admin_client_su.get(step_url(domain, "finish")).content.decode()
    assert ("2. Map settings</li>" in html) is shown
    if not shown:
        response = post_step(admin_client_su, domain, "finish", {"is_active": "on"})
        admin_client_su.get(response["Location"])
        account = Account.objects.get(domain=domain, localpart="support")
        assert not account.bindings.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password2": "Something-else-1"}, "The two passwords differ."),
        ({"password1": "password", "password2": "password"}, "This password is too common."),
        ({"localpart": "sup port"}, "cannot be a mail account name"),
    ],
)
def test_basic_information_is_validated(admin_client, domain, fields, message):
    html = post_step(admin_client, domain, "basic", basic(**fields)).content.decode()
    assert message in html


def test_it_refuses_an_existing_account_name(admin_client, domain):
    factories.AccountFactory(domain=domain, localpart="support")
    html = post_step(admin_client, domain, "basic", basic()).content.decode()
    assert f"support@{domain.name} already exists." in html


def test_map_settings_are_validated(admin_client, domain):
    post_step(admin_client, domain, "basic", basic())
    html = post_step(
        admin_client,
        domain,
        "map",
        map_settings(isp_password="", delete_after_days="", username="a\r\nDELE 1"),
    ).content.decode()
    assert "The ISP password is required." in html
    assert "Say after how many days messages go." in html
    assert "Line breaks and NUL characters are not allowed here." in html


def test_the_service_creates_both_or_neither(domain):
    bad = {
        "host": "pop.isp.example",
        "port": 995,
        "security": "ssl",
        "username": "x",
        "leave_policy": "delete_after",
        "delete_after_days": None,
    }
    with pytest.raises(ValidationError):
        services.account_create_with_binding(
            domain=domain,
            localpart="support",
            password=LOCAL,
            kind="normal",
            binding=bad,
            isp_password=ISP,
        )
    assert not Account.objects.filter(localpart="support").exists()
    assert not Binding.objects.exists()


def test_the_wizard_is_for_administrators_of_the_domain(domain, admin_client):
    url = step_url(domain, "basic")
    assert Client().get(url).status_code == 302  # anonymous: to the login page
    elsewhere = factories.DomainFactory()
    assert admin_client.get(step_url(elsewhere, "basic")).status_code == 404
    admin_client.logout()
    employee = factories.AccountFactory(domain=domain)
    assert admin_client.login(username=employee.address, password=factories.LOCAL_PASSWORD)
    assert admin_client.get(url).status_code == 403


def test_the_wizard_refuses_an_isp_server_the_guard_refuses(admin_client, domain, settings):
    # Issue 11: the wizard accepted 127.0.0.1 as the ISP server.
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = False
    post_step(admin_client, domain, "basic", basic())
    response = post_step(admin_client, domain, "map", map_settings(host="127.0.0.1"))
    assert response.status_code == 200
    assert "AAMail does not connect to 127.0.0.1" in response.content.decode()
