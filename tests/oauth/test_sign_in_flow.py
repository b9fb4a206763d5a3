"""Console sign-in against the test authorization server: code + PKCE S256 + state, refusals."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from mapping.oauth import pkce
from mapping.oauth.tokens import (
    OAuthConfigError,
    SignInRefusedError,
    mailbox_matches,
    signed_in_mailbox,
)
from tests.oauth.conftest import (
    ADMIN_ID,
    ALICE,
    BOB,
    REDIRECT,
    TENANT,
    browser,
    ms_provider,
    sign_in,
    token_client,
)
from tests.servers.oauth_authserver import WEB_CLIENT


def _start(client, session=None, **kwargs):
    session = {} if session is None else session
    pending = pkce.begin(session, provider="microsoft", admin_id=ADMIN_ID, target="binding:1")
    return session, pending, client.authorization_url(pending, **kwargs)


def test_it_puts_pkce_s256_state_and_offline_access_in_the_authorization_url(auth, connect):
    _session, pending, url = _start(token_client(auth, connect), login_hint=ALICE)
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == f"/{TENANT}/oauth2/v2.0/authorize"  # Entra's shape, per tenant
    assert q["code_challenge_method"] == "S256"
    assert q["code_challenge"] == pkce.s256_challenge(pending.verifier)
    assert q["state"] == pending.state
    assert q["nonce"] == pending.nonce
    assert q["redirect_uri"] == REDIRECT
    assert q["client_id"] == WEB_CLIENT
    assert "offline_access" in q["scope"].split()
    assert pending.verifier not in url  # the verifier stays in the session
    assert connect.calls == []  # building the URL talks to nobody


def test_it_swaps_the_code_for_tokens_and_names_the_signed_in_mailbox(auth, connect):
    client = token_client(auth, connect)
    before = auth.stats()["code_grants"]
    tokens = sign_in(auth, client, login=BOB)
    assert tokens.access_token.count(".") == 2
    assert len(tokens.access_token) > 2500
    assert tokens.refresh_token
    assert tokens.expires_in == 3600
    assert signed_in_mailbox(tokens, client.provider) == BOB
    assert mailbox_matches(signed_in_mailbox(tokens, client.provider), "Bob@Contoso.TEST")
    assert not mailbox_matches(BOB, ALICE)
    assert auth.stats()["code_grants"] == before + 1
    assert set(connect.calls) == {("127.0.0.1", auth.port)}  # only through the injected connect
    assert tokens.access_token not in repr(tokens)
    assert tokens.refresh_token not in repr(tokens)


def test_it_refuses_a_used_authorization_code(auth, connect):
    client = token_client(auth, connect)
    _session, pending, url = _start(client)
    query = browser(auth, url)
    client.exchange_code(query, pending)
    with pytest.raises(SignInRefusedError, match="authorization code") as refused:
        client.exchange_code(query, pending)
    assert refused.value.error == "invalid_grant"


def test_it_refuses_a_stolen_code_without_the_verifier(auth, connect):
    client = token_client(auth, connect)
    _session, pending, url = _start(client)
    query = browser(auth, url)
    thief = dataclasses.replace(pending, verifier=pkce.new_verifier())
    with pytest.raises(SignInRefusedError, match="PKCE verification failed"):
        client.exchange_code(query, thief)


def test_it_rejects_a_foreign_state_before_any_token_request(auth, connect):
    client = token_client(auth, connect)
    session, pending, url = _start(client)
    query = browser(auth, url).replace(pending.state, "attacker-state")
    before = auth.stats()["token_requests"]
    forged_state = parse_qs(query)["state"][0]
    with pytest.raises(pkce.SignInStateError):
        pkce.take(session, forged_state, provider="microsoft", admin_id=ADMIN_ID, max_age=600)
    with pytest.raises(pkce.SignInStateError, match="another sign-in"):
        client.exchange_code(query, pending)  # and authlib checks it again
    assert auth.stats()["token_requests"] == before
    assert connect.calls == []


def test_it_gets_no_redirect_for_an_unregistered_redirect_uri(auth, connect):
    client = token_client(auth, connect, redirect_uri="https://evil.test/oauth/callback/")
    _session, _pending, url = _start(client)
    status, location, body = auth.redirect_of(url)
    assert (status, location) == (400, None)
    assert b"unregistered redirect_uri" in body


def test_it_is_refused_by_the_server_without_pkce(auth, connect):
    client = token_client(auth, connect)
    url = f"{client.provider.authorize_url}?" + urlencode(
        {"response_type": "code", "client_id": WEB_CLIENT, "redirect_uri": REDIRECT, "state": "s"}
    )
    query = browser(auth, url)
    assert parse_qs(query)["error_description"] == ["PKCE S256 required"]
    _session, pending, _url = _start(client)
    with pytest.raises(SignInRefusedError, match="PKCE S256 required"):
        client.exchange_code(query, pending)


def test_it_explains_a_refused_consent_in_words(auth, connect):
    auth.config(consent="deny")
    client = token_client(auth, connect)
    _session, pending, url = _start(client)
    with pytest.raises(SignInRefusedError) as refused:
        client.exchange_code(browser(auth, url), pending)
    assert refused.value.error == "access_denied"
    assert "cancelled or consent was refused" in refused.value.message
    assert connect.calls == []  # no token request for a refused consent


def test_it_reports_a_wrong_client_secret_as_a_registration_problem(auth, connect):
    client = token_client(auth, connect, provider=ms_provider(auth, client_secret="wrong"))
    _session, pending, url = _start(client)
    with pytest.raises(OAuthConfigError, match="client secret"):
        client.exchange_code(browser(auth, url), pending)


def test_it_sends_no_token_request_for_a_callback_without_a_code(auth, connect):
    client = token_client(auth, connect)
    _session, pending, _url = _start(client)
    with pytest.raises(SignInRefusedError, match="without an authorization code"):
        client.exchange_code(f"state={pending.state}", pending)
    assert connect.calls == []
