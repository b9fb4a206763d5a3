"""Who signs a mailbox in: Microsoft 365 (per tenant), Google, or another ISP's OAuth server.

``Provider`` holds everything the sign-in, the token client and the SASL login need: the
endpoints, the scopes (shared/oauth2.md §5), extra authorization parameters and the SASL
mechanism. ``provider(name)`` builds one from the OAUTH_* settings and refuses, in words, a
provider that is not set up or whose endpoints are not HTTPS. ``redirect_uri(name)`` is the
exact URI to register with the provider, from OAUTH_REDIRECT_BASE_URL.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MICROSOFT, GOOGLE, GENERIC = "microsoft", "google", "generic"
NAMES = (MICROSOFT, GOOGLE, GENERIC)

MICROSOFT_POP_SCOPE = "https://outlook.office.com/POP.AccessAsUser.All"
MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"

# POP and SMTP are one resource (outlook.office.com), so one grant serves both; "profile" adds
# preferred_username (the sign-in name) to the id_token when the user has no "email" claim.
MICROSOFT_SCOPES = (
    "openid",
    "email",
    "profile",
    "offline_access",
    MICROSOFT_POP_SCOPE,
    MICROSOFT_SMTP_SCOPE,
)
GOOGLE_SCOPES = ("openid", "email", GOOGLE_MAIL_SCOPE)


class ProviderError(Exception):
    """A provider is not set up, or set up wrongly; ``message`` says which setting to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Provider:
    """One OAuth provider as the product uses it; the client secret never shows in a repr."""

    name: str
    label: str  # "Microsoft", shown as "Sign in with Microsoft"
    client_id: str
    client_secret: str = field(repr=False)
    authorize_url: str = ""
    token_url: str = ""
    scopes: tuple[str, ...] = ()
    mechanism: str = "XOAUTH2"
    device_url: str = ""  # empty: no device flow (Google refuses Gmail scopes there)
    revoke_url: str = ""  # empty: the provider has no RFC 7009 endpoint (Microsoft)
    authorize_params: tuple[tuple[str, str], ...] = ()
    # id_token claims naming the signed-in mailbox, in order of preference
    login_claims: tuple[str, ...] = ("email", "preferred_username")
    pop3_server: tuple[str, int] | None = None  # defaults the wizard may offer
    smtp_server: tuple[str, int] | None = None

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)

    @property
    def has_device_flow(self) -> bool:
        return bool(self.device_url)


def microsoft(*, client_id: str, client_secret: str, tenant: str, authority: str) -> Provider:
    """Microsoft identity platform v2 for one tenant ("organizations", "common" or an id)."""
    base = f"{authority.rstrip('/')}/{tenant}/oauth2/v2.0"
    return Provider(
        name=MICROSOFT,
        label="Microsoft",
        client_id=client_id,
        client_secret=client_secret,
        authorize_url=f"{base}/authorize",
        token_url=f"{base}/token",
        device_url=f"{base}/devicecode",
        scopes=MICROSOFT_SCOPES,
        mechanism="XOAUTH2",
        # select_account: the administrator signs in for someone else's mailbox, so never
        # reuse the browser's current Microsoft session silently.
        authorize_params=(("prompt", "select_account"),),
        login_claims=("email", "preferred_username"),
        pop3_server=("outlook.office365.com", 995),
        smtp_server=("smtp.office365.com", 587),
    )


def google(
    *, client_id: str, client_secret: str, authorize_url: str, token_url: str, revoke_url: str
) -> Provider:
    """Google; a refresh token comes only with access_type=offline and a consent prompt."""
    return Provider(
        name=GOOGLE,
        label="Google",
        client_id=client_id,
        client_secret=client_secret,
        authorize_url=authorize_url,
        token_url=token_url,
        revoke_url=revoke_url,
        scopes=GOOGLE_SCOPES,
        mechanism="XOAUTH2",
        authorize_params=(("access_type", "offline"), ("prompt", "consent")),
        login_claims=("email",),
        pop3_server=("pop.gmail.com", 995),
        smtp_server=("smtp.gmail.com", 587),
    )


def _https(setting: str, url: str, *, required: bool = True) -> str:
    if not url:
        if required:
            raise ProviderError(f"{setting} is empty; set it to the provider's HTTPS endpoint.")
        return url
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ProviderError(
            f"{setting} must be an https:// URL (it is {url!r}): tokens never travel unencrypted."
        )
    return url


def _need(setting: str, value: str, label: str) -> str:
    if not value:
        raise ProviderError(
            f"Sign in with {label} is not set up: {setting} is empty. Register AAMail with "
            f"{label} and set it (docs/oauth2.md)."
        )
    return value


