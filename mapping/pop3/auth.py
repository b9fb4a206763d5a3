"""POP3 login methods, pluggable: USER/PASS, APOP, SASL PLAIN now; XOAUTH2 fits later.

Contract: an ``Authenticator`` gets a connected ``pop3.Client`` and logs in through
``client.request(line) -> Status`` (one command line, one status line back); SASL
mechanisms subclass ``SaslAuthenticator``, which runs the AUTH exchange. It raises
``Pop3AuthError`` when the server says no, and never puts a secret into an exception,
a log or a ``repr``. XOAUTH2 later: a ``SaslAuthenticator`` with ``mechanism =
"XOAUTH2"``, ``secrets = (token,)`` and an initial response of
``user=<u>\x01auth=Bearer <token>\x01\x01``; the default ``respond()`` answers the
server's JSON error challenge with b"", after which the server sends -ERR.
"""

from __future__ import annotations

import base64
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import Pop3AuthError, Pop3ProtocolError, redact

if TYPE_CHECKING:
    from .client import Client
    from .protocol import Status


def check_value(what: str, value: str) -> str:
    """Refuse CR, LF and NUL: poplib sends them on as a second command."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"The {what} contains a line break or NUL character; POP3 cannot send it.")
    return value


class Authenticator(ABC):
    """One login method; ``authenticate`` logs in through the client or raises Pop3AuthError."""

    @abstractmethod
    def authenticate(self, client: Client) -> None:
        """Log in on a connected client; never put a secret into an error or a log."""


@dataclass(repr=False)
class UserPass(Authenticator):
    """USER/PASS (RFC 1939 §7)."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        check_value("username", self.username)
        check_value("password", self.password)

    def authenticate(self, client: Client) -> None:
        """Send USER then PASS."""
        for line in (f"USER {self.username}", f"PASS {self.password}"):
            reply = client.request(line)
            if not reply.ok:
                raise auth_error(reply, self.password)


@dataclass(repr=False)
class Apop(Authenticator):
    """APOP (RFC 1939 §7): MD5 of the greeting's timestamp and the password."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        check_value("username", self.username)
        check_value("password", self.password)

    def authenticate(self, client: Client) -> None:
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

    def authenticate(self, client: Client) -> None:
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
