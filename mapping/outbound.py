"""Every connection the product opens to an ISP goes through here: the one outbound seam.

Fetch, Detect, the relay route handed to Postfix and the OAuth endpoints all reach hosts a
console user typed, which is a classic SSRF hole (appsmith, halo, mailpit's IPv6 bypass;
design.md: "A guard on one path is not a guard"). So:

- when ``ISP_ALLOWED_TARGETS`` is set, the target must be in it: by the name as typed,
  checked before any lookup (a DNS query is already traffic the user chose), or, when the
  list holds addresses, by every address the name resolves to;
- the name is resolved exactly once; every address it yields is vetted, and one bad address
  refuses the whole target (a rebinding name may mix a public address with 169.254.169.254);
- link-local, cloud-metadata, unspecified, multicast, broadcast and reserved addresses are
  always refused, also when spelt as IPv6 (``::ffff:169.254.169.254``, NAT64, 6to4, ...);
  loopback, private, CGNAT and other non-global ranges only when
  ``ISP_ALLOW_PRIVATE_ADDRESSES`` is on or the target is listed in ``ISP_ALLOWED_TARGETS``;
- ``connect()`` takes only ``VettedAddress`` objects, which only ``resolve()`` makes, and
  connects to the literal address: no second lookup that could answer differently.

A refusal is an ``OutboundError`` whose ``message`` is a sentence for an administrator.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services. 169.254.169.254 is link-local anyway; the others are not, so
# they are named here (AWS IPv6, ECS, Alibaba, Azure wire server, Oracle/GCP aliases).
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
        "192.0.0.192",
    )
)
_PRIVATE = "a loopback or private network address"
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class OutboundError(Exception):
    """Base: ``message`` is a sentence for an administrator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TargetRefusedError(OutboundError):
    """The target or one of its addresses is not allowed; nothing was connected."""


class ResolveError(OutboundError):
    """The name did not resolve (or not in time)."""


class ConnectError(OutboundError):
    """No vetted address accepted a TCP connection."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Policy:
    """What the product may reach; ``from_settings()`` reads the ISP_* settings."""

    allow_private: bool = False
    allowed_targets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls) -> Policy:
        from django.conf import settings

        return cls(
            allow_private=bool(settings.ISP_ALLOW_PRIVATE_ADDRESSES),
            allowed_targets=tuple(settings.ISP_ALLOWED_TARGETS or ()),
        )


@dataclass(frozen=True)
class VettedAddress:
    """An address ``resolve()`` checked; ``connect()`` accepts nothing else."""

    ip: IPAddress
    _token: object

    def __str__(self) -> str:
        return str(self.ip)


_TOKEN = object()  # only this module can make VettedAddress values


# --- the allow-list -----------------------------------------------------------------------


def _parse_target(entry: str) -> tuple[str, str]:
    entry = entry.strip().lower()
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, rest.lstrip(":") or "*"
    if entry.count(":") > 1:  # a bare IPv6 literal
        return entry, "*"
    host, _, port = entry.partition(":")
    return host.rstrip("."), port or "*"


def listed(host: str, port: int, policy: Policy) -> bool:
    """Whether ``host`` (a name as typed, or an address) and port are in ISP_ALLOWED_TARGETS."""
    name = host.strip().lower().strip("[]").rstrip(".")
    for entry in policy.allowed_targets:
        allowed_host, allowed_port = _parse_target(entry)
        if allowed_host == name and allowed_port in ("*", str(port)):
            return True
    return False


def _not_listed(host: str, port: int) -> TargetRefusedError:
    return TargetRefusedError(
        f"{host}:{port} is not in the list of servers AAMail may connect to "
        "(ISP_ALLOWED_TARGETS); ask the operator of this server to add it."
    )


# --- vetting ------------------------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, bool] | None:
    """The IPv4 address an IPv6 spelling carries, and whether the v4 verdict is final."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
        return ip.ipv4_mapped, True
    as_int = int(ip)
    if as_int >> 32 == 0 and as_int > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(as_int & 0xFFFFFFFF), True
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(as_int & 0xFFFFFFFF), False
    if ip.sixtofour is not None:
        return ip.sixtofour, False
    if ip.teredo is not None:
        return ip.teredo[1], False
    return None


def refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why the product may not connect to `ip` (a phrase), or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        decided, why = _carried_ipv4_refusal(ip, allow_private=allow_private)
        if decided:
            return why
    why = _special_use(ip)
    if why is None and (ip.is_loopback or ip.is_private or not ip.is_global) and not allow_private:
        why = _PRIVATE
    return why


def _carried_ipv4_refusal(
    ip: ipaddress.IPv6Address, *, allow_private: bool
) -> tuple[bool, str | None]:
    """(decided, why) for the IPv4 address an IPv6 spelling carries: a refused one is refused
    in any spelling; an allowed one decides only where the spelling is final (mapped)."""
    embedded = _embedded_ipv4(ip)
    if embedded is None:
        return False, None
    v4, final = embedded
    why = refusal(v4, allow_private=allow_private)
    if why is not None:
        return True, f"{why} written in IPv6 form"
    return final, None


