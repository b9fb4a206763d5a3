"""How a binding logs in to its ISP: the one place fetch and Detect ask for an Authenticator.

Today an ISP password (USER/PASS, APOP or SASL PLAIN, whichever the server offers). Issue 15
adds "Sign in with Microsoft / Google" here: an access token from the token service, sent
with AUTH XOAUTH2 (or OAUTHBEARER) over verified TLS only.
"""

from __future__ import annotations

from django.views.decorators.debug import sensitive_variables

from . import crypto
from .models import Binding
from .pop3 import Authenticator, Client, Pop3AuthError


@sensitive_variables("password")
def pop3_authenticator(binding: Binding, client: Client) -> Authenticator:
    """The login for this binding on a connected client (its capabilities are known).

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
