"""The outgoing relay is its own choice: the binding marked "Outgoing relay" (issue 10, item 8).

Pausing an account's fetching leaves its outgoing mail alone; unticking "Outgoing relay" on
its only binding leaves it without a relay. Real Postfix, the fake ISP a real Postfix too.
"""

from __future__ import annotations

import pytest

from .conftest import SUPPORT_LOCAL, message, rcpt_reply, smtp_auth, smtp_submit

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


def test_it_relays_for_an_account_whose_fetching_is_paused(
    office, fake_isp, office_people, tls_context
):
    binding = office_people["support_binding"]
    binding.enabled = False
    binding.save()
    support = office_people["support"].address
    before = len(fake_isp.received())
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, support, SUPPORT_LOCAL)
        client.sendmail(
            support, ["partner@outside.test"], message(support, ["partner@outside.test"], "paused")
        )
    [relayed] = fake_isp.wait_for_messages(before + 1)[before:]
    login = office_people["support_isp"][0]
    assert f"(Authenticated sender: {login})" in str(relayed["Received"])


def test_it_refuses_outside_mail_once_outgoing_relay_is_unticked(
    office, office_people, tls_context
):
    binding = office_people["support_binding"]
    binding.is_outgoing_relay = False
    binding.save()
    support = office_people["support"].address
    code, reply = rcpt_reply(
        office, tls_context, support, SUPPORT_LOCAL, support, "partner@outside.test"
    )
    assert code == 554
    assert b"no outgoing ISP relay" in reply
