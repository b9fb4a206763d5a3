"""The Overview: the console's home, every failure at a glance, scoped to what the user runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account
from mailservice.models import RelayState, RelayStatus
from mapping.models import (
    Binding,
    BindingState,
    FetchDay,
    QuarantinedMessage,
    QuarantineState,
)
from ops import selectors
from tests.factories import LOCAL_PASSWORD, AccountFactory, BindingFactory, DomainFactory

pytestmark = pytest.mark.django_db


def failing(binding: Binding, state: str, error: str, hours: int) -> Binding:
    Binding.objects.filter(pk=binding.pk).update(
        state=state, last_error=error, failing_since=timezone.now() - timedelta(hours=hours)
    )
    binding.refresh_from_db()
    return binding


def held(binding: Binding, uidl: str, reason: str) -> QuarantinedMessage:
    now = timezone.now()
    return QuarantinedMessage.objects.create(
        binding=binding,
        uidl=uidl,
        state=QuarantineState.HELD,
        failures=3,
        reason=reason,
        size=1234,
        first_failed_at=now,
        last_failed_at=now,
        held_at=now,
    )


def test_it_is_the_console_home(admin_client_su, admin_client):
    assert admin_client_su.get("/").url == reverse("overview")
    assert admin_client.get("/").url == reverse("overview")


def test_it_lists_failing_bindings_first_needing_a_person_before_retrying(admin_client_su):
    ok = BindingFactory(username="fine")
    Binding.objects.filter(pk=ok.pk).update(state=BindingState.OK)
    retrying = failing(BindingFactory(username="flaky"), BindingState.RETRYING, "No answer.", 5)
    wrong = failing(
        BindingFactory(username="wrongpw"),
        BindingState.NEEDS_ATTENTION,
        "The ISP rejected the username or password.",
        1,
    )
    BindingFactory(username="off", enabled=False)

    page = admin_client_su.get(reverse("overview")).content.decode()

    counts = selectors.overview_for(user=_su(admin_client_su))
    assert (counts.counts.ok, counts.counts.retrying, counts.counts.needs_attention) == (1, 1, 1)
    assert counts.counts.disabled == 1
    # Needs attention comes first although it has been failing for less time.
    assert page.index("wrongpw") < page.index("flaky")
    assert "The ISP rejected the username or password." in page
    assert reverse("binding-edit", args=[wrong.account_id, wrong.pk]) in page
    assert reverse("binding-list", args=[retrying.account_id]) in page
    assert "for 5\xa0hours" in page


def test_a_mailbox_that_needs_sign_in_counts_as_failing_and_needing_a_person(admin_client_su):
    retrying = failing(BindingFactory(username="flaky"), BindingState.RETRYING, "No answer.", 9)
    revoked = failing(
        BindingFactory(
            username="signedout", account=AccountFactory(domain=retrying.account.domain)
        ),
        BindingState.NEEDS_SIGN_IN,
        "Microsoft no longer accepts the sign-in of signedout: sign in again.",
        1,
    )

    page = admin_client_su.get(reverse("overview")).content.decode()
    domains_page = admin_client_su.get(reverse("domain-list")).content.decode()

    counts = selectors.overview_for(user=_su(admin_client_su)).counts
    assert (counts.needs_sign_in, counts.failing, counts.total) == (1, 2, 2)
    assert "<span>Needs sign-in</span>" in page
    assert page.index("signedout") < page.index("flaky")  # a person must act on it
    assert "sign in again" in page
    assert reverse("binding-list", args=[revoked.account_id]) in page
    assert "1 Needs sign-in" in domains_page


def _su(client):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_it_shows_a_domain_administrator_only_their_domain(admin_client, domain):
    mine = failing(
        BindingFactory(account=AccountFactory(domain=domain), username="mine-isp"),
        BindingState.NEEDS_ATTENTION,
        "Mine broke.",
        2,
    )
    theirs = failing(BindingFactory(username="theirs-isp"), BindingState.RETRYING, "Theirs.", 2)
    held(mine, "uid-mine", "The ISP refused to hand it out.")
    held(theirs, "uid-theirs", "Not yours.")

    page = admin_client.get(reverse("overview")).content.decode()

    assert "mine-isp" in page
    assert "Mine broke." in page
    assert "uid-mine" in page
    assert "theirs-isp" not in page
    assert "uid-theirs" not in page
    assert theirs.account.domain.name not in page


def test_it_lists_quarantined_messages_with_their_reason_and_actions(admin_client_su):
    binding = BindingFactory()
    message = held(binding, "uid-poison", "The ISP refused to hand it out (-ERR to RETR: “no”).")
    QuarantinedMessage.objects.filter(pk=message.pk).update(kept_bytes=10)

    page = admin_client_su.get(reverse("overview")).content.decode()

    assert "uid-poison" in page
    assert "refused to hand it out" in page
    for name in ("held-retry", "held-forget", "held-download"):
        assert reverse(name, args=[message.pk]) in page


def test_it_charts_messages_and_bytes_per_day_for_30_days(admin_client_su):
    binding = BindingFactory()
    today = timezone.localdate()
    FetchDay.objects.create(binding=binding, day=today, runs=2, messages=40, bytes=4 << 20)
    FetchDay.objects.create(binding=binding, day=today - timedelta(days=3), runs=1, messages=10)
    FetchDay.objects.create(binding=binding, day=today - timedelta(days=45), runs=1, messages=99)

    response = admin_client_su.get(reverse("overview"))
    page = response.content.decode()

    days = response.context["overview"].days
    assert len(days) == 30
    assert days[-1].day == today
    assert [d.messages for d in days if d.messages] == [10, 40]  # day 45 is outside
    assert "50 messages, 4.0\xa0MB" in page
    assert page.count("<rect ") == 60  # a bar per day, two charts
    assert f"{today:%a %d %b}: 40 messages" in page


def test_it_shows_the_outgoing_relays_failing_first_with_their_error(admin_client, domain):
    mine = AccountFactory(domain=domain)
    stuck = BindingFactory(account=mine, smtp_host="smtp.isp.example", username="sales-isp")
    RelayStatus.objects.create(
        binding=stuck,
        state=RelayState.FAILING,
        deferred=2,
        failing_since=timezone.now() - timedelta(hours=3),
        last_error="The ISP refused the relay login of sales-isp (535 5.7.8).",
    )
    RelayStatus.objects.create(binding=BindingFactory(account=mine), state=RelayState.OK)
    elsewhere = BindingFactory(username="not-mine")  # another domain: never shown
    RelayStatus.objects.create(binding=elsewhere, state=RelayState.FAILING, deferred=9)

    page = admin_client.get(reverse("overview")).content.decode()
    relay = page.split('id="relay-title"', 1)[1]
    assert "<strong>1</strong><span>Relays OK</span>" in relay
    assert "<strong>1</strong><span>Relays failing</span>" in relay
    assert "<strong>2</strong><span>Waiting in the queue</span>" in relay
    assert "The ISP refused the relay login of sales-isp (535 5.7.8)." in relay
    assert "for 3\xa0hours" in relay
    assert mine.address in relay
    assert "not-mine" not in page


def test_it_shows_state_badges_on_the_domain_and_account_lists(admin_client_su):
    domain = DomainFactory()
    account = AccountFactory(domain=domain)
    failing(BindingFactory(account=account), BindingState.NEEDS_ATTENTION, "x", 1)
    ok = BindingFactory(account=account)
    Binding.objects.filter(pk=ok.pk).update(state=BindingState.OK)
    BindingFactory(account=AccountFactory(domain=domain), enabled=False)

    domains_page = admin_client_su.get(reverse("domain-list")).content.decode()
    accounts_page = admin_client_su.get(reverse("account-list", args=[domain.pk])).content.decode()

    assert "1 Needs attention" in domains_page
    assert "1 OK" in domains_page
    assert "1 Disabled" in domains_page
    assert accounts_page.count('class="badge bad">Needs attention') == 1
    assert accounts_page.count('class="badge ok">OK') == 1


@pytest.mark.parametrize("who", ["superuser", "domain administrator"])
def test_it_keeps_the_overview_query_count_constant_at_10000_bindings(
    who, client, superuser, domain, domain_admin, django_assert_max_num_queries
):
    if who == "superuser":
        client.force_login(superuser)
    else:
        assert client.login(username=domain_admin.address, password=LOCAL_PASSWORD)
    accounts = Account.objects.bulk_create(
        Account(domain=domain, localpart=f"bulk{i}", password="!") for i in range(100)
    )
    _bulk_bindings(accounts, range(40))  # every state, set-aside messages, daily totals
    # A failing relay costs the page its one extra query: counted here too.
    RelayStatus.objects.create(
        binding=Binding.objects.filter(account__domain=domain).first(),
        state=RelayState.FAILING, deferred=2,
    )  # fmt: skip
    small = _queries(client)
    _bulk_bindings(accounts, range(40, 10_000))
    with django_assert_max_num_queries(10):
        response = client.get(reverse("overview"))
    overview = response.context["overview"]
    assert overview.counts.total == 10_000
    assert len(overview.failing) == 50
    assert overview.relay.failing == 1
    assert overview.counts.quarantined == 200
    assert len(overview.held) == 50
    assert sum(d.messages for d in overview.days) == 30 * 100 * 7
    big = _queries(client)
    print(f"Overview queries as {who}: {small} with 40 bindings, {big} with 10,000")
    assert big == small


def _queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("overview"))
    assert response.status_code == 200
    return len(captured)


def _bulk_bindings(accounts: list[Account], numbers: range) -> None:
    """Bindings numbered `numbers` on `accounts`, every state; the first 200 have a
    set-aside message and the first 100 30 days of totals. bulk_create, no per-row save."""
    states = [
        BindingState.OK,
        BindingState.RETRYING,
        BindingState.NEEDS_ATTENTION,
        BindingState.NEW,
    ]
    now = timezone.now()
    bindings = Binding.objects.bulk_create(
        (
            Binding(
                account=accounts[i % 100],
                host="mail.isp.example",
                username=f"bulk-{i}",
                password_encrypted="unused",
                state=states[i % 4],
                enabled=i % 50 != 7,
                failing_since=now - timedelta(minutes=i) if i % 4 in (1, 2) else None,
                last_error="The ISP rejected the username or password." if i % 4 == 2 else "",
            )
            for i in numbers
        ),
        batch_size=2000,
    )
    bindings = dict(zip(numbers, bindings, strict=True))
    QuarantinedMessage.objects.bulk_create(
        QuarantinedMessage(
            binding=bindings[i],
            uidl=f"uid-{i}",
            state=QuarantineState.HELD,
            failures=3,
            reason="The ISP refused to hand it out.",
            first_failed_at=now,
            last_failed_at=now,
            held_at=now - timedelta(seconds=i),
        )
        for i in numbers
        if i < 200
    )
    today = timezone.localdate()
    FetchDay.objects.bulk_create(
        FetchDay(binding=bindings[i], day=today - timedelta(days=d), runs=1, messages=7, bytes=700)
        for i in numbers
        if i < 100
        for d in range(30)
    )
