"""The POP3 client against a misbehaving server (tests/servers/faultpop.py)."""

from __future__ import annotations

import ssl
import time
import tracemalloc

import pytest

from devserver.certs import make_ca_and_cert, make_self_signed
from mapping.pop3 import (
    Client,
    Pop3AuthError,
    Pop3ConnectError,
    Pop3Error,
    Pop3ProtocolError,
    Pop3StartTlsRefusedError,
    Pop3TimeoutError,
    Pop3TlsError,
    Security,
    UserPass,
)
from tests.servers.dovecot import free_port
from tests.servers.faultpop import NOTICE, FaultPop, wire_size

MESSAGES = [
    b"Subject: one\n\nfirst\n",
    b"Subject: two\n\n.dot line\n..two dots\nsecond\n",
    b"Subject: three\n\nno final newline",
]


def expected(stored: bytes) -> bytes:
    return stored if stored.endswith(b"\n") else stored + b"\n"


def connected(pop: FaultPop, *, security: Security = Security.NONE, timeout: float = 1.0, **kw):
    client = Client("127.0.0.1", pop.port, security, timeout=timeout, **kw)
    client.connect()
    return client


def logged_in(pop: FaultPop, **kwargs) -> Client:
    client = connected(pop, **kwargs)
    client.login("user", "pass")
    return client


def fetch(client: Client, numbers, **kwargs):
    """RETR ``numbers``: ({number: body}, {number: -ERR text}, the batch)."""
    batch = client.retrieve(numbers, client.list(), **kwargs)
    bodies, refused = {}, {}
    for message in batch:
        if message.refused is not None:
            refused[message.number] = message.refused
        else:
            bodies[message.number] = b"".join(message)
    return bodies, refused, batch


def fetch_until_broken(client: Client, numbers, **kwargs):
    """RETR ``numbers`` and read every body until the session breaks: (batch, the error)."""
    batch = client.retrieve(numbers, client.list(), **kwargs)
    try:
        for message in batch:
            message.drain()
    except Pop3Error as exc:
        return batch, exc
    return batch, None


@pytest.mark.parametrize("faults", [set(), {"no_pipelining"}, {"no_capa"}])
def test_it_retrieves_with_and_without_pipelining(faults):
    with FaultPop(MESSAGES * 50, faults=faults) as pop:
        client = logged_in(pop)
        bodies, _, batch = fetch(client, range(1, 151))
        client.quit()
    assert [bodies[n] for n in range(1, 151)] == [expected(m) for m in MESSAGES * 50]
    assert [r.octets for r in batch.proof.replies] == [wire_size(m) for m in MESSAGES * 50]
    assert [r.number for r in batch.proof.proven] == list(range(1, 151))
    assert batch.proof.pipelined is not bool(faults)


def test_it_streams_a_10_mb_single_line_in_bounded_memory():
    big = b"Subject: big\n\n" + b"y" * (10 * 1024 * 1024) + b"\n"
    with FaultPop([big]) as pop:
        client = logged_in(pop, timeout=5)
        listed = client.list()
        total = 0
        tracemalloc.start()
        try:
            for message in client.retrieve([1], listed):
                for piece in message:
                    total += len(piece)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        client.quit()
    assert total == len(big)
    assert peak < 4 * 1024 * 1024


def test_it_raises_protocol_error_when_the_connection_drops_mid_message():
    with FaultPop(MESSAGES, faults={"drop_mid_retr"}) as pop:
        client = logged_in(pop)
        with pytest.raises(Pop3ProtocolError, match="RETR 1") as caught:
            fetch(client, [1, 2, 3])
    assert "closed the connection in the middle of a message" in caught.value.message


def test_it_times_out_when_the_server_stops_mid_message():
    with FaultPop(MESSAGES, faults={"hang_mid_retr"}) as pop:
        client = logged_in(pop)
        started = time.monotonic()
        with pytest.raises(Pop3TimeoutError) as caught:
            fetch(client, [1])
    assert time.monotonic() - started < 3
    assert caught.value.transient is True
    assert "No answer from 127.0.0.1" in caught.value.message
    assert "RETR 1" in caught.value.message


def test_it_times_out_when_the_server_never_greets():
    with FaultPop(MESSAGES, faults={"hang_greeting"}) as pop:
        started = time.monotonic()
        with pytest.raises(Pop3TimeoutError):
            connected(pop)
    assert time.monotonic() - started < 3


