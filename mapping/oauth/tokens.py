"""The token endpoint client: authorization code + PKCE, refresh, device code, revocation.

authlib (``OAuth2Client``) builds and checks the OAuth messages — the authorization URL with
its S256 challenge, the ``state`` check of the callback, client authentication, token
parsing — and talks HTTP through ``GuardedSession`` (http.py), i.e. through the connect
function the caller injects (the outbound guard). This module turns every outcome into a
``TokenSet`` or an ``OAuthError`` whose ``message`` an administrator can act on:

- ``GrantRevokedError``   invalid_grant on refresh: the binding needs a new sign-in;
- ``SignInRefusedError``  consent refused or the code exchange failed: sign in again;
- ``OAuthConfigError``    the provider refuses AAMail's registration (client id/secret);
- ``TokenEndpointError``  network, timeout, 5xx: transient, try again later.

Tokens never appear in a message, a log or a repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc6749.errors import MismatchingStateException, MissingCodeException

from .http import Connect, GuardedSession, OAuthHttpError
from .pkce import PendingSignIn, SignInStateError
from .providers import Provider

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class OAuthError(Exception):
    """Base: ``message`` is a sentence for an administrator; ``transient`` says retry later."""

    transient = False

    def __init__(self, message: str, *, error: str = "") -> None:
        super().__init__(message)
        self.message, self.error = message, error


class GrantRevokedError(OAuthError):
    """The refresh token is dead (expired, revoked, reused, password changed): sign in again."""


class SignInRefusedError(OAuthError):
    """The provider did not hand out tokens for this sign-in (consent refused, bad code)."""


class OAuthConfigError(OAuthError):
    """The provider refuses AAMail's registration (client id, secret, redirect URI, scopes)."""


class TokenEndpointError(OAuthError):
    """The token endpoint could not be reached or failed: nothing is wrong with the grant."""

    transient = True


class _ProviderReplyError(Exception):
    """authlib's error class here: keeps ``error``/``description`` as sent (authlib's own
    OAuth2Error raises ValueError on the CR/LF in Microsoft's error descriptions)."""

    def __init__(
        self, error: str | None = None, description: str | None = None, **_: object
    ) -> None:
        super().__init__(error)
        self.error = error or "unknown_error"
        self.description = " ".join((description or "").split())[:300]


class _Client(OAuth2Client):
    oauth_error_class = _ProviderReplyError


@dataclass(frozen=True, repr=False)
class TokenSet:
    """What the token endpoint handed out.

    After a refresh, ``refresh_token`` is the old one when the provider sent none (Google
    does not rotate); after a sign-in it is None when the provider gave none.
    """

    access_token: str
    expires_in: int
    refresh_token: str | None
    scope: str
    id_token: str | None
    obtained_at: float = field(default_factory=time.time)

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in

    def __repr__(self) -> str:
        refresh = "yes" if self.refresh_token else "no"
        return f"<TokenSet expires_in={self.expires_in} scope={self.scope!r} refresh={refresh}>"

    @classmethod
    def of(cls, token: dict) -> TokenSet:
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenEndpointError("The sign-in server's reply holds no access token.")
        try:
            expires_in = int(token.get("expires_in") or 3600)
        except (TypeError, ValueError):
            expires_in = 3600  # treat tokens as opaque: never parse them for their expiry
        return cls(
            access_token=access,
            expires_in=expires_in,
            refresh_token=token.get("refresh_token") or None,
            scope=str(token.get("scope") or ""),
            id_token=token.get("id_token") or None,
        )


@dataclass
class DeviceAuthorization:
    """RFC 8628 §3.2: what to show (code, page) and what to poll with."""

    user_code: str
    verification_uri: str
    expires_in: int
    interval: int
    message: str
    device_code: str = field(repr=False)
    started_at: float = field(default_factory=time.time)


