"""The POP3 error tree: every failure carries a sentence an administrator can act on.

``.message`` never contains a password (``redact`` hides one a server echoes back);
``.transient`` says whether retrying later can help.
"""

from __future__ import annotations

import re
from typing import Any


class Pop3Error(Exception):
    """Base of every POP3 failure; ``message`` is meant for an administrator."""

    transient: bool = True

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if transient is not None:
            self.transient = transient


class Pop3ConnectError(Pop3Error):
    """The name did not resolve, or the address refused or could not be reached."""


class Pop3TimeoutError(Pop3Error):
    """The server did not answer within the timeout, or sent too little for too long."""


class Pop3TlsError(Pop3Error):
    """TLS handshake or certificate failure; ``ssl_error`` keeps the cause."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        transient: bool | None = None,
        ssl_error: BaseException | None = None,
        peer_cert: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, transient=transient)
        self.ssl_error = ssl_error
        self.peer_cert = peer_cert


class Pop3StartTlsRefusedError(Pop3TlsError):
    """STARTTLS was chosen but the server did not offer or accept STLS."""


class Pop3AuthError(Pop3Error):
    """The server rejected the login (transient only for IN-USE/SYS/TEMP/LOGIN-DELAY)."""

    transient = False


class Pop3ProtocolError(Pop3Error):
    """Garbage, an unexpected reply, an overlong line, or a connection lost mid-reply."""


class Pop3RefusedError(Pop3Error):
    """The server answered -ERR to a command about one message (RETR or DELE of a listed one).

    The session stays usable: the reply was a well-formed status line.
    """

    def __init__(self, message: str, *, msgno: int) -> None:
        super().__init__(message, transient=True)
        self.msgno = msgno


class Pop3OAuthError(Pop3AuthError):
    """The server refused the token; ``challenge`` is the decoded JSON it sent, if any."""

    def __init__(self, message: str, *, challenge: dict | None = None, reply: str = "") -> None:
        super().__init__(message)
        self.challenge = challenge
        self.reply = reply


class Pop3NotSecureError(Pop3Error):
    """The session is not verified TLS, so no token was sent."""

    transient = False


def redact(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """``text`` with every echo of a secret replaced by ``***``, and nothing else changed.

    A long secret is hidden wherever it appears. A short one (under 6 characters) is hidden
    only where no letter or digit touches it: replacing every "e" of a server's sentence
    because the password is "e" would mangle the message and hide nothing worth hiding.
    """
    for secret in secrets:
        if not secret:
            continue
        if len(secret) >= 6:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text
