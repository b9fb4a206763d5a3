"""The stored OAuth grant of a binding: the token service fetch, Detect and the relay ask.

``access_token(binding=…)`` hands out an access token with more than ``min_ttl`` seconds
left (5 minutes by default). A cached one costs nothing. Otherwise the refresh happens
under a lock on the credential row, with a re-check of ``version`` once the lock is held:
a worker that waited finds the token the other one just got and uses it, so two workers
never spend the same refresh token (with rotation that detects reuse — RFC 9700 §4.14.2,
the test server's "strict" — the second refresh would revoke the whole grant; oauth2.md
§4 snag 4). PostgreSQL locks the row (``select_for_update``); SQLite, which has no row
locks, serialises the refresh on a lock file per credential under VAR_DIR. The HTTP call
runs inside the lock on purpose, bounded by OAUTH_HTTP_TIMEOUT.

Outcomes: ``invalid_grant`` on refresh -> the credential and the binding "need sign-in"
(paused, the message names the mailbox), ``NeedsSignInError``; network, timeout, 5xx ->
``TokenEndpointError`` (transient: retry later, nothing paused); a registration problem ->
``OAuthConfigError``. Tokens are decrypted only here, just before use, and never logged.

Also here: saving a sign-in (``credential_save``), forgetting one when the binding's server
or login changes (``credential_discard``), and revoking one when the binding is deleted
(``credential_revoke``, Google only: Microsoft has no revocation endpoint).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import crypto
from ..lease import unleased
from ..models import Binding, BindingState, OAuthCredential, OAuthState, Schedule
from ..tls import isp_ssl_context
from .http import guarded_connect
from .providers import Provider, ProviderError, provider
from .tokens import (
    GrantRevokedError,
    OAuthConfigError,
    OAuthError,
    TokenClient,
    TokenSet,
)

log = logging.getLogger(__name__)

MIN_TTL = 300  # seconds an access token must still be valid when handed out


class NeedsSignInError(OAuthError):
    """No usable grant: never signed in, or the provider revoked it; a person must sign in."""


@dataclass(frozen=True, repr=False)
class AccessToken:
    """An access token for one login; ``fresh`` when it was refreshed by this very call."""

    login: str
    token: str = field(repr=False)
    version: int
    expires_at: datetime
    mechanism: str  # XOAUTH2 | OAUTHBEARER
    fresh: bool = False

    def __repr__(self) -> str:
        return f"<AccessToken {self.login} v{self.version} fresh={self.fresh}>"


# --- the provider and its token endpoint ------------------------------------------------------


def binding_provider(binding: Binding) -> Provider:
    """The configured provider of an OAuth binding; OAuthConfigError in words if not set up."""
    name = binding.oauth_provider
    if not name:
        raise OAuthConfigError(f"{binding.username} logs in with an ISP password, not OAuth.")
    try:
        return provider(name)
    except ProviderError as exc:
        raise OAuthConfigError(exc.message) from None


def token_client(prov: Provider, *, redirect_uri: str = "") -> TokenClient:
    """The provider's token endpoint through the outbound guard, TLS as for every ISP."""
    return TokenClient(
        prov,
        connect=guarded_connect(),
        redirect_uri=redirect_uri,
        ssl_context=isp_ssl_context(),
        timeout=float(settings.OAUTH_HTTP_TIMEOUT),
    )


# --- the token service ------------------------------------------------------------------------


def not_signed_in(binding: Binding) -> str:
    """What to do for a binding that has no sign-in, in words."""
    label = binding.get_auth_method_display().removeprefix("Sign in with ")
    return (
        f"{binding.username} is not signed in yet: press “Sign in with {label}” on the POP3 "
        "remote tab and sign in as that mailbox."
    )


def _usable(cred: OAuthCredential, min_ttl: float, stale_version: int | None) -> bool:
    if not cred.access_token_encrypted or cred.access_expires_at is None:
        return False
    if stale_version is not None and cred.version == stale_version:
        return False  # the caller saw this very token refused
    return cred.access_expires_at - timezone.now() > timedelta(seconds=min_ttl)


