"""Fixtures for the OAuth tests: the test authorization server, the OAuth-only ISP, and a
"Microsoft" provider pointed at the test server (its URL shapes are Entra's)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import ssl
import time
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
