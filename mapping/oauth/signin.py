"""The console's sign-in of a mailbox: authorization code + PKCE, and the device code.

The views stay doors: ``sign_in_start`` gives the URL to send the administrator's browser
to; ``sign_in_finish`` checks the callback (the single-use ``state`` bound to the
administrator and the provider, the PKCE verifier, the ``nonce``) and says which mailbox
signed in; ``device_start`` / ``device_poll`` run RFC 8628 for a console no browser can be
sent back to (Microsoft). Whether the mailbox is the binding's, and where the tokens go
(``grants.credential_save``, or sealed into the wizard), is the caller's decision.

The session holds the pending sign-in (pkce.py) and, for the device code, the device code
sealed with the ISP keys; tokens never enter the session here.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from .. import crypto
from . import pkce
from .grants import token_client
from .pkce import PendingSignIn, SignInStateError
from .providers import Provider, ProviderError, provider, redirect_uri
from .tokens import (
    DeviceAuthorization,
    OAuthConfigError,
    OAuthError,
    SignInRefusedError,
    TokenSet,
    signed_in_mailbox,
)

DEVICE_KEY = "oauth_device_sign_ins"

__all__ = [
    "Finished",
    "SignInStateError",
    "device_poll",
    "device_start",
    "sign_in_finish",
    "sign_in_start",
]


def _provider(name: str) -> Provider:
    try:
        return provider(name)
    except ProviderError as exc:
        raise OAuthConfigError(exc.message) from None


def sign_in_start(
    session: MutableMapping, *, provider_name: str, admin_id: int, target: str, login_hint: str
) -> str:
    """Begin a sign-in for ``target`` ("binding:<id>" / "wizard:<id>"); the provider's URL."""
    prov = _provider(provider_name)
    try:
        redirect = redirect_uri(provider_name)
    except ProviderError as exc:
        raise OAuthConfigError(exc.message) from None
    pending = pkce.begin(session, provider=provider_name, admin_id=admin_id, target=target)
    return token_client(prov, redirect_uri=redirect).authorization_url(
        pending, login_hint=login_hint
    )


@dataclass(frozen=True, repr=False)
class Finished:
    """A sign-in the provider completed: for what, who signed in, and the tokens."""

    target: str
    mailbox: str
    tokens: TokenSet


@sensitive_variables()
def sign_in_finish(
    session: MutableMapping, *, provider_name: str, admin_id: int, query: str
) -> Finished:
    """Check the callback's query and swap its code for tokens.

    The pending sign-in leaves the session first, whatever the outcome (single use).
    Raises SignInStateError (not ours, used, expired, another administrator's) or an
    OAuthError (refused consent, a refused code, a registration problem), in words.
    """
    params = parse_qs(query, keep_blank_values=True)
    state = (params.get("state") or [""])[0]
    pending: PendingSignIn = pkce.take(
        session,
        state,
        provider=provider_name,
        admin_id=admin_id,
        max_age=float(settings.OAUTH_SIGN_IN_SECONDS),
    )
    prov = _provider(provider_name)
    client = token_client(prov, redirect_uri=redirect_uri(provider_name))
    tokens = client.exchange_code(query, pending)
    mailbox = signed_in_mailbox(tokens, prov, nonce=pending.nonce)
    return Finished(pending.target, mailbox, tokens)


# --- device code (RFC 8628), Microsoft ---------------------------------------------------------


def device_start(
    session: MutableMapping, *, provider_name: str, admin_id: int, target: str
) -> DeviceAuthorization:
    """Ask the provider for a user code for ``target``; kept (sealed) in the session."""
    prov = _provider(provider_name)
    device = token_client(prov).start_device_flow()
    records = dict(session.get(DEVICE_KEY) or {})
    records[target] = {
        "provider": provider_name,
        "admin_id": admin_id,
        "device_code": crypto.encrypt(device.device_code),
        "user_code": device.user_code,
        "verification_uri": device.verification_uri,
        "interval": device.interval,
        "expires_at": device.started_at + device.expires_in,
        "message": device.message,
    }
    session[DEVICE_KEY] = records
    return device


def device_pending(session: MutableMapping, *, target: str, admin_id: int) -> dict | None:
    """What to show for a device sign-in in progress (no device code), or None."""
    record = (session.get(DEVICE_KEY) or {}).get(target)
    if record is None or record["admin_id"] != admin_id:
        return None
    return {k: v for k, v in record.items() if k != "device_code"}


@sensitive_variables()
def device_poll(
    session: MutableMapping, *, target: str, admin_id: int
) -> tuple[str, TokenSet] | None:
    """One poll: (mailbox, tokens) once approved, None while pending.

    The record leaves the session on success and on any refusal; SignInStateError when
    there is no device sign-in of this administrator for ``target``.
    """
    records = dict(session.get(DEVICE_KEY) or {})
    record = records.get(target)
    if record is None or record["admin_id"] != admin_id:
        raise SignInStateError(
            "No code sign-in is waiting for this remote POP3 account; start it again."
        )
    if time.time() > record["expires_at"]:
        records.pop(target)
        session[DEVICE_KEY] = records
        raise SignInRefusedError("The code expired before it was approved; start again.")
    prov = _provider(record["provider"])
    device = DeviceAuthorization(
        user_code=record["user_code"],
        verification_uri=record["verification_uri"],
        expires_in=int(record["expires_at"] - time.time()),
        interval=record["interval"],
        message=record["message"],
        device_code=crypto.decrypt(record["device_code"]),
    )
    try:
        tokens = token_client(prov).poll_device(device)
    except OAuthError as exc:
        if not exc.transient:  # refused or expired: this code is done with
            records.pop(target)
            session[DEVICE_KEY] = records
        raise
    if tokens is None:
        record["interval"] = device.interval  # slow_down may have raised it
        session[DEVICE_KEY] = records
        return None
    records.pop(target)
    session[DEVICE_KEY] = records
    return signed_in_mailbox(tokens, prov), tokens