def _special_use(ip: IPAddress) -> str | None:
    """The special-use range `ip` is in, as a phrase; None for an ordinary address."""
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified or (ip.version == 4 and ip in _THIS_NETWORK):
        return "the unspecified (“this host”) address"
    if ip.is_link_local or (ip.version == 6 and ip.is_site_local):
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    # ::1 sits inside IPv6's reserved ::/8, so loopback is decided before "reserved".
    if ip.is_reserved and not ip.is_loopback:
        return "a reserved address"
    return None


# --- resolution ---------------------------------------------------------------------------

# The one lookup seam: tests replace it to simulate names without touching DNS.
_getaddrinfo: Callable[..., list] = socket.getaddrinfo


def _lookup(host: str, port: int, timeout: float) -> list[IPAddress]:
    # getaddrinfo has no timeout of its own: run it in a thread and stop waiting at the
    # deadline (the thread ends when the resolver gives up; it holds nothing of ours).
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["infos"] = _getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # handed over to the waiting thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="outbound-resolve", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    if worker.is_alive():
        raise ResolveError(
            f"The name {host} did not resolve within {timeout:.0f} s; check the server's DNS."
        )
    error = box.get("error")
    if isinstance(error, socket.gaierror):
        raise ResolveError(
            f"The name {host} could not be resolved ({error.strerror}). Check the spelling "
            "of the server address."
        )
    if isinstance(error, Exception):
        raise ResolveError(f"The name {host} could not be resolved ({error}).")
    addresses: list[IPAddress] = []
    for family, *_rest, sockaddr in box.get("infos", []):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise ResolveError(f"The name {host} has no IPv4 or IPv6 address.")
    return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def resolve(host: str, port: int, *, policy: Policy, timeout: float) -> list[VettedAddress]:
    """Resolve `host` once and vet every address; raise TargetRefusedError on any bad one."""
    literal = _literal(host)
    name_listed = listed(host, port, policy)
    by_address = any(_literal(_parse_target(e)[0]) for e in policy.allowed_targets)
    if policy.allowed_targets and not name_listed and (literal is not None or not by_address):
        raise _not_listed(host, port)  # before any lookup
    addresses = [literal] if literal is not None else _lookup(host, port, timeout)
    # A name not in the list may still stand for listed addresses, every one of them.
    if (
        policy.allowed_targets
        and not name_listed
        and not all(listed(str(ip), port, policy) for ip in addresses)
    ):
        raise _not_listed(host, port)
    for ip in addresses:
        # An operator who listed a target allowed its private address on purpose.
        allow_private = policy.allow_private or bool(policy.allowed_targets)
        why = refusal(ip, allow_private=allow_private)
        if why is not None:
            shown = str(ip) if str(ip) == host else f"{host} ({ip})"
            hint = (
                " AAMail reaches those only when ISP_ALLOW_PRIVATE_ADDRESSES is on, or the "
                "server is listed in ISP_ALLOWED_TARGETS."
                if why.startswith(_PRIVATE)
                else ""
            )
            raise TargetRefusedError(f"AAMail does not connect to {shown}: it is {why}.{hint}")
    return [VettedAddress(ip, _TOKEN) for ip in addresses]


def open_connection(
    host: str, port: int, *, timeout: float, policy: Policy | None = None
) -> tuple[socket.socket, VettedAddress]:
    """Resolve, vet and connect in one call, within ``timeout`` overall (fetch, relay, OAuth)."""
    stop = time.monotonic() + timeout
    addresses = resolve(host, port, policy=policy or Policy.from_settings(), timeout=timeout)
    return connect(addresses, port, timeout=max(0.05, stop - time.monotonic()))


# --- connecting ---------------------------------------------------------------------------


def connect(
    addresses: Sequence[VettedAddress], port: int, *, timeout: float
) -> tuple[socket.socket, VettedAddress]:
    """Open TCP to the first vetted address that answers, within `timeout` overall."""
    if not addresses or any(a._token is not _TOKEN for a in addresses):
        raise TypeError("connect() takes only addresses returned by resolve().")
    stop = time.monotonic() + timeout
    failures: list[tuple[VettedAddress, OSError]] = []
    for address in addresses:
        left = stop - time.monotonic()
        if left <= 0:
            break
        family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(left)
        try:
            sock.connect((str(address.ip), port))
        except OSError as exc:
            sock.close()
            failures.append((address, exc))
            continue
        return sock, address
    raise _connect_error(failures, port, timeout)


def _connect_error(
    failures: list[tuple[VettedAddress, OSError]], port: int, timeout: float
) -> ConnectError:
    if not failures or all(isinstance(exc, TimeoutError) for _, exc in failures):
        where = failures[0][0] if failures else "the server"
        return ConnectError(
            f"No answer from {_hostport(where, port)} after {timeout:.0f} s: a firewall may be "
            "dropping the connection, or the address or port is wrong.",
            timed_out=True,
        )
    address, exc = next((f for f in failures if not isinstance(f[1], TimeoutError)), failures[0])
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(
            f"Connection refused on {_hostport(address, port)}: nothing accepts connections on "
            "that port. Check the port number and the security setting."
        )
    reason = exc.strerror or str(exc)
    return ConnectError(f"Could not reach {_hostport(address, port)} ({reason}).")


def _hostport(address: VettedAddress | str, port: int) -> str:
    text = str(address)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
