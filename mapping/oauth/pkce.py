"""PKCE S256 (RFC 7636) and the single-use ``state`` of one sign-in, kept in the admin's session.

A sign-in starts with ``begin(session, …)``: a random ``state`` (CSRF protection of the
callback, RFC 6749 §10.12), a PKCE verifier whose S256 challenge goes into the authorization
URL, and an OIDC ``nonce``, all kept server-side in the Django session (any mutable mapping
here) together with who started it (the administrator) and for what (the binding, or the
wizard's pending one). The callback calls ``take(session, state, …)``: the record leaves the
session whatever happens next (single use), and is refused when unknown, expired, started
by someone else or for another provider. No Django import: the session is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field

SESSION_KEY = "oauth_sign_ins"
MAX_PENDING = 5  # an administrator juggling tabs; older ones are dropped


class SignInStateError(Exception):
    """The callback's ``state`` matches no sign-in this administrator started; in words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def new_verifier() -> str:
    """A PKCE code verifier: 86 characters of the unreserved set (RFC 7636 §4.1: 43-128)."""
    return secrets.token_urlsafe(64)


def s256_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class PendingSignIn:
    """One started sign-in; ``verifier`` and ``nonce`` never appear in a repr."""

    state: str
    provider: str
    admin_id: int
    target: str  # "binding:<id>", or "wizard:<id>" before the binding exists
    created_at: float
    verifier: str = field(repr=False)
    nonce: str = field(repr=False)

    @property
    def challenge(self) -> str:
        return s256_challenge(self.verifier)


def begin(
    session: MutableMapping, *, provider: str, admin_id: int, target: str, now: float | None = None
) -> PendingSignIn:
    """Start a sign-in: store a fresh state/verifier/nonce in the session and return them."""
    pending = PendingSignIn(
        state=secrets.token_urlsafe(32),
        provider=provider,
        admin_id=admin_id,
        target=target,
        created_at=time.time() if now is None else now,
        verifier=new_verifier(),
        nonce=secrets.token_urlsafe(16),
    )
    records = dict(session.get(SESSION_KEY) or {})
    records[pending.state] = {
        "provider": provider,
        "admin_id": admin_id,
        "target": target,
        "created_at": pending.created_at,
        "verifier": pending.verifier,
        "nonce": pending.nonce,
    }
    newest = sorted(records.items(), key=lambda item: item[1]["created_at"])[-MAX_PENDING:]
    session[SESSION_KEY] = dict(newest)  # a new dict, so Django sees the session changed
    return pending


def take(
    session: MutableMapping,
    state: str,
    *,
    provider: str,
    admin_id: int,
    max_age: float,
    now: float | None = None,
) -> PendingSignIn:
    """Remove and return the sign-in ``state`` names; SignInStateError when it is not valid."""
    records = dict(session.get(SESSION_KEY) or {})
    record = None
    for known in list(records):
        if secrets.compare_digest(known.encode(), (state or "").encode()):
            record = records.pop(known)
    session[SESSION_KEY] = records  # single use: gone even when refused below
    if record is None:
        raise SignInStateError(
            "This sign-in was not started here, was already used, or its page was reloaded. "
            "Start it again with the Sign in button."
        )
    now = time.time() if now is None else now
    if now - record["created_at"] > max_age:
        raise SignInStateError(
            f"The sign-in took longer than {max_age / 60:.0f} minutes and expired. "
            "Start it again with the Sign in button."
        )
    if record["admin_id"] != admin_id or record["provider"] != provider:
        raise SignInStateError(
            "This sign-in was started by another administrator or for another provider; "
            "it was discarded. Start it again with the Sign in button."
        )
    return PendingSignIn(
        state=state,
        provider=record["provider"],
        admin_id=record["admin_id"],
        target=record["target"],
        created_at=record["created_at"],
        verifier=record["verifier"],
        nonce=record["nonce"],
    )
