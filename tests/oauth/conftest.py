"""Fixtures for the OAuth tests: the test authorization server, the OAuth-only ISP, and a
"Microsoft" provider pointed at the test server (its URL shapes are Entra's)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from mapping.oauth import pkce
from mapping.oauth.providers import Provider, microsoft
from mapping.oauth.tokens import TokenClient, TokenSet
from tests.servers.oauth_authserver import (
    DEVICE_CLIENT,
    POP_SCOPE,
    REDIRECT_URIS,
    SMTP_SCOPE,
    WEB_CLIENT,
    OAuthAuthServer,
)

ALICE, BOB = "alice@contoso.test", "bob@contoso.test"
TENANT = "contoso-tenant-id"
REDIRECT = REDIRECT_URIS[0]
ADMIN_ID = 7


@pytest.fixture(scope="session")
def auth_server():
    with OAuthAuthServer() as server:
        yield server


@pytest.fixture
def auth(auth_server):
    """The authorization server with its default knobs (strict rotation, 1 h tokens)."""
    auth_server.reset()
    yield auth_server
    auth_server.reset()


@pytest.fixture(scope="session")
def isp_server(auth_server):
    if os.geteuid() != 0:
        pytest.skip("a private Dovecot/Postfix needs root")
    if not (shutil.which("dovecot") and shutil.which("postfix")):
        pytest.skip("Dovecot and Postfix are not installed (scripts/system-packages.sh)")
    from tests.servers.oauth_isp import OAuthIsp

    with OAuthIsp(auth_server) as server:
        server.deliver(ALICE, b"From: a@outside.test\nSubject: one\n\nHello 1\n")
        server.deliver(ALICE, b"From: a@outside.test\nSubject: two\n\nHello 2\n")
        server.deliver(BOB, b"From: b@outside.test\nSubject: bob\n\nHi bob\n")
        yield server


@pytest.fixture
def isp(isp_server, auth):
    return isp_server


@pytest.fixture
def isp_tls(isp_server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(isp_server.ca_file))


class RecordingConnect:
    """A Connect that opens plain TCP to loopback and records where; the guard in production."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, timeout: float) -> socket.socket:
        self.calls.append((host, port))
        return socket.create_connection((host, port), timeout=timeout)


@pytest.fixture
def connect() -> RecordingConnect:
    return RecordingConnect()


def ms_provider(auth: OAuthAuthServer, **changes) -> Provider:
    """Microsoft's provider with the test server as its authority (login.microsoftonline.com)."""
    provider = microsoft(
        client_id=WEB_CLIENT, client_secret=auth.web_secret, tenant=TENANT, authority=auth.url
    )
    return dataclasses.replace(provider, **changes) if changes else provider


def device_provider(auth: OAuthAuthServer) -> Provider:
    return ms_provider(auth, client_id=DEVICE_CLIENT, client_secret="")


def token_client(auth, connect, provider: Provider | None = None, **kwargs) -> TokenClient:
    kwargs.setdefault("redirect_uri", REDIRECT)
    return TokenClient(
        provider or ms_provider(auth),
        connect=connect,
        ssl_context=auth.ssl_context(),
        **kwargs,
    )


def browser(auth: OAuthAuthServer, url: str) -> str:
    """What the administrator's browser does: open the URL, return the callback's query."""
    status, location, body = auth.redirect_of(url)
    assert status == 302, (status, body)
    assert location.startswith(REDIRECT)
    return urlsplit(location).query


def sign_in(auth, client: TokenClient, *, login: str = ALICE) -> TokenSet:
    """The whole console sign-in: begin, authorize (consent), callback, code exchange."""
    session: dict = {}
    pending = pkce.begin(session, provider="microsoft", admin_id=ADMIN_ID, target="binding:1")
    query = browser(auth, client.authorization_url(pending, login_hint=login))
    state = parse_qs(query)["state"][0]
    taken = pkce.take(session, state, provider="microsoft", admin_id=ADMIN_ID, max_age=600)
    return client.exchange_code(query, taken)


def pop_only(auth) -> Provider:
    return ms_provider(auth, scopes=("openid", "email", "offline_access", POP_SCOPE))


def smtp_only(auth) -> Provider:
    return ms_provider(auth, scopes=("openid", "email", "offline_access", SMTP_SCOPE))


@pytest.fixture(scope="session")
def expired_alice_token(auth_server) -> str:
    """An access token of alice's that expired (2 s lifetime, then 3.2 s of waiting; once)."""
    auth_server.reset()
    auth_server.config(access_ttl=2)
    try:
        tokens = sign_in(auth_server, token_client(auth_server, RecordingConnect()))
    finally:
        auth_server.reset()
    time.sleep(3.2)
    return tokens.access_token


# --- the product wired to the test servers (issue 15, stage 2) -------------------------------


def ca_bundle(directory: Path, *ca_files: Path) -> Path:
    """One CA file trusting every given CA (ISP_CA_FILE takes one file)."""
    bundle = directory / "ca-bundle.pem"
    bundle.write_bytes(b"".join(Path(f).read_bytes() for f in ca_files))
    bundle.chmod(0o644)
    return bundle


