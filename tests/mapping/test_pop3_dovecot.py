"""The POP3 client against a real Dovecot 2.3: security modes, logins, exact bytes, memory."""

from __future__ import annotations

import hashlib
import itertools
import socket
import ssl
import tracemalloc

import pytest

from mapping.pop3 import (
    Client,
    Pop3AuthError,
    Pop3StartTlsRefusedError,
    Pop3TlsError,
    Security,
)

PASSWORD = "Sesame-42!"
_users = itertools.count(1)


def new_user(dovecot) -> str:
    name = f"user{next(_users)}"
    dovecot.add_user(name, PASSWORD)
    return name


def stored_as_retrieved(stored: bytes) -> bytes:
    """What a correct fetcher stores for a message Dovecot holds as ``stored``."""
    # Dovecot sends a stored CRLF as a line end; POP3 cannot say "no final newline",
    # so Dovecot adds one (peers.md). A bare CR is content and stays.
    expected = stored.replace(b"\r\n", b"\n")
    return expected if expected.endswith(b"\n") else expected + b"\n"


def retrieve_all(client: Client) -> list[bytes]:
    """Every message, pipelined; each reply must be proven (Dovecot frames them right)."""
    listed = client.list()
    batch = client.retrieve(sorted(listed), listed)
    results = {message.number: b"".join(message) for message in batch}
    assert [r.number for r in batch.proof.proven] == sorted(listed)
    return [results[n] for n in sorted(results)]


