"""Chromium walks "Sign in with Microsoft" against the test authorization server.

The console runs as pytest-django's live server; OAUTH_REDIRECT_BASE_URL is its address
(plain http is allowed for localhost) and that callback is registered at the test server,
which plays login.microsoftonline.com (its consent page answers at once). The mailbox is at
the XOAUTH2-only ISP, so the walk ends with a fetch of real messages.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Account
from mapping.models import Binding, OAuthCredential
from tests import factories
from tests.browser.login import log_in
from tests.oauth.conftest import (  # noqa: F401 - the OAuth servers, as fixtures here too
    auth,
    auth_server,
    isp,
    isp_ca_bundle,
    isp_server,
    new_mailbox,
    point_settings_at,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def console(live_server, auth, isp, isp_ca_bundle, settings, chromium):
    """The live console wired to the test provider, and a browser that trusts it."""
    point_settings_at(settings, auth, isp_ca_bundle)
    settings.OAUTH_REDIRECT_BASE_URL = live_server.url
    auth.config(add_redirect_uri=f"{live_server.url}/oauth/callback/microsoft/")
    # The test provider's certificate is from a throw-away CA the browser does not know.
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, ignore_https_errors=True
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def admin(domain):
    return factories.AdminAccountFactory(domain=domain, localpart="boss")


def test_it_signs_a_mailbox_in_with_microsoft_and_fetches_it(
    console, admin, domain, auth, isp, screenshot
):
    page = console
    mailbox = new_mailbox(isp, b"Subject: one\n\nfirst\n", b"Subject: two\n\nsecond\n")
    account = factories.AccountFactory(domain=domain, localpart="alice")
    log_in(page, admin.address)
    page.goto(f"/accounts/{account.pk}/pop3/")
    page.get_by_role("link", name="Add").click()
    page.get_by_label("ISP server address").fill("localhost")
    page.get_by_label("Port").first.fill(str(isp.pop3s_port))
    page.get_by_label("Security").first.select_option(label="SSL/TLS")
    page.get_by_label("ISP account").fill(mailbox)
    page.get_by_label("Sign-in").select_option(label="Sign in with Microsoft")
    expect(page.get_by_label("ISP password")).to_be_hidden()  # no password for a sign-in
    expect(page.locator("#sign-in-part")).to_contain_text("after saving, press")
    page.get_by_label("ISP SMTP server").fill("localhost")
    page.get_by_label("SMTP port").fill(str(isp.submission_port))
    page.get_by_label("SMTP security").select_option(label="STARTTLS")
    screenshot(page, "oauth-1-add-with-sign-in")
    page.get_by_role("button", name="Save").click()

    binding = Binding.objects.get(account=account)
    row = page.locator(f"#binding-{binding.pk}")
    expect(row).to_contain_text("Needs sign-in")
    expect(row).to_contain_text("is not signed in yet")
    screenshot(page, "oauth-2-needs-sign-in")

    row.get_by_role("button", name="Sign in with Microsoft").click()
    # To the provider's page and back: the tab says who signed in.
    expect(page.locator(".messages")).to_contain_text(f"Signed in as {mailbox}")
    assert re.search(rf"/accounts/{account.pk}/pop3/$", page.url)
    assert OAuthCredential.objects.get(binding=binding).remote_login == mailbox
    screenshot(page, "oauth-3-signed-in")

    row.get_by_role("button", name="Fetch now").click()
    expect(row).to_contain_text("2 messages", timeout=30_000)
    expect(row).to_contain_text("OK")
    screenshot(page, "oauth-4-fetched")

    row.get_by_role("link", name="Modify").click()
    expect(page.locator("#sign-in-part")).to_contain_text(f"Signed in as {mailbox}")
    page.get_by_label("Outgoing relay").check()
    page.get_by_role("button", name="Detect").click()
    report = page.locator("#detect-result")
    expect(report).to_contain_text("Detect succeeded", timeout=30_000)
    expect(report.locator('[data-step="AUTH XOAUTH2"][data-status="ok"]')).to_have_count(2)
    screenshot(page, "oauth-5-detect")


def test_it_explains_a_refused_consent_in_the_browser(console, admin, domain, auth, screenshot):
    page = console
    account = factories.AccountFactory(domain=domain, localpart="carol")
    binding = factories.BindingFactory(
        account=account,
        host="localhost",
        username="carol@contoso.test",
        auth_method="oauth2_microsoft",
    )
    auth.config(consent="deny")
    log_in(page, admin.address)
    page.goto(f"/accounts/{account.pk}/pop3/")
    page.locator(f"#binding-{binding.pk}").get_by_role("button", name="Sign in again").click()
    expect(page.locator("#sign-in-problem")).to_contain_text("consent was refused")
    screenshot(page, "oauth-6-consent-refused")
    assert not OAuthCredential.objects.exists()


def test_it_signs_in_with_a_code_when_no_browser_can_come_back(
    console, admin, domain, auth, screenshot
):
    page = console
    account = factories.AccountFactory(domain=domain, localpart="dave")
    binding = factories.BindingFactory(
        account=account,
        host="localhost",
        username="dave@contoso.test",
        auth_method="oauth2_microsoft",
    )
    log_in(page, admin.address)
    page.goto(f"/accounts/{account.pk}/pop3/")
    page.locator(f"#binding-{binding.pk}").get_by_role("button", name="Sign in with a code").click()
    code = page.locator("#device-code").inner_text()
    expect(page.locator("#device-status")).to_contain_text("Waiting for approval")
    screenshot(page, "oauth-7-device-code")
    auth.approve_device(code, "dave@contoso.test")  # someone enters the code on a phone
    expect(page.locator("#device-status")).to_contain_text("Signed in", timeout=20_000)
    screenshot(page, "oauth-8-device-signed-in")
    assert OAuthCredential.objects.get(binding=binding).remote_login == "dave@contoso.test"


def test_it_signs_in_on_the_wizards_map_settings_step(
    console, admin, domain, auth, isp, screenshot
):
    page = console
    mailbox = new_mailbox(isp)
    log_in(page, admin.address)
    page.goto(f"/domains/{domain.pk}/accounts/new/")
    page.get_by_label("Account", exact=True).fill(mailbox.partition("@")[0])
    page.get_by_label("Password", exact=True).fill("Office-Local-4711")
    page.get_by_label("Confirm password").fill("Office-Local-4711")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("ISP server address").fill("localhost")
    page.get_by_label("Port").first.fill(str(isp.pop3s_port))
    page.get_by_label("Security").first.select_option(label="SSL/TLS")
    page.get_by_label("ISP account").fill(mailbox)
    page.get_by_label("Sign-in").select_option(label="Sign in with Microsoft")
    page.get_by_label("ISP SMTP server").fill("localhost")
    page.get_by_label("SMTP port").fill(str(isp.submission_port))
    page.get_by_label("SMTP security").select_option(label="STARTTLS")
    screenshot(page, "oauth-9-wizard-map")
    page.get_by_role("button", name="Sign in with Microsoft").click()
    expect(page.locator("#sign-in-part")).to_contain_text(f"Signed in as {mailbox}")
    expect(page.get_by_label("ISP account")).to_have_value(mailbox)  # the step was kept
    page.get_by_role("button", name="Detect").click()
    expect(page.locator("#detect-result")).to_contain_text("Detect succeeded", timeout=30_000)
    screenshot(page, "oauth-10-wizard-signed-in")
    page.get_by_role("button", name="Next").click()
    screenshot(page, "oauth-11-wizard-finish")
    page.get_by_role("button", name="Finish").click()
    account = Account.objects.get(domain=domain, localpart=mailbox.partition("@")[0])
    cred = OAuthCredential.objects.get(binding__account=account)
    assert cred.remote_login == mailbox