def test_it_ends_a_session_with_a_trickling_server():
    # One byte every 50 ms keeps every read alive; the progress rule (here 1 KiB per 0.5 s
    # of waiting) ends the session all the same.
    with FaultPop(MESSAGES, faults={"trickle"}, trickle_delay=0.05) as pop:
        started = time.monotonic()
        with pytest.raises(Pop3TimeoutError) as caught:
            connected(pop, timeout=5, min_progress=1024, progress_window=0.5)
    assert time.monotonic() - started < 5
    assert "too slow to be a working server" in caught.value.message


def test_it_lets_a_slow_but_steady_server_finish():
    # About 1,000 bytes a second against a rule of 64 bytes per 0.2 s of waiting.
    with FaultPop(MESSAGES, faults={"trickle"}, trickle_delay=0.001) as pop:
        client = logged_in(pop, timeout=5, min_progress=64, progress_window=0.2)
        bodies, _, _ = fetch(client, [1])
        client.quit(deletions=False)
    assert bodies[1] == MESSAGES[0]


def test_it_does_not_quote_a_service_that_is_not_pop3():
    with (
        FaultPop(MESSAGES, faults={"garbage_greeting"}) as pop,
        pytest.raises(Pop3ProtocolError) as caught,
    ):
        connected(pop)
    assert "does not speak POP3" in caught.value.message
    assert "Welcome" not in caught.value.message  # the other service's banner stays out


@pytest.mark.parametrize("fault", ["garbage_retr", "long_reply"])
def test_it_names_the_command_whose_reply_is_broken(fault):
    with FaultPop(MESSAGES, faults={fault}) as pop:
        client = logged_in(pop)
        with pytest.raises(Pop3ProtocolError) as caught:
            fetch(client, [1])
    assert "broke the reply to RETR 1" in caught.value.message


def test_it_reports_a_refused_message_and_keeps_the_stream_in_step():
    with FaultPop(MESSAGES, gone={2}) as pop:
        client = logged_in(pop)
        bodies, refused, batch = fetch(client, [1, 2, 3])
        client.noop()  # still in step with the server
        client.quit(deletions=False)
    assert sorted(bodies) == [1, 3]
    assert refused == {2: "[SYS/PERM] Message cannot be read"}
    assert [r.number for r in batch.proof.proven] == [1, 3]
    assert batch.leftover == []


def test_it_proves_nothing_after_a_reply_that_runs_on_in_a_pipeline():
    # Message 2 lacks its terminating line: its reply swallows message 3's. Pipelined, the
    # replies after it would be credited to the wrong message numbers.
    messages = [b"Subject: %d\n\nbody %d\n" % (n, n) for n in range(1, 7)]
    with FaultPop(messages, broken={2: "no_terminator"}) as pop:
        client = logged_in(pop)
        batch, error = fetch_until_broken(client, range(1, 7))
    # The replies ran one short: the NOOP after the last RETR was read as its status and
    # its body never ended.
    assert isinstance(error, Pop3TimeoutError)
    assert batch.proof.proven == []  # out of step: nothing is proven, not even message 1
    assert batch.proof.in_step is False
    assert batch.proof.replies[1].octets > 2 * batch.proof.replies[1].listed
    assert batch.leftover == [1, 2, 3, 4, 5, 6]


def test_it_reads_again_one_at_a_time_what_a_pipeline_could_not_prove():
    # The server announces a tenth of message 2's size: the stream stays in step, but the
    # pipelined replies from message 2 on are not proven; one at a time they are.
    messages = [b"Subject: %d\n\n" % n + b"x" * 500 + b"\n" for n in range(1, 6)]
    with FaultPop(messages, broken={2: "lie_size"}) as pop:
        client = logged_in(pop)
        _bodies, _, batch = fetch(client, range(1, 6))
        assert [r.number for r in batch.proof.proven] == [1]
        assert batch.proof.in_step is True
        assert batch.leftover == [2, 3, 4, 5]
        again, _, retry = fetch(client, batch.leftover, pipeline=False)
        client.quit(deletions=False)
    assert [r.number for r in retry.proof.proven] == [2, 3, 4, 5]
    assert {n: again[n] for n in again} == {n: messages[n - 1] for n in (2, 3, 4, 5)}
    assert retry.proof.first_inexact().number == 2  # evidence, not an error, one at a time


