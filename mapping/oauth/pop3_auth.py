"""POP3 login with an OAuth access token: AUTH XOAUTH2 / OAUTHBEARER (RFC 5034, RFC 7628).

Written against the pluggable contract of ``mapping/pop3_auth.py`` (``SaslAuthenticator``;
the lead moves these classes into ``mapping/pop3/auth.py``). Rules, each from a snag of the
rig (shared/oauth2.md §4):

- always the two-step form: ``AUTH XOAUTH2``, the server's empty ``+``, then the response
  line (what Microsoft documents for POP; Dovecot and Gmail take it too);
- only ``+OK`` is success: the error challenge ``+ eyJ…`` also starts with "+" (poplib's
  ``_shortcmd`` takes it for success);
- the error challenge is answered with an empty line; the server then sends ``-ERR``, and the
  challenge's JSON is reported in words in ``Pop3OAuthError``;
- no token leaves unless the session is TLS with a verified certificate and host name:
  loopback counts as "secure" for Dovecot, so the server would take it in plain text.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from mapping.pop3_auth import SaslAuthenticator, check_value
from mapping.pop3_errors import Pop3AuthError, Pop3Error

from . import sasl

if TYPE_CHECKING:
    from mapping.pop3 import Client, Reply


class Pop3OAuthError(Pop3AuthError):
    """The server refused the token; ``challenge`` is the decoded JSON it sent, if any."""

    def __init__(self, message: str, *, challenge: dict | None = None, reply: str = "") -> None:
        super().__init__(message)
        self.challenge = challenge
        self.reply = reply


class Pop3NotSecureError(Pop3Error):
    """The session is not verified TLS, so no token was sent."""

    transient = False


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

    def client_response(self, client: Client) -> bytes:
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

    def authenticate(self, client: Client) -> None:
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
            raise self._refusal(said.replace(self._token, "***")[:200]) from None
        finally:
            self._response = b""

    def _refusal(self, said: str) -> Pop3OAuthError:
        where = f" for {self.login}"
        if self.challenge is not None:
            text = sasl.describe_challenge(self.challenge)
            message = f"{text} (POP3 login{where}; server said: {said or 'nothing'})."
        else:
            message = (
                f"The POP3 server refused the OAuth login{where} (server said: "
                f"{said or 'nothing'}). If the token is fresh, check that POP is enabled for "
                "this mailbox at the provider (docs/oauth2.md)."
            )
        advice = sasl.explain_refusal(said)
        if advice:
            message += " " + advice
        return Pop3OAuthError(message, challenge=self.challenge, reply=said)


class OAuthBearer(Xoauth2):
    """AUTH OAUTHBEARER (RFC 7628) for other ISPs; same rules as Xoauth2."""

    mechanism = "OAUTHBEARER"

    def client_response(self, client: Client) -> bytes:
        """The RFC 7628 response, naming the host and port the session is connected to."""
        return sasl.oauthbearer(self.login, self._token, client.server_hostname, client.port)


class _Recorder:
    """The client as SaslAuthenticator sees it, remembering the server's last reply."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.last: Reply | None = None

    def request(self, line: str) -> Reply:
        self.last = self.client.request(line)
        return self.last


def require_verified_tls(client: Client) -> None:
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
