"""Roles: an administrator of one domain sees nothing of another; employees have no console."""

import pytest
from django.urls import reverse

from tests.factories import (
    LOCAL_PASSWORD,
    AccountFactory,
    AdminAccountFactory,
    BindingFactory,
    DomainFactory,
)
from tests.windows import fresh_window

pytestmark = pytest.mark.django_db


def _urls_of(domain, account, binding) -> list[str]:
    return [
        reverse("domain-edit", args=[domain.pk]),
        reverse("account-list", args=[domain.pk]),
        reverse("account-general", args=[account.pk]),
        reverse("account-delete", args=[account.pk]),
        reverse("binding-list", args=[account.pk]),
        reverse("binding-create", args=[account.pk]),
        reverse("binding-edit", args=[account.pk, binding.pk]),
        reverse("binding-delete", args=[account.pk, binding.pk]),
    ]


def test_it_hides_every_console_url_of_another_domain(client):
    mine = DomainFactory()
    admin = AdminAccountFactory(domain=mine)
    other = DomainFactory()
    victim = AccountFactory(domain=other)
    binding = BindingFactory(account=victim)
    assert client.login(username=admin.address, password=LOCAL_PASSWORD)
    for url in _urls_of(other, victim, binding):
        assert client.get(url).status_code in (403, 404), url
        # A list page answers any POST 405 whatever the id, so that leaks nothing either.
        assert client.post(url).status_code in (403, 404, 405), url
    victim.refresh_from_db()
    binding.refresh_from_db()  # still there: the POSTs changed nothing


def test_it_lets_an_administrator_manage_their_own_domain(client):
    domain = DomainFactory()
    admin = AdminAccountFactory(domain=domain)
    account = AccountFactory(domain=domain)
    binding = BindingFactory(account=account)
    assert client.login(username=admin.address, password=LOCAL_PASSWORD)
    for url in _urls_of(domain, account, binding):
        assert client.get(url).status_code == 200, url


def test_it_keeps_administrators_out_of_domain_creation(client):
    admin = AdminAccountFactory()
    assert client.login(username=admin.address, password=LOCAL_PASSWORD)
    assert client.get(reverse("domain-create")).status_code == 403


def test_it_shows_a_domain_admin_only_their_domain_in_the_list(client):
    admin = AdminAccountFactory()
    other = DomainFactory()
    assert client.login(username=admin.address, password=LOCAL_PASSWORD)
    page = client.get(reverse("domain-list")).content.decode()
    assert admin.domain.name in page
    assert other.name not in page


@pytest.mark.parametrize("kind", ["normal", "special_manager", "special_local_staff"])
def test_it_refuses_the_console_to_other_kinds(client, kind):
    employee = AccountFactory(kind=kind)
    assert client.login(username=employee.address, password=LOCAL_PASSWORD)
    assert client.get(reverse("domain-list")).status_code == 403
    assert client.get(reverse("account-list", args=[employee.domain.pk])).status_code == 403


def test_it_refuses_a_wrong_password_and_an_inactive_account(client):
    admin = AdminAccountFactory()
    assert not client.login(username=admin.address, password="wrong")
    admin.is_active = False
    admin.save()
    assert not client.login(username=admin.address, password=LOCAL_PASSWORD)


def test_it_throttles_repeated_failed_logins(client, settings):
    settings.LOGIN_RATE_LIMIT = "3/300"
    fresh_window("3/300")
    admin = AdminAccountFactory()
    for _ in range(3):
        client.post(reverse("login"), {"username": admin.address, "password": "nope"})
    response = client.post(
        reverse("login"), {"username": admin.address, "password": LOCAL_PASSWORD}
    )
    assert response.status_code == 200
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_lets_a_superuser_see_every_domain(admin_client_su):
    domains = DomainFactory.create_batch(3)
    page = admin_client_su.get(reverse("domain-list")).content.decode()
    assert all(d.name in page for d in domains)