def provider(name: str, settings: object | None = None) -> Provider:
    """The provider ``name`` from the OAUTH_* settings; ProviderError in words if not usable."""
    if settings is None:
        from django.conf import settings
    s = settings
    if name == MICROSOFT:
        result = microsoft(
            client_id=_need("OAUTH_MICROSOFT_CLIENT_ID", s.OAUTH_MICROSOFT_CLIENT_ID, "Microsoft"),
            client_secret=_need(
                "OAUTH_MICROSOFT_CLIENT_SECRET", s.OAUTH_MICROSOFT_CLIENT_SECRET, "Microsoft"
            ),
            tenant=_need("OAUTH_MICROSOFT_TENANT", s.OAUTH_MICROSOFT_TENANT, "Microsoft"),
            authority=_https("OAUTH_MICROSOFT_AUTHORITY", s.OAUTH_MICROSOFT_AUTHORITY),
        )
    elif name == GOOGLE:
        result = google(
            client_id=_need("OAUTH_GOOGLE_CLIENT_ID", s.OAUTH_GOOGLE_CLIENT_ID, "Google"),
            client_secret=_need(
                "OAUTH_GOOGLE_CLIENT_SECRET", s.OAUTH_GOOGLE_CLIENT_SECRET, "Google"
            ),
            authorize_url=_https("OAUTH_GOOGLE_AUTHORIZE_URL", s.OAUTH_GOOGLE_AUTHORIZE_URL),
            token_url=_https("OAUTH_GOOGLE_TOKEN_URL", s.OAUTH_GOOGLE_TOKEN_URL),
            revoke_url=_https("OAUTH_GOOGLE_REVOKE_URL", s.OAUTH_GOOGLE_REVOKE_URL, required=False),
        )
    elif name == GENERIC:
        label = s.OAUTH_GENERIC_LABEL or "your ISP"
        mechanism = (s.OAUTH_GENERIC_MECHANISM or "OAUTHBEARER").upper()
        if mechanism not in ("OAUTHBEARER", "XOAUTH2"):
            raise ProviderError("OAUTH_GENERIC_MECHANISM must be OAUTHBEARER or XOAUTH2.")
        result = Provider(
            name=GENERIC,
            label=label,
            client_id=_need("OAUTH_GENERIC_CLIENT_ID", s.OAUTH_GENERIC_CLIENT_ID, label),
            client_secret=s.OAUTH_GENERIC_CLIENT_SECRET,
            authorize_url=_https("OAUTH_GENERIC_AUTHORIZE_URL", s.OAUTH_GENERIC_AUTHORIZE_URL),
            token_url=_https("OAUTH_GENERIC_TOKEN_URL", s.OAUTH_GENERIC_TOKEN_URL),
            device_url=_https(
                "OAUTH_GENERIC_DEVICE_URL", s.OAUTH_GENERIC_DEVICE_URL, required=False
            ),
            revoke_url=_https(
                "OAUTH_GENERIC_REVOKE_URL", s.OAUTH_GENERIC_REVOKE_URL, required=False
            ),
            scopes=tuple(
                _need("OAUTH_GENERIC_SCOPES", " ".join(s.OAUTH_GENERIC_SCOPES), label).split()
            ),
            mechanism=mechanism,
        )
    else:
        raise ProviderError(f"Unknown OAuth provider {name!r}; known: {', '.join(NAMES)}.")
    return result


def redirect_uri(name: str, settings: object | None = None) -> str:
    """The exact redirect URI to register for ``name``: <base>/oauth/callback/<name>/."""
    if settings is None:
        from django.conf import settings
    base = settings.OAUTH_REDIRECT_BASE_URL.strip().rstrip("/")
    if not base:
        raise ProviderError(
            "OAUTH_REDIRECT_BASE_URL is empty: set it to the console's address as the "
            "administrator's browser reaches it, e.g. https://mail.example.com (docs/oauth2.md)."
        )
    parts = urlsplit(base)
    if parts.query or parts.fragment or not parts.hostname:
        raise ProviderError("OAUTH_REDIRECT_BASE_URL must be a plain https://host[:port] address.")
    # Providers take plain http only for the loopback address (RFC 8252 §7.3).
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname)):
        raise ProviderError(
            "OAUTH_REDIRECT_BASE_URL must start with https:// (http:// only for localhost)."
        )
    if name not in NAMES:
        raise ProviderError(f"Unknown OAuth provider {name!r}; known: {', '.join(NAMES)}.")
    return f"{base}/oauth/callback/{name}/"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
