"""A real browser: an employee logs in, reads their page and changes the local password."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import Account
from tests import factories
from tests.browser.login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_lets_an_employee_change_the_local_password(page, settings, screenshot):
    settings.MAIL_HOSTNAME = "mail.example.com"
    domain = factories.DomainFactory(name="example.com")
    account = factories.AccountFactory(domain=domain, localpart="support")
    factories.BindingFactory(account=account, username="isp-support-7731")

    log_in(page, "support@example.com")

    expect(page.get_by_role("heading", name="My mailbox: support@example.com")).to_be_visible()
    expect(page.get_by_text("isp-support-7731 on mail.isp.example")).to_be_visible()
    expect(page.locator("#login-name")).to_have_text("support@example.com")
    expect(page.get_by_role("cell", name="mail.example.com").first).to_be_visible()
    assert factories.ISP_PASSWORD not in page.content()
    screenshot(page, "selfservice")

    page.get_by_label("Current local password").fill("not it")
    page.get_by_label("New local password", exact=True).fill("Brand-New-Local-9")
    page.get_by_label("New local password again").fill("Brand-New-Local-9")
    page.get_by_role("button", name="Change local password").click()
    expect(page.get_by_text("That is not your current local password.")).to_be_visible()

    page.get_by_label("Current local password").fill(factories.LOCAL_PASSWORD)
    page.get_by_label("New local password", exact=True).fill("Brand-New-Local-9")
    page.get_by_label("New local password again").fill("Brand-New-Local-9")
    page.get_by_role("button", name="Change local password").click()
    expect(page.get_by_role("status")).to_contain_text("Your local password is changed")
    assert Account.objects.get(pk=account.pk).check_password("Brand-New-Local-9")