def point_settings_at(settings, auth: OAuthAuthServer, ca_file: Path) -> None:
    """OAUTH_* settings naming the test server as Microsoft's authority and Google's endpoints."""
    settings.OAUTH_REDIRECT_BASE_URL = "https://console.test"
    settings.OAUTH_MICROSOFT_CLIENT_ID = WEB_CLIENT
    settings.OAUTH_MICROSOFT_CLIENT_SECRET = auth.web_secret
    settings.OAUTH_MICROSOFT_TENANT = TENANT
    settings.OAUTH_MICROSOFT_AUTHORITY = auth.url
    settings.OAUTH_GOOGLE_CLIENT_ID = WEB_CLIENT
    settings.OAUTH_GOOGLE_CLIENT_SECRET = auth.web_secret
    settings.OAUTH_GOOGLE_AUTHORIZE_URL = f"{auth.url}/google/authorize"
    settings.OAUTH_GOOGLE_TOKEN_URL = f"{auth.url}/google/token"
    settings.OAUTH_GOOGLE_REVOKE_URL = f"{auth.url}/google/revoke"
    # Another ISP's own OAuth server, speaking OAUTHBEARER (RFC 7628).
    settings.OAUTH_GENERIC_LABEL = "Contoso ISP"
    settings.OAUTH_GENERIC_CLIENT_ID = WEB_CLIENT
    settings.OAUTH_GENERIC_CLIENT_SECRET = auth.web_secret
    settings.OAUTH_GENERIC_AUTHORIZE_URL = f"{auth.url}/isp/authorize"
    settings.OAUTH_GENERIC_TOKEN_URL = f"{auth.url}/isp/token"
    settings.OAUTH_GENERIC_SCOPES = ["openid", "email", "offline_access", POP_SCOPE, SMTP_SCOPE]
    settings.OAUTH_GENERIC_MECHANISM = "OAUTHBEARER"
    settings.ISP_CA_FILE = str(ca_file)


@pytest.fixture
def oauth_settings(settings, auth):
    """The product's OAuth settings pointed at the test authorization server."""
    point_settings_at(settings, auth, auth.ca_file)
    return settings


@pytest.fixture(scope="session")
def isp_ca_bundle(auth_server, isp_server, tmp_path_factory) -> Path:
    return ca_bundle(tmp_path_factory.mktemp("ca"), auth_server.ca_file, isp_server.ca_file)


@pytest.fixture
def oauth_isp_settings(settings, auth, isp, isp_ca_bundle):
    """As oauth_settings, and the OAuth-only ISP's certificate trusted too."""
    point_settings_at(settings, auth, isp_ca_bundle)
    return settings


_mailboxes = itertools.count(1)


def new_mailbox(isp, *messages: bytes) -> str:
    """A fresh mailbox at the OAuth-only ISP holding `messages`; its address."""
    address = f"user{next(_mailboxes)}-{os.getpid()}@contoso.test"
    isp.maildir(address)
    for raw in messages:
        isp.deliver(address, raw)
    return address


def oauth_binding(isp, address: str, *, method: str = "oauth2_microsoft", **fields):
    """A binding of `address` at the OAuth-only ISP (POP3S, relay over STARTTLS), not signed in."""
    from tests.factories import BindingFactory

    fields.setdefault("leave_policy", "keep")
    return BindingFactory(
        host="localhost",
        port=isp.pop3s_port,
        security="ssl",
        username=address,
        auth_method=method,
        smtp_host="localhost",
        smtp_port=isp.submission_port,
        smtp_security="starttls",
        **fields,
    )


def sign_in_binding(auth, binding, *, login: str | None = None, by: str = "test"):
    """Sign the binding in at the test server as `login` (default: its own), without a browser."""
    from mapping.oauth import grants

    prov = grants.binding_provider(binding)
    client = grants.token_client(prov, redirect_uri=REDIRECT_FOR[prov.name])
    tokens = sign_in_as(auth, client, prov.name, login or binding.username)
    return grants.credential_save(
        binding=binding, tokens=tokens, remote_login=login or binding.username, signed_in_by=by
    )


REDIRECT_FOR = {
    "microsoft": REDIRECT_URIS[0],
    "google": REDIRECT_URIS[1],
    "generic": REDIRECT_URIS[2],
}


def sign_in_as(auth, client: TokenClient, provider_name: str, login: str) -> TokenSet:
    session: dict = {}
    pending = pkce.begin(session, provider=provider_name, admin_id=ADMIN_ID, target="binding:1")
    status, location, body = auth.redirect_of(client.authorization_url(pending, login_hint=login))
    assert status == 302, (status, body)
    query = urlsplit(location).query
    state = parse_qs(query)["state"][0]
    taken = pkce.take(session, state, provider=provider_name, admin_id=ADMIN_ID, max_age=600)
    return client.exchange_code(query, taken)