class TokenClient:
    """One provider's token endpoint, reached through ``connect`` (see the module docstring)."""

    def __init__(
        self,
        provider: Provider,
        *,
        connect: Connect,
        redirect_uri: str = "",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.provider, self.redirect_uri = provider, redirect_uri
        self._session = GuardedSession(connect, ssl_context=ssl_context, timeout=timeout)

    def _client(self, *, public: bool = False, scope: str | None = None) -> _Client:
        # client_secret_post: the form both Microsoft's and Google's docs show.
        secret = "" if public else self.provider.client_secret
        return _Client(
            self._session,
            client_id=self.provider.client_id,
            client_secret=secret or None,
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            scope=scope,
            redirect_uri=self.redirect_uri or None,
            code_challenge_method="S256",
        )

    # --- authorization code + PKCE ---------------------------------------------------------

    def authorization_url(self, pending: PendingSignIn, *, login_hint: str = "") -> str:
        """Where to send the administrator's browser for this sign-in."""
        if not self.redirect_uri:
            raise OAuthConfigError("No redirect URI is configured (OAUTH_REDIRECT_BASE_URL).")
        extra = dict(self.provider.authorize_params)
        if login_hint:
            extra["login_hint"] = login_hint
        if "openid" in self.provider.scopes:
            extra["nonce"] = pending.nonce
        url, _state = self._client(scope=self.provider.scope).create_authorization_url(
            self.provider.authorize_url,
            state=pending.state,
            code_verifier=pending.verifier,
            **extra,
        )
        return url

    def exchange_code(self, callback_query: str, pending: PendingSignIn) -> TokenSet:
        """Check the callback (state, error) and swap its code + verifier for tokens."""
        params = {k: v[0] for k, v in parse_qs(callback_query, keep_blank_values=True).items()}
        if "error" in params:
            raise _refused_at_sign_in(self.provider, params)
        if not params.get("code"):  # authlib would fall back to another grant type
            raise SignInRefusedError(
                f"{self.provider.label} sent the browser back without an authorization code. "
                "Start again with the Sign in button."
            )
        client = self._client()
        try:
            token = client.fetch_token(
                self.provider.token_url,
                authorization_response=f"{self.redirect_uri}?{callback_query}",
                state=pending.state,
                code_verifier=pending.verifier,
            )
        except MismatchingStateException:
            raise SignInStateError(
                "The answer from the sign-in page belongs to another sign-in; it was ignored. "
                "Start again with the Sign in button."
            ) from None
        except MissingCodeException:
            raise SignInRefusedError(
                f"{self.provider.label} sent the browser back without an authorization code. "
                "Start again with the Sign in button."
            ) from None
        except Exception as exc:
            raise self._translate(exc, during="sign-in") from None
        return TokenSet.of(token)

    # --- refresh ----------------------------------------------------------------------------

    def refresh(self, refresh_token: str, *, mailbox: str) -> TokenSet:
        """A new access token (and maybe a new refresh token); GrantRevokedError → sign in."""
        # Microsoft wants the scopes again (one resource per token); Google takes none.
        scope = self.provider.scope if self.provider.name != "google" else None
        try:
            token = self._client(scope=scope).refresh_token(
                self.provider.token_url, refresh_token=refresh_token
            )
        except Exception as exc:
            raise self._translate(exc, during="refresh", mailbox=mailbox) from None
        return TokenSet.of(token)

    # --- device code (RFC 8628) ------------------------------------------------------------

    def start_device_flow(self) -> DeviceAuthorization:
        """Ask for a user code to enter on the provider's page (Microsoft; public client)."""
        if not self.provider.has_device_flow:
            raise OAuthConfigError(
                f"{self.provider.label} offers no device sign-in for mailboxes; use the "
                "Sign in button from a browser that reaches this console."
            )
        try:
            resp = self._session.post(
                self.provider.device_url,
                data={"client_id": self.provider.client_id, "scope": self.provider.scope},
                headers={"Accept": "application/json"},
            )
            if resp.status_code >= 500:
                resp.raise_for_status()
            reply = resp.json()
            if not isinstance(reply, dict):
                raise ValueError("not a JSON object")
        except Exception as exc:
            raise self._translate(exc, during="device sign-in") from None
        if "error" in reply or "device_code" not in reply:
            raise self._translate(
                _ProviderReplyError(reply.get("error"), reply.get("error_description")),
                during="device sign-in",
            )
        return DeviceAuthorization(
            user_code=str(reply["user_code"]),
            verification_uri=str(reply.get("verification_uri") or reply.get("verification_url")),
            expires_in=int(reply.get("expires_in") or 900),
            interval=max(1, int(reply.get("interval") or 5)),
            message=str(reply.get("message") or ""),
            device_code=str(reply["device_code"]),
        )

    def poll_device(self, device: DeviceAuthorization) -> TokenSet | None:
        """One poll: tokens once approved, None while pending (wait ``device.interval``)."""
        try:
            token = self._client(public=True).fetch_token(
                self.provider.token_url, grant_type=DEVICE_GRANT, device_code=device.device_code
            )
        except _ProviderReplyError as exc:
            if exc.error == "authorization_pending":
                return None
            if exc.error == "slow_down":  # RFC 8628 §3.5: add 5 seconds to the interval
                device.interval += 5
                return None
            if exc.error in ("expired_token", "access_denied", "authorization_declined"):
                raise SignInRefusedError(
                    "The code was not approved in time or the approval was refused; "
                    "start the device sign-in again.",
                    error=exc.error,
                ) from None
            raise self._translate(exc, during="device sign-in") from None
        except Exception as exc:
            raise self._translate(exc, during="device sign-in") from None
        return TokenSet.of(token)

    # --- revocation (RFC 7009) -------------------------------------------------------------

    def revoke(self, token: str) -> bool:
        """Revoke a refresh token where the provider can; False when it has no endpoint."""
        if not self.provider.revoke_url:
            return False
        try:
            resp = self._client().revoke_token(
                self.provider.revoke_url, token=token, token_type_hint="refresh_token"
            )
        except Exception as exc:
            raise self._translate(exc, during="revocation") from None
        # RFC 7009 §2.2: 200 also for an unknown token; Google answers 400 for one it forgot.
        return resp.status_code in (200, 400)

    # --- errors in words -------------------------------------------------------------------

    def _translate(self, exc: Exception, *, during: str, mailbox: str = "") -> OAuthError:
        label = self.provider.label
        if isinstance(exc, OAuthHttpError):
            cls = TokenEndpointError if exc.transient else OAuthConfigError
            return cls(f"{exc.message} ({label} {during})")
        if isinstance(exc, OAuthError):
            return exc
        if not isinstance(exc, _ProviderReplyError):
            return TokenEndpointError(f"{label} sent an unreadable answer during {during}: {exc}.")
        said = f" ({label} said: {exc.error}: {exc.description})" if exc.description else ""
        if exc.error == "invalid_grant" and during == "refresh":
            who = f" for {mailbox}" if mailbox else ""
            return GrantRevokedError(
                f"{label} no longer accepts AAMail's access{who}: the sign-in expired, was revoked "
                f"or the password changed. Sign in again{said}.",
                error=exc.error,
            )
        if exc.error == "invalid_grant":
            return SignInRefusedError(
                f"{label} refused the sign-in's authorization code (used, expired, or the "
                f"sign-in was not finished here). Start again with the Sign in button{said}.",
                error=exc.error,
            )
        if exc.error in ("invalid_client", "unauthorized_client", "invalid_scope"):
            return OAuthConfigError(
                f"{label} refuses AAMail's registration ({exc.error}): check the client id, "
                f"the client secret (it may have expired) and the API permissions, as "
                f"docs/oauth2.md describes{said}.",
                error=exc.error,
            )
        if exc.error in ("temporarily_unavailable", "server_error"):
            err = TokenEndpointError(
                f"{label} is temporarily unavailable; AAMail will try again{said}.", error=exc.error
            )
            return err
        return OAuthError(f"{label} refused the {during} ({exc.error}){said}.", error=exc.error)


def _refused_at_sign_in(provider: Provider, params: dict[str, str]) -> SignInRefusedError:
    error = params.get("error", "")
    said = " ".join(params.get("error_description", "").split())[:300]
    said = f" ({provider.label} said: {said})" if said else ""
    if error in ("access_denied", "consent_required", "interaction_required"):
        return SignInRefusedError(
            f"The sign-in at {provider.label} was cancelled or consent was refused, so AAMail "
            f"got no access to the mailbox. Sign in again and accept the requested "
            f"permissions; a work account may need its administrator's consent first{said}.",
            error=error,
        )
    return SignInRefusedError(
        f"{provider.label} refused the sign-in ({error}){said}. Check AAMail's registration "
        "(redirect URI, permissions) as docs/oauth2.md describes.",
        error=error,
    )


# --- who signed in ------------------------------------------------------------------------


def signed_in_mailbox(tokens: TokenSet, provider: Provider, *, nonce: str = "") -> str:
    """The mailbox address the id_token names (``email``, else ``preferred_username``).

    The id_token came straight from the token endpoint over verified TLS, which OpenID
    Connect Core §3.1.3.7 (6) accepts in place of checking its signature; audience, expiry
    and nonce are still checked. Raises SignInRefusedError in words.
    """
    if not tokens.id_token:
        raise SignInRefusedError(
            f"{provider.label} did not say which mailbox signed in (no id_token); check that "
            "the registration grants the openid and email permissions."
        )
    claims = _jwt_claims(tokens.id_token)
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if provider.client_id not in audiences:
        raise SignInRefusedError(f"The {provider.label} sign-in was issued for another app.")
    if float(claims.get("exp") or 0) < time.time() - 300:
        raise SignInRefusedError(f"The {provider.label} sign-in answer had already expired.")
    if nonce and claims.get("nonce") not in (None, nonce):
        raise SignInRefusedError(f"The {provider.label} sign-in answer belongs to another sign-in.")
    for claim in provider.login_claims:
        value = claims.get(claim)
        if isinstance(value, str) and "@" in value:
            return value.strip()
    raise SignInRefusedError(
        f"{provider.label} did not say which mailbox signed in; the account has no e-mail "
        "address in its profile."
    )


def mailbox_matches(signed_in: str, expected_login: str) -> bool:
    """Whether the signed-in mailbox is the binding's login (addresses compare caseless)."""
    return signed_in.strip().casefold() == expected_login.strip().casefold()


def _jwt_claims(token: str) -> dict:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        raise SignInRefusedError("The sign-in answer's id_token is unreadable.") from None
    if not isinstance(claims, dict):
        raise SignInRefusedError("The sign-in answer's id_token is unreadable.")
    return claims
