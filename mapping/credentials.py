"""How a binding logs in to its ISP: the one place fetch and Detect ask for an Authenticator.

An ISP password (USER/PASS, APOP or SASL PLAIN, whichever the server offers), or "Sign in
with Microsoft / Google" (issue 15): an access token from the token service
(``mapping.oauth.grants``), sent with AUTH XOAUTH2 (OAUTHBEARER for other ISPs) in the
two-step form over verified TLS only (``pop3.Xoauth2``). A cached token the server refuses
gets one forced refresh and one more try; the token service raises ``NeedsSignInError``
when only a person can help.
"""

from __future__ import annotations

from django.views.decorators.debug import sensitive_variables

from . import crypto, detect
from .models import Binding
from .oauth import grants
from .oauth.tokens import OAuthError
from .pop3 import Authenticator, Client, OAuthBearer, Pop3AuthError, Pop3OAuthError, Xoauth2


@sensitive_variables("password")
def pop3_authenticator(binding: Binding, client: Client) -> Authenticator:
    """The password login for this binding on a connected client (its capabilities are known).

    The password is decrypted only now, just before it is sent; a CR, LF or NUL in it or in
    the user name is refused as a rejected login, never sent.
    """
    # Straight from the ciphertext: the clear password passes crypto.py, this module and
    # the POP3 client and its authenticator, nothing else (docs/architecture.md).
    password = crypto.decrypt(binding.password_encrypted)
    try:
        return client.password_authenticator(binding.username, password)
    except ValueError as exc:
        raise Pop3AuthError(str(exc)) from None


def oauth_authenticator(token: grants.AccessToken) -> Authenticator:
    """AUTH XOAUTH2 (Microsoft, Google) or OAUTHBEARER (RFC 7628) with this token."""
    kind = OAuthBearer if token.mechanism == "OAUTHBEARER" else Xoauth2
    return kind(token.login, token.token)


def pop3_token(binding: Binding) -> grants.AccessToken | None:
    """The access token a binding that signs in will log in with; None for a password.

    Asked before the POP3 connection is opened: a mailbox that needs sign-in costs the ISP no
    connection, and a slow token endpoint keeps no POP3 session waiting.
    """
    return grants.access_token(binding=binding) if binding.oauth_provider else None


def pop3_login(binding: Binding, client: Client, token: grants.AccessToken | None = None) -> None:
    """Log a connected client in as the binding, by password or by OAuth token.

    ``token``: from ``pop3_token`` before connecting; asked for now when not given.
    """
    if not binding.oauth_provider:
        client.authenticate(pop3_authenticator(binding, client))
        return
    token = token or grants.access_token(binding=binding)
    try:
        client.authenticate(oauth_authenticator(token))
    except Pop3OAuthError:
        if token.fresh:
            raise  # refreshed a moment ago: the refusal is not the cache's fault
        # Revoked early, or the provider's clock disagrees with ours: one forced refresh and
        # one more AUTH in the same session (RFC 5034 allows another AUTH after a failure).
        token = grants.access_token(binding=binding, stale_version=token.version)
        client.authenticate(oauth_authenticator(token))


def detect_login(binding: Binding) -> detect.OAuthLogin | None:
    """How Detect logs in as this binding by OAuth (None for a password binding)."""
    if not binding.oauth_provider:
        return None
    label = binding.get_auth_method_display().removeprefix("Sign in with ")
    try:
        mechanism = grants.binding_provider(binding).mechanism
    except OAuthError:
        mechanism = "XOAUTH2"  # the Token step says what is not set up
    return detect.OAuthLogin(label, mechanism, lambda: grants.access_token(binding=binding))


def detect_targets(binding: Binding, *, smtp: bool) -> tuple[detect.Target, detect.Target | None]:
    """Detect's POP3 target, and the SMTP one if asked, with the stored credentials."""
    oauth = detect_login(binding)
    password = "" if oauth else binding.get_isp_password()
    pop3 = detect.Target(
        binding.host, binding.port, binding.security, binding.username, password, oauth
    )
    if not smtp:
        return pop3, None
    if oauth:
        # One grant serves POP and SMTP; the token belongs to the POP login's mailbox.
        user, smtp_password = binding.username, ""
    else:
        user, smtp_password = binding.smtp_credentials()
    host, port, security = binding.smtp_host, binding.smtp_port, binding.smtp_security
    return pop3, detect.Target(host, port, security, user, smtp_password, oauth)
