"""POP3 login methods, pluggable: USER/PASS, APOP, SASL PLAIN, and XOAUTH2 / OAUTHBEARER.

Contract: an ``Authenticator`` gets a connected session (a ``Session``: what it needs of
``pop3.Client``) and logs in through ``session.request(line) -> Status`` (one command line,
one status line back); SASL
mechanisms subclass ``SaslAuthenticator``, which runs the AUTH exchange. It raises
``Pop3AuthError`` when the server says no, and never puts a secret into an exception,
a log or a ``repr``.

OAuth (``Xoauth2``, ``OAuthBearer``; shared/oauth2.md §4 has the snags behind each rule):
always the two-step form (``AUTH XOAUTH2``, the server's empty ``+``, then the response
line: what Microsoft documents for POP; Dovecot and Gmail take it too); only ``+OK`` is
success (the error challenge ``+ eyJ…`` also starts with "+": poplib's ``_shortcmd`` takes
it for success); the error challenge is answered with an empty line, after which the server
sends -ERR, and its JSON is reported in words; no token leaves unless the session is TLS
with a verified certificate and host name (loopback counts as "secure" for Dovecot, so the
server would take it in plain text).
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..oauth import sasl
from .errors import Pop3AuthError, Pop3NotSecureError, Pop3OAuthError, Pop3ProtocolError, redact
from .protocol import Status
from .session import Session


def check_value(what: str, value: str) -> str:
    """Refuse CR, LF and NUL: poplib sends them on as a second command."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"The {what} contains a line break or NUL character; POP3 cannot send it.")
    return value


class Authenticator(ABC):
    """One login method; ``authenticate`` logs in through the client or raises Pop3AuthError."""

    @abstractmethod
    def authenticate(self, client: Session) -> None:
        """Log in on a connected client; never put a secret into an error or a log."""


@dataclass(repr=False)
class PasswordLogin(Authenticator, ABC):
    """A login with a user name and a password, both refused when CR, LF or NUL is in them."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        check_value("username", self.username)
        check_value("password", self.password)


@dataclass(repr=False)
class UserPass(PasswordLogin):
    """USER/PASS (RFC 1939 §7)."""

    def authenticate(self, client: Session) -> None:
        """Send USER then PASS."""
        for line in (f"USER {self.username}", f"PASS {self.password}"):
            reply = client.request(line)
            if not reply.ok:
                raise auth_error(reply, self.password)


@dataclass(repr=False)
class Apop(PasswordLogin):
    """APOP (RFC 1939 §7): MD5 of the greeting's timestamp and the password."""

    def authenticate(self, client: Session) -> None:
        """Send APOP with the digest; needs a timestamp in the greeting."""
        if not client.apop_timestamp:
            raise Pop3AuthError("The server does not offer APOP (no timestamp in its greeting).")
        # MD5 is what RFC 1939 prescribes for APOP; it protects nothing else here.
        secret = (client.apop_timestamp + self.password).encode()
        digest = hashlib.md5(secret, usedforsecurity=False).hexdigest()
        reply = client.request(f"APOP {self.username} {digest}")
        if not reply.ok:
            raise auth_error(reply, self.password)


