"""tests/servers/emptypop.py: a real POP3 server for an empty mailbox, as the client sees it."""

from __future__ import annotations

import pytest

from devserver.certs import make_ca_and_cert
from mapping.pop3 import Client, Pop3AuthError, Security
from tests.servers.emptypop import EmptyPop


def test_it_serves_an_empty_mailbox_to_the_product_client():
    with EmptyPop() as pop:
        client = Client("127.0.0.1", pop.port, Security.NONE, timeout=5)
        client.connect()
        client.login("someone", "anything")
        assert (client.stat(), client.list(), client.uidl()) == ((0, 0), {}, {})
        client.quit()
        served = pop.stop()
    assert sum(served.values()) == 1


def test_it_rejects_a_wrong_password_when_one_is_set():
    with EmptyPop(password="right") as pop:
        client = Client("127.0.0.1", pop.port, Security.NONE, timeout=5)
        client.connect()
        with pytest.raises(Pop3AuthError):
            client.login("someone", "wrong")
        client.close()


def test_it_speaks_pop3s_with_a_certificate(tmp_path):
    import ssl

    ca, cert, key = make_ca_and_cert(tmp_path)
    with EmptyPop(processes=2, tls_cert=cert, tls_key=key) as pop:
        context = ssl.create_default_context(cafile=str(ca))
        for _ in range(3):  # several sessions, whichever child accepts them
            client = Client("127.0.0.1", pop.tls_port, Security.SSL, timeout=5, ssl_context=context)
            client.connect()
            client.login("someone", "anything")
            assert client.uidl() == {}
            client.quit()
        assert len(pop.pids) == 2
        assert pop.stop()
        assert pop.sessions == 3
