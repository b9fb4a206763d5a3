"""Detect: ordered live checks of an ISP's POP3 and SMTP settings -> a list of step results.

``detect(pop3=Target(...), smtp=Target(...))`` tries the settings the way the fetcher and the
relay will use them and returns a ``Report``: one ``Step`` per check, in order, each with a
sentence an administrator can act on. It writes nothing (no database, no files).

Bounds: one overall deadline (settings.DETECT_DEADLINE_SECONDS); each network wait gets at
most half of it, and a watchdog shuts the sockets down if the deadline passes anyway.
Safety: every connection goes through ``netguard`` (resolve once, vet, connect to the vetted
address); TLS is always verified (system store plus settings.ISP_CA_FILE); STARTTLS, when
chosen, is required (fetchmail CVE-2021-39272); passwords never appear in a step's text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from cryptography import x509
from django.conf import settings

from . import netguard, pop3
from .pop3_auth import check_value

logger = logging.getLogger(__name__)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
SECURITY_LABELS = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "none": "no encryption"}
_WATCHDOG_GRACE = 0.5  # the sockets' own timeouts fire first; the watchdog is the backstop


@dataclass(frozen=True)
class Target:
    """One server to test; ``password`` never shows in a repr."""

    host: str
    port: int
    security: str
    username: str
    password: str = field(repr=False)


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


@dataclass
class Report:
    sections: list[Section]
    seconds: float
    deadline: float

    @property
    def ok(self) -> bool:
        return all(section.ok for section in self.sections)

    def as_text(self) -> str:
        """The report as plain text lines (the management command prints this)."""
        marks = {OK: " OK ", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}
        lines = []
        for section in self.sections:
            lines.append(f"{section.protocol} {section.target}")
            lines += [f"  [{marks[s.status]}] {s.name}: {s.detail}" for s in section.steps]
        verdict = "everything works" if self.ok else "something failed"
        lines.append(f"Result: {verdict} ({self.seconds:.1f} s).")
        return "\n".join(lines)


class _StepFailed(Exception):
    """Stops a protocol's sequence; the failed Step is already recorded."""


class _Deadline:
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


def isp_ssl_context() -> ssl.SSLContext:
    """A verifying context: the system store plus settings.ISP_CA_FILE, if configured."""
    context = ssl.create_default_context()
    if settings.ISP_CA_FILE:
        # load_verify_locations adds to the store; create_default_context(cafile=...) would
        # replace the system store instead.
        context.load_verify_locations(cafile=settings.ISP_CA_FILE)
    return context


def detect(
    *,
    pop3: Target | None = None,
    smtp: Target | None = None,
    deadline: float | None = None,
    policy: netguard.Policy | None = None,
) -> Report:
    """Run the checks for the given targets under one deadline; never raises for the network."""
    seconds = float(deadline if deadline is not None else settings.DETECT_DEADLINE_SECONDS)
    run = _Run(_Deadline(seconds), policy or netguard.Policy.from_settings(), pop3, smtp)
    started = time.monotonic()
    try:
        sections = []
        if pop3 is not None:
            sections.append(run.section("POP3", pop3, run.pop3_steps))
        if smtp is not None:
            sections.append(run.section("SMTP", smtp, run.smtp_steps))
    finally:
        run.deadline.close()
    return Report(sections, time.monotonic() - started, seconds)


