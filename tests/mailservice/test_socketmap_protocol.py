"""The socketmap protocol: bytes in, requests out; a real unix socket for the server."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from pathlib import Path

import pytest

from mailservice.socketmap import (
    NOTFOUND,
    NetstringDecoder,
    Reply,
    Request,
    SocketmapClient,
    SocketmapProtocolError,
    SocketmapServer,
    encode_netstring,
    ok,
)


def test_it_parses_one_request():
    assert NetstringDecoder().feed(b"19:domains example.com,") == [
        Request("domains", "example.com")
    ]


def test_it_parses_requests_split_and_joined_across_reads():
    decoder = NetstringDecoder()
    assert decoder.feed(b"19:domains exa") == []
    assert decoder.feed(b"mple.com,11:mailboxes") == [Request("domains", "example.com")]
    assert decoder.feed(b" a") == []
    assert decoder.pending
    assert decoder.feed(b",") == [Request("mailboxes", "a")]


def test_it_keeps_a_key_with_spaces_and_utf8():
    payload = "sender_login jörg müller@example.com".encode()
    request = NetstringDecoder().feed(encode_netstring(payload))[0]
    assert request == Request("sender_login", "jörg müller@example.com")


@pytest.mark.parametrize(
    "data",
    [
        b"x7:domains,",  # length is not a number
        b"07:domains a,",  # leading zero
        b"1234567:",  # more length digits than any allowed request
        b"9:domains a;",  # not terminated by a comma
        b"7:domains,",  # no key
        b"9:dom\xe4ins a,",  # not UTF-8
        b"11:domains a\nb,",  # control character in the key
        b"10:dom.ins ab,",  # map name is not a word
    ],
)
def test_it_rejects_malformed_requests(data):
    with pytest.raises(SocketmapProtocolError):
        NetstringDecoder().feed(data)


def test_it_rejects_oversized_requests_before_reading_them():
    decoder = NetstringDecoder(max_request=100)
    with pytest.raises(SocketmapProtocolError, match="longer than 100"):
        decoder.feed(b"101:")


def test_it_encodes_replies_as_netstrings():
    assert ok("example.com").encode() == b"14:OK example.com,"
    assert NOTFOUND.encode() == b"9:NOTFOUND ,"
    with pytest.raises(SocketmapProtocolError):
        encode_netstring(b"x" * 100_001)


# --- the server on a real socket --------------------------------------------------------


@pytest.fixture
def socket_dir():
    path = Path(tempfile.mkdtemp(prefix="aamail-sm-"))
    yield path / "run"
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _serve(path: Path, handler, **kwargs):
    import threading

    server = SocketmapServer(
        path, handler, allowed_uids=kwargs.pop("allowed_uids", {os.getuid()}), **kwargs
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    return server, thread


def _stop(server, thread):
    server.shutdown()
    server.server_close()
    thread.join(5)


def _echo(request: Request) -> Reply:
    if request.key == "boom":
        raise RuntimeError("database is down")
    return ok(f"{request.name}={request.key}") if request.key != "none" else NOTFOUND


def test_it_answers_many_requests_on_one_connection(socket_dir):
    server, thread = _serve(socket_dir / "map.sock", _echo)
    try:
        with SocketmapClient(socket_dir / "map.sock") as client:
            assert client.query("domains", "example.com") == Reply("OK", "domains=example.com")
            assert client.query("domains", "none") == Reply("NOTFOUND", "")
            # An error in a lookup is TEMP, never NOTFOUND: the mail waits instead of bouncing.
            assert client.query("domains", "boom") == Reply("TEMP", "lookup failed")
            assert client.query("mailboxes", "a@b") == Reply("OK", "mailboxes=a@b")
    finally:
        _stop(server, thread)


def test_it_answers_perm_and_hangs_up_on_a_malformed_request(socket_dir):
    server, thread = _serve(socket_dir / "map.sock", _echo)
    try:
        with SocketmapClient(socket_dir / "map.sock") as client:
            client.sock.sendall(b"5:hello,")
            reply = client.read_reply()
            assert reply.status == "PERM"
            assert client.sock.recv(10) == b""  # closed
    finally:
        _stop(server, thread)


def test_it_answers_perm_and_hangs_up_on_an_oversized_request(socket_dir):
    server, thread = _serve(socket_dir / "map.sock", _echo, max_request=64)
    try:
        with SocketmapClient(socket_dir / "map.sock") as client:
            client.sock.sendall(b"65:domains " + b"a" * 57 + b",")
            assert client.read_reply().status == "PERM"
            assert client.sock.recv(10) == b""
    finally:
        _stop(server, thread)


def test_it_refuses_a_peer_whose_uid_is_not_allowed(socket_dir):
    server, thread = _serve(socket_dir / "map.sock", _echo, allowed_uids={424242})
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(str(socket_dir / "map.sock"))
        sock.sendall(b"11:domains a.b,")
        # Hung up without answering (a reset when it did not even read the request).
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
        sock.close()
    finally:
        _stop(server, thread)


def test_it_creates_a_protected_socket(socket_dir):
    server, thread = _serve(socket_dir / "map.sock", _echo)
    try:
        assert (socket_dir.stat().st_mode & 0o777) == 0o750
        assert ((socket_dir / "map.sock").stat().st_mode & 0o777) == 0o660
    finally:
        _stop(server, thread)
    assert not (socket_dir / "map.sock").exists()


def test_it_refuses_a_world_writable_socket_directory(socket_dir):
    socket_dir.mkdir(parents=True)
    socket_dir.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by everyone"):
        SocketmapServer(socket_dir / "map.sock", _echo, allowed_uids={os.getuid()})


def test_it_queues_a_burst_of_connections_while_busy(socket_dir):
    # Postfix starts processes in bursts; each connects at once. A full listen backlog makes
    # connect() fail with EAGAIN, which Postfix treats as a lookup error (mail deferred).
    server = SocketmapServer(socket_dir / "map.sock", _echo, allowed_uids={os.getuid()})
    clients = []
    try:
        for _ in range(40):  # not accepted yet: all wait in the backlog
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            clients.append(sock)
            sock.connect(str(socket_dir / "map.sock"))
    finally:
        for sock in clients:
            sock.close()
        server.server_close()
