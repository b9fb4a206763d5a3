"""Detect's SMTP half: connect, greeting, EHLO, STARTTLS (RFC 3207), AUTH (RFC 4954).

The relay sends through the ISP's submission server under the employee's ISP credentials;
these steps try exactly that, without sending a message. smtplib speaks the protocol on a
socket ``Run.open`` connected to a vetted address, so smtplib never looks the name up.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from ..oauth import sasl
from . import certificates
from .run import OK, Run, Target, secs, size

T = TypeVar("T")


def smtp_plan(target: Target) -> list[str]:
    """Every SMTP step in order; those not reached show as skipped after a failure."""
    head = ["Name resolution", "TCP connect"]
    login = ["Token", target.login_step] if target.oauth else ["AUTH"]
    if target.security == "starttls":
        return [*head, "Greeting", "EHLO", "STARTTLS", "TLS handshake", *login]
    return [*head, "TLS handshake", "Greeting", "EHLO", *login]


def smtp_steps(run: Run, target: Target) -> None:
    """The SMTP steps in order; a failed step raises StepFailed."""
    sock = run.open(target)
    if target.security == "ssl":
        sock = _wrap(run, sock, target)
    elif target.security == "none":
        run.no_tls_warning()
    wait = run.timeout("Greeting")
    sock.settimeout(wait)
    smtp = _AdoptingSMTP(sock, local_hostname=socket.gethostname() or "localhost")
    smtp.timeout = wait
    smtp._host = target.host  # the name starttls() verifies the certificate against
    try:
        _session(run, smtp, target, wait)
    finally:
        smtp.close()


def _wrap(run: Run, sock: socket.socket, target: Target) -> ssl.SSLSocket:
    """Implicit TLS (port 465, RFC 8314): handshake and certificate check as a step."""
    sock.settimeout(run.timeout("TLS handshake"))
    try:
        tls = run.context().wrap_socket(sock, server_hostname=target.host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise run.fail("TLS handshake", run.cert_failure(exc, target, "SMTP")) from None
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        where = f"{target.host}:{target.port}"
        raise run.fail("TLS handshake", certificates.handshake_failure(exc, where)) from None
    run.sockets.append(tls)
    run.add("TLS handshake", OK, _summary(tls))
    return tls


def _summary(tls: ssl.SSLSocket) -> str:
    return certificates.session_summary(tls.version(), tls.getpeercert(binary_form=True))


def _session(run: Run, smtp: smtplib.SMTP, target: Target, wait: float) -> None:
    where = f"{target.host}:{target.port}"
    code, said = _call(run, "Greeting", target, wait, smtp.connect, target.host, target.port)
    text = said.decode("utf-8", "replace")
    if code != 220:
        raise run.fail("Greeting", f"{where} refused service ({code} {text}).")
    run.add("Greeting", OK, f"{code} {text}"[:200])
    _ehlo(run, smtp, target, wait)
    if target.security == "starttls":
        _starttls(run, smtp, target, wait)
        _ehlo(run, smtp, target, wait, again=True)
    _auth(run, smtp, target, wait)


def _starttls(run: Run, smtp: smtplib.SMTP, target: Target, wait: float) -> None:
    """STARTTLS is required once chosen: no plain-text fallback (fetchmail CVE-2021-39272)."""
    where = f"{target.host}:{target.port}"
    if not smtp.has_extn("starttls"):
        raise run.fail(
            "STARTTLS",
            f"STARTTLS was chosen but {where} does not offer it; nothing was sent in "
            "plain text. Choose SSL/TLS (usually port 465) or ask the ISP which port "
            "offers encryption.",
        )
    context = run.context()
    try:
        _call(run, "STARTTLS", target, wait, smtp.starttls, context=context)
    except _StartTlsError as failed:
        # smtplib raises the handshake's error from starttls(): the server said 220 to it.
        run.add("STARTTLS", OK, "The server accepted STARTTLS.")
        exc = failed.error
        if isinstance(exc, ssl.SSLCertVerificationError):
            message = run.cert_failure(exc, target, "SMTP")
        else:
            message = certificates.handshake_failure(exc, where)
        raise run.fail("TLS handshake", message) from None
    run.add("STARTTLS", OK, "The server accepted STARTTLS.")
    run.add("TLS handshake", OK, _summary(smtp.sock))


def _ehlo(
    run: Run, smtp: smtplib.SMTP, target: Target, wait: float, *, again: bool = False
) -> None:
    code, said = _call(run, "EHLO", target, wait, smtp.ehlo)
    if code != 250:
        text = said.decode("utf-8", "replace")[:200]
        raise run.fail("EHLO", f"The server refused EHLO ({code} {text}).")
    if again:  # RFC 3207 §4.2: what was learnt before TLS is forgotten
        return
    stls = "yes" if smtp.has_extn("starttls") else "no"
    auth = smtp.esmtp_features.get("auth", "").strip() or (
        "not before STARTTLS" if stls == "yes" else "none offered"
    )
    detail = f"STARTTLS: {stls} · AUTH: {auth}"
    if smtp.has_extn("size"):
        detail += f" · SIZE: {size(int(smtp.esmtp_features['size'] or 0))}"
    run.add("EHLO", OK, detail)


def _auth(run: Run, smtp: smtplib.SMTP, target: Target, wait: float) -> None:
    where = f"{target.host}:{target.port}"
    if target.oauth is not None:
        _oauth_auth(run, smtp, target)
        return
    if not smtp.has_extn("auth"):
        plain = " on an unencrypted connection" if target.security == "none" else ""
        raise run.fail(
            "AUTH",
            f"{where} offers no login (AUTH){plain}, so AAMail cannot relay through it. "
            "Check the port and the security setting (submission is usually 587 with "
            "STARTTLS or 465 with SSL/TLS).",
        )
    offered = smtp.esmtp_features["auth"].upper().split()
    if not {"PLAIN", "LOGIN", "CRAM-MD5"} & set(offered):
        raise run.fail(
            "AUTH",
            f"None of the login methods {where} offers ({' '.join(offered)}) is one "
            "AAMail supports (PLAIN, LOGIN, CRAM-MD5).",
        )
    _call(run, "AUTH", target, wait, smtp.login, target.username, target.password)
    run.add("AUTH", OK, f"Logged in as {target.username}.")
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()


def _oauth_auth(run: Run, smtp: smtplib.SMTP, target: Target) -> None:
    """ "Token" and "AUTH XOAUTH2" as the relay's submitter sends it: two-step, the error
    challenge answered empty, the provider's known refusals in words."""
    where, step = f"{target.host}:{target.port}", target.login_step
    mechanism = target.oauth.mechanism
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    if mechanism not in offered:
        raise run.fail(
            step,
            f"{where} offers no AUTH {mechanism} (AUTH: {' '.join(offered) or 'none'}), so "
            "it takes no access token: check the server address and port (submission is "
            "587 with STARTTLS).",
        )
    token = run.token(target)
    response = sasl.client_response(mechanism, token.login, token.token, target.host, target.port)
    challenges: list[bytes] = []

    def answer(challenge: bytes | None = None) -> str:
        challenges.append(challenge or b"")
        return response.decode() if len(challenges) == 1 else ""  # then: the error challenge

    try:
        smtp.auth(mechanism, answer, initial_response_ok=False)
    except smtplib.SMTPAuthenticationError as exc:
        said = " ".join(exc.smtp_error.decode("utf-8", "replace").split())[:200]
        words = f"{where} refused the access token for {token.login} ({exc.smtp_code} {said})."
        if len(challenges) > 1:
            words += " " + sasl.describe_challenge(sasl.decode_challenge(challenges[-1]))
        advice = sasl.explain_refusal(said)
        raise run.fail(step, words + (f" {advice}" if advice else "")) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise run.fail(step, f"The connection to {where} failed during AUTH ({exc}).") from None
    run.add(step, OK, f"Logged in as {token.login} with the access token.")
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()


