"""The POP3 client against a misbehaving server (tests/servers/faultpop.py) and raw bytes."""

from __future__ import annotations

import io
import random
import ssl
import time
import tracemalloc

import pytest

from devserver.certs import make_ca_and_cert, make_self_signed
from mapping.pop3 import (
    Client,
    Pop3AuthError,
    Pop3ConnectError,
    Pop3MessageGoneError,
    Pop3ProtocolError,
    Pop3StartTlsRefusedError,
    Pop3TimeoutError,
    Pop3TlsError,
    Security,
    UserPass,
)
from mapping.pop3_stream import ReplyReader
from tests.servers.dovecot import free_port
from tests.servers.faultpop import FaultPop, wire_body, wire_size

MESSAGES = [
    b"Subject: one\n\nfirst\n",
    b"Subject: two\n\n.dot line\n..two dots\nsecond\n",
    b"Subject: three\n\nno final newline",
]


def expected(stored: bytes) -> bytes:
    return stored if stored.endswith(b"\n") else stored + b"\n"


def connected(pop: FaultPop, *, security: Security = Security.NONE, timeout: float = 1.0):
    client = Client("127.0.0.1", pop.port, security, timeout=timeout)
    client.connect()
    return client


def logged_in(pop: FaultPop, **kwargs) -> Client:
    client = connected(pop, **kwargs)
    client.login("user", "pass")
    return client


class Recorder:
    """Callbacks for retr_many that keep what each message produced."""

    def __init__(self) -> None:
        self.sinks: dict[int, io.BytesIO] = {}
        self.done: dict[int, bytes] = {}
        self.octets: dict[int, int] = {}
        self.errors: dict[int, Pop3MessageGoneError] = {}
        self.aborted: list[int] = []

    def open_sink(self, n: int) -> io.BytesIO:
        return self.sinks.setdefault(n, io.BytesIO())

    def on_done(self, n: int, sink: io.BytesIO, octets: int) -> None:
        self.done[n], self.octets[n] = sink.getvalue(), octets

    def on_error(self, n: int, err: Pop3MessageGoneError) -> None:
        self.errors[n] = err

    def on_abort(self, n: int, sink: io.BytesIO) -> None:
        self.aborted.append(n)

    def run(self, client: Client, msgnos, **kwargs) -> None:
        client.retr_many(msgnos, self.open_sink, self.on_done, on_abort=self.on_abort, **kwargs)


@pytest.mark.parametrize("faults", [set(), {"no_pipelining"}, {"no_capa"}])
def test_it_retrieves_with_and_without_pipelining(faults):
    with FaultPop(MESSAGES * 50, faults=faults) as pop:
        client = logged_in(pop)
        rec = Recorder()
        rec.run(client, range(1, 151))
        client.quit()
    assert [rec.done[n] for n in range(1, 151)] == [expected(m) for m in MESSAGES * 50]
    assert [rec.octets[n] for n in range(1, 151)] == [wire_size(m) for m in MESSAGES * 50]


def test_it_streams_a_10_mb_single_line_in_bounded_memory():
    big = b"Subject: big\n\n" + b"y" * (10 * 1024 * 1024) + b"\n"
    with FaultPop([big]) as pop:
        client = logged_in(pop, timeout=5)
        sizes = []

        class Sink:
            def write(self, data: bytes) -> None:
                sizes.append(len(data))

        tracemalloc.start()
        try:
            octets = client.retr_to(1, Sink())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        client.quit()
    assert sum(sizes) == len(big)
    assert octets == wire_size(big)
    assert peak < 4 * 1024 * 1024


def test_it_raises_protocol_error_when_the_connection_drops_mid_message():
    with FaultPop(MESSAGES, faults={"drop_mid_retr"}) as pop:
        client = logged_in(pop)
        rec = Recorder()
        with pytest.raises(Pop3ProtocolError, match="in the middle of message 1"):
            rec.run(client, [1, 2, 3])
    assert rec.done == {}
    assert rec.aborted == [1]


