"""A real browser walks the Overview: a failing binding, quarantined messages (retry,
download, forget), the 30-day chart, an outgoing relay whose mail is deferred, and the state
badges of the lists."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from domains.models import Security
from mailservice.models import RelayState, RelayStatus
from mapping.fetch import binding_fetch
from mapping.models import Binding, FetchDay, LeavePolicy, QuarantineState, Schedule
from tests.browser.login import log_in
from tests.factories import AccountFactory, AdminAccountFactory, BindingFactory
from tests.fetch.conftest import assert_exactly
from tests.servers.faultpop import FaultPop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MAIL = [b"Subject: hello %d\n\nbody %d\n" % (i, i) for i in range(1, 5)]


def bind(pop: FaultPop, account, username: str, **fields) -> Binding:
    return BindingFactory(
        account=account, host="127.0.0.1", port=pop.port, security=Security.NONE,
        username=username, raw_password="pass", leave_policy=LeavePolicy.KEEP, **fields,
    )  # fmt: skip


def test_it_walks_the_overview_with_a_failing_binding_and_quarantined_messages(
    page, screenshot, settings
):
    settings.POP3_TIMEOUT = 1.0
    settings.QUARANTINE_AFTER_FAILURES = 3
    admin = AdminAccountFactory(localpart="boss")
    domain = admin.domain
    sales, support = (
        AccountFactory(domain=domain, localpart="sales"),
        AccountFactory(domain=domain, localpart="support"),
    )
    with (
        FaultPop(MAIL, faults={"reject_password"}, username="sales-isp") as locked,
        FaultPop(MAIL, gone={2}, username="support-isp") as refusing,
        FaultPop(
            MAIL, broken={3: "early_dot"}, faults={"no_pipelining"}, username="archive"
        ) as breaking,
    ):
        wrong = bind(locked, sales, "sales-isp")
        refused = bind(refusing, support, "support-isp")
        broken = bind(breaking, sales, "archive")
        binding_fetch(binding=wrong)
        for _ in range(3):
            binding_fetch(binding=refused)
            binding_fetch(binding=broken)
        binding_fetch(binding=broken)  # set aside: the rest flows, the binding is OK again
        today = timezone.localdate()
        for age in range(1, 30, 3):  # some history for the chart
            FetchDay.objects.create(
                binding=refused, day=today - timedelta(days=age), runs=2,
                messages=age % 7 + 1, bytes=(age % 5 + 1) * 150_000,
            )  # fmt: skip
        # Mail of support@ waits in the queue: the ISP refuses its relay login (what the relay
        # watch records from Postfix's queue, tests/mailservice/test_relay_status.py).
        refused.is_outgoing_relay = True
        refused.save(update_fields=["is_outgoing_relay"])
        RelayStatus.objects.create(
            binding=refused, state=RelayState.FAILING, deferred=3, checked_at=timezone.now(),
            failing_since=timezone.now() - timedelta(minutes=40),
            last_error="The ISP refused the relay login of support-isp (535 5.7.8).",
        )  # fmt: skip

        log_in(page, admin.address)

        # The console's home is the Overview.
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        states = page.locator("#states")
        expect(states.locator(".stat.bad", has_text="Needs attention")).to_contain_text("1")
        expect(states.locator(".stat", has_text="Quarantined messages")).to_contain_text("2")
        failing = page.locator(f"#failing-{wrong.pk}")
        expect(failing).to_contain_text("sales@")
        expect(failing).to_contain_text("rejected the username or password")
        expect(failing).to_contain_text("for ")
        held = page.locator("#held-messages")
        expect(held).to_contain_text("refused to hand it out")
        expect(held).to_contain_text("The download broke at this message")
        bars = page.locator("#charts svg").first.locator("rect")
        expect(bars).to_have_count(30)
        relay = page.locator("#relay-state")
        expect(relay.locator(".stat.bad", has_text="Relays failing")).to_contain_text("1")
        expect(relay.locator(".stat.warn", has_text="Waiting in the queue")).to_contain_text("3")
        deferred = page.locator("#relay-failing")
        expect(deferred).to_contain_text("support@")
        expect(deferred).to_contain_text("refused the relay login of support-isp")
        expect(deferred).to_contain_text("for 40")
        screenshot(page, "overview")

        # Download the message that was read but never delivered.
        kept = broken.quarantine.get(state=QuarantineState.HELD)
        row = page.locator(f"#held-{kept.pk}")
        with page.expect_download() as download_info:
            row.get_by_role("link", name="Download .eml").click()
        download = download_info.value
        assert download.suggested_filename == "uid-3.eml"
        data = download.path().read_bytes()
        assert b"Subject: hello 3" in data
        assert len(data) == kept.kept_bytes

        # Retry the refused one once the ISP hands it out again: it is fetched at once.
        refusing.gone.clear()
        message = refused.quarantine.get()
        page.locator(f"#held-{message.pk}").get_by_role("button", name="Retry").click()
        expect(page.get_by_role("status")).to_contain_text("tried again")
        expect(page.locator(f"#held-{message.pk}")).to_have_count(0)
        assert_exactly(refused, MAIL)
        screenshot(page, "overview-after-retry")

        # The POP3 remote tab lists it too; Forget there: it leaves the list and stays on
        # the server, unfetched.
        page.goto(f"/accounts/{sales.pk}/pop3/")
        expect(page.locator(f"#held-{kept.pk}")).to_contain_text("uid-3")
        expect(page.locator(f"#binding-{wrong.pk}")).to_contain_text("Needs attention")
        screenshot(page, "pop3-remote-quarantine")
        page.locator(f"#held-{kept.pk}").get_by_role("button", name="Forget").click()
        expect(page.get_by_role("status")).to_contain_text("is forgotten")
        expect(page).to_have_url(f"{page.url.split('/accounts/')[0]}/accounts/{sales.pk}/pop3/")
        expect(page.locator("#held-messages")).to_have_count(0)
        page.get_by_role("navigation", name="Toolbar").get_by_role("link", name="Overview").click()
        expect(page.locator("#states .stat", has_text="Quarantined messages")).to_contain_text("0")
        assert 3 not in breaking.deleted

    # The lists carry a badge per binding; the POP3 remote tab names the failing one's error.
    page.get_by_role("navigation", name="Toolbar").get_by_role("link", name="Domains").click()
    expect(page.locator("table")).to_contain_text("1 Needs attention")
    screenshot(page, "domain-list-badges")
    page.get_by_role("link", name=domain.name).click()
    expect(page.locator("table").get_by_text("Needs attention")).to_have_count(1)
    screenshot(page, "account-list-badges")


def test_it_says_in_words_when_fetching_falls_behind_schedule(page, screenshot, settings):
    settings.FETCH_LAG_ACCEPTABLE_SECONDS = 120
    admin = AdminAccountFactory(localpart="boss")
    behind = BindingFactory(account=AccountFactory(domain=admin.domain, localpart="sales"))
    Binding.objects.filter(pk=behind.pk).update(state="ok")
    Schedule.objects.filter(pk=behind.pk).update(
        next_fetch_at=timezone.now() - timedelta(minutes=12)
    )
    log_in(page, admin.address)

    banner = page.locator("#fetch-lag")
    # A domain administrator cannot add workers: the words say who can.
    expect(banner).to_contain_text("Fetching is 12 minutes behind schedule")
    expect(banner).to_contain_text("new mail reaches the office late")
    expect(banner).to_contain_text("Tell whoever runs this server")
    screenshot(page, "overview-behind-schedule")
    page.get_by_role("navigation", name="Toolbar").get_by_role("link", name="Domains").click()
    expect(page.locator("#fetch-lag")).to_contain_text("12 minutes behind schedule")
    screenshot(page, "domain-list-behind-schedule")
