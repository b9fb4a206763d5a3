"""A real browser: Fetch now queues a fetch, the row polls until it is done, History opens."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse
from playwright.sync_api import expect

from mapping import tasks
from mapping.fetch import binding_fetch
from mapping.models import Binding
from tests.browser.login import log_in
from tests.factories import AccountFactory
from tests.fetch.conftest import assert_exactly

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_fetch_now_updates_the_row_and_the_history(
    page, isp, make_binding, domain, domain_admin, monkeypatch, screenshot
):
    binding = make_binding(account=AccountFactory(domain=domain, localpart="support"))
    messages = [b"Subject: browser %d\n\nx\n" % i for i in range(3)]
    for raw in messages:
        isp.deliver(binding.username, raw)

    def worker(pk: int, trigger: str = "schedule") -> None:  # a worker picks it up a bit later
        def run() -> None:
            try:
                binding_fetch(binding=Binding.objects.get(pk=pk), trigger=trigger)
            finally:
                connection.close()

        threading.Timer(1.0, run).start()

    monkeypatch.setattr(tasks.binding_fetch, "delay", worker)
    log_in(page, domain_admin.address)
    page.goto(reverse("binding-list", args=[binding.account_id]))
    row = page.locator(f"#binding-{binding.pk}")
    expect(row).to_contain_text("Not fetched yet")

    row.get_by_role("button", name="Fetch now").click()
    expect(row).to_contain_text("Fetch queued…")
    expect(row).to_contain_text("3 messages", timeout=15_000)  # polled every 2 s
    expect(row).to_contain_text("OK")

    row.get_by_role("link", name="History").click()
    history = page.locator(f"#binding-{binding.pk}-history")
    expect(history).to_contain_text("manual")
    expect(history.get_by_text("OK", exact=True)).to_be_visible()
    screenshot(page, "pop3-remote-fetch-history")
    assert_exactly(binding, messages)
