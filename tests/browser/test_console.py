"""A real browser creates a Map-mode domain, an account and a remote POP3 account."""

import pytest
from playwright.sync_api import expect

from accounts.models import Account
from domains.models import Domain
from mapping.models import Binding
from tests.browser.login import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_creates_a_map_domain_and_binds_an_account(page, superuser, screenshot):
    log_in(page, superuser.username)
    page.get_by_role("link", name="New domain").click()
    page.get_by_label("Name").fill("Example.com")
    page.get_by_label("Domain type").select_option(label="Map mail server mode")
    page.get_by_label("ISP POP3 server").fill("mail.isp.example")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="example.com")).to_be_visible()
    domain = Domain.objects.get(name="example.com")
    assert domain.domain_type == "map"

    # The toolbar's Account button opens the Account creation wizard.
    page.get_by_role("navigation", name="Toolbar").get_by_role("link", name="Account").click()
    page.get_by_label("Account", exact=True).fill("support")
    page.get_by_label("Password", exact=True).fill("Office-Local-4711")
    page.get_by_label("Confirm password").fill("Office-Local-4711")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Map settings")).to_be_visible()
    page.get_by_label("ISP account").fill("support-main")
    page.get_by_label("ISP password").fill("Isp-Main-1")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Finish").click()
    account = Account.objects.get(domain=domain, localpart="support")
    assert account.check_password("Office-Local-4711")
    assert account.bindings.get().get_isp_password() == "Isp-Main-1"

    # Later: the Account dialog's POP3 remote tab adds, modifies and deletes bindings.
    page.goto(f"/domains/{domain.pk}/accounts/")
    page.get_by_role("link", name="support@example.com").click()
    page.get_by_role("link", name="POP3 remote").click()
    page.get_by_role("link", name="Add").click()
    expect(page.get_by_label("ISP server address")).to_have_value("mail.isp.example")
    page.get_by_label("ISP account").fill("support-isp")
    page.get_by_label("ISP password").fill("Isp-Secret-9")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#bindings")).to_contain_text("support-isp")
    screenshot(page, "pop3-remote")

    binding = Binding.objects.get(account=account, username="support-isp")
    assert binding.get_isp_password() == "Isp-Secret-9"
    page.locator(f"#binding-{binding.pk}").get_by_role("link", name="Modify").click()
    assert page.get_by_label("ISP password").input_value() == ""
    page.get_by_label("Fetch every (minutes)").fill("15")
    page.get_by_role("button", name="Save").click()  # blank password: the stored one stays
    expect(page.locator("#bindings")).to_contain_text("support-isp")
    binding.refresh_from_db()
    assert binding.fetch_interval_minutes == 15
    assert binding.get_isp_password() == "Isp-Secret-9"
    # Another port is another server: the stored password does not follow it unasked.
    page.locator(f"#binding-{binding.pk}").get_by_role("link", name="Modify").click()
    page.get_by_label("Port").first.fill("110")
    page.get_by_label("Security").first.select_option(label="STARTTLS")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#binding-form")).to_contain_text("type the ISP password again")
    screenshot(page, "pop3-remote-retype")
    page.get_by_label("ISP password").fill("Isp-Secret-9")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#bindings")).to_contain_text("support-isp")
    binding.refresh_from_db()
    assert (binding.port, binding.security) == (110, "starttls")
    assert binding.get_isp_password() == "Isp-Secret-9"

    page.locator(f"#binding-{binding.pk}").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#bindings")).not_to_contain_text("support-isp")
    assert list(account.bindings.values_list("username", flat=True)) == ["support-main"]
