"""One Detect run: step results, the overall deadline, and the steps both protocols share.

``pop3.py`` and ``smtp.py`` write their ordered steps as functions of a ``Run``: it records
each ``Step`` (never with a password in it), hands out the time each network wait may take
(``Run.timeout``: at most POP3_TIMEOUT, half the deadline, and what is left of it), and does
name resolution and TCP connect through the outbound guard, and the certificate report, the
same way for both. The public names are re-exported by ``mapping.detect``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings

from .. import outbound
from ..pop3 import check_value, redact
from ..tls import isp_ssl_context
from . import certificates

if TYPE_CHECKING:
    from ..oauth.grants import AccessToken

logger = logging.getLogger("mapping.detect")

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
SECURITY_LABELS = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "none": "no encryption"}
# Named for the module callers know, so logging settings keep matching after the moves.
_WATCHDOG_GRACE = 0.5  # the sockets' own timeouts fire first; the watchdog is the backstop


@dataclass(frozen=True)
class OAuthLogin:
    """How a Target logs in by OAuth (issue 15): who signs in, and a call for the token.

    ``token()`` returns a ``mapping.oauth.grants.AccessToken`` or raises an ``OAuthError``
    in words; it may refresh the grant (and store the new tokens: the one write Detect
    causes, since a rotated refresh token must not be lost).
    """

    label: str  # "Microsoft"
    mechanism: str  # XOAUTH2 | OAUTHBEARER
    token: Callable[[], object] = field(repr=False)


@dataclass(frozen=True)
class Target:
    """One server to test; ``password`` never shows in a repr. With ``oauth`` set, the
    login is by access token and ``password`` is empty."""

    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)
    oauth: OAuthLogin | None = None

    @property
    def login_step(self) -> str:
        """The name of the login step: "Login"/"AUTH", or "AUTH XOAUTH2" for a token."""
        return f"AUTH {self.oauth.mechanism}" if self.oauth else ""


@dataclass(frozen=True)
class Step:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str


@dataclass
class Section:
    protocol: str  # "POP3" | "SMTP"
    target: str  # "mail.isp.example:995 (SSL/TLS)"
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.status in (OK, WARN) for s in self.steps)

    @property
    def verdict(self) -> str:
        """'POP3 works' or 'the SMTP relay failed at AUTH'."""
        name = "POP3" if self.protocol == "POP3" else "the SMTP relay"
        failed = next((s.name for s in self.steps if s.status == FAIL), None)
        return f"{name} works" if failed is None else f"{name} failed at {failed}"


@dataclass
class Report:
    sections: list[Section]
    seconds: float
    deadline: float

    @property
    def ok(self) -> bool:
        return all(section.ok for section in self.sections)

    @property
    def verdict(self) -> str:
        """Which part works and which failed: 'POP3 works; the SMTP relay failed at AUTH.'"""
        text = "; ".join(section.verdict for section in self.sections)
        return text[:1].upper() + text[1:] + "."

    def as_text(self) -> str:
        """The report as plain text lines (the management command prints this)."""
        marks = {OK: " OK ", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}
        lines = []
        for section in self.sections:
            lines.append(f"{section.protocol} {section.target}")
            lines += [f"  [{marks[s.status]}] {s.name}: {s.detail}" for s in section.steps]
        lines.append(f"Result: {self.verdict} ({self.seconds:.1f} s)")
        return "\n".join(lines)


class StepFailed(Exception):  # noqa: N818 - control flow: ends a sequence, the Step says why
    """Stops a protocol's sequence; the failed Step is already recorded."""


class Deadline:
    """The overall bound, and a watchdog that shuts down the sockets once it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._stop = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self.fired = False
        self._timer = threading.Timer(seconds + _WATCHDOG_GRACE, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return max(0.0, self._stop - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        # A dup shares the connection: shutting it down wakes a read blocked on the
        # original, even after the original was wrapped in TLS (which detaches it).
        with self._lock:
            self._watched.append(sock.dup())
            if self.fired:
                self._shutdown_all()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown_all()

    def _shutdown_all(self) -> None:
        for sock in self._watched:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


def secs(value: float) -> str:
    """Seconds as a person reads them: "0.5", "2", "30"."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def size(octets: int) -> str:
    """A mailbox or message size in bytes, kB, MB or GB."""
    if octets < 1024:
        return f"{octets} bytes"
    for unit in ("kB", "MB", "GB"):
        octets /= 1024
        if octets < 1024 or unit == "GB":
            return f"{octets:.1f} {unit}"
    return f"{octets} bytes"


