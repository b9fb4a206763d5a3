"""The relay's state is shown where people look: the POP3 remote tab and /me/ (issue 12)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailservice.models import RelayState, RelayStatus
from tests import factories

pytestmark = pytest.mark.django_db

REFUSED = (
    "The ISP refused the relay login of isp-support-7731 (535 5.7.8 Error: authentication "
    "failed); mail to the outside waits in the queue. Correct the ISP password (or SMTP "
    "password) of the remote POP3 account marked Outgoing relay. 3 messages wait."
)


@pytest.fixture
def relay(domain):
    account = factories.AccountFactory(domain=domain, localpart="support")
    binding = factories.BindingFactory(
        account=account, username="isp-support-7731", is_outgoing_relay=True
    )
    RelayStatus.objects.create(
        binding=binding,
        state=RelayState.FAILING,
        failing_since=timezone.now() - timedelta(minutes=40),
        last_error=REFUSED,
        deferred=3,
        bounced=1,
        checked_at=timezone.now(),
    )
    return binding


def test_it_shows_a_failing_relay_on_the_pop3_remote_tab(admin_client, relay):
    body = admin_client.get(reverse("binding-list", args=[relay.account_id])).content.decode()
    assert "Relay failing" in body
    assert REFUSED in body
    assert "Waiting in the queue: 3" in body
    assert "Returned to the sender: 1" in body


def test_it_tells_the_employee_that_their_outside_mail_is_stuck_and_why(client, relay):
    assert client.login(username=relay.account.address, password=factories.LOCAL_PASSWORD)
    body = client.get(reverse("selfservice")).content.decode()
    assert "Your mail to outside addresses is not leaving" in body
    assert REFUSED in body
    assert "Waiting in the queue: 3" in body


def test_it_shows_an_ok_relay_and_where_mail_leaves(admin_client, relay):
    relay.relay_status.delete()
    body = admin_client.get(reverse("binding-list", args=[relay.account_id])).content.decode()
    assert "Relay failing" not in body
    assert "leaves through the SMTP account isp-support-7731" in body