@sensitive_variables()
def _cached(binding: Binding, cred: OAuthCredential, mechanism: str) -> AccessToken:
    return AccessToken(
        login=binding.username,
        token=crypto.decrypt(cred.access_token_encrypted),
        version=cred.version,
        expires_at=cred.access_expires_at,
        mechanism=mechanism,
    )


@sensitive_variables()
def access_token(
    *, binding: Binding, min_ttl: float = MIN_TTL, stale_version: int | None = None
) -> AccessToken:
    """A token for the binding's login (see the module docstring for the rules).

    ``stale_version``: the version of a token the server just refused; a refresh is forced
    unless another worker already replaced that token.
    """
    cred = OAuthCredential.objects.filter(binding_id=binding.pk).first()
    if cred is None:
        raise NeedsSignInError(not_signed_in(binding))
    if cred.state == OAuthState.NEEDS_SIGN_IN:
        raise NeedsSignInError(cred.last_error or not_signed_in(binding))
    prov = binding_provider(binding)
    if _usable(cred, min_ttl, stale_version):
        return _cached(binding, cred, prov.mechanism)
    revoked: GrantRevokedError | None = None
    with _refresh_lock(cred.pk), transaction.atomic():
        cred = OAuthCredential.objects.select_for_update().get(pk=cred.pk)
        if cred.state == OAuthState.NEEDS_SIGN_IN:
            raise NeedsSignInError(cred.last_error or not_signed_in(binding))
        if _usable(cred, min_ttl, stale_version):
            return _cached(binding, cred, prov.mechanism)  # another worker refreshed meanwhile
        client = token_client(prov)
        try:
            tokens = client.refresh(
                crypto.decrypt(cred.refresh_token_encrypted), mailbox=binding.username
            )
        except GrantRevokedError as exc:
            # Stored before the lock is released: the next worker must not try again.
            cred.state, cred.last_error = OAuthState.NEEDS_SIGN_IN, exc.message
            cred.save(update_fields=["state", "last_error"])
            revoked = exc
        else:
            _store(cred, tokens)
            return AccessToken(
                login=binding.username,
                token=tokens.access_token,
                version=cred.version,
                expires_at=cred.access_expires_at,
                mechanism=prov.mechanism,
                fresh=True,
            )
    binding_needs_sign_in(binding.pk, revoked.message)
    raise NeedsSignInError(revoked.message, error=revoked.error)


@sensitive_variables()
def held_access_token(held: dict, *, mechanism: str = "XOAUTH2") -> AccessToken:
    """The access token of a sign-in the wizard holds (not stored yet), while it is valid.

    Not refreshed: the wizard keeps no row to store a rotated refresh token in.
    """
    left = float(held["expires_at"]) - time.time()
    if left < 60:
        raise NeedsSignInError(
            f"The sign-in of {held['remote_login']} on this page is over an hour old: press "
            "the Sign in button again to test it."
        )
    return AccessToken(
        login=held["remote_login"],
        token=held["access_token"],
        version=0,
        expires_at=timezone.now() + timedelta(seconds=left),
        mechanism=mechanism,
    )


@sensitive_variables()
def _store(cred: OAuthCredential, tokens: TokenSet) -> None:
    now = timezone.now()
    cred.access_token_encrypted = crypto.encrypt(tokens.access_token)
    cred.access_expires_at = now + timedelta(seconds=tokens.expires_in)
    if tokens.refresh_token:  # Google sends none on refresh: the old one stays good
        cred.refresh_token_encrypted = crypto.encrypt(tokens.refresh_token)
    if tokens.scope:
        cred.scopes = tokens.scope
    cred.version += 1
    cred.last_refresh_at, cred.last_error = now, ""
    cred.save(
        update_fields=[
            "access_token_encrypted",
            "access_expires_at",
            "refresh_token_encrypted",
            "scopes",
            "version",
            "last_refresh_at",
            "last_error",
        ]
    )


