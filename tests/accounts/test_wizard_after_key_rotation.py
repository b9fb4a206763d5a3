"""An unfinished Account creation wizard survives an ISP key rotation that removed its key."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Account
from accounts.wizard import RETYPE
from mapping import crypto
from mapping.models import Binding

pytestmark = pytest.mark.django_db

LOCAL, ISP, SMTP = "Office-Local-4711", "Isp:Secret support", "Smtp-Only-Secret"


def _step_url(domain, step):
    return reverse("account-create-step", kwargs={"domain_id": domain.pk, "step": step})


def _post(client, domain, step, fields):
    data = {f"account_creation_{domain.pk}-current_step": step}
    data.update({f"{step}-{k}": v for k, v in fields.items()})
    return client.post(_step_url(domain, step), data)


BASIC = {
    "localpart": "support",
    "display_name": "Support desk",
    "password1": LOCAL,
    "password2": LOCAL,
    "kind": "normal",
    "quota_mb": "0",
}
MAP = {
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
    "leave_policy": "keep",
    "delete_after_days": "",
    "fetch_interval_minutes": "10",
}


@pytest.fixture
def half_done(admin_client, domain, settings):
    """Basic information and Map settings entered; then the old ISP key is removed."""
    settings.ISP_SECRET_KEYS = [crypto.generate_key()]
    assert _post(admin_client, domain, "basic", BASIC).status_code == 302
    assert _post(admin_client, domain, "map", MAP).status_code == 302
    settings.ISP_SECRET_KEYS = [crypto.generate_key()]  # rotated, old key dropped
    return admin_client


def test_it_asks_for_the_passwords_again_instead_of_failing(half_done, domain):
    response = _post(half_done, domain, "finish", {"is_active": "on", "fetch_enabled": "on"})
    response = half_done.get(response["Location"], follow=True)  # "done" revalidates each step
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == _step_url(domain, "basic")
    assert RETYPE in response.content.decode()
    assert not Account.objects.filter(localpart="support").exists()
    # Typing them again finishes the wizard with the passwords typed now.
    for step, fields in (("basic", BASIC), ("map", MAP)):
        response = _post(half_done, domain, step, fields)
        assert response.status_code == 302, response.content.decode()
    response = _post(half_done, domain, "finish", {"is_active": "on", "fetch_enabled": "on"})
    response = half_done.get(response["Location"])
    assert response.status_code == 302
    account = Account.objects.get(localpart="support", domain=domain)
    assert account.check_password(LOCAL)
    binding = Binding.objects.get(account=account)
    assert binding.get_isp_password() == ISP
    assert binding.smtp_credentials()[1] == SMTP


def test_it_never_takes_a_blank_optional_password_for_one_it_cannot_read(half_done, domain):
    _post(half_done, domain, "basic", BASIC)
    # The SMTP password is optional (blank = the ISP password): a lost one must not
    # silently turn into the ISP password.
    response = _post(half_done, domain, "map", {**MAP, "smtp_password": ""})
    assert response.status_code == 200
    assert RETYPE in response.content.decode()


def test_detect_in_the_wizard_asks_for_the_password_it_can_no_longer_read(half_done, domain):
    fields = {f"map-{k}": v for k, v in {**MAP, "isp_password": ""}.items()}
    response = half_done.post(reverse("account-create-detect", args=[domain.pk]), fields)
    assert response.status_code == 400
    assert "ISP password: type it to test these settings" in response.content.decode()
