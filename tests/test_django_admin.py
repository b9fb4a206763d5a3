"""Django's admin stays available to superusers and never shows a secret."""

import pytest
from django.urls import reverse

from mapping.models import Schedule
from tests.factories import ISP_PASSWORD, BindingFactory

pytestmark = pytest.mark.django_db


def test_it_serves_the_admin_to_superusers_without_secrets(admin_client_su):
    binding = BindingFactory()
    for name in ("domains_domain", "accounts_account", "mapping_binding", "mapping_fetchrun"):
        assert admin_client_su.get(reverse(f"admin:{name}_changelist")).status_code == 200
    page = admin_client_su.get(
        reverse("admin:mapping_binding_change", args=[binding.pk])
    ).content.decode()
    assert binding.username in page
    assert ISP_PASSWORD not in page
    assert binding.password_encrypted not in page
    account_page = admin_client_su.get(
        reverse("admin:accounts_account_change", args=[binding.account.pk])
    ).content.decode()
    assert binding.account.password not in account_page


def test_it_keeps_domain_administrators_out_of_the_django_admin(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_disabling_in_the_admin_unschedules_the_binding(admin_client_su):
    binding = BindingFactory()
    form = {
        "account": binding.account_id, "host": binding.host, "port": binding.port,
        "security": binding.security, "username": binding.username,
        "auth_method": binding.auth_method, "leave_policy": binding.leave_policy,
        "fetch_interval_minutes": 5, "smtp_host": binding.smtp_host, "smtp_port": 587,
        "smtp_security": binding.smtp_security, "smtp_username": binding.smtp_username,
    }  # fmt: skip
    change = reverse("admin:mapping_binding_change", args=[binding.pk])
    assert admin_client_su.post(change, form).status_code == 302  # "enabled" left unticked
    assert Schedule.objects.get(pk=binding.pk).next_fetch_at is None  # never claimed
    assert admin_client_su.post(change, {**form, "enabled": "on"}).status_code == 302
    assert Schedule.objects.get(pk=binding.pk).next_fetch_at is not None