def _secs(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def _plan(protocol: str, security: str) -> list[str]:
    head = ["Name resolution", "TCP connect"]
    if protocol == "POP3":
        if security == "starttls":
            return [*head, "Greeting", "CAPA", "STARTTLS", "TLS handshake", "Login", "STAT"]
        return [*head, "TLS handshake", "Greeting", "CAPA", "Login", "STAT"]
    if security == "starttls":
        return [*head, "Greeting", "EHLO", "STARTTLS", "TLS handshake", "AUTH"]
    return [*head, "TLS handshake", "Greeting", "EHLO", "AUTH"]


class _Run:
    def __init__(self, deadline, policy, pop3_target, smtp_target) -> None:
        self.deadline = deadline
        self.policy = policy
        self.secrets = [t.password for t in (pop3_target, smtp_target) if t and t.password]
        self.section_now: Section | None = None
        self.address: netguard.VettedAddress | None = None
        self.sockets: list[socket.socket] = []  # closed when a section ends, whatever happened

    # --- bookkeeping ----------------------------------------------------------------------

    def section(self, protocol: str, target: Target, body) -> Section:
        label = SECURITY_LABELS.get(target.security, target.security)
        section = Section(protocol, f"{target.host}:{target.port} ({label})")
        self.section_now, self.address = section, None
        plan = _plan(protocol, target.security)
        try:
            problem = _invalid(target)
            if problem:
                self.add("Settings", FAIL, problem)
            else:
                body(target)
        except _StepFailed:
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
        for secret in self.secrets:  # belt and braces: no server echo shows a password
            if len(secret) >= 4:
                detail = detail.replace(secret, "***")
        self.section_now.steps.append(Step(name, status, detail))

    def fail(self, name: str, detail: str) -> _StepFailed:
        if self.deadline.fired or self.deadline.left() <= 0:
            detail = (
                f"Detect's time limit of {_secs(self.deadline.seconds)} s ran out during "
                f"this step. {detail}"
            )
        self.add(name, FAIL, detail)
        return _StepFailed()

    def timeout(self, name: str) -> float:
        """The wait allowed for the next step; fails the step if no time is left."""
        left = self.deadline.left()
        if left <= 0.05:
            raise self.fail(name, "Not enough time was left for this step.")
        return min(float(settings.POP3_TIMEOUT), self.deadline.seconds / 2, left)

    # --- shared steps ---------------------------------------------------------------------

    def open(self, target: Target) -> socket.socket:
        """Name resolution and TCP connect, through netguard."""
        try:
            addresses = netguard.resolve(
                target.host,
                target.port,
                policy=self.policy,
                timeout=self.timeout("Name resolution"),
            )
        except netguard.NetguardError as exc:
            raise self.fail("Name resolution", exc.message) from None
        shown = ", ".join(map(str, addresses))
        if shown == target.host:
            self.add("Name resolution", OK, f"{shown} is an address: no lookup needed.")
        else:
            self.add("Name resolution", OK, f"{target.host} → {shown}")
        started = time.monotonic()
        try:
            sock, self.address = netguard.connect(
                addresses, target.port, timeout=self.timeout("TCP connect")
            )
        except netguard.ConnectError as exc:
            raise self.fail("TCP connect", exc.message) from None
        self.deadline.watch(sock)
        self.sockets.append(sock)
        ms = (time.monotonic() - started) * 1000
        self.add("TCP connect", OK, f"Connected to {self.address}:{target.port} in {ms:.0f} ms.")
        return sock

    def wrap(self, sock: socket.socket, target: Target, protocol: str) -> ssl.SSLSocket:
        """Implicit TLS: handshake and certificate check as a step of its own."""
        sock.settimeout(self.timeout("TLS handshake"))
        try:
            tls = self.context().wrap_socket(sock, server_hostname=target.host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise self.fail("TLS handshake", self.cert_failure(exc, target, protocol)) from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise self.fail("TLS handshake", _handshake_failure(exc, target)) from None
        self.sockets.append(tls)
        self.add("TLS handshake", OK, _session_summary(tls))
        return tls

    def context(self) -> ssl.SSLContext:
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
        return _verification_failure(exc, target.host, der)

    def no_tls_warning(self) -> None:
        self.add(
            "TLS handshake",
            WARN,
            "Not used: security is “None”, so the password and the mail travel in plain "
            "text. Choose SSL/TLS or STARTTLS if the ISP offers either.",
        )

    # --- POP3 -----------------------------------------------------------------------------

    def pop3_steps(self, target: Target) -> None:
        sock = self.open(target)
        if target.security == "ssl":
            sock = self.wrap(sock, target, "POP3")
        elif target.security == "none":
            self.no_tls_warning()
        wait = self.timeout("Greeting")
        client = pop3.Client(
            target.host,
            target.port,
            target.security,
            timeout=wait,
            ssl_context=self.context(),
            server_hostname=target.host,
        )
        try:
            self.pop3_connect(client, sock, target, wait)
            self.pop3_session(client, target)
        finally:
            client.close()

    def pop3_connect(self, client: pop3.Client, sock, target: Target, wait: float) -> None:
        # Client.connect() reads the greeting, runs CAPA and, for STARTTLS, STLS, the
        # handshake and CAPA again; which step failed is told by what it had learnt.
        try:
            client.connect(sock=sock)
        except pop3.Pop3Error as exc:
            message = self.pop3_message(exc, target, wait)
            if client.greeting is None:
                raise self.fail("Greeting", message) from None
            self.add("Greeting", OK, client.greeting[:200] or "+OK")
            if isinstance(exc, pop3.Pop3StartTlsRefusedError):
                self.pop3_capa(client.capabilities, target, before_tls=True)
                raise self.fail("STARTTLS", message) from None
            if target.security != "starttls" or client.capabilities is None:
                raise self.fail("CAPA", message) from None
            self.pop3_capa(client.capabilities, target, before_tls=True)
            self.add("STARTTLS", OK, "The server accepted STLS.")
            if isinstance(exc, pop3.Pop3TlsError) and isinstance(
                exc.ssl_error, ssl.SSLCertVerificationError
            ):
                message = self.cert_failure(exc.ssl_error, target, "POP3")
            raise self.fail("TLS handshake", message) from None
        self.add("Greeting", OK, client.greeting[:200] or "+OK")
        self.pop3_capa(client.capabilities, target)
        if target.security == "starttls":
            self.add("STARTTLS", OK, "The server accepted STLS.")
            self.add("TLS handshake", OK, f"Encrypted; the certificate of {target.host} is valid.")

    def pop3_capa(self, caps, target: Target, *, before_tls: bool = False) -> None:
        if caps is None:
            self.add(
                "CAPA",
                WARN,
                "The server does not answer CAPA (RFC 2449); AAMail will try UIDL and "
                "USER/PASS without knowing in advance.",
            )
            return
        sasl = " ".join(caps.get("SASL", [])) or "none"
        stls = (
            "yes" if "STLS" in caps or (target.security == "starttls" and not before_tls) else "no"
        )
        yes = {True: "yes", False: "no"}
        detail = (
            f"UIDL: {yes['UIDL' in caps]} · STLS: {stls} · SASL: {sasl} · "
            f"PIPELINING: {yes['PIPELINING' in caps]}"
        )
        status = OK
        if "UIDL" not in caps:
            status = WARN
            detail += ". Without UIDL AAMail tells messages apart by a fallback identity."
        if target.security == "none" and "STLS" in caps:
            status = WARN
            detail += ". The server offers STARTTLS: choose it so the password is encrypted."
        self.add("CAPA", status, detail)

    def pop3_session(self, client: pop3.Client, target: Target) -> None:
        try:
            client.login(target.username, target.password)
        except pop3.Pop3Error as exc:
            raise self.fail("Login", self.pop3_message(exc, target, client.timeout)) from None
        self.add("Login", OK, f"Logged in as {target.username}.")
        try:
            count, octets = client.stat()
        except pop3.Pop3Error as exc:
            raise self.fail("STAT", self.pop3_message(exc, target, client.timeout)) from None
        noun = "message" if count == 1 else "messages"
        self.add("STAT", OK, f"{count} {noun}, {_size(octets)} in the ISP mailbox.")
        with contextlib.suppress(pop3.Pop3Error):
            client.quit()  # nothing was marked for deletion: QUIT changes nothing

    def pop3_message(self, exc: pop3.Pop3Error, target: Target, wait: float) -> str:
        if isinstance(exc, pop3.Pop3TimeoutError):
            return f"No answer from {target.host}:{target.port} after {_secs(wait)} s."
        return exc.message

    # --- SMTP -----------------------------------------------------------------------------

    def smtp_steps(self, target: Target) -> None:
        sock = self.open(target)
        if target.security == "ssl":
            sock = self.wrap(sock, target, "SMTP")
        elif target.security == "none":
            self.no_tls_warning()
        wait = self.timeout("Greeting")
        sock.settimeout(wait)
        smtp = _AdoptingSMTP(sock, local_hostname=socket.gethostname() or "localhost")
        smtp.timeout = wait
        smtp._host = target.host  # the name starttls() verifies the certificate against
        try:
            self.smtp_session(smtp, target, wait)
        finally:
            smtp.close()

    def smtp_session(self, smtp: smtplib.SMTP, target: Target, wait: float) -> None:
        where = f"{target.host}:{target.port}"
        code, said = self.smtp_call(
            "Greeting", target, wait, smtp.connect, target.host, target.port
        )
        text = said.decode("utf-8", "replace")
        if code != 220:
            raise self.fail("Greeting", f"{where} refused service ({code} {text}).")
        self.add("Greeting", OK, f"{code} {text}"[:200])
        self.smtp_ehlo(smtp, target, wait)
        if target.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise self.fail(
                    "STARTTLS",
                    f"STARTTLS was chosen but {where} does not offer it; nothing was sent in "
                    "plain text. Choose SSL/TLS (usually port 465) or ask the ISP which port "
                    "offers encryption.",
                )
            context = self.context()
            try:
                self.smtp_call("STARTTLS", target, wait, smtp.starttls, context=context)
            except _TlsFailed as failed:
                self.add("STARTTLS", OK, "The server accepted STARTTLS.")
                exc = failed.error
                if isinstance(exc, ssl.SSLCertVerificationError):
                    message = self.cert_failure(exc, target, "SMTP")
                else:
                    message = _handshake_failure(exc, target)
                raise self.fail("TLS handshake", message) from None
            self.add("STARTTLS", OK, "The server accepted STARTTLS.")
            self.add("TLS handshake", OK, _session_summary(smtp.sock))
            self.smtp_ehlo(smtp, target, wait, again=True)
        self.smtp_auth(smtp, target, wait)

    def smtp_ehlo(self, smtp, target: Target, wait: float, *, again: bool = False) -> None:
        code, said = self.smtp_call("EHLO", target, wait, smtp.ehlo)
        if code != 250:
            text = said.decode("utf-8", "replace")[:200]
            raise self.fail("EHLO", f"The server refused EHLO ({code} {text}).")
        if again:  # RFC 3207 §4.2: what was learnt before TLS is forgotten
            return
        stls = "yes" if smtp.has_extn("starttls") else "no"
        auth = smtp.esmtp_features.get("auth", "").strip() or (
            "not before STARTTLS" if stls == "yes" else "none offered"
        )
        detail = f"STARTTLS: {stls} · AUTH: {auth}"
        if smtp.has_extn("size"):
            detail += f" · SIZE: {_size(int(smtp.esmtp_features['size'] or 0))}"
        self.add("EHLO", OK, detail)

    def smtp_auth(self, smtp: smtplib.SMTP, target: Target, wait: float) -> None:
        where = f"{target.host}:{target.port}"
        if not smtp.has_extn("auth"):
            plain = " on an unencrypted connection" if target.security == "none" else ""
            raise self.fail(
                "AUTH",
                f"{where} offers no login (AUTH){plain}, so AAMail cannot relay through it. "
                "Check the port and the security setting (submission is usually 587 with "
                "STARTTLS or 465 with SSL/TLS).",
            )
        offered = smtp.esmtp_features["auth"].upper().split()
        if not {"PLAIN", "LOGIN", "CRAM-MD5"} & set(offered):
            raise self.fail(
                "AUTH",
                f"None of the login methods {where} offers ({' '.join(offered)}) is one "
                "AAMail supports (PLAIN, LOGIN, CRAM-MD5).",
            )
        self.smtp_call("AUTH", target, wait, smtp.login, target.username, target.password)
        self.add("AUTH", OK, f"Logged in as {target.username}.")
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()

    def smtp_call(self, name: str, target: Target, wait: float, call, *args, **kwargs):
        """Run one smtplib call; turn its exceptions into a failed step in words."""
        where = f"{target.host}:{target.port}"
        try:
            return call(*args, **kwargs)
        except ssl.SSLError as exc:
            if name == "STARTTLS":
                raise _TlsFailed(exc) from None
            raise self.fail(name, f"The TLS connection to {where} failed ({exc}).") from None
        except smtplib.SMTPAuthenticationError as exc:
            said = exc.smtp_error.decode("utf-8", "replace")[:200]
            raise self.fail(
                name,
                f"The ISP's SMTP server rejected the username or password "
                f"({exc.smtp_code} {said}).",
            ) from None
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):
                raise self.fail(name, f"No answer from {where} after {_secs(wait)} s.") from None
            raise self.fail(name, f"{where} closed the connection unexpectedly.") from None
        except smtplib.SMTPResponseException as exc:
            said = exc.smtp_error.decode("utf-8", "replace")[:200] if exc.smtp_error else ""
            raise self.fail(
                name, f"{where} answered {exc.smtp_code} {said}".strip() + "."
            ) from None
        except smtplib.SMTPException as exc:
            raise self.fail(name, f"{where}: {exc}") from None
        except UnicodeEncodeError:
            raise self.fail(
                name, "The username or password has characters SMTP AUTH cannot send (non-ASCII)."
            ) from None
        except TimeoutError:
            raise self.fail(name, f"No answer from {where} after {_secs(wait)} s.") from None
        except OSError as exc:
            raise self.fail(name, f"The connection to {where} failed ({exc}).") from None


class _TlsFailed(Exception):
    def __init__(self, error: Exception) -> None:
        self.error = error


class _AdoptingSMTP(smtplib.SMTP):
    """smtplib on a socket netguard connected (smtplib would otherwise look the name up)."""

    def __init__(self, sock: socket.socket, **kwargs) -> None:
        self._adopt = sock
        super().__init__(**kwargs)

    def _get_socket(self, host, port, timeout):
        sock, self._adopt = self._adopt, None
        if sock is None:
            raise OSError("This SMTP session was already used.")
        return sock


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
    if not target.password:
        return "The password is empty."
    try:
        check_value("username", target.username)
        check_value("password", target.password)
    except ValueError as exc:
        return str(exc)
    return None


# --- certificates and TLS, described for a person -------------------------------------------

_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_EXPIRED, _NOT_YET_VALID, _SELF_SIGNED = 10, 9, 18
_UNTRUSTED = (2, 19, 20, 21)  # issuer unknown / self-signed CA in chain / cannot verify leaf


@dataclass(frozen=True)
class _Cert:
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    names: tuple[str, ...]


def _cert(der: bytes | None) -> _Cert | None:
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [*san.get_values_for_type(x509.DNSName)]
            names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        return _Cert(
            _name(cert.subject),
            _name(cert.issuer),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            tuple(names) or (_name(cert.subject),),
        )
    except ValueError:
        return None


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string() or "(empty)"


def _covers(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):  # a wildcard stands for exactly one left-most label
        return "." in host and host.split(".", 1)[1] == pattern[2:]
    return pattern == host


def _day(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d}"


def _session_summary(tls: ssl.SSLSocket) -> str:
    facts = _cert(tls.getpeercert(binary_form=True))
    if facts is None:
        return f"{tls.version()}; the certificate is valid."
    return (
        f"{tls.version()}; certificate for {', '.join(facts.names)} issued by {facts.issuer}, "
        f"valid until {_day(facts.not_after)}."
    )


def _verification_failure(exc: ssl.SSLCertVerificationError, host: str, der: bytes | None) -> str:
    """Why the certificate was refused, what it says, and what to do about it."""
    facts = _cert(der)
    code = exc.verify_code
    names = ", ".join(facts.names) if facts else "another name"
    now = dt.datetime.now(dt.UTC)
    if code in _MISMATCH:
        text = f"The certificate is for {names}, not {host}."
        advice = "Use the server name the certificate is for, or ask the ISP."
    elif code == _EXPIRED:
        text = (
            f"The certificate expired on {_day(facts.not_after)}."
            if facts
            else ("The certificate has expired.")
        )
        advice = "The ISP must renew it."
    elif code == _NOT_YET_VALID:
        text = "The certificate is not valid yet."
        advice = "Check this server's clock."
    elif code == _SELF_SIGNED or code in _UNTRUSTED:
        who = f" ({facts.issuer})" if facts else ""
        text = (
            "The certificate is self-signed, so no trusted authority vouches for it."
            if code == _SELF_SIGNED
            else f"The certificate was issued by an authority this server does not trust{who}."
        )
        advice = (
            "If the ISP really uses its own authority, add that CA certificate to the file "
            "named by the ISP_CA_FILE setting; otherwise you may not be talking to the ISP."
        )
    else:
        text = f"The certificate was refused ({exc.verify_message})."
        advice = "Ask the ISP which server name and port to use."
    if facts and code not in _MISMATCH and not any(_covers(n, host) for n in facts.names):
        text += f" It is also for {names}, not {host}."
    if facts and code != _EXPIRED and facts.not_after < now:
        text += f" It also expired on {_day(facts.not_after)}."
    text += f" {advice}"
    if facts:
        text += (
            f" Certificate: subject {facts.subject}; issuer {facts.issuer}; valid "
            f"{_day(facts.not_before)} to {_day(facts.not_after)}."
        )
    return text


def _handshake_failure(exc: BaseException, target: Target) -> str:
    where = f"{target.host}:{target.port}"
    if isinstance(exc, TimeoutError):
        return f"No answer from {where} during the TLS handshake."
    reason = getattr(exc, "reason", None) or ""
    if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE") or (
        "version" in str(exc).lower()
    ):
        return (
            f"The TLS handshake with {where} failed ({reason or exc}): that port does not "
            "speak TLS from the start. Try STARTTLS, or the SSL/TLS port (995 for POP3, "
            "465 for SMTP)."
        )
    if isinstance(exc, ssl.SSLEOFError | ConnectionError) or not isinstance(exc, ssl.SSLError):
        return f"{where} closed the connection during the TLS handshake."
    return f"The TLS handshake with {where} failed ({reason or exc})."


def _fetch_certificate(
    address: netguard.VettedAddress,
    target: Target,
    protocol: str,
    *,
    timeout: float,
    deadline: _Deadline,
) -> bytes | None:
    """The server's certificate, read over a second connection, to describe a refusal.

    Verification is off on purpose and only here: the connection is closed as soon as the
    certificate is read, and nothing else (certainly no password) is ever sent over it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        sock, _ = netguard.connect([address], target.port, timeout=timeout)
    except netguard.NetguardError:
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


def _size(octets: int) -> str:
    if octets < 1024:
        return f"{octets} bytes"
    for unit in ("kB", "MB", "GB"):
        octets /= 1024
        if octets < 1024 or unit == "GB":
            return f"{octets:.1f} {unit}"
    return f"{octets} bytes"
