"""Every password check is throttled per account name and per client address (issue 11)."""

from __future__ import annotations

import threading

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts import throttle
from tests.factories import LOCAL_PASSWORD, AccountFactory, AdminAccountFactory, SuperuserFactory
from tests.windows import fresh_window

pytestmark = pytest.mark.django_db

PROXY = "127.0.0.1"  # the reverse proxy every request arrives from
ATTACKER, COLLEAGUE = "127.0.0.66", "127.0.0.77"


@pytest.fixture(autouse=True)
def _three_guesses(settings):
    settings.LOGIN_RATE_LIMIT = "3/300"
    fresh_window("3/300")


def _login(client, username, password, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def test_it_throttles_the_django_admin_login(client):
    superuser = SuperuserFactory(username="root-7")
    for _ in range(3):
        response = client.post(reverse("admin:login"), {"username": "root-7", "password": "not-it"})
        assert response.status_code == 200
    response = client.post(
        reverse("admin:login"), {"username": "root-7", "password": LOCAL_PASSWORD}
    )
    assert "Too many failed logins. Try again in" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert superuser.check_password(LOCAL_PASSWORD)  # the right one, refused all the same


def test_it_shares_one_budget_per_name_between_console_and_admin_logins(client):
    SuperuserFactory(username="root-8")
    _login(client, "root-8", "wrong-1")
    _login(client, "Root-8 ", "wrong-2")  # the same name, however it is typed
    client.post(reverse("admin:login"), {"username": "root-8", "password": "wrong-3"})
    response = client.post(
        reverse("admin:login"), {"username": "root-8", "password": LOCAL_PASSWORD}
    )
    assert "Too many failed logins" in response.content.decode()


def test_it_counts_the_address_the_trusted_proxy_saw(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    colleague = AdminAccountFactory()
    for number in range(3):
        # The attacker writes the colleague's address into the header; the proxy appends
        # the address it really saw, and only that one is believed.
        _login(
            client,
            f"nobody-{number}@example.com",
            "guess",
            REMOTE_ADDR=PROXY,
            HTTP_X_FORWARDED_FOR=f"{COLLEAGUE}, {ATTACKER}",
        )
    refused = _login(
        client,
        "nobody-9@example.com",
        "guess",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=ATTACKER,
    )
    assert "Too many failed logins" in refused.content.decode()
    other = Client()
    response = _login(
        other, colleague.address, LOCAL_PASSWORD, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=COLLEAGUE
    )
    assert response.status_code == 302  # the shared proxy address locked nobody else out
    assert "_auth_user_id" in other.session


def test_it_ignores_the_forwarded_header_without_a_trusted_proxy(client, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    for number in range(3):
        _login(
            client,
            f"nobody-{number}@example.com",
            "guess",
            REMOTE_ADDR=ATTACKER,
            HTTP_X_FORWARDED_FOR=f"127.0.0.{100 + number}",
        )
    refused = _login(
        client,
        "nobody-9@example.com",
        "guess",
        REMOTE_ADDR=ATTACKER,
        HTTP_X_FORWARDED_FOR="127.0.0.200",  # a fresh made-up address buys nothing
    )
    assert "Too many failed logins" in refused.content.decode()


def test_it_does_not_count_logins_that_succeed(client):
    admin = AdminAccountFactory()
    for _ in range(5):
        response = _login(Client(), admin.address, LOCAL_PASSWORD)
        assert response.status_code == 302
    _login(client, admin.address, "wrong-1")
    _login(client, admin.address, "wrong-2")
    assert _login(client, admin.address, LOCAL_PASSWORD).status_code == 302


def test_it_throttles_the_current_password_check_on_the_self_service_page(client):
    employee = AccountFactory()
    assert client.login(username=employee.address, password=LOCAL_PASSWORD)
    change = {"new_password": "Brand-New-Local-9", "new_password_again": "Brand-New-Local-9"}
    for number in range(3):
        response = client.post(
            reverse("selfservice-password"), {**change, "current_password": f"guess-{number}"}
        )
        assert "That is not your current local password." in response.content.decode()
    response = client.post(
        reverse("selfservice-password"), {**change, "current_password": LOCAL_PASSWORD}
    )
    assert response.status_code == 400
    assert "Too many wrong passwords. Try again in" in response.content.decode()
    employee.refresh_from_db()
    assert employee.check_password(LOCAL_PASSWORD)  # unchanged


def test_it_counts_self_service_guesses_against_the_accounts_login(client):
    employee = AccountFactory()
    assert client.login(username=employee.address, password=LOCAL_PASSWORD)
    for number in range(3):
        client.post(
            reverse("selfservice-password"),
            {"current_password": f"guess-{number}", "new_password": "x", "new_password_again": "x"},
        )
    response = _login(Client(), employee.address, LOCAL_PASSWORD, REMOTE_ADDR="127.0.0.5")
    assert "Too many failed logins" in response.content.decode()


def test_it_lets_no_more_guesses_through_than_the_budget_when_they_arrive_together():
    request = RequestFactory().post("/login/", REMOTE_ADDR=ATTACKER)
    results: list[int] = []
    barrier = threading.Barrier(20)

    def guess() -> None:
        barrier.wait()
        results.append(throttle.password_attempt(request, name="boss@example.com").wait)

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for wait in results if wait == 0) == 3
    assert all(0 < wait <= 300 for wait in results if wait)