@contextlib.contextmanager
def _refresh_lock(credential_id: int) -> Iterator[None]:
    """Nothing on PostgreSQL (the row lock does it); an flock per credential on SQLite."""
    if connection.vendor == "postgresql":
        yield
        return
    directory = Path(settings.VAR_DIR) / "oauth-locks"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / f"{credential_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def binding_needs_sign_in(binding_id: int, message: str) -> None:
    """Pause the binding with the words, unless a fetch runs: that fetch records it itself."""
    now = timezone.now()
    with transaction.atomic():  # the schedule first, as a fetch's fenced writes lock it
        if Schedule.objects.filter(unleased(now), pk=binding_id).update(next_fetch_at=None):
            Binding.objects.filter(pk=binding_id).update(
                state=BindingState.NEEDS_SIGN_IN, last_error=message, last_error_at=now
            )


# --- sign-in, discard, revoke -------------------------------------------------------------


@sensitive_variables()
@transaction.atomic
def credential_save(
    *, binding: Binding, tokens: TokenSet, remote_login: str, signed_in_by: str
) -> OAuthCredential:
    """Keep a finished sign-in (replacing any earlier one) and let the binding fetch now."""
    if not tokens.refresh_token:
        raise OAuthConfigError(
            f"{binding.get_auth_method_display().removeprefix('Sign in with ')} gave no refresh "
            "token, so AAMail could not keep access: check that the registration grants "
            "offline access (docs/oauth2.md)."
        )
    now = timezone.now()
    old = OAuthCredential.objects.select_for_update().filter(binding=binding).first()
    cred = old or OAuthCredential(binding=binding)
    cred.provider = binding.oauth_provider
    cred.remote_login = remote_login
    cred.scopes = tokens.scope
    cred.refresh_token_encrypted = crypto.encrypt(tokens.refresh_token)
    cred.access_token_encrypted = crypto.encrypt(tokens.access_token)
    cred.access_expires_at = now + timedelta(seconds=tokens.expires_in)
    cred.version = (cred.version or 0) + 1
    cred.state, cred.last_error = OAuthState.OK, ""
    cred.signed_in_at, cred.signed_in_by = now, signed_in_by
    cred.save()
    # A console write like an edit (services.binding_save): fetch soon, the error is gone.
    Schedule.objects.filter(pk=binding.pk).update(next_fetch_at=now if binding.enabled else None)
    Binding.objects.filter(pk=binding.pk).update(
        state=BindingState.OK if binding.last_success_at else BindingState.NEW,
        last_error="",
        consecutive_failures=0,
        failing_since=None,
    )
    return cred


def credential_discard(binding: Binding) -> bool:
    """Forget the binding's sign-in (its server, login or provider changed); True if one was."""
    deleted, _ = OAuthCredential.objects.filter(binding_id=binding.pk).delete()
    return bool(deleted)


@sensitive_variables()
def credential_revoke(
    *, provider_name: str, remote_login: str, refresh_token_encrypted: str
) -> str:
    """Revoke a deleted binding's grant where the provider can; a sentence for the admin.

    Not when another binding still uses a sign-in of the same mailbox: Google revokes the
    whole grant of the app for that user, theirs included.
    """
    if OAuthCredential.objects.filter(
        provider=provider_name, remote_login__iexact=remote_login
    ).exists():
        return ""
    try:
        prov = provider(provider_name)
    except ProviderError:
        return ""
    if not prov.revoke_url:
        return ""  # Microsoft: access ends when the refresh token is no longer used
    started = time.monotonic()
    try:
        revoked = token_client(prov).revoke(crypto.decrypt(refresh_token_encrypted))
    except (OAuthError, crypto.SecretKeyError) as exc:
        text = exc.message if isinstance(exc, OAuthError) else str(exc)
        return (
            f"{prov.label} could not be told to revoke AAMail's access for {remote_login} "
            f"({text}); remove it in the mailbox's account security settings."
        )
    took = 1000 * (time.monotonic() - started)
    log.info("oauth: revoked the grant of %s in %.0f ms", remote_login, took)
    return f"{prov.label} revoked AAMail's access for {remote_login}." if revoked else ""