class Run:
    """The state of one run: deadline, policy, the section being written, open sockets."""

    def __init__(
        self, deadline: Deadline, policy: outbound.Policy, *targets: Target | None
    ) -> None:
        self.deadline = deadline
        self.policy = policy
        self.secrets = [t.password for t in targets if t and t.password]
        self.section_now: Section | None = None
        self.address: outbound.VettedAddress | None = None
        self.sockets: list[socket.socket] = []  # closed when a section ends, whatever happened

    # --- bookkeeping ----------------------------------------------------------------------

    def section(
        self,
        protocol: str,
        target: Target,
        steps: Callable[[Run, Target], None],
        plan: list[str],
    ) -> Section:
        """Run one protocol's ``steps``; ``plan`` names the steps shown as skipped on failure."""
        label = SECURITY_LABELS.get(target.security, target.security)
        section = Section(protocol, f"{target.host}:{target.port} ({label})")
        self.section_now, self.address = section, None
        try:
            problem = _invalid(target)
            if problem:
                self.add("Settings", FAIL, problem)
            else:
                steps(self, target)
        except StepFailed:
            pass
        except Exception:
            # A bug must not become a 500 in the middle of the wizard; the log has the trace
            # (never a password: Target's repr hides it).
            logger.exception("Detect failed unexpectedly for %s", section.target)
            self.add("Internal error", FAIL, "Detect stopped on an unexpected error; see the log.")
        finally:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()
        done = {s.name for s in section.steps}
        if any(s.status == FAIL for s in section.steps):
            why = "Not run: an earlier step failed."
            section.steps += [Step(name, SKIP, why) for name in plan if name not in done]
        return section

    def add(self, name: str, status: str, detail: str) -> None:
        # Belt and braces: no server echo shows a password.
        self.section_now.steps.append(Step(name, status, redact(detail, self.secrets)))

    def fail(self, name: str, detail: str) -> StepFailed:
        """Record a failed step; the caller raises what this returns."""
        if self.deadline.fired or self.deadline.left() <= 0:
            detail = (
                f"Detect's time limit of {secs(self.deadline.seconds)} s ran out during "
                f"this step. {detail}"
            )
        self.add(name, FAIL, detail)
        return StepFailed()

    def timeout(self, name: str) -> float:
        """The wait allowed for the next step; fails the step if no time is left."""
        left = self.deadline.left()
        if left <= 0.05:
            raise self.fail(name, "Not enough time was left for this step.")
        return min(float(settings.POP3_TIMEOUT), self.deadline.seconds / 2, left)

    # --- shared steps ---------------------------------------------------------------------

    def open(self, target: Target) -> socket.socket:
        """Name resolution and TCP connect, through outbound."""
        try:
            addresses = outbound.resolve(
                target.host,
                target.port,
                policy=self.policy,
                timeout=self.timeout("Name resolution"),
            )
        except outbound.OutboundError as exc:
            raise self.fail("Name resolution", exc.message) from None
        shown = ", ".join(map(str, addresses))
        if shown == target.host:
            self.add("Name resolution", OK, f"{shown} is an address: no lookup needed.")
        else:
            self.add("Name resolution", OK, f"{target.host} → {shown}")
        started = time.monotonic()
        try:
            sock, self.address = outbound.connect(
                addresses, target.port, timeout=self.timeout("TCP connect")
            )
        except outbound.ConnectError as exc:
            raise self.fail("TCP connect", exc.message) from None
        self.deadline.watch(sock)
        self.sockets.append(sock)
        ms = (time.monotonic() - started) * 1000
        self.add("TCP connect", OK, f"Connected to {self.address}:{target.port} in {ms:.0f} ms.")
        return sock

    def context(self) -> ssl.SSLContext:
        """The verifying ISP context; a CA file that cannot be read fails the TLS step."""
        try:
            return isp_ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise self.fail(
                "TLS handshake",
                f"The CA file in ISP_CA_FILE ({settings.ISP_CA_FILE}) cannot be used ({exc}).",
            ) from None

    def cert_failure(self, exc: ssl.SSLCertVerificationError, target: Target, protocol: str) -> str:
        """Why the certificate was refused, with its subject, issuer and expiry."""
        der = None
        if self.address is not None and self.deadline.left() > 0.2:
            der = _fetch_certificate(
                self.address,
                target,
                protocol,
                timeout=min(3.0, self.deadline.left()),
                deadline=self.deadline,
            )
        return certificates.verification_failure(exc, target.host, der)

    def token(self, target: Target) -> AccessToken:
        """The "Token" step of an OAuth login: a cached or refreshed access token."""
        from ..oauth.tokens import OAuthError

        started = time.monotonic()
        try:
            token = target.oauth.token()
        except OAuthError as exc:
            raise self.fail("Token", exc.message) from None
        self.secrets.append(token.token)  # redacted from every later step's words
        minutes = max(0, int((token.expires_at.timestamp() - time.time()) // 60))
        if token.fresh:
            ms = (time.monotonic() - started) * 1000
            detail = f"Refreshed at {target.oauth.label} in {ms:.0f} ms"
        else:
            detail = "The stored access token is still good (no refresh needed)"
        self.add("Token", OK, f"{detail}; valid {minutes} more minutes for {token.login}.")
        return token

    def no_tls_warning(self) -> None:
        self.add(
            "TLS handshake",
            WARN,
            "Not used: security is “None”, so the password and the mail travel in plain "
            "text. Choose SSL/TLS or STARTTLS if the ISP offers either.",
        )


def _invalid(target: Target) -> str | None:
    """What is wrong with the settings themselves, before any connection."""
    if not target.host.strip():
        return "The server address is empty."
    if any(c in target.host for c in " \t\r\n\0/@"):
        return f"“{target.host}” cannot be a server address."
    if not 1 <= int(target.port) <= 65535:
        return f"Port {target.port} is not between 1 and 65535."
    if target.security not in SECURITY_LABELS:
        return f"Unknown security “{target.security}”: choose SSL/TLS, STARTTLS or None."
    if not target.username:
        return "The account (username) is empty."
    if target.oauth is not None:
        if target.security not in ("ssl", "starttls"):
            return (
                f"Sign in with {target.oauth.label} sends an access token, never in plain "
                "text: choose SSL/TLS or STARTTLS."
            )
    elif not target.password:
        return "The password is empty."
    try:
        check_value("username", target.username)
        check_value("password", target.password)
    except ValueError as exc:
        return str(exc)
    return None


# --- the refused certificate, read again to describe it ------------------------------------


def _fetch_certificate(
    address: outbound.VettedAddress,
    target: Target,
    protocol: str,
    *,
    timeout: float,
    deadline: Deadline,
) -> bytes | None:
    """The server's certificate, read over a second connection, to describe a refusal.

    Verification is off on purpose and only here: the connection is closed as soon as the
    certificate is read, and nothing else (certainly no password) is ever sent over it.
    A failed handshake leaves no certificate to read, hence the second connection.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        sock, _ = outbound.connect([address], target.port, timeout=timeout)
    except outbound.OutboundError:
        return None
    try:
        deadline.watch(sock)
        sock.settimeout(timeout)
        if target.security == "starttls" and not _starttls_probe(sock, protocol):
            return None
        with context.wrap_socket(sock, server_hostname=target.host) as tls:
            return tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def _starttls_probe(sock: socket.socket, protocol: str) -> bool:
    """Ask for STARTTLS without logging in: STLS for POP3, EHLO + STARTTLS for SMTP."""
    if protocol == "POP3":
        if not _reply(sock, smtp=False).startswith(b"+OK"):
            return False
        sock.sendall(b"STLS\r\n")
        return _reply(sock, smtp=False).startswith(b"+OK")
    if not _reply(sock, smtp=True).startswith(b"220"):
        return False
    sock.sendall(b"EHLO " + (socket.gethostname() or "localhost").encode() + b"\r\n")
    if not _reply(sock, smtp=True).startswith(b"250"):
        return False
    sock.sendall(b"STARTTLS\r\n")
    return _reply(sock, smtp=True).startswith(b"220")


def _reply(sock: socket.socket, *, smtp: bool, limit: int = 8192) -> bytes:
    # Byte by byte so nothing past the reply is consumed before the TLS handshake.
    data = b""
    while len(data) < limit:
        byte = sock.recv(1)
        if not byte:
            break
        data += byte
        if byte == b"\n":
            last = data.rsplit(b"\n", 2)[-2] if data.count(b"\n") > 1 else data
            if not smtp or last[3:4] != b"-":
                break
    return data
