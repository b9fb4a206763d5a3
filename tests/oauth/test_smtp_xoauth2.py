"""SMTP AUTH XOAUTH2/OAUTHBEARER against the OAuth-only ISP Postfix (Dovecot SASL)."""

from __future__ import annotations

import smtplib

import pytest

from mapping.oauth import sasl
from tests.oauth.conftest import ALICE, RecordingConnect, pop_only, sign_in, token_client
from tests.servers.oauth_isp import SINK_DOMAIN


@pytest.fixture(scope="module")
def alice_token(auth_server):
    auth_server.reset()
    return sign_in(auth_server, token_client(auth_server, RecordingConnect())).access_token


def session(isp, tls, port: int) -> smtplib.SMTP:
    if port == isp.smtps_port:
        smtp = smtplib.SMTP_SSL("localhost", port, context=tls, timeout=10)
    else:
        smtp = smtplib.SMTP("localhost", port, timeout=10)
        smtp.starttls(context=tls)
    smtp.ehlo("office.test")
    return smtp


def auth(smtp, mechanism: str, response: bytes, *, two_step: bool = True):
    """AUTH; returns (reply, challenges seen); the error challenge is answered empty."""
    challenges: list[bytes] = []

    def answer(challenge=None):
        if challenge is None:  # smtplib asks for the initial response (one-step form)
            return response.decode()
        challenges.append(challenge)  # the first "334 " of two steps, or the error challenge
        return response.decode() if two_step and len(challenges) == 1 else ""

    try:
        return smtp.auth(mechanism, answer, initial_response_ok=not two_step), challenges
    except smtplib.SMTPAuthenticationError as exc:
        return (exc.smtp_code, exc.smtp_error), challenges


def test_it_submits_with_xoauth2_in_the_two_step_form(isp, isp_tls, alice_token):
    before = len(isp.sink_files())
    with session(isp, isp_tls, isp.submission_port) as smtp:
        (code, _msg), challenges = auth(smtp, "XOAUTH2", sasl.xoauth2(ALICE, alice_token))
        assert code == 235
        assert challenges == [b""]
        subject = "relayed with XOAUTH2"
        smtp.sendmail(
            ALICE,
            [f"x@{SINK_DOMAIN}"],
            f"From: {ALICE}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode(),
        )
    received = isp.wait_for_sink(before + 1)
    assert any(m["Subject"] == subject for m in received)
    assert any(
        "sasl_method=XOAUTH2, sasl_username=alice@contoso.test" in line
        for line in isp.sasl_log_lines()
    )


def test_it_sees_a_long_auth_line_chopped_by_the_default_line_length_limit(
    isp, isp_tls, alice_token
):
    # Why the product always sends two steps (oauth2.md §4 snag 2).
    response = sasl.xoauth2(ALICE, alice_token)
    with session(isp, isp_tls, isp.submission_2048_port) as smtp:
        (code, msg), _ = auth(smtp, "XOAUTH2", response, two_step=False)
    assert code == 535
    assert b"Invalid base64 data in initial response" in msg
    with session(isp, isp_tls, isp.submission_2048_port) as smtp:
        (code, _msg), _ = auth(smtp, "XOAUTH2", response)
    assert code == 235


def test_it_submits_with_oauthbearer_over_implicit_tls(isp, isp_tls, alice_token):
    response = sasl.oauthbearer(ALICE, alice_token, "localhost", isp.smtps_port)
    with session(isp, isp_tls, isp.smtps_port) as smtp:
        (code, _msg), _ = auth(smtp, "OAUTHBEARER", response)
    assert code == 235


def test_it_is_refused_with_a_token_lacking_the_smtp_permission(auth_server, isp, isp_tls):
    tokens = sign_in(
        auth_server, token_client(auth_server, RecordingConnect(), pop_only(auth_server))
    )
    with session(isp, isp_tls, isp.submission_port) as smtp:
        (code, _msg), challenges = auth(smtp, "XOAUTH2", sasl.xoauth2(ALICE, tokens.access_token))
    assert code == 535
    assert sasl.decode_challenge(challenges[-1])["status"] == "401"


def test_it_is_refused_with_an_expired_token(isp, isp_tls, expired_alice_token):
    with session(isp, isp_tls, isp.submission_port) as smtp:
        (code, msg), challenges = auth(smtp, "XOAUTH2", sasl.xoauth2(ALICE, expired_alice_token))
    assert code == 535
    assert b"authentication failed" in msg
    assert sasl.decode_challenge(challenges[-1])["status"] == "401"