class SaslAuthenticator(Authenticator):
    """A SASL mechanism for AUTH (RFC 5034): subclasses set ``mechanism`` and responses."""

    mechanism: str = ""
    secrets: tuple[str, ...] = ()

    def initial_response(self) -> bytes | None:
        """Bytes sent with the AUTH command, or None to wait for a challenge."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """Answer one server challenge; b"" (the default) lets the server finish with -ERR."""
        return b""

    def authenticate(self, client: Session) -> None:
        """Run AUTH <mechanism> (RFC 5034), answering challenges with ``respond``."""
        initial = self.initial_response()
        line = f"AUTH {self.mechanism}"
        if initial is not None:  # "=" is how RFC 5034 §4 sends an empty initial response
            line += " " + (base64.b64encode(initial).decode() or "=")
        reply = client.request(line)
        for _ in range(10):  # bounded: a server cannot keep us in the exchange forever
            if not reply.continuation:
                break
            try:
                challenge = base64.b64decode(reply.text, validate=True)
            except ValueError:
                client.request("*")  # cancels the exchange (RFC 5034 §4)
                raise Pop3ProtocolError("The server sent a malformed SASL challenge.") from None
            reply = client.request(base64.b64encode(self.respond(challenge)).decode())
        if not reply.ok:
            raise auth_error(reply, *self.secrets)


class SaslPlain(SaslAuthenticator):
    """AUTH PLAIN with an initial response (RFC 4616, RFC 5034)."""

    mechanism = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        check_value("authorization id", authzid)
        check_value("username", username)
        check_value("password", password)
        self._parts = (authzid, username, password)
        self.secrets = (password,)

    def __repr__(self) -> str:
        return f"SaslPlain(username={self._parts[1]!r})"

    def initial_response(self) -> bytes:
        """authzid NUL authcid NUL password."""
        return "\0".join(self._parts).encode()


def auth_error(reply: Status, *secrets: str) -> Pop3AuthError:
    """The refusal in words, with any echo of a secret hidden (a hostile server may echo)."""
    said = redact(reply.text, secrets)
    said = f" (server said: {said[:200]})" if said else ""
    if reply.code in ("IN-USE", "LOGIN-DELAY", "SYS/TEMP"):
        return Pop3AuthError(
            f"The ISP mailbox is busy or temporarily unavailable{said}.", transient=True
        )
    return Pop3AuthError(f"The ISP rejected the username or password{said}.")


class Xoauth2(SaslAuthenticator):
    """AUTH XOAUTH2 in the two-step form with an access token (Microsoft 365, Gmail)."""

    mechanism = "XOAUTH2"

    def __init__(self, login: str, token: str) -> None:
        check_value("login", login)
        check_value("access token", token)
        self.login = login
        self._token = token
        self.secrets = (token,)
        self.challenge: dict | None = None
        self._answered = False
        self._response = b""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(login={self.login!r})"

    def client_response(self, client: Session) -> bytes:
        """The SASL response carrying the token."""
        return sasl.xoauth2(self.login, self._token)

    def initial_response(self) -> None:
        """None: the token goes in the answer to the server's first "+" (two-step form)."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """First "+": the token; any later one is the error challenge: an empty answer."""
        if not self._answered:
            self._answered = True
            return self._response
        self.challenge = sasl.decode_challenge(challenge)
        return b""

    def authenticate(self, client: Session) -> None:
        """Refuse without verified TLS, then run the exchange; errors in words."""
        require_verified_tls(client)
        self._response, self._answered, self.challenge = self.client_response(client), False, None
        recorder = _Recorder(client)
        try:
            super().authenticate(recorder)
        except Pop3AuthError as exc:
            if exc.transient:  # IN-USE, SYS/TEMP: the mailbox is busy, not the token
                raise
            said = recorder.last.text if recorder.last is not None else ""
            raise self._refusal(redact(said, self.secrets)[:200]) from None
        finally:
            self._response = b""

    def _refusal(self, said: str) -> Pop3OAuthError:
        where = f" for {self.login}"
        if self.challenge is not None:
            text = sasl.describe_challenge(self.challenge)
            message = f"{text} (POP3 login{where}; server said: {said or 'nothing'})."
        else:
            said_words = said or "nothing"
            message = f"The POP3 server refused the OAuth login{where} (server said: {said_words})."
        # The provider's known refusal in words, else the general hint.
        advice = sasl.explain_refusal(said) or (
            None
            if self.challenge is not None
            else "If the token is fresh, check that POP is enabled for this mailbox at the "
            "provider (docs/oauth2.md)."
        )
        if advice:
            message += " " + advice
        return Pop3OAuthError(message, challenge=self.challenge, reply=said)


class OAuthBearer(Xoauth2):
    """AUTH OAUTHBEARER (RFC 7628) for other ISPs; same rules as Xoauth2."""

    mechanism = "OAUTHBEARER"

    def client_response(self, client: Session) -> bytes:
        """The RFC 7628 response, naming the host and port the session is connected to."""
        return sasl.oauthbearer(self.login, self._token, client.server_hostname, client.port)


class _Recorder:
    """The client as SaslAuthenticator sees it, remembering the server's last reply."""

    def __init__(self, client: Session) -> None:
        self.client = client
        self.last: Status | None = None

    def request(self, line: str) -> Status:
        self.last = self.client.request(line)
        return self.last


def require_verified_tls(client: Session) -> None:
    """Raise Pop3NotSecureError unless the session runs over TLS with a verified certificate."""
    info = client.tls_info()
    context = client.ssl_context if info is not None else None
    verified = (
        info is not None
        and bool(info.peer_cert)  # empty when the context did not verify (CERT_NONE)
        and context is not None
        and context.verify_mode == ssl.CERT_REQUIRED
        and context.check_hostname
    )
    if not verified:
        raise Pop3NotSecureError(
            f"AAMail sends an OAuth access token only over verified TLS, and the session with "
            f"{client.host}:{client.port} is not: choose SSL/TLS (port 995) or STARTTLS. "
            "Nothing was sent."
        )