def test_it_proves_one_at_a_time_by_the_status_line_that_follows():
    messages = [b"Subject: %d\n\nbody %d\n" % (n, n) for n in range(1, 5)]
    with FaultPop(messages, broken={3: "early_dot"}) as pop:
        client = logged_in(pop)
        batch, error = fetch_until_broken(client, range(1, 5), pipeline=False)
    # Message 3 ended early; the rest of it stood where RETR 4's status belongs.
    assert isinstance(error, Pop3ProtocolError)
    assert "broke the reply to RETR 4" in error.message
    assert [r.number for r in batch.proof.proven] == [1, 2]


def test_it_enables_utf8_and_so_gets_the_message_not_a_notice():
    eight_bit = b"Subject: \xc3\xa9t\xc3\xa9\n\nna\xc3\xafve\n"
    with FaultPop([eight_bit, MESSAGES[0]], faults={"utf8_notice"}) as pop:
        client = logged_in(pop)
        assert client.utf8 is True
        bodies, _, _ = fetch(client, [1, 2])
        client.quit(deletions=False)
    assert pop.commands()[:2] == ["CAPA", "UTF8"]  # before login (RFC 6856 §2)
    assert bodies[1] == eight_bit
    assert NOTICE not in bodies.values()


def test_it_fetches_nothing_when_utf8_is_offered_but_refused():
    with (
        FaultPop(MESSAGES, faults={"utf8_refused"}) as pop,
        pytest.raises(Pop3ProtocolError) as caught,
    ):
        connected(pop)
    assert "refused to enable it" in caught.value.message
    assert caught.value.transient is False
    assert not {"USER", "PASS", "AUTH"} & set(pop.commands())


def test_it_ignores_a_failed_quit_when_nothing_was_deleted():
    with FaultPop(MESSAGES, faults={"quit_err"}) as pop:
        client = logged_in(pop)
        client.quit(deletions=False)
        client = logged_in(pop)
        client.dele_many([1])
        with pytest.raises(Pop3ProtocolError, match="could not apply the deletions"):
            client.quit(deletions=True)


def test_it_returns_none_when_the_server_has_no_uidl():
    with FaultPop(MESSAGES, faults={"no_uidl"}) as pop:
        client = logged_in(pop)
        assert client.uidl() is None
        assert client.list() == {n: wire_size(m) for n, m in enumerate(MESSAGES, 1)}
        client.quit()


def test_it_passes_duplicate_uidls_through():
    with FaultPop(MESSAGES, uidls=["same", "same", "other"]) as pop:
        client = logged_in(pop)
        assert client.uidl() == {1: "same", 2: "same", 3: "other"}
        client.quit()


def test_it_counts_octets_as_received_not_as_listed():
    with FaultPop(MESSAGES, faults={"wrong_list_sizes"}) as pop:
        client = logged_in(pop)
        listed = client.list()
        _, _, batch = fetch(client, listed, pipeline=False)
        client.quit()
    assert all(r.octets == listed[r.number] - 10 for r in batch.proof.replies)
    assert [r.number for r in batch.proof.proven] == [1, 2, 3]  # one at a time: proven


def test_it_rejects_a_password_as_not_transient():
    with FaultPop(MESSAGES, faults={"reject_password"}) as pop:
        client = connected(pop)
        with pytest.raises(Pop3AuthError) as caught:
            client.login("user", "pass", method="user")
    assert caught.value.transient is False
    assert caught.value.message.startswith("The ISP rejected the username or password")


def test_it_treats_a_locked_mailbox_as_transient():
    with FaultPop(MESSAGES, faults={"in_use"}) as pop:
        client = connected(pop)
        with pytest.raises(Pop3AuthError) as caught:
            client.login("user", "pass")
    assert caught.value.transient is True
    assert "busy" in caught.value.message


@pytest.mark.parametrize("method", ["user", "apop", "sasl-plain", "auto"])
def test_it_logs_in_with_each_method(method):
    with FaultPop(MESSAGES) as pop:
        client = connected(pop)
        client.login("user", "pass", method=method)
        assert client.stat() == (3, sum(map(wire_size, MESSAGES)))
        client.quit()
    verbs = {"user": "PASS", "apop": "APOP", "sasl-plain": "AUTH", "auto": "AUTH"}
    assert verbs[method] in pop.commands()


def test_it_never_sends_credentials_when_starttls_is_not_offered():
    # connect() refuses already: login() is never reached, no credential is sent.
    with FaultPop(MESSAGES) as pop, pytest.raises(Pop3StartTlsRefusedError):
        connected(pop, security=Security.STARTTLS)
    assert pop.commands() == ["CAPA"]


