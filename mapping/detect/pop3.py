"""Detect's POP3 half: connect, TLS, greeting, CAPA, STARTTLS, login, STAT.

The steps go through the same ``pop3.Client`` the fetcher uses, on a socket ``Run.open``
connected through the outbound guard; each step's wait is ``Run.timeout``.
"""

from __future__ import annotations

import contextlib
import ssl

from .. import pop3
from . import certificates
from .run import OK, WARN, Run, StepFailed, Target, secs, size

# --- POP3 -----------------------------------------------------------------------------------


def pop3_plan(target: Target) -> list[str]:
    """Every POP3 step in order; those not reached show as skipped after a failure."""
    head = ["Name resolution", "TCP connect"]
    login = ["Token", target.login_step] if target.oauth else ["Login"]
    if target.security == "starttls":
        return [*head, "Greeting", "CAPA", "STARTTLS", "TLS handshake", *login, "STAT"]
    return [*head, "TLS handshake", "Greeting", "CAPA", *login, "STAT"]


def pop3_steps(run: Run, target: Target) -> None:
    """The POP3 steps in order, through the same client the fetcher uses."""
    sock = run.open(target)
    if target.security == "none":
        run.no_tls_warning()
    # For SSL/TLS the client's first wait is the handshake, otherwise the greeting.
    wait = run.timeout("TLS handshake" if target.security == "ssl" else "Greeting")
    client = pop3.Client(
        target.host,
        target.port,
        target.security,
        timeout=wait,
        ssl_context=run.context(),
        server_hostname=target.host,
    )
    try:
        try:
            client.connect(sock=sock)
        except pop3.Pop3Error as exc:
            raise _connect_failed(run, client, exc, target, wait) from None
        _connected(run, client, target)
        _session(run, client, target)
    finally:
        client.close()


def _connected(run: Run, client: pop3.Client, target: Target) -> None:
    """Client.connect() did handshake, greeting, CAPA (and STLS): one step each."""
    if target.security == "ssl":
        run.add("TLS handshake", OK, _summary(client))
    run.add("Greeting", OK, client.greeting[:200] or "+OK")
    _capa(run, client.capabilities, target)
    if target.security == "starttls":
        run.add("STARTTLS", OK, "The server accepted STLS.")
        run.add("TLS handshake", OK, _summary(client))


def _connect_failed(
    run: Run, client: pop3.Client, exc: pop3.Pop3Error, target: Target, wait: float
) -> StepFailed:
    """Record the steps connect() got through, then the one that failed.

    What the client kept says how far it got: ``tls_info()`` once a handshake completed,
    ``greeting`` once the greeting arrived, ``capabilities`` once CAPA answered.
    """
    message = _message(exc, target, wait)
    tls = client.tls_info()
    if target.security == "ssl":
        if tls is None:
            return run.fail("TLS handshake", _tls_failure(run, exc, target, message))
        run.add("TLS handshake", OK, _summary(client))
    if client.greeting is None:
        return run.fail("Greeting", message)
    run.add("Greeting", OK, client.greeting[:200] or "+OK")
    if target.security != "starttls":
        return run.fail("CAPA", message)
    if isinstance(exc, pop3.Pop3StartTlsRefusedError):
        _capa(run, client.capabilities, target, before_tls=True)
        return run.fail("STARTTLS", message)
    if client.capabilities is None:
        return run.fail("CAPA", message)
    _capa(run, client.capabilities, target, before_tls=True)
    run.add("STARTTLS", OK, "The server accepted STLS.")
    if tls is None:
        # Usually the handshake failed; an STLS reply that never came lands here too (the
        # client does not say which), and reads as a TLS failure.
        return run.fail("TLS handshake", _tls_failure(run, exc, target, message))
    run.add("TLS handshake", OK, _summary(client))
    return run.fail("CAPA", message)  # the CAPA after TLS (RFC 2595 §4) failed


def _tls_failure(run: Run, exc: pop3.Pop3Error, target: Target, message: str) -> str:
    """The failed handshake in words; a refused certificate is described in full."""
    cause = exc.ssl_error if isinstance(exc, pop3.Pop3TlsError) else None
    if isinstance(cause, ssl.SSLCertVerificationError):
        return run.cert_failure(cause, target, "POP3")
    if target.security == "starttls":
        return message
    # Implicit TLS: explain a port that does not speak TLS. A Pop3TimeoutError carries no
    # ssl error: the handshake got no answer in time.
    return certificates.handshake_failure(cause or TimeoutError(), f"{target.host}:{target.port}")


def _summary(client: pop3.Client) -> str:
    info = client.tls_info()
    return certificates.session_summary(info.version, info.peer_cert_der)


def _capa(
    run: Run, caps: dict[str, list[str]] | None, target: Target, *, before_tls: bool = False
) -> None:
    if caps is None:
        run.add(
            "CAPA",
            WARN,
            "The server does not answer CAPA (RFC 2449); AAMail will try UIDL and "
            "USER/PASS without knowing in advance.",
        )
        return
    sasl = " ".join(caps.get("SASL", [])) or "none"
    stls = "yes" if "STLS" in caps or (target.security == "starttls" and not before_tls) else "no"
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
    run.add("CAPA", status, detail)


def _session(run: Run, client: pop3.Client, target: Target) -> None:
    if target.oauth is not None:
        _oauth_login(run, client, target)
    else:
        try:
            client.login(target.username, target.password)
        except pop3.Pop3Error as exc:
            raise run.fail("Login", _message(exc, target, client.timeout)) from None
        run.add("Login", OK, f"Logged in as {target.username}.")
    try:
        count, octets = client.stat()
    except pop3.Pop3Error as exc:
        raise run.fail("STAT", _message(exc, target, client.timeout)) from None
    noun = "message" if count == 1 else "messages"
    run.add("STAT", OK, f"{count} {noun}, {size(octets)} in the ISP mailbox.")
    with contextlib.suppress(pop3.Pop3Error):
        client.quit()  # nothing was marked for deletion: QUIT changes nothing


def _oauth_login(run: Run, client: pop3.Client, target: Target) -> None:
    """The "Token" and "AUTH XOAUTH2" steps: the same authenticator the fetch uses."""
    step = target.login_step
    offered = (client.capabilities or {}).get("SASL")
    if offered is not None and target.oauth.mechanism not in offered:
        raise run.fail(
            step,
            f"The server offers no AUTH {target.oauth.mechanism} (SASL: "
            f"{' '.join(offered) or 'none'}), so it takes no access token: check the server "
            f"address; at {target.oauth.label}, check that POP is enabled for the mailbox.",
        )
    token = run.token(target)
    kind = pop3.OAuthBearer if target.oauth.mechanism == "OAUTHBEARER" else pop3.Xoauth2
    try:
        client.authenticate(kind(token.login, token.token))
    except pop3.Pop3Error as exc:
        raise run.fail(step, _message(exc, target, client.timeout)) from None
    run.add(step, OK, f"Logged in as {token.login} with the access token.")


def _message(exc: pop3.Pop3Error, target: Target, wait: float) -> str:
    if isinstance(exc, pop3.Pop3TimeoutError):
        return f"No answer from {target.host}:{target.port} after {secs(wait)} s."
    return exc.message
