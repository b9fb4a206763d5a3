"""Refresh against the three rotation styles, the unlocked two-process race, errors in words."""

from __future__ import annotations

import multiprocessing

import pytest

from mapping.oauth.tokens import GrantRevokedError, OAuthConfigError, TokenEndpointError
from tests.oauth.conftest import ALICE, RecordingConnect, ms_provider, sign_in, token_client


def test_it_rotates_and_a_reused_refresh_token_revokes_the_whole_grant(auth, connect):
    client = token_client(auth, connect)
    first = sign_in(auth, client)
    second = client.refresh(first.refresh_token, mailbox=ALICE)
    assert second.refresh_token
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    with pytest.raises(GrantRevokedError) as reused:
        client.refresh(first.refresh_token, mailbox=ALICE)
    assert "no longer accepts AAMail's access for alice@contoso.test" in reused.value.message
    assert "Sign in again" in reused.value.message
    assert not reused.value.transient
    with pytest.raises(GrantRevokedError, match="revoked"):  # the winner's token died too
        client.refresh(second.refresh_token, mailbox=ALICE)


def test_it_keeps_working_with_the_old_token_under_lenient_rotation(auth, connect):
    auth.config(rotation="lenient")  # what Microsoft documents today
    client = token_client(auth, connect)
    first = sign_in(auth, client)
    second = client.refresh(first.refresh_token, mailbox=ALICE)
    assert second.refresh_token != first.refresh_token
    assert client.refresh(first.refresh_token, mailbox=ALICE).access_token


def test_it_keeps_the_refresh_token_when_the_provider_does_not_rotate(auth, connect):
    client = token_client(auth, connect)
    first = sign_in(auth, client)
    auth.config(rotation="none")  # Google: the same refresh token for ever
    again = client.refresh(first.refresh_token, mailbox=ALICE)
    assert again.refresh_token == first.refresh_token  # none sent: the old one stays
    assert client.refresh(first.refresh_token, mailbox=ALICE).access_token != again.access_token


def _unlocked_refresh(auth_url, secret, ca_file, refresh_token, barrier, out):
    import ssl

    from mapping.oauth.providers import microsoft
    from mapping.oauth.tokens import OAuthError, TokenClient
    from tests.oauth.conftest import TENANT, RecordingConnect

    provider = microsoft(
        client_id="aamail-web", client_secret=secret, tenant=TENANT, authority=auth_url
    )
    client = TokenClient(
        provider, connect=RecordingConnect(), ssl_context=ssl.create_default_context(cafile=ca_file)
    )
    barrier.wait()
    try:
        out.put(("ok", client.refresh(refresh_token, mailbox=ALICE).refresh_token))
    except OAuthError as exc:
        out.put((type(exc).__name__, exc.message))


def test_it_loses_the_grant_when_two_processes_refresh_without_a_lock(auth, connect):
    # What two unsynchronised workers do: the reason the token service locks the row.
    client = token_client(auth, connect)
    tokens = sign_in(auth, client)
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    args = (auth.url, auth.web_secret, str(auth.ca_file), tokens.refresh_token, barrier, out)
    workers = [ctx.Process(target=_unlocked_refresh, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(10)
    winners = [value for kind, value in results if kind == "ok"]
    losers = [value for kind, value in results if kind == "GrantRevokedError"]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert "Sign in again" in losers[0]
    with pytest.raises(GrantRevokedError):  # reuse detection revoked the winner's token too
        client.refresh(winners[0], mailbox=ALICE)
    assert auth.stats()["families_revoked"] >= 1


def test_it_reads_microsofts_multi_line_error_descriptions(auth, connect):
    # authlib's own OAuth2Error raises ValueError on the CR/LF Entra puts in descriptions.
    client = token_client(auth, connect)
    tokens = sign_in(auth, client)
    client.refresh(tokens.refresh_token, mailbox=ALICE)
    auth.config(style="microsoft")
    with pytest.raises(GrantRevokedError) as refused:
        client.refresh(tokens.refresh_token, mailbox=ALICE)
    assert "AADSTS70000" in refused.value.message
    assert "Trace ID" in refused.value.message
    assert "\r" not in refused.value.message
    assert "\n" not in refused.value.message


def test_it_treats_a_failing_token_endpoint_as_temporary(auth, connect):
    client = token_client(auth, connect)
    tokens = sign_in(auth, client)
    auth.config(token_status=503)
    with pytest.raises(TokenEndpointError) as failed:
        client.refresh(tokens.refresh_token, mailbox=ALICE)
    assert failed.value.transient
    assert "HTTP 503" in failed.value.message
    auth.config(token_status=0)
    assert client.refresh(tokens.refresh_token, mailbox=ALICE).access_token  # grant intact


def test_it_treats_an_unreachable_token_endpoint_as_temporary(auth):
    def refused(host: str, port: int, timeout: float):
        raise ConnectionRefusedError(111, "Connection refused")

    client = token_client(auth, refused)
    with pytest.raises(TokenEndpointError, match="Could not talk to the sign-in server"):
        client.refresh("rt.whatever", mailbox=ALICE)


def test_it_reports_a_wrong_client_secret_on_refresh_as_a_registration_problem(auth, connect):
    tokens = sign_in(auth, token_client(auth, connect))
    wrong = token_client(auth, RecordingConnect(), provider=ms_provider(auth, client_secret="x"))
    with pytest.raises(OAuthConfigError, match="client secret"):
        wrong.refresh(tokens.refresh_token, mailbox=ALICE)