def _call(
    run: Run,
    name: str,
    target: Target,
    wait: float,
    call: Callable[..., T],
    *args: Any,
    **kwargs: Any,
) -> T:
    """Run one smtplib call; turn its exceptions into a failed step in words."""
    try:
        return call(*args, **kwargs)
    except ssl.SSLError as exc:
        if name == "STARTTLS":
            raise _StartTlsError(exc) from None
        raise run.fail(name, _in_words(exc, target, wait)) from None
    except (smtplib.SMTPException, UnicodeEncodeError, OSError) as exc:
        raise run.fail(name, _in_words(exc, target, wait)) from None


def _in_words(exc: Exception, target: Target, wait: float) -> str:
    """What a failed smtplib call means, for the step's detail (most specific class first)."""
    where = f"{target.host}:{target.port}"
    if isinstance(exc, ssl.SSLError):
        return f"The TLS connection to {where} failed ({exc})."
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        said = exc.smtp_error.decode("utf-8", "replace")[:200]
        return f"The ISP's SMTP server rejected the username or password ({exc.smtp_code} {said})."
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if isinstance(exc.__context__, TimeoutError):
            return f"No answer from {where} after {secs(wait)} s."
        return f"{where} closed the connection unexpectedly."
    if isinstance(exc, smtplib.SMTPResponseException):
        said = exc.smtp_error.decode("utf-8", "replace")[:200] if exc.smtp_error else ""
        return f"{where} answered {exc.smtp_code} {said}".strip() + "."
    if isinstance(exc, smtplib.SMTPException):
        return f"{where}: {exc}"
    if isinstance(exc, UnicodeEncodeError):
        return "The username or password has characters SMTP AUTH cannot send (non-ASCII)."
    if isinstance(exc, TimeoutError):
        return f"No answer from {where} after {secs(wait)} s."
    return f"The connection to {where} failed ({exc})."


class _StartTlsError(Exception):
    """The STARTTLS handshake failed; carries the ssl error to describe it."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _AdoptingSMTP(smtplib.SMTP):
    """smtplib on a socket the outbound guard connected (smtplib would look the name up)."""

    def __init__(self, sock: socket.socket, **kwargs: Any) -> None:
        self._adopt = sock
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock, self._adopt = self._adopt, None
        if sock is None:
            raise OSError("This SMTP session was already used.")
        return sock
