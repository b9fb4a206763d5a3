"""Every write the issue names leaves one audit event: who, what, on what, which fields."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from audit.models import AuditEvent
from devserver.processes import free_port
from mapping.models import Binding
from tests import factories

pytestmark = pytest.mark.django_db

NEW_ISP_PASSWORD = "New-Isp-Secret-81"


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("at", "id")


def test_it_records_a_domain_created_and_changed_with_field_names(admin_client_su, superuser):
    admin_client_su.post(
        reverse("domain-create"),
        {"name": "example.com", "domain_type": "map", "pop3_port": 995, "pop3_security": "ssl",
         "smtp_port": 587, "smtp_security": "starttls", "is_active": "on"},
    )  # fmt: skip
    created = last("domain.created")
    assert (created.actor, created.target, created.domain_name) == (
        superuser.username,
        "example.com",
        "example.com",
    )
    domain = factories.Domain.objects.get(name="example.com")
    admin_client_su.post(
        reverse("domain-edit", args=[domain.pk]),
        {"name": "example.com", "domain_type": "map", "pop3_host": "pop.isp.example",
         "pop3_port": 995, "pop3_security": "ssl", "smtp_port": 587,
         "smtp_security": "starttls", "is_active": "on"},
    )  # fmt: skip
    assert last("domain.changed").fields == ["ISP POP3 server"]


def test_it_records_an_account_change_and_a_password_set_apart(admin_client, domain_admin):
    account = factories.AccountFactory(domain=domain_admin.domain, localpart="support")
    admin_client.post(
        reverse("account-general", args=[account.pk]),
        {"display_name": "Support desk", "kind": "normal", "quota_mb": 0, "is_active": "on",
         "new_password": "Brand-New-Local-9"},
    )  # fmt: skip
    changed = last("account.changed")
    assert changed.actor == domain_admin.address
    assert changed.target == account.address
    assert changed.fields == ["Display name"]
    assert last("account.password_set").target == account.address
    assert not AuditEvent.objects.filter(detail__icontains="Brand-New").exists()


def test_it_records_a_binding_change_by_field_names_never_values(admin_client, domain_admin):
    binding = factories.BindingFactory(
        account__domain=domain_admin.domain, host="pop.isp.example", username="isp-7731"
    )
    data = {
        "host": "pop.isp.example", "port": 995, "security": "ssl", "username": "isp-7731",
        "isp_password": NEW_ISP_PASSWORD, "smtp_host": binding.smtp_host, "smtp_port": 587,
        "smtp_security": "starttls", "smtp_username": "isp-7731", "smtp_password": "",
        "leave_policy": "keep", "fetch_interval_minutes": 15, "enabled": "on",
        "auth_method": "password",
    }  # fmt: skip
    url = reverse("binding-edit", args=[binding.account_id, binding.pk])
    assert admin_client.post(url, data).status_code == 302
    event = last("binding.changed")
    assert set(event.fields) == {"ISP password", "Fetch every (minutes)"}
    assert event.target == f"isp-7731 on pop.isp.example ({binding.account.address})"
    assert event.domain_id == domain_admin.domain_id
    rows = list(AuditEvent.objects.values_list("fields", "detail", "target", "actor"))
    assert NEW_ISP_PASSWORD not in repr(rows)


def test_it_records_fetch_now_and_a_deleted_binding(admin_client, domain_admin):
    binding = factories.BindingFactory(account__domain=domain_admin.domain, username="isp-1")
    account_id = binding.account_id
    admin_client.post(reverse("binding-fetch-now", args=[account_id, binding.pk]))
    assert last("fetch.now").target_id == binding.pk
    admin_client.post(reverse("binding-delete", args=[account_id, binding.pk]))
    assert not Binding.objects.filter(pk=binding.pk).exists()
    deleted = last("binding.deleted")
    assert deleted.target.startswith("isp-1 on ")  # still named after it is gone
    assert deleted.domain_id == domain_admin.domain_id


def test_it_records_detect_with_its_verdict(admin_client, domain_admin):
    account = factories.AccountFactory(domain=domain_admin.domain)
    port = free_port()  # nothing listens: Detect fails at once, in words
    admin_client.post(
        reverse("binding-detect-new", args=[account.pk]),
        {"host": "127.0.0.1", "port": port, "security": "ssl", "username": "isp-7731",
         "isp_password": "whatever", "smtp_port": 587, "smtp_security": "starttls"},
    )  # fmt: skip
    event = last("detect.run")
    assert event.detail.startswith(f"isp-7731 on 127.0.0.1:{port}: POP3 failed at")
    assert event.domain_id == domain_admin.domain_id
    assert "whatever" not in event.detail


def test_it_records_a_key_rotation(db):
    factories.BindingFactory()
    call_command("rotate_isp_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    event = last("keys.rotated")
    assert event.actor == "manage.py rotate_isp_keys"
    assert event.detail == "1 bindings re-encrypted"
    assert event.domain_id is None  # server-wide: superusers see it


def test_it_records_a_domain_deleted_in_the_django_admin(admin_client_su):
    domain = factories.DomainFactory(name="gone.example")
    admin_client_su.post(reverse("admin:domains_domain_delete", args=[domain.pk]), {"post": "yes"})
    event = last("domain.deleted")
    assert (event.target, event.domain_id) == ("gone.example", domain.pk)
