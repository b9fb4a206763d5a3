import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Account
from tests.factories import AccountFactory, BindingFactory

pytestmark = pytest.mark.django_db


def test_it_lists_accounts_with_a_constant_number_of_queries(admin_client, domain):
    url = reverse("account-list", args=[domain.pk])
    AccountFactory.create_batch(3, domain=domain)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    for account in AccountFactory.create_batch(20, domain=domain):
        BindingFactory(account=account)
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(url).status_code == 200
    assert len(many) == len(few)


def test_it_searches_and_paginates(admin_client, domain):
    AccountFactory(domain=domain, localpart="support", display_name="Help desk")
    # Fixed display names: a generated one (e.g. "Phelps") could match the search.
    AccountFactory.create_batch(30, domain=domain, display_name="Staff member")
    url = reverse("account-list", args=[domain.pk])
    found = admin_client.get(url, {"q": "help"}).content.decode()
    assert f"support@{domain.name}" in found
    assert "user" not in found.split("<tbody>")[1].split("</tbody>")[0]
    page2 = admin_client.get(url, {"page": 2}).content.decode()
    assert "Page 2 of 2" in page2


def test_it_changes_the_local_password_from_the_general_tab(admin_client, domain):
    account = AccountFactory(domain=domain)
    response = admin_client.post(
        reverse("account-general", args=[account.pk]),
        {
            "display_name": "New Name",
            "kind": "normal",
            "quota_mb": 100,
            "is_active": "on",
            "new_password": "Another-Local-77",
        },
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.display_name == "New Name"
    assert account.check_password("Another-Local-77")


def test_it_rejects_a_weak_local_password(admin_client, domain):
    account = AccountFactory(domain=domain)
    response = admin_client.post(
        reverse("account-general", args=[account.pk]),
        {"display_name": "x", "kind": "normal", "quota_mb": 0, "new_password": "123"},
    )
    assert response.status_code == 200
    assert "too short" in response.content.decode()


def test_it_deletes_an_account(admin_client, domain):
    account = AccountFactory(domain=domain)
    BindingFactory(account=account)
    admin_client.post(reverse("account-delete", args=[account.pk]))
    assert not Account.objects.filter(pk=account.pk).exists()


def test_it_tells_dovecot_to_forget_the_old_password(
    admin_client, domain, caplog, django_capture_on_commit_callbacks
):
    account = AccountFactory(domain=domain)
    with (
        caplog.at_level("INFO", logger="mailservice.dovecot_cache"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        admin_client.post(
            reverse("account-general", args=[account.pk]),
            {
                "display_name": "x",
                "kind": "normal",
                "quota_mb": 0,
                "is_active": "on",
                "new_password": "Another-Local-77",
            },
        )
    assert account.address in caplog.text
