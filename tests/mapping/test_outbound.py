"""outbound: every ISP connection resolves once, vets every address, connects to what it vetted."""

from __future__ import annotations

import socket

import pytest

from mapping import outbound
from mapping.outbound import Policy, TargetRefusedError
from tests.servers.dovecot import free_port

OPEN = Policy(allow_private=True)
STRICT = Policy(allow_private=False)

ALWAYS_REFUSED = [
    "169.254.169.254",
    "fd00:ec2::254",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "::169.254.169.254",
    "64:ff9b::169.254.169.254",
    "2002:a9fe:a9fe::1",
    "0.0.0.0",
    "0.1.2.3",
    "::",
    "::ffff:0.0.0.0",
    "169.254.1.1",
    "fe80::1",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    "240.0.0.1",
    "100.100.100.200",
]


@pytest.fixture
def no_connect(monkeypatch):
    """Record (and forbid) every TCP connect and every name lookup."""
    calls = []

    def connect(self, address):
        calls.append(("connect", address))
        raise AssertionError(f"a connection to {address} was attempted")

    def lookup(*args, **kwargs):
        calls.append(("lookup", args))
        raise AssertionError("a name lookup was attempted")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(outbound, "_getaddrinfo", lookup)
    return calls


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_it_refuses_metadata_link_local_and_unspecified_even_when_private_is_allowed(
    address, no_connect
):
    with pytest.raises(TargetRefusedError) as caught:
        outbound.resolve(address, 995, policy=OPEN, timeout=1)
    assert "AAMail does not connect to" in caught.value.message
    assert no_connect == []


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.5", "fd12::1"])
def test_it_refuses_loopback_and_private_unless_the_setting_allows(address, no_connect):
    with pytest.raises(TargetRefusedError) as caught:
        outbound.resolve(address, 995, policy=STRICT, timeout=1)
    assert "ISP_ALLOW_PRIVATE_ADDRESSES" in caught.value.message
    assert [str(a) for a in outbound.resolve(address, 995, policy=OPEN, timeout=1)] == [address]
    assert no_connect == []


def test_it_says_which_name_led_to_a_metadata_address(monkeypatch, no_connect):
    monkeypatch.setattr(
        outbound,
        "_getaddrinfo",
        lambda host, port, **kw: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
        ],
    )
    with pytest.raises(TargetRefusedError) as caught:
        outbound.resolve("mail.rebind.example", 995, policy=OPEN, timeout=1)
    # One bad address refuses the whole name (a rebinding name mixes good and bad).
    assert "mail.rebind.example (169.254.169.254)" in caught.value.message
    assert "cloud metadata" in caught.value.message
    assert not [c for c in no_connect if c[0] == "connect"]


def test_it_resolves_once_and_connects_to_the_vetted_address(monkeypatch):
    lookups = []

    def lookup(host, port, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(outbound, "_getaddrinfo", lookup)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        addresses = outbound.resolve("mail.isp.example", port, policy=OPEN, timeout=1)
        sock, used = outbound.connect(addresses, port, timeout=1)
        with sock:
            assert sock.getpeername() == ("127.0.0.1", port)
    assert str(used) == "127.0.0.1"
    assert lookups == ["mail.isp.example"]


def test_it_takes_only_addresses_it_vetted():
    forged = outbound.VettedAddress(outbound.ipaddress.ip_address("169.254.169.254"), object())
    with pytest.raises(TypeError):
        outbound.connect([forged], 80, timeout=1)


def test_it_checks_the_allow_list_before_any_lookup(no_connect):
    policy = Policy(allow_private=False, allowed_targets=("mail.isp.example:995",))
    with pytest.raises(TargetRefusedError) as caught:
        outbound.resolve("other.example", 995, policy=policy, timeout=1)
    assert "ISP_ALLOWED_TARGETS" in caught.value.message
    with pytest.raises(TargetRefusedError):
        outbound.resolve("mail.isp.example", 110, policy=policy, timeout=1)
    with pytest.raises(TargetRefusedError):
        outbound.resolve("127.0.0.1", 995, policy=policy, timeout=1)
    assert outbound.listed("MAIL.isp.example.", 995, policy)
    assert no_connect == []


def test_it_lets_a_listed_address_be_private(no_connect):
    policy = Policy(allow_private=False, allowed_targets=("[::1]:*", "127.0.0.1:110"))
    assert [str(a) for a in outbound.resolve("::1", 110, policy=policy, timeout=1)] == ["::1"]
    assert [str(a) for a in outbound.resolve("127.0.0.1", 110, policy=policy, timeout=1)]
    with pytest.raises(TargetRefusedError):
        outbound.resolve("127.0.0.1", 995, policy=policy, timeout=1)
    # Link-local and metadata stay refused whatever the list says.
    metadata = Policy(allowed_targets=("169.254.169.254:*",))
    with pytest.raises(TargetRefusedError, match="cloud metadata"):
        outbound.resolve("169.254.169.254", 80, policy=metadata, timeout=1)
    assert no_connect == []


def test_it_accepts_a_name_whose_addresses_are_all_listed(monkeypatch):
    monkeypatch.setattr(
        outbound,
        "_getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 995))],
    )
    policy = Policy(allowed_targets=("127.0.0.1:995",))
    assert [str(a) for a in outbound.resolve("lab-isp.test", 995, policy=policy, timeout=1)] == [
        "127.0.0.1"
    ]
    with pytest.raises(TargetRefusedError):
        outbound.resolve("lab-isp.test", 110, policy=policy, timeout=1)


def test_it_reports_a_closed_port_in_words():
    port = free_port()
    addresses = outbound.resolve("127.0.0.1", port, policy=OPEN, timeout=1)
    with pytest.raises(outbound.ConnectError) as caught:
        outbound.connect(addresses, port, timeout=1)
    assert caught.value.message.startswith(f"Connection refused on 127.0.0.1:{port}")


def test_it_gives_up_on_a_slow_resolver(monkeypatch):
    import threading

    release = threading.Event()

    def slow(*args, **kwargs):
        release.wait(5)
        return []

    monkeypatch.setattr(outbound, "_getaddrinfo", slow)
    try:
        with pytest.raises(outbound.ResolveError) as caught:
            outbound.resolve("slow.example", 995, policy=OPEN, timeout=0.2)
    finally:
        release.set()
    assert "did not resolve within" in caught.value.message


def test_it_explains_a_name_that_does_not_exist(monkeypatch):
    def unknown(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(outbound, "_getaddrinfo", unknown)
    with pytest.raises(outbound.ResolveError) as caught:
        outbound.resolve("mail.isp.invalid", 995, policy=OPEN, timeout=1)
    assert "could not be resolved (Name or service not known)" in caught.value.message
