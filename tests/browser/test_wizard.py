"""Chromium walks the Account creation wizard, with Detect against real ISP servers on loopback.

Dovecot plays the ISP's POP3S server and Postfix its submission server (STARTTLS + AUTH);
the administrator sees Detect fail on a wrong password, fixes it, sees it succeed, and
finishes: the account and its binding exist.
"""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from accounts.models import Account
from tests.browser.login import log_in
from tests.factories import AdminAccountFactory, DomainFactory
from tests.servers.dovecot import Dovecot
from tests.servers.ispsmtp import FakeIspSmtp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ISP_PASSWORD = "Isp-Secret-7731"


@pytest.fixture(scope="module")
def isp_servers():
    if os.geteuid() != 0:
        pytest.fail("the private Dovecot and Postfix need root")
    # One ISP, one CA: the POP3 and SMTP servers share Dovecot's certificate.
    with Dovecot() as pop, FakeIspSmtp(certs=(pop.ca_pem, pop.cert_pem, pop.key_pem)) as smtp:
        pop.add_user("support", ISP_PASSWORD)
        pop.deliver("support", b"Subject: one\n\nfirst\n")
        pop.deliver("support", b"Subject: two\n\nsecond\n")
        smtp.add_user("support", ISP_PASSWORD)
        yield pop, smtp, pop.ca_pem


def test_the_wizard_creates_an_account_after_detect_succeeds(
    page, isp_servers, settings, screenshot
):
    pop, smtp, bundle = isp_servers
    settings.ISP_CA_FILE = str(bundle)
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    settings.DETECT_DEADLINE_SECONDS = 8
    domain = DomainFactory(
        name="example.com",
        pop3_host="127.0.0.1",
        pop3_port=pop.pop3s_port,
        pop3_security="ssl",
        smtp_host="127.0.0.1",
        smtp_port=smtp.submission_port,
        smtp_security="starttls",
    )
    admin = AdminAccountFactory(domain=domain, localpart="boss")

    log_in(page, admin.address)
    page.goto(f"/domains/{domain.pk}/accounts/")

    # The toolbar's "Account" button opens the Account creation wizard.
    toolbar_account = page.get_by_role("navigation", name="Toolbar").get_by_role(
        "link", name="Account", exact=True
    )
    assert toolbar_account.get_attribute("href") != "#", (
        "the account list must offer the wizard (wizard_available in its context)"
    )
    toolbar_account.click()
    expect(page.get_by_role("heading", name="Account creation wizard")).to_be_visible()
    expect(
        page.get_by_text("no relationship with the ISP mailbox's password").first
    ).to_be_visible()
    page.get_by_label("Account", exact=True).fill("support")
    page.get_by_label("Display name").fill("Support desk")
    page.get_by_label("Password", exact=True).fill("Office-Local-4711")
    page.get_by_label("Confirm password").fill("Office-Local-4711")
    page.get_by_label("Kind").select_option(label="Normal")
    page.get_by_role("button", name="Next").click()

    # Map settings, pre-filled from the domain's ISP defaults.
    expect(page.get_by_role("heading", name="Map settings")).to_be_visible()
    expect(page.get_by_label("ISP server address")).to_have_value("127.0.0.1")
    expect(page.get_by_label("Port", exact=True)).to_have_value(str(pop.pop3s_port))
    page.get_by_label("ISP account").fill("support")
    map_url = page.url
    page.get_by_role("button", name="Detect").click()  # no password yet: told what to fix
    result = page.locator("#detect-result")
    expect(result).to_contain_text("ISP password: type it to test these settings")

    page.get_by_label("ISP password").fill("Wrong-password-1")
    page.get_by_role("button", name="Detect").click()
    expect(result).to_contain_text("Detect failed", timeout=20_000)
    expect(result.locator('[data-step="Login"]')).to_contain_text(
        "The ISP rejected the username or password"
    )
    assert page.url == map_url  # htmx: no reload, the typed values stay
    assert page.get_by_label("ISP password").input_value() == "Wrong-password-1"
    assert "Wrong-password-1" not in result.inner_html()

    page.get_by_label("ISP password").fill(ISP_PASSWORD)
    page.get_by_role("button", name="Detect").click()
    expect(result).to_contain_text("Detect succeeded", timeout=20_000)
    expect(result.locator('[data-step="STAT"]')).to_contain_text("2 messages")
    expect(result.locator('[data-step="AUTH"]')).to_contain_text("Logged in as support")
    assert ISP_PASSWORD not in result.inner_html()
    screenshot(page, "wizard-detect")

    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Remaining settings")).to_be_visible()
    expect(page.locator("#wizard-summary")).to_contain_text("support@example.com")
    expect(page.locator("#detect-passed")).to_be_visible()  # no warning before Finish
    expect(page.locator("#detect-warning")).to_have_count(0)
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("Account support@example.com created")).to_be_visible()

    account = Account.objects.get(domain=domain, localpart="support")
    assert account.check_password("Office-Local-4711")
    binding = account.bindings.get()
    assert (binding.host, binding.port, binding.username) == (
        "127.0.0.1",
        pop.pop3s_port,
        "support",
    )
    assert binding.get_isp_password() == ISP_PASSWORD
    assert binding.smtp_credentials() == ("support", ISP_PASSWORD)