def test_it_times_out_when_the_server_stops_mid_message():
    with FaultPop(MESSAGES, faults={"hang_mid_retr"}) as pop:
        client = logged_in(pop)
        started = time.monotonic()
        with pytest.raises(Pop3TimeoutError) as caught:
            client.retr_to(1, io.BytesIO())
    assert time.monotonic() - started < 3
    assert caught.value.transient is True
    assert "No answer from 127.0.0.1" in caught.value.message


def test_it_times_out_when_the_server_never_greets():
    with FaultPop(MESSAGES, faults={"hang_greeting"}) as pop:
        started = time.monotonic()
        with pytest.raises(Pop3TimeoutError):
            connected(pop)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("fault", ["garbage_greeting", "garbage_retr", "long_reply"])
def test_it_raises_protocol_error_on_garbage(fault):
    with FaultPop(MESSAGES, faults={fault}) as pop, pytest.raises(Pop3ProtocolError) as caught:
        client = logged_in(pop)
        client.retr_to(1, io.BytesIO())
    assert "garbage" in caught.value.message


def test_it_reports_a_vanished_message_and_keeps_the_stream_in_step():
    with FaultPop(MESSAGES, gone={2}) as pop:
        client = logged_in(pop)
        rec = Recorder()
        rec.run(client, [1, 2, 3], on_error=rec.on_error)
        client.noop()  # still in step with the server
        client.quit()
    assert sorted(rec.done) == [1, 3]
    assert list(rec.errors) == [2]
    assert rec.errors[2].msgno == 2
    assert 2 not in rec.sinks  # no sink is opened for a message the server refused


def test_it_raises_the_vanished_message_after_delivering_the_others():
    with FaultPop(MESSAGES, gone={1}, faults={"no_pipelining"}) as pop:
        client = logged_in(pop)
        rec = Recorder()
        with pytest.raises(Pop3MessageGoneError) as caught:
            rec.run(client, [1, 2, 3])
    assert caught.value.msgno == 1
    assert sorted(rec.done) == [2, 3]


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
        rec = Recorder()
        rec.run(client, listed)
        client.quit()
    assert all(rec.octets[n] == listed[n] - 10 for n in listed)


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
    with FaultPop(MESSAGES) as pop, pytest.raises(Pop3StartTlsRefusedError):
        client = connected(pop, security=Security.STARTTLS)
        client.login("user", "pass")
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
    assert secret not in str(caught.value) and secret not in repr(caught.value)


def test_it_applies_deletions_only_at_quit():
    with FaultPop(MESSAGES) as pop:
        client = logged_in(pop)
        client.dele(1)
        client.close()
        assert pop.deleted == []
        client = logged_in(pop)
        client.dele(2)
        client.quit()
        assert pop.deleted == [2]
        client = logged_in(pop)
        assert client.stat()[0] == 2
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
        sink = io.BytesIO()
        client.retr_to(2, sink)
        client.quit()
    assert sink.getvalue() == MESSAGES[1]


def test_it_refuses_commands_after_an_error():
    with FaultPop(MESSAGES, faults={"drop_mid_retr"}) as pop:
        client = logged_in(pop)
        with pytest.raises(Pop3ProtocolError):
            client.retr_to(1, io.BytesIO())
        with pytest.raises(Pop3ProtocolError, match="closed after an earlier error"):
            client.noop()


def test_it_unstuffs_any_byte_sequence_split_anywhere():
    # The reader against a byte feed: random content, random recv sizes down to one byte.
    rnd = random.Random(1939)
    pieces = [b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\x00", b"\xff", b"x" * 40]
    for _ in range(2000):
        messages = [b"".join(rnd.choices(pieces, k=rnd.randint(0, 30))) for _ in range(3)]
        wire = b"".join(b"+OK\r\n" + wire_body(m) for m in messages) + b"+OK end\r\n"
        feed = io.BytesIO(wire)

        def recv(size: int, feed: io.BytesIO = feed) -> bytes:
            return feed.read(min(size, rnd.randint(1, 9)))

        reader = ReplyReader(recv, chunk=rnd.randint(1, 16))
        for message in messages:
            assert reader.read_line(100) == b"+OK"
            out: list[bytes] = []
            assert reader.read_body(out.append) == wire_size(message)
            assert b"".join(out) == (expected(message) if message else b"")
        assert reader.read_line(100) == b"+OK end"
