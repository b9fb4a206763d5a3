"""The token service (mapping.oauth.grants) on the database: cache, refresh, rotation, pauses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from mapping import crypto
from mapping.models import BindingState, OAuthCredential, OAuthState
from mapping.oauth import grants
from mapping.oauth.tokens import OAuthConfigError, TokenEndpointError
from tests.factories import BindingFactory
from tests.oauth.conftest import ALICE, sign_in_binding
from tests.servers.oauth_authserver import WEB_CLIENT

pytestmark = pytest.mark.django_db


@pytest.fixture
def binding(oauth_settings):
    return BindingFactory(host="localhost", username=ALICE, auth_method="oauth2_microsoft")


def expire_soon(cred: OAuthCredential, seconds: int = 60) -> None:
    OAuthCredential.objects.filter(pk=cred.pk).update(
        access_expires_at=timezone.now() + timedelta(seconds=seconds)
    )


def revoke_grant(auth, cred: OAuthCredential) -> None:
    status, _ = auth.post(
        "/revoke",
        {
            "client_id": WEB_CLIENT,
            "client_secret": auth.web_secret,
            "token": crypto.decrypt(cred.refresh_token_encrypted),
        },
    )
    assert status == 200


def test_it_stores_both_tokens_only_as_ciphertext(auth, binding):
    cred = sign_in_binding(auth, binding)
    token = grants.access_token(binding=binding)
    refresh = crypto.decrypt(cred.refresh_token_encrypted)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM mapping_oauthcredential WHERE id = %s", [cred.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    assert token.token not in row
    assert refresh not in row
    assert crypto.decrypt(cred.access_token_encrypted) == token.token
    for shown in (repr(cred), str(cred), repr(token), repr(binding)):
        assert token.token not in shown
        assert refresh not in shown
    assert cred.remote_login == ALICE
    assert cred.state == OAuthState.OK


def test_it_hands_out_a_cached_token_without_asking_the_provider(auth, binding):
    sign_in_binding(auth, binding)
    before = auth.stats()
    first = grants.access_token(binding=binding)
    second = grants.access_token(binding=binding)
    assert first.token == second.token
    assert not first.fresh
    assert first.login == ALICE
    assert auth.stats()["token_requests"] == before["token_requests"]


def test_it_refreshes_when_less_than_five_minutes_are_left(auth, binding):
    cred = sign_in_binding(auth, binding)
    old_refresh = crypto.decrypt(cred.refresh_token_encrypted)
    expire_soon(cred, 299)
    before = auth.stats()["refresh_grants"]
    token = grants.access_token(binding=binding)
    cred.refresh_from_db()
    assert token.fresh
    assert token.version == cred.version
    assert auth.stats()["refresh_grants"] == before + 1
    # Strict rotation: the new refresh token is stored, the spent one is not kept.
    assert crypto.decrypt(cred.refresh_token_encrypted) != old_refresh
    assert cred.access_expires_at > timezone.now() + timedelta(minutes=55)
    assert grants.access_token(binding=binding).token == token.token  # cached again


def test_it_keeps_googles_refresh_token_which_does_not_rotate(auth, oauth_settings):
    binding = BindingFactory(host="localhost", username=ALICE, auth_method="oauth2_google")
    cred = sign_in_binding(auth, binding)
    refresh = crypto.decrypt(cred.refresh_token_encrypted)
    auth.config(rotation="none")
    expire_soon(cred)
    assert grants.access_token(binding=binding).fresh
    cred.refresh_from_db()
    assert crypto.decrypt(cred.refresh_token_encrypted) == refresh


def test_it_forces_a_refresh_for_a_token_the_server_refused(auth, binding):
    sign_in_binding(auth, binding)
    refused = grants.access_token(binding=binding)
    again = grants.access_token(binding=binding, stale_version=refused.version)
    assert again.fresh
    assert again.token != refused.token
    assert again.version == refused.version + 1
    # A worker that saw the same refusal later gets the new token, no second refresh.
    before = auth.stats()["refresh_grants"]
    late = grants.access_token(binding=binding, stale_version=refused.version)
    assert late.token == again.token
    assert auth.stats()["refresh_grants"] == before


def test_it_pauses_the_binding_naming_the_mailbox_when_the_grant_is_revoked(auth, binding):
    cred = sign_in_binding(auth, binding)
    revoke_grant(auth, cred)
    expire_soon(cred)
    with pytest.raises(grants.NeedsSignInError) as refused:
        grants.access_token(binding=binding)
    assert ALICE in refused.value.message
    assert "Sign in again" in refused.value.message
    cred.refresh_from_db()
    binding.refresh_from_db()
    assert cred.state == OAuthState.NEEDS_SIGN_IN
    assert binding.state == BindingState.NEEDS_SIGN_IN
    assert binding.schedule.next_fetch_at is None
    assert ALICE in binding.last_error
    # Paused means paused: the next caller is told at once, the provider is not asked again.
    before = auth.stats()["token_requests"]
    with pytest.raises(grants.NeedsSignInError):
        grants.access_token(binding=binding)
    assert auth.stats()["token_requests"] == before


def test_it_retries_later_without_pausing_when_the_token_endpoint_fails(auth, binding):
    cred = sign_in_binding(auth, binding)
    expire_soon(cred)
    auth.config(token_status=503)
    with pytest.raises(TokenEndpointError) as failed:
        grants.access_token(binding=binding)
    assert failed.value.transient
    assert "try again" in failed.value.message
    cred.refresh_from_db()
    binding.refresh_from_db()
    assert cred.state == OAuthState.OK
    assert binding.state != BindingState.NEEDS_SIGN_IN
    auth.config(token_status=0)
    assert grants.access_token(binding=binding).fresh  # the grant survived


def test_it_says_how_to_sign_in_a_binding_that_never_was(binding):
    with pytest.raises(grants.NeedsSignInError) as refused:
        grants.access_token(binding=binding)
    assert "not signed in yet" in refused.value.message
    assert "Sign in with Microsoft" in refused.value.message


def test_it_reencrypts_both_tokens_when_the_keys_rotate(auth, binding, settings):
    cred = sign_in_binding(auth, binding)
    token = grants.access_token(binding=binding).token
    old_keys = list(settings.ISP_SECRET_KEYS)
    settings.ISP_SECRET_KEYS = [crypto.generate_key(), *old_keys]
    call_command("rotate_isp_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.ISP_SECRET_KEYS = settings.ISP_SECRET_KEYS[:1]  # the old key is gone
    rotated = OAuthCredential.objects.get(pk=cred.pk)
    assert rotated.access_token_encrypted != cred.access_token_encrypted
    assert rotated.refresh_token_encrypted != cred.refresh_token_encrypted
    assert grants.access_token(binding=binding).token == token
    expire_soon(rotated)
    assert grants.access_token(binding=binding).fresh  # the refresh token decrypts too


def test_it_reaches_the_token_endpoint_only_through_the_outbound_guard(auth, binding, settings):
    cred = sign_in_binding(auth, binding)
    expire_soon(cred)
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = False  # the test provider is on 127.0.0.1
    before = auth.stats()["token_requests"]
    with pytest.raises(OAuthConfigError) as refused:
        grants.access_token(binding=binding)
    assert "127.0.0.1" in refused.value.message
    assert not refused.value.transient
    assert auth.stats()["token_requests"] == before  # no connection was made
    cred.refresh_from_db()
    assert cred.state == OAuthState.OK  # a refused address is no reason to sign in again
