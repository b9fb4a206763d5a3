"""The POP3 remote tab: status in words, Fetch now (htmx), polling while it runs, history."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from aamail.celery import app as celery_app
from mapping import tasks
from mapping.fetch import binding_fetch
from mapping.lease import lease_acquire
from mapping.models import FetchOutcome
from tests.factories import LOCAL_PASSWORD, AccountFactory, BindingFactory, DomainFactory
from tests.fetch.conftest import assert_exactly
from tests.servers.dovecot import free_port
from tests.windows import fresh_window

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def urls(binding) -> dict[str, str]:
    args = [binding.account_id, binding.pk]
    return {
        "list": reverse("binding-list", args=[binding.account_id]),
        "fetch": reverse("binding-fetch-now", args=args),
        "row": reverse("binding-row", args=args),
        "history": reverse("binding-history", args=args),
    }


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(
        tasks.binding_fetch, "delay", lambda *args, **kwargs: calls.append((args, kwargs))
    )
    return calls


def test_fetch_now_queues_a_fetch_and_returns_the_polling_row(
    admin_client, domain, queued, django_capture_on_commit_callbacks
):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(urls(binding)["fetch"], **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith(f'<tr id="binding-{binding.pk}"')
    assert "Fetch queued…" in html
    assert 'hx-trigger="every 2s"' in html
    assert f"{urls(binding)['row']}?queued=" in html
    assert queued == [((binding.pk,), {"trigger": "manual"})]


def test_fetch_now_fetches_and_the_row_stops_polling_when_done(
    isp, make_binding, domain, admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    binding = make_binding(account=AccountFactory(domain=domain))
    messages = [b"Subject: now %d\n\nx\n" % i for i in range(2)]
    for raw in messages:
        isp.deliver(binding.username, raw)

    with django_capture_on_commit_callbacks(execute=True):
        html = admin_client.post(urls(binding)["fetch"], **HTMX).content.decode()
    poll = html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    row = admin_client.get(poll, **HTMX).content.decode()

    assert_exactly(binding, messages)
    assert "hx-trigger" not in row  # the queued fetch ran: polling stops
    assert ">OK<" in row
    assert "2 messages" in row
    assert binding.fetch_runs.get().trigger == "manual"


def test_a_running_fetch_shows_and_polls(admin_client, domain, queued):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    lease_acquire(binding.pk)
    row = admin_client.get(urls(binding)["row"], **HTMX).content.decode()
    assert "Fetching…" in row
    assert 'hx-trigger="every 2s"' in row
    assert "disabled>Fetch now" in row
    row = admin_client.post(urls(binding)["fetch"], **HTMX).content.decode()
    assert queued == []  # the running fetch does the job
    assert "Fetching…" in row
    assert "queued" not in row


def test_the_tab_shows_the_last_error_in_words_and_the_history(admin_client, domain):
    binding = BindingFactory(
        account=AccountFactory(domain=domain), host="127.0.0.1", port=free_port(), security="none"
    )
    binding_fetch(binding=binding, trigger="manual")

    page = admin_client.get(urls(binding)["list"]).content.decode()
    assert "Temporary error, retrying" in page
    assert "Connection refused on 127.0.0.1" in page
    assert "Fetch now" in page
    assert f'id="binding-{binding.pk}-history"' in page

    history = admin_client.get(urls(binding)["history"], **HTMX).content.decode()
    assert history.startswith(f'<tr id="binding-{binding.pk}-history"')
    assert "manual" in history
    assert "Error" in history
    assert "Connection refused" in history


def test_fetch_now_without_htmx_redirects_with_a_message(admin_client, domain, queued):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    response = admin_client.post(urls(binding)["fetch"], follow=True)
    assert response.redirect_chain[-1][0] == urls(binding)["list"]
    assert "was queued" in response.content.decode()
    assert admin_client.get(urls(binding)["fetch"]).status_code == 405


def test_fetch_now_is_limited_per_user_in_words(admin_client, domain, queued, settings):
    settings.FETCH_NOW_RATE_LIMIT = "2/60"
    fresh_window("2/60")
    binding = BindingFactory(account=AccountFactory(domain=domain))
    for _ in range(2):
        assert admin_client.post(urls(binding)["fetch"], **HTMX).status_code == 200

    refused = admin_client.post(urls(binding)["fetch"], **HTMX)
    assert refused.status_code == 429
    row = refused.content.decode()
    assert row.startswith(f'<tr id="binding-{binding.pk}"')  # the row stays, with the reason
    assert "Fetch now was pressed too often. Try again in" in row
    page = admin_client.post(urls(binding)["fetch"], follow=True).content.decode()
    assert "Fetch now was pressed too often" in page


def test_fetch_now_needs_the_csrf_token(domain, domain_admin, queued):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    browser = Client(enforce_csrf_checks=True)
    assert browser.login(username=domain_admin.address, password=LOCAL_PASSWORD)
    assert browser.post(urls(binding)["fetch"], **HTMX).status_code == 403
    page = browser.get(urls(binding)["list"]).content.decode()
    token = page.split('"X-CSRFToken": "', 1)[1].split('"', 1)[0]  # hx-headers on <body>
    response = browser.post(urls(binding)["fetch"], HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200


def test_other_domains_and_employees_get_nothing(client, queued):
    binding = BindingFactory(account=AccountFactory(domain=DomainFactory()))
    stranger = AccountFactory(kind="administrator")  # administrator of another domain
    employee = AccountFactory(domain=binding.account.domain)
    for who, status in ((stranger, 404), (employee, 403)):
        assert client.login(username=who.address, password=LOCAL_PASSWORD)
        for name, url in urls(binding).items():
            if name != "list":
                assert client.get(url).status_code in (status, 405), url
                assert client.post(url, **HTMX).status_code in (status, 405), url
        client.logout()
    assert client.post(urls(binding)["fetch"]).status_code == 302  # to the login page
    assert queued == []
    assert binding.fetch_runs.filter(outcome=FetchOutcome.OK).count() == 0
