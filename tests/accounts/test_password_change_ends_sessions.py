"""A local-password change ends the account's other console sessions, keeps the changer's."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import LOCAL_PASSWORD, AccountFactory, AdminAccountFactory

pytestmark = pytest.mark.django_db

NEW = "Brand-New-Local-9"


def _logged_in(account, password: str = LOCAL_PASSWORD) -> Client:
    client = Client()
    response = client.post(reverse("login"), {"username": account.address, "password": password})
    assert response.status_code == 302, response.content.decode()
    return client


def _still_in(client: Client, url: str) -> bool:
    response = client.get(url)
    return response.status_code == 200


def test_it_ends_the_other_sessions_when_an_employee_changes_the_password():
    employee = AccountFactory()
    here, elsewhere = _logged_in(employee), _logged_in(employee)
    response = here.post(
        reverse("selfservice-password"),
        {"current_password": LOCAL_PASSWORD, "new_password": NEW, "new_password_again": NEW},
    )
    assert response.status_code == 302
    assert _still_in(here, reverse("selfservice"))
    response = elsewhere.get(reverse("selfservice"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert _still_in(_logged_in(employee, NEW), reverse("selfservice"))


def test_it_ends_the_employees_sessions_when_an_administrator_sets_a_new_password():
    admin = AdminAccountFactory()
    employee = AccountFactory(domain=admin.domain)
    console, phone = _logged_in(admin), _logged_in(employee)
    response = console.post(
        reverse("account-general", args=[employee.pk]),
        {"display_name": "Support", "kind": "normal", "quota_mb": 0, "is_active": "on",
         "new_password": NEW},
    )  # fmt: skip
    assert response.status_code == 302
    assert not _still_in(phone, reverse("selfservice"))
    assert _still_in(console, reverse("account-general", args=[employee.pk]))
    employee.refresh_from_db()
    assert employee.check_password(NEW)


def test_it_keeps_the_administrators_session_when_they_set_their_own_password():
    admin = AdminAccountFactory()
    here, elsewhere = _logged_in(admin), _logged_in(admin)
    general = reverse("account-general", args=[admin.pk])
    response = here.post(
        general,
        {"display_name": "Boss", "kind": "administrator", "quota_mb": 0, "is_active": "on",
         "new_password": NEW},
    )  # fmt: skip
    assert response.status_code == 302
    assert _still_in(here, general)
    assert not _still_in(elsewhere, general)


def test_it_keeps_every_session_when_the_general_tab_changes_no_password():
    admin = AdminAccountFactory()
    employee = AccountFactory(domain=admin.domain)
    console, phone = _logged_in(admin), _logged_in(employee)
    response = console.post(
        reverse("account-general", args=[employee.pk]),
        {"display_name": "Renamed", "kind": "normal", "quota_mb": 0, "is_active": "on",
         "new_password": ""},
    )  # fmt: skip
    assert response.status_code == 302
    assert _still_in(phone, reverse("selfservice"))
