"""binding_fetch of a signed-in binding from the XOAUTH2-only POP3 server (Dovecot)."""

from __future__ import annotations

import dataclasses
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from mapping import crypto
from mapping.fetch import binding_fetch
from mapping.models import Binding, BindingState, FetchOutcome, OAuthCredential
from mapping.oauth import grants, providers
from mapping.oauth.providers import MICROSOFT_POP_SCOPE
from tests.fetch.conftest import stored_messages
from tests.oauth.conftest import new_mailbox, oauth_binding, sign_in_binding
from tests.servers.oauth_authserver import WEB_CLIENT

pytestmark = pytest.mark.django_db

MESSAGES = [
    b"From: a@outside.test\nSubject: first\n\n.leading dot\nbody 1\n",
    b"From: b@outside.test\nSubject: second\n\nCaf\xe9 8-bit\n",
    b"From: c@outside.test\nSubject: third\n\nbody 3\n",
]


def auth_lines(isp, mark: int) -> str:
    return "\n".join(isp.auth_log_lines()[mark:])


def test_it_fetches_every_message_exactly_once(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, *MESSAGES))
    sign_in_binding(auth, binding)
    mark = len(isp.auth_log_lines())
    run = binding_fetch(binding=binding)
    assert run.outcome == FetchOutcome.OK, run.error
    assert sorted(stored_messages(binding)) == sorted(MESSAGES)
    again = binding_fetch(binding=binding)
    assert again.outcome == FetchOutcome.OK
    assert again.messages == 0
    assert len(stored_messages(binding)) == len(MESSAGES)
    binding.refresh_from_db()
    assert binding.state == BindingState.OK
    assert binding.messages_fetched == len(MESSAGES)
    assert f"Login: user=<{binding.username}>, method=XOAUTH2" in auth_lines(isp, mark)


def test_it_refreshes_first_when_the_token_is_about_to_expire(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, MESSAGES[0]))
    cred = sign_in_binding(auth, binding)
    OAuthCredential.objects.filter(pk=cred.pk).update(
        access_expires_at=timezone.now() + timedelta(minutes=2)
    )
    before = auth.stats()["refresh_grants"]
    run = binding_fetch(binding=binding)
    assert run.outcome == FetchOutcome.OK, run.error
    assert run.messages == 1, run.error
    assert auth.stats()["refresh_grants"] == before + 1
    cred.refresh_from_db()
    assert cred.version == 2
    assert cred.access_expires_at > timezone.now() + timedelta(minutes=55)


def test_it_costs_no_refresh_while_the_cached_token_is_good(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, MESSAGES[0]))
    sign_in_binding(auth, binding)
    before = auth.stats()["token_requests"]
    assert binding_fetch(binding=binding).outcome == FetchOutcome.OK
    assert binding_fetch(binding=binding).outcome == FetchOutcome.OK
    assert auth.stats()["token_requests"] == before


def test_it_refreshes_once_and_logs_in_again_when_the_server_refuses_a_cached_token(
    auth, isp, oauth_isp_settings
):
    # The cached token is one the server refuses (issued for another mailbox here; revoked
    # early or expired by the provider's clock in real life): one forced refresh, one retry.
    other = new_mailbox(isp)
    binding = oauth_binding(isp, new_mailbox(isp, *MESSAGES[:2]))
    cred = sign_in_binding(auth, binding)
    foreign = grants.access_token(binding=oauth_binding_signed_in(auth, isp, other))
    OAuthCredential.objects.filter(pk=cred.pk).update(
        access_token_encrypted=crypto.encrypt(foreign.token)
    )
    before, mark = auth.stats()["refresh_grants"], len(isp.auth_log_lines())
    run = binding_fetch(binding=binding)
    assert run.outcome == FetchOutcome.OK, run.error
    assert run.messages == 2, run.error
    assert auth.stats()["refresh_grants"] == before + 1
    assert "did not match" in auth_lines(isp, mark)  # the first AUTH was refused


def oauth_binding_signed_in(auth, isp, address):
    binding = oauth_binding(isp, address)
    sign_in_binding(auth, binding)
    return binding