def test_it_never_sends_credentials_when_stls_is_refused():
    with (
        FaultPop(MESSAGES, faults={"offer_stls"}) as pop,
        pytest.raises(Pop3StartTlsRefusedError) as caught,
    ):
        connected(pop, security=Security.STARTTLS)
    assert pop.commands() == ["CAPA", "STLS"]
    assert caught.value.transient is False


def test_it_refuses_line_breaks_in_credentials_before_sending_anything():
    with FaultPop(MESSAGES) as pop:
        client = connected(pop)
        with pytest.raises(ValueError, match="username"):
            client.login("user\r\nDELE 1", "pass")
        with pytest.raises(ValueError, match="password") as caught:
            client.login("user", "pa\nss\0")
        client.quit()
    assert "pa\nss" not in str(caught.value)
    assert pop.commands() == ["CAPA", "QUIT"]
    assert pop.deleted == []


def test_it_keeps_the_password_out_of_reprs_and_errors():
    secret = "Very-Secret-9"
    auth = UserPass("bob", secret)
    assert secret not in repr(auth)
    with FaultPop(MESSAGES, password=secret + "x") as pop:
        client = connected(pop)
        with pytest.raises(Pop3AuthError) as caught:
            client.authenticate(auth)
        assert secret not in repr(client)
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)


def test_it_applies_deletions_only_at_quit():
    with FaultPop(MESSAGES) as pop:
        client = logged_in(pop)
        assert client.dele_many([1]) == ([1], [])
        client.close()
        assert pop.deleted == []
        client = logged_in(pop)
        client.dele_many([2, 3])
        client.quit()
        assert pop.deleted == [2, 3]
        client = logged_in(pop)
        assert client.stat()[0] == 1
        client.close()


def test_it_reports_a_refused_connection():
    port = free_port()
    with pytest.raises(Pop3ConnectError) as caught:
        Client("127.0.0.1", port, Security.SSL, timeout=1).connect()
    assert caught.value.message == f"Connection refused on 127.0.0.1:{port}."
    assert caught.value.transient is True


def _tls_server_context(cert, key) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_it_names_an_expired_certificate(tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path, expired=True)
    with FaultPop(MESSAGES, tls=_tls_server_context(cert, key)) as pop:
        trusted = ssl.create_default_context(cafile=str(ca))
        client = Client("127.0.0.1", pop.port, Security.SSL, ssl_context=trusted, timeout=2)
        with pytest.raises(Pop3TlsError) as caught:
            client.connect()
    assert "expired" in caught.value.message
    assert caught.value.transient is False


def test_it_names_a_self_signed_certificate(tmp_path):
    cert, key = make_self_signed(tmp_path)
    with FaultPop(MESSAGES, tls=_tls_server_context(cert, key)) as pop:
        client = Client("127.0.0.1", pop.port, Security.SSL, timeout=2)
        with pytest.raises(Pop3TlsError) as caught:
            client.connect()
    assert "self-signed" in caught.value.message
    assert pop.log == []


def test_it_works_over_implicit_tls_with_a_trusted_ca(tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path)
    with FaultPop(MESSAGES, tls=_tls_server_context(cert, key)) as pop:
        trusted = ssl.create_default_context(cafile=str(ca))
        client = Client("localhost", pop.port, Security.SSL, ssl_context=trusted, timeout=2)
        client.connect()
        client.login("user", "pass")
        bodies, _, _ = fetch(client, [2])
        client.quit()
    assert bodies[2] == MESSAGES[1]


def test_it_refuses_commands_after_an_error():
    with FaultPop(MESSAGES, faults={"drop_mid_retr"}) as pop:
        client = logged_in(pop)
        with pytest.raises(Pop3ProtocolError):
            fetch(client, [1])
        assert client.broken
        with pytest.raises(Pop3ProtocolError, match="closed after an earlier error"):
            client.noop()


def test_it_explains_a_starttls_that_was_accepted_and_then_failed():
    with (
        FaultPop(MESSAGES, faults={"stls_then_plain"}) as pop,
        pytest.raises(Pop3TlsError) as caught,
    ):
        connected(pop, security=Security.STARTTLS, timeout=2)
    assert caught.value.message.startswith("The server accepted STARTTLS, but then")
    # After STLS only the TLS handshake's bytes went out: no command in plain text.
    assert pop.commands()[:2] == ["CAPA", "STLS"]
    assert not {"USER", "PASS", "AUTH", "APOP"} & set(pop.commands())
