"""After a lookup server outage, the very next SMTP session is answered normally.

smtpd keeps every address resolution it made for the life of its process, failures
included (Postfix smtpd_resolve.c); a process used to serve up to 100 sessions, so a
sender/recipient pair first met during the outage got "451 4.3.0 Temporary lookup failure"
for minutes afterwards, until `postfix reload` (issue 10, item 7). Real Postfix, real mailmap.
"""

from __future__ import annotations

import pytest

from .conftest import (
    SALES_LOCAL,
    SUPPORT_LOCAL,
    message,
    rcpt_reply,
    smtp_auth,
    smtp_submit,
    wait_for_imap_message,
)

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_it_answers_at_once_when_the_lookup_server_is_back(
    office, office_people, tls_context, port
):
    support, sales = office_people["support"].address, office_people["sales"].address
    office.mapserver.stop()
    try:
        # A pair this Postfix meets for the first time while mailmap is down: its resolution
        # fails in trivial-rewrite, and smtpd would keep that failure.
        for _ in range(2):
            code, reply = rcpt_reply(
                office, tls_context, support, SUPPORT_LOCAL, support, sales, port=port
            )
            assert code == 451
            assert b"Temporary lookup failure" in reply
    finally:
        office.mapserver.start()
    # Same port, same pair, no waiting: accepted and delivered.
    with smtp_submit(office, tls_context, port=port) as client:
        smtp_auth(client, support, SUPPORT_LOCAL)
        refused = client.sendmail(support, [sales], message(support, [sales], f"back {port}"))
    assert refused == {}
    wait_for_imap_message(office, tls_context, sales, SALES_LOCAL, f"back {port}")
