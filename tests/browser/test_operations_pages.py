"""Chromium walks what issue 12 added: the audit log and its filter, the wizard's warning
before Finish, the styled 403/404 pages and the favicon, the relay failing on the POP3
remote tab and on /me/, and a domain's alert settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from audit import services as audit
from devserver.processes import free_port
from mailservice.models import RelayState, RelayStatus
from tests.browser.login import log_in
from tests.factories import (
    AccountFactory,
    AdminAccountFactory,
    BindingFactory,
    DomainFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REFUSED = (
    "The ISP refused the relay login of isp-support-7731 (535 5.7.8 Error: authentication "
    "failed: (reason unavailable)); mail to the outside waits in the queue. Correct the ISP "
    "password (or SMTP password) of the remote POP3 account marked Outgoing relay. "
    "2 messages wait."
)


@pytest.fixture
def office():
    domain = DomainFactory(name="example.com", pop3_host="127.0.0.1")
    admin = AdminAccountFactory(domain=domain, localpart="boss")
    support = AccountFactory(domain=domain, localpart="support")
    binding = BindingFactory(
        account=support, username="isp-support-7731", is_outgoing_relay=True,
        smtp_host="smtp.isp.example",
    )  # fmt: skip
    return {"domain": domain, "admin": admin, "support": support, "binding": binding}


def test_the_audit_log_filters_by_what_happened(page, office, superuser, screenshot, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    audit.record(office["admin"].address, "account.created", office["support"])
    audit.record(office["admin"].address, "binding.changed", office["binding"],
                 fields=["ISP password", "fetch_interval_minutes"])  # fmt: skip
    for _ in range(2):
        audit.record("boss@example.com", "login.failed", domain=office["domain"], ip="198.51.100.7")
    audit.record("manage.py rotate_isp_keys", "keys.rotated", detail="3 bindings re-encrypted")
    log_in(page, office["admin"].address)
    page.get_by_role("navigation", name="Toolbar").get_by_role("link", name="Audit log").click()
    table = page.locator("#audit-events")
    expect(table).to_contain_text("Remote POP3 account changed")
    expect(table).to_contain_text("ISP password")
    expect(table).not_to_contain_text("ISP keys rotated")  # server-wide: superusers only
    expect(table.locator("tbody tr").first).to_contain_text("Logged in")  # this very login
    page.get_by_label("What").select_option(label="Failed login")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("198.51.100.7")
    expect(table).not_to_contain_text("Account created")
    assert " CET" in table.inner_text() or " CEST" in table.inner_text()
    screenshot(page, "audit-log-filtered")

    page.context.clear_cookies()
    log_in(page, superuser.username)
    page.goto("/audit/")
    page.get_by_label("Domain").select_option(label="Server-wide (no domain)")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(2)  # the key rotation, this login
    expect(table).to_contain_text("ISP keys rotated")
    screenshot(page, "audit-log-superuser")


def test_the_wizard_warns_before_finish_without_a_successful_detect(page, office, screenshot):
    log_in(page, office["admin"].address)
    page.goto(f"/domains/{office['domain'].pk}/accounts/new/")
    page.get_by_label("Account", exact=True).fill("sales")
    page.get_by_label("Password", exact=True).fill("Office-Local-4711")
    page.get_by_label("Confirm password").fill("Office-Local-4711")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Port", exact=True).fill(str(free_port()))  # nothing listens there
    page.get_by_label("ISP account").fill("isp-sales-4410")
    page.get_by_label("ISP password").fill("Isp-Sales-Secret")
    page.get_by_role("button", name="Next").click()
    warning = page.locator("#detect-warning")
    expect(warning).to_contain_text("Detect was not run with these Map settings.")
    expect(warning).to_contain_text("created anyway")
    expect(warning).to_contain_text("“Needs attention”")
    screenshot(page, "wizard-warning-not-run")

    page.get_by_role("button", name="Back").click()
    page.get_by_role("button", name="Detect").click()
    expect(page.locator("#detect-report")).to_contain_text("Detect failed", timeout=20_000)
    page.get_by_role("button", name="Next").click()
    expect(warning).to_contain_text("Detect failed with these Map settings: POP3 failed at")
    screenshot(page, "wizard-warning-failed")
    page.get_by_role("button", name="Finish").click()  # a warning, not a refusal
    expect(page.get_by_text("Account sales@example.com created")).to_be_visible()


def test_403_and_404_are_styled_pages_with_a_way_back(page, office, screenshot):
    other = DomainFactory(name="other.example")
    log_in(page, office["admin"].address)
    response = page.goto(f"/domains/{other.pk}/accounts/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.get_by_role("navigation", name="Toolbar")).to_be_visible()
    screenshot(page, "error-404")
    page.get_by_role("link", name="Back to the console").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    page.context.clear_cookies()
    log_in(page, office["support"].address)
    response = page.goto("/domains/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("#error-page")).to_contain_text("This account has no access")
    screenshot(page, "error-403")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(icon).status == 200


def test_a_failing_relay_shows_on_the_pop3_tab_and_on_me(page, office, screenshot):
    RelayStatus.objects.create(
        binding=office["binding"],
        state=RelayState.FAILING,
        failing_since=timezone.now() - timedelta(minutes=42),
        last_error=REFUSED,
        deferred=2,
        checked_at=timezone.now(),
    )
    log_in(page, office["admin"].address)
    page.goto(f"/accounts/{office['support'].pk}/pop3/")
    row = page.locator(f"#binding-{office['binding'].pk}")
    expect(row.get_by_role("link", name="Relay failing")).to_be_visible()
    status = page.locator("#relay-status")
    expect(status).to_contain_text("Mail to the outside is not leaving")
    expect(status).to_contain_text(REFUSED)
    expect(status).to_contain_text("Waiting in the queue: 2")
    screenshot(page, "pop3-remote-relay-failing")

    page.context.clear_cookies()
    log_in(page, office["support"].address)
    expect(page.get_by_role("heading", name="My mailbox: support@example.com")).to_be_visible()
    status = page.locator("#relay-status")
    expect(status.get_by_role("alert")).to_contain_text(
        "Your mail to outside addresses is not leaving"
    )
    expect(status).to_contain_text("535 5.7.8")
    screenshot(page, "me-relay-failing")


def test_the_alert_settings_page_keeps_the_secret_write_only(page, office, screenshot):
    log_in(page, office["admin"].address)
    page.goto(f"/domains/{office['domain'].pk}/accounts/")
    page.get_by_role("navigation", name="Toolbar").get_by_role("link", name="Alerts").click()
    page.get_by_label("Alert after (minutes)").fill("15")
    page.get_by_label("Alert webhook URL").fill("http://127.0.0.1:9/hooks/aamail")
    page.get_by_label("Webhook secret").fill("whsec-7d1c0e5a9b2f4e61")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Alert settings of example.com saved.")).to_be_visible()
    assert page.get_by_label("Webhook secret").input_value() == ""
    expect(page.get_by_text("A webhook secret is stored.")).to_be_visible()
    screenshot(page, "alert-settings")
