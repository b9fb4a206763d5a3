"""What port 25 accepts: mail from outside for Standard-mode accounts, nothing else.

Map and Share mode domains receive their mail at the ISP (fetched over POP3), so port 25
refuses them; it relays nothing; and since nobody logs in there, a sender address of any
hosted domain is forged and refused (issue 10, item 5).
"""

from __future__ import annotations

import smtplib

import pytest

from .conftest import BOSS_LOCAL, message, wait_for_imap_message

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


def _port_25(office) -> smtplib.SMTP:
    client = smtplib.SMTP("localhost", office.config.ports.smtp, timeout=20)
    client.ehlo("mx.outside.test")
    return client


def test_it_accepts_mail_for_standard_mode_accounts_only(
    office, office_people, standard_people, tls_context
):
    boss = standard_people["boss"].address
    client = _port_25(office)
    try:
        client.mail("someone@outside.test")
        for refused in ("victim@elsewhere.test", office_people["sales"].address):
            code, reply = client.rcpt(refused)
            assert code == 554, refused
            assert b"Relay access denied" in reply
        code, reply = client.rcpt(f"nobody@{standard_people['domain'].name}")
        assert code == 550
        code, _ = client.rcpt(boss)
        assert code == 250
        code, _ = client.data(message("someone@outside.test", [boss], "inbound"))
        assert code == 250
    finally:
        client.quit()
    wait_for_imap_message(office, tls_context, boss, BOSS_LOCAL, "inbound")


@pytest.mark.parametrize("who", ["boss", "sales", "unknown"])
def test_it_refuses_a_sender_of_a_hosted_domain_from_outside(
    office, office_people, standard_people, who
):
    sender = {
        "boss": standard_people["boss"].address,
        "sales": office_people["sales"].address,
        "unknown": f"ceo@{office_people['domain'].name}",
    }[who]
    client = _port_25(office)
    try:
        client.mail(sender)
        code, reply = client.rcpt(standard_people["boss"].address)
    finally:
        client.quit()
    assert code == 554
    assert b"Sender address rejected" in reply
    assert b"send only through the submission port" in reply
