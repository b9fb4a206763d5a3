"""POP3 with OAuth tokens against the OAuth-only Dovecot: the product's Xoauth2 authenticator."""

from __future__ import annotations

import base64
import json
import socket
import ssl

import pytest

from mapping.oauth import sasl
from mapping.pop3 import Client, OAuthBearer, Pop3NotSecureError, Pop3OAuthError, Security, Xoauth2
from tests.oauth.conftest import (
    ALICE,
    BOB,
    device_provider,
    pop_only,
    sign_in,
    smtp_only,
    token_client,
)


class Transcript:
    """The client as an authenticator sees it, writing down every line sent and received."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.sent: list[str] = []
        self.received: list[str] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def request(self, line: str):
        self.sent.append(line)
        reply = self._client.request(line)
        self.received.append(
            ("+OK " if reply.ok else "+ " if reply.continuation else "-ERR ") + reply.text
        )
        return reply


def pop3(isp, tls, security=Security.SSL) -> Client:
    port = isp.pop3s_port if security is Security.SSL else isp.pop3_port
    # The certificate is for "localhost"; connect to the address, verify the name.
    client = Client("localhost", port, security, ssl_context=tls, timeout=10)
    client.connect(sock=socket.create_connection(("127.0.0.1", port), timeout=10))
    return client


@pytest.fixture(scope="module")
def alice_token(auth_server):
    from tests.oauth.conftest import RecordingConnect

    auth_server.reset()
    return sign_in(auth_server, token_client(auth_server, RecordingConnect())).access_token


def new_log_lines(isp, mark: int) -> str:
    return "\n".join(isp.auth_log_lines()[mark:])


def test_it_sees_xoauth2_and_oauthbearer_offered(isp, isp_tls):
    with pop3(isp, isp_tls) as client:
        assert client.capabilities["SASL"] == ["XOAUTH2", "OAUTHBEARER"]


def test_it_logs_in_over_pop3s_in_the_two_step_form_and_reads_the_mailbox(
    isp, isp_tls, alice_token
):
    with pop3(isp, isp_tls) as client:
        transcript = Transcript(client)
        Xoauth2(ALICE, alice_token).authenticate(transcript)
        assert client.stat()[0] == 2
        client.quit()
    assert transcript.sent[0] == "AUTH XOAUTH2"  # no initial response on the AUTH line
    assert transcript.received[0] == "+ "
    assert base64.b64decode(transcript.sent[1]) == sasl.xoauth2(ALICE, alice_token)
    assert transcript.received[1].startswith("+OK")
    assert len(transcript.sent[1]) > 3500  # an Entra-sized token, in one response line


def test_it_logs_in_after_stls(isp, isp_tls, alice_token):
    with pop3(isp, isp_tls, Security.STARTTLS) as client:
        Xoauth2(ALICE, alice_token).authenticate(client)
        assert client.stat()[0] == 2


def test_it_logs_in_with_oauthbearer(isp, isp_tls, alice_token):
    with pop3(isp, isp_tls) as client:
        transcript = Transcript(client)
        OAuthBearer(ALICE, alice_token).authenticate(transcript)
        assert client.stat()[0] == 2
    assert b"\x01host=localhost\x01port=" in base64.b64decode(transcript.sent[1])


def test_it_sees_dovecot_take_the_initial_response_on_the_auth_line_too(isp, isp_tls, alice_token):
    # RFC 5034 allows it and Dovecot/Gmail take it; the product still sends two steps.
    with pop3(isp, isp_tls) as client:
        response = base64.b64encode(sasl.xoauth2(ALICE, alice_token)).decode()
        assert client.request(f"AUTH XOAUTH2 {response}").ok


def test_it_reports_an_expired_token_in_words_after_answering_the_challenge(
    isp, isp_tls, expired_alice_token
):
    mark = len(isp.auth_log_lines())
    with pop3(isp, isp_tls) as client:
        transcript = Transcript(client)
        with pytest.raises(Pop3OAuthError) as refused:
            Xoauth2(ALICE, expired_alice_token).authenticate(transcript)
    error = refused.value
    assert error.challenge["status"] == "401"
    assert error.challenge["scope"] == "mail"
    assert transcript.received[1].startswith("+ eyJ")  # the error challenge, not success
    assert transcript.sent[2] == ""  # answered with an empty line
    assert transcript.received[2] == "-ERR [AUTH] Authentication failed."
    assert "refused the access token (status 401): it expired" in error.message
    assert "alice@contoso.test" in error.message
    assert expired_alice_token not in error.message
    assert not error.transient
    assert "Token has expired" in new_log_lines(isp, mark)


def test_it_reports_an_expired_token_with_oauthbearer(isp, isp_tls, expired_alice_token):
    with pop3(isp, isp_tls) as client, pytest.raises(Pop3OAuthError) as refused:
        OAuthBearer(ALICE, expired_alice_token).authenticate(client)
    assert refused.value.challenge["status"] == "invalid_token"
    assert "status invalid_token" in refused.value.message


def test_it_is_refused_with_alices_token_for_bobs_mailbox(isp, isp_tls, alice_token):
    mark = len(isp.auth_log_lines())
    with pop3(isp, isp_tls) as client, pytest.raises(Pop3OAuthError) as refused:
        Xoauth2(BOB, alice_token).authenticate(client)
    assert refused.value.challenge["status"] == "401"
    assert "did not match" in new_log_lines(isp, mark)


def test_it_is_refused_with_a_token_whose_claims_were_edited(isp, isp_tls, alice_token):
    header, body, signature = alice_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["email"] = BOB
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    mark = len(isp.auth_log_lines())
    with pop3(isp, isp_tls) as client, pytest.raises(Pop3OAuthError):
        Xoauth2(BOB, f"{header}.{forged_body}.{signature}").authenticate(client)
    assert "signature" in new_log_lines(isp, mark).lower()


def test_it_is_refused_with_a_token_lacking_the_pop_permission(auth, isp, isp_tls, connect):
    tokens = sign_in(auth, token_client(auth, connect, provider=smtp_only(auth)))
    mark = len(isp.auth_log_lines())
    with pop3(isp, isp_tls) as client, pytest.raises(Pop3OAuthError):
        Xoauth2(ALICE, tokens.access_token).authenticate(client)
    assert "POP.AccessAsUser.All' missing from token scope" in new_log_lines(isp, mark)


@pytest.mark.parametrize("how", ["plain text", "unverified TLS"])
def test_it_sends_no_token_without_verified_tls(isp, isp_tls, alice_token, how):
    # Dovecot offers AUTH on loopback without TLS (snag 5): the client must refuse by itself.
    if how == "plain text":
        client = pop3(isp, isp_tls, Security.NONE)
    else:
        client = pop3(isp, ssl._create_unverified_context(), Security.SSL)
    with client:
        assert "XOAUTH2" in client.capabilities["SASL"]  # the server would take it
        transcript = Transcript(client)
        with pytest.raises(Pop3NotSecureError, match="only over verified TLS"):
            Xoauth2(ALICE, alice_token).authenticate(transcript)
    assert transcript.sent == []


def test_it_logs_in_as_the_mailbox_approved_with_the_device_code(auth, isp, isp_tls, connect):
    client = token_client(auth, connect, provider=device_provider(auth), redirect_uri="")
    device = client.start_device_flow()
    assert client.poll_device(device) is None
    auth.approve_device(device.user_code, BOB)
    tokens = client.poll_device(device)
    with pop3(isp, isp_tls) as session:
        Xoauth2(BOB, tokens.access_token).authenticate(session)
        assert session.stat()[0] == 1


def test_it_logs_in_with_a_refreshed_token_after_the_old_one_expired(
    auth, isp, isp_tls, connect, expired_alice_token
):
    client = token_client(auth, connect, provider=pop_only(auth))
    tokens = sign_in(auth, client)
    fresh = client.refresh(tokens.refresh_token, mailbox=ALICE)
    with pop3(isp, isp_tls) as session:
        Xoauth2(ALICE, fresh.access_token).authenticate(session)
        assert session.stat()[0] == 2