CORPUS = [
    b"From: a@example.com\nSubject: eight bit \xe9\xe8\xff\x80\n\nCaf\xe9 \x00\x01 binary-ish\n",
    b"Subject: dots\n\n.\n..\n...\n.leading dot\n..two dots\n. space\nend\n",
    b"Subject: no final newline\n\nlast line has no LF",
    b"Subject: mixed\r\nX-Crlf: yes\r\n\r\n"
    b"bare\rcr inside\nlf line\r\ncrlf line\n\rstarts with cr\n",
    b"Subject: long line\n\n" + b"0123456789abcdef" * (3 * 1024 * 1024 // 16) + b"\nafter\n",
    b"Subject: empty body\n\n",
]


@pytest.mark.parametrize("security", [Security.NONE, Security.STARTTLS, Security.SSL])
def test_it_retrieves_exact_bytes_in_every_security_mode(dovecot, trusted, security):
    user = new_user(dovecot)
    for raw in CORPUS:
        dovecot.deliver(user, raw)
    port = dovecot.pop3s_port if security is Security.SSL else dovecot.pop3_port
    with Client("127.0.0.1", port, security, ssl_context=trusted, timeout=5) as client:
        client.connect()
        client.login(user, PASSWORD)
        assert client.stat()[0] == len(CORPUS)
        got = retrieve_all(client)
    assert got == [stored_as_retrieved(raw) for raw in CORPUS]


def test_it_reports_octets_as_received(dovecot, trusted):
    user = new_user(dovecot)
    dovecot.deliver(user, b"Subject: x\n\n..dot\nline\n")
    with Client("127.0.0.1", dovecot.pop3_port, Security.NONE, timeout=5) as client:
        client.connect()
        client.login(user, PASSWORD)
        listed = client.list()
        batch = client.retrieve([1], listed)
        body = b"".join(next(iter(batch)))
        octets = batch.proof.replies[0].octets
        assert octets == listed[1] == len(body) + body.count(b"\n")


@pytest.mark.parametrize("method", ["auto", "user", "sasl-plain"])
def test_it_logs_in_with_each_method(dovecot, method):
    user = new_user(dovecot)
    with Client("127.0.0.1", dovecot.pop3_port, Security.NONE, timeout=5) as client:
        client.connect()
        client.login(user, PASSWORD, method=method)
        assert client.stat() == (0, 0)


def test_it_rejects_a_certificate_from_an_unknown_ca(dovecot):
    client = Client("127.0.0.1", dovecot.pop3s_port, Security.SSL, timeout=5)
    with pytest.raises(Pop3TlsError) as caught:
        client.connect()
    assert "not trusted" in caught.value.message
    assert isinstance(caught.value.ssl_error, ssl.SSLCertVerificationError)
    assert caught.value.transient is False


def test_it_rejects_the_certificate_on_starttls_too(dovecot):
    client = Client("127.0.0.1", dovecot.pop3_port, Security.STARTTLS, timeout=5)
    with pytest.raises(Pop3TlsError) as caught:
        client.connect()
    assert not isinstance(caught.value, Pop3StartTlsRefusedError)
    assert isinstance(caught.value.ssl_error, ssl.SSLCertVerificationError)


def test_it_checks_the_certificate_against_server_hostname(dovecot, trusted):
    # Connect to the vetted address but verify the name the administrator typed.
    client = Client("localhost", dovecot.pop3s_port, Security.SSL, ssl_context=trusted, timeout=5)
    sock = socket.create_connection(("127.0.0.1", dovecot.pop3s_port), timeout=5)
    assert client.connect(sock=sock).startswith("Dovecot")
    client.close()
    wrong = Client(
        "127.0.0.1",
        dovecot.pop3s_port,
        Security.SSL,
        ssl_context=trusted,
        server_hostname="mail.isp.example",
        timeout=5,
    )
    with pytest.raises(Pop3TlsError, match=r"mail\.isp\.example"):
        wrong.connect()


def test_it_refuses_starttls_when_dovecot_does_not_offer_it(dovecot_no_stls):
    client = Client("127.0.0.1", dovecot_no_stls.pop3_port, Security.STARTTLS, timeout=5)
    with pytest.raises(Pop3StartTlsRefusedError) as caught:
        client.connect()
    assert "nothing was sent in plain text" in caught.value.message
    assert caught.value.transient is False


def test_it_rejects_a_wrong_password_as_not_transient(dovecot):
    user = new_user(dovecot)
    with Client("127.0.0.1", dovecot.pop3_port, Security.NONE, timeout=5) as client:
        client.connect()
        with pytest.raises(Pop3AuthError) as caught:
            client.login(user, "wrong-Password-123")
    assert caught.value.transient is False
    assert "rejected the username or password" in caught.value.message
    assert "wrong-Password-123" not in str(caught.value)


def test_it_pipelines_300_small_messages(dovecot):
    user = new_user(dovecot)
    corpus = [
        f"Subject: {i}\nX-N: {i}\n\nbody {i}\n.{i}\n".encode() * (i % 7 + 1) for i in range(300)
    ]
    for raw in corpus:
        dovecot.deliver(user, raw)
    with Client("127.0.0.1", dovecot.pop3_port, Security.NONE, timeout=5) as client:
        client.connect()
        client.login(user, PASSWORD)
        assert "PIPELINING" in client.capabilities
        got = retrieve_all(client)
    assert got == [stored_as_retrieved(raw) for raw in corpus]


def test_it_deletes_only_at_quit(dovecot):
    user = new_user(dovecot)
    for i in range(3):
        dovecot.deliver(user, f"Subject: {i}\n\nx\n".encode())
    client = Client("127.0.0.1", dovecot.pop3_port, Security.NONE, timeout=5)
    client.connect()
    client.login(user, PASSWORD)
    client.dele_many([1])
    client.close()  # dropped before QUIT: RFC 1939 §6, nothing is deleted
    assert len(dovecot.messages(user)) == 3
    client.connect()
    client.login(user, PASSWORD)
    uidls = client.uidl()
    client.dele_many([1])
    client.quit()
    assert len(dovecot.messages(user)) == 2
    client.connect()
    client.login(user, PASSWORD)
    assert sorted(client.uidl().values()) == sorted(list(uidls.values())[1:])
    client.close()


def test_it_streams_a_20_mb_message_in_flat_memory(dovecot):
    user = new_user(dovecot)
    line = b"x" * 999 + b"\n"
    raw = b"Subject: big\n\n" + line * 21_000 + b"." * 2_000_000 + b"\n"
    expected = hashlib.sha256(stored_as_retrieved(raw)).hexdigest()
    dovecot.deliver(user, raw)
    del raw
    with Client("127.0.0.1", dovecot.pop3_port, Security.NONE, timeout=10) as client:
        client.connect()
        client.login(user, PASSWORD)
        digest, size = hashlib.sha256(), 0
        listed = client.list()
        tracemalloc.start()
        try:
            for message in client.retrieve([1], listed):
                for piece in message:
                    digest.update(piece)
                    size += len(piece)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert size > 20_000_000
    assert digest.hexdigest() == expected
    assert peak < 8 * 1024 * 1024


def test_it_adopts_a_socket_the_caller_connected(dovecot, trusted):
    # Detect resolves and connects itself, then hands the socket over for TLS and POP3.
    user = new_user(dovecot)
    sock = socket.create_connection(("127.0.0.1", dovecot.pop3s_port), timeout=5)
    client = Client("localhost", dovecot.pop3s_port, Security.SSL, ssl_context=trusted, timeout=5)
    assert client.connect(sock=sock).startswith("Dovecot")
    client.login(user, PASSWORD)
    assert client.stat() == (0, 0)
    client.quit()
