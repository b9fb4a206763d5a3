"""The token client's HTTP: only through the injected connect (the outbound guard), HTTPS
verified, device code and revocation through the same seam."""

from __future__ import annotations

import ssl

import pytest

from mapping.oauth.http import GuardedSession, OAuthHttpError, guarded_connect
from mapping.oauth.providers import google
from mapping.oauth.tokens import (
    GrantRevokedError,
    OAuthConfigError,
    SignInRefusedError,
    TokenClient,
)
from mapping.outbound import Policy
from tests.oauth.conftest import (
    ALICE,
    BOB,
    RecordingConnect,
    device_provider,
    ms_provider,
    sign_in,
    token_client,
)
from tests.servers.oauth_authserver import WEB_CLIENT


def test_it_refreshes_through_the_guard_when_the_policy_allows_the_address(auth, connect):
    tokens = sign_in(auth, token_client(auth, connect))
    guarded = token_client(auth, guarded_connect(Policy(allow_private=True)))
    assert guarded.refresh(tokens.refresh_token, mailbox=ALICE).access_token


def test_it_is_stopped_by_the_guard_before_any_connection(auth):
    before = auth.stats()["token_requests"]
    client = token_client(auth, guarded_connect(Policy(allow_private=False)))
    with pytest.raises(OAuthConfigError) as refused:
        client.refresh("rt.any", mailbox=ALICE)
    assert "does not connect to 127.0.0.1" in refused.value.message
    assert not refused.value.transient
    assert auth.stats()["token_requests"] == before


def test_it_never_reaches_a_metadata_address_whatever_the_policy(auth):
    provider = ms_provider(auth, token_url="https://169.254.169.254/token")
    client = token_client(auth, guarded_connect(Policy(allow_private=True)), provider=provider)
    with pytest.raises(OAuthConfigError, match="cloud metadata address"):
        client.refresh("rt.any", mailbox=ALICE)


def test_it_refuses_plain_http_and_unverified_tls(auth, connect):
    session = GuardedSession(connect, ssl_context=auth.ssl_context())
    with pytest.raises(OAuthHttpError, match="only https://"):
        session.post(f"http://127.0.0.1:{auth.port}/token", data={"a": "b"})
    assert connect.calls == []
    with pytest.raises(ValueError, match="must be verified"):
        GuardedSession(connect, ssl_context=ssl._create_unverified_context())


def test_it_refuses_a_token_endpoint_whose_certificate_is_not_trusted(auth, connect):
    client = TokenClient(
        ms_provider(auth), connect=connect, ssl_context=ssl.create_default_context()
    )
    with pytest.raises(OAuthConfigError, match="is not trusted"):
        client.refresh("rt.any", mailbox=ALICE)


def test_it_signs_a_console_without_public_url_in_with_the_device_code(auth, connect):
    client = token_client(auth, connect, provider=device_provider(auth), redirect_uri="")
    device = client.start_device_flow()
    assert device.user_code
    assert device.verification_uri.endswith("/device")
    assert device.device_code not in repr(device)
    assert client.poll_device(device) is None  # authorization_pending
    auth.approve_device(device.user_code, BOB)
    tokens = client.poll_device(device)
    assert tokens.access_token
    assert tokens.refresh_token
    with pytest.raises(SignInRefusedError):  # a device code is single use too
        client.poll_device(device)


def test_it_offers_no_device_flow_for_google(auth, connect):
    provider = google(
        client_id=WEB_CLIENT,
        client_secret=auth.web_secret,
        authorize_url=f"{auth.url}/authorize",
        token_url=f"{auth.url}/token",
        revoke_url=f"{auth.url}/revoke",
    )
    with pytest.raises(OAuthConfigError, match="no device sign-in"):
        token_client(auth, connect, provider=provider).start_device_flow()


def test_it_revokes_the_grant_where_the_provider_can(auth, connect):
    provider = google(
        client_id=WEB_CLIENT,
        client_secret=auth.web_secret,
        authorize_url=f"{auth.url}/authorize",
        token_url=f"{auth.url}/token",
        revoke_url=f"{auth.url}/revoke",
    )
    tokens = sign_in(auth, token_client(auth, connect))
    client = token_client(auth, RecordingConnect(), provider=provider)
    assert client.revoke(tokens.refresh_token) is True
    with pytest.raises(GrantRevokedError):
        client.refresh(tokens.refresh_token, mailbox=ALICE)
    assert token_client(auth, connect).revoke(tokens.refresh_token) is False  # Microsoft: none
