"""Who is reachable in a Map-mode domain: the whole ISP domain, not only the office's accounts.

In Map mode the internal domain is usually the ISP's own name; a colleague with a mailbox at
the ISP but no office account is reached through the sender's ISP relay (issue 10, item 4).
A Standard-mode domain is the office's alone: an unknown address there is refused (550).
"""

from __future__ import annotations

import pytest

from .conftest import (
    BOSS_LOCAL,
    DESK_LOCAL,
    SUPPORT_LOCAL,
    message,
    rcpt_reply,
    smtp_auth,
    smtp_submit,
    wait_for_imap_message,
)

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


def test_it_relays_mail_for_a_colleague_who_has_only_an_isp_mailbox(
    office, fake_isp, office_people, tls_context
):
    support = office_people["support"].address
    colleague = f"colleague@{office_people['domain'].name}"
    before = len(fake_isp.received())
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, support, SUPPORT_LOCAL)
        refused = client.sendmail(support, [colleague], message(support, [colleague], "to isp"))
    assert refused == {}
    [relayed] = fake_isp.wait_for_messages(before + 1)[before:]
    assert relayed["To"] == colleague
    login = office_people["support_isp"][0]
    assert f"(Authenticated sender: {login})" in str(relayed["Received"])


def test_it_keeps_local_staff_from_colleagues_at_the_isp(office, office_people, tls_context):
    desk = office_people["desk"].address
    colleague = f"colleague@{office_people['domain'].name}"
    code, reply = rcpt_reply(office, tls_context, desk, DESK_LOCAL, desk, colleague)
    assert code == 554
    assert b"Special local staff accounts may only send to internal addresses" in reply


def test_it_refuses_an_unknown_address_of_a_standard_mode_domain(
    office, fake_isp, standard_people, tls_context
):
    boss = standard_people["boss"].address
    stranger = f"nobody@{standard_people['domain'].name}"
    with smtp_submit(office, tls_context) as client:
        smtp_auth(client, boss, BOSS_LOCAL)
        client.mail(boss)
        code, reply = client.rcpt(stranger)
        assert code == 550
        assert b"User unknown" in reply
        code, _ = client.rcpt(boss)
        assert code == 250
        code, _ = client.data(message(boss, [boss], "note to self"))
        assert code == 250
    wait_for_imap_message(office, tls_context, boss, BOSS_LOCAL, "note to self")


def test_the_domain_form_says_where_mail_for_unknown_addresses_goes():
    from domains.forms import DomainForm

    help_text = DomainForm().fields["domain_type"].help_text
    assert "goes out through the sender's ISP relay" in help_text
    assert "an address without an account here is refused" in help_text