def test_it_needs_attention_when_even_a_fresh_token_is_refused(
    auth, isp, oauth_isp_settings, monkeypatch
):
    # A grant without the POP permission: the server refuses its tokens, refreshed or not;
    # the words say what to check, and the binding is not retried on its own.
    real = providers.microsoft

    def without_pop(**kwargs):
        provider = real(**kwargs)
        scopes = tuple(s for s in provider.scopes if s != MICROSOFT_POP_SCOPE)
        return dataclasses.replace(provider, scopes=scopes)

    monkeypatch.setattr(providers, "microsoft", without_pop)
    binding = oauth_binding(isp, new_mailbox(isp, MESSAGES[0]))
    cred = sign_in_binding(auth, binding)
    OAuthCredential.objects.filter(pk=cred.pk).update(
        access_expires_at=timezone.now() - timedelta(seconds=1)
    )
    run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.AUTH_FAILED
    assert binding.state == BindingState.NEEDS_ATTENTION
    assert binding.schedule.next_fetch_at is None
    assert "refused the access token" in binding.last_error
    assert binding.username in binding.last_error


def test_it_pauses_with_needs_sign_in_when_the_grant_was_revoked(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, MESSAGES[0]))
    cred = sign_in_binding(auth, binding)
    auth.post(
        "/revoke",
        {
            "client_id": WEB_CLIENT,
            "client_secret": auth.web_secret,
            "token": crypto.decrypt(cred.refresh_token_encrypted),
        },
    )
    OAuthCredential.objects.filter(pk=cred.pk).update(
        access_expires_at=timezone.now() - timedelta(seconds=1)
    )
    mark = len(isp.auth_log_lines())
    run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.NEEDS_SIGN_IN
    assert binding.state == BindingState.NEEDS_SIGN_IN
    assert binding.schedule.next_fetch_at is None
    assert binding.username in binding.last_error
    assert "Sign in again" in binding.last_error
    assert "xoauth2" not in auth_lines(isp, mark).lower()  # no token was sent
    assert stored_messages(binding) == []


def test_it_asks_for_a_sign_in_when_there_never_was_one(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, MESSAGES[0]))
    run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.NEEDS_SIGN_IN
    assert "not signed in yet" in binding.last_error


def test_a_mailbox_that_needs_sign_in_costs_the_isp_no_connection(auth, isp, oauth_isp_settings):
    # The binding points at a listening socket: any connection attempt would be waiting in
    # its backlog.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        binding = oauth_binding(isp, new_mailbox(isp, MESSAGES[0]))
        Binding.objects.filter(pk=binding.pk).update(
            host="127.0.0.1", port=listener.getsockname()[1]
        )
        binding.refresh_from_db()
        run = binding_fetch(binding=binding, trigger="manual")
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert run.outcome == FetchOutcome.NEEDS_SIGN_IN


def test_it_retries_without_pausing_when_the_token_endpoint_is_down(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, MESSAGES[0]))
    cred = sign_in_binding(auth, binding)
    OAuthCredential.objects.filter(pk=cred.pk).update(
        access_expires_at=timezone.now() - timedelta(seconds=1)
    )
    auth.config(token_status=503)
    run = binding_fetch(binding=binding)
    binding.refresh_from_db()
    assert run.outcome == FetchOutcome.ERROR
    assert binding.state == BindingState.RETRYING
    assert binding.schedule.next_fetch_at is not None
    auth.config(token_status=0)
    assert binding_fetch(binding=binding).outcome == FetchOutcome.OK


def test_it_fetches_with_oauthbearer_from_another_isps_oauth_server(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, *MESSAGES[:2]), method="oauth2_generic")
    sign_in_binding(auth, binding)
    mark = len(isp.auth_log_lines())
    run = binding_fetch(binding=binding)
    assert run.outcome == FetchOutcome.OK, run.error
    assert run.messages == 2, run.error
    assert f"Login: user=<{binding.username}>, method=OAUTHBEARER" in auth_lines(isp, mark)
