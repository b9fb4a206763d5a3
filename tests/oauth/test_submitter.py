"""The pipe(8) submitter, run as Postfix runs it: /usr/bin/python3, as the mail user."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.oauth.conftest import ALICE, BOB, RecordingConnect, sign_in, token_client
from tests.servers.oauth_isp import SINK_DOMAIN
from tests.servers.oauth_tokenmap import TokenMap

SUBMIT = Path(__file__).resolve().parents[2] / "mapping" / "oauth" / "submit.py"
MESSAGE = (
    b"From: alice@contoso.test\nTo: x@outside.test\nSubject: {subject}\n\n"
    b"first line\n.leading dot stays\n..two dots stay\nlast line\n"
)


@pytest.fixture(scope="module")
def token_map():
    with TokenMap() as server:
        yield server


@pytest.fixture(scope="module")
def alice_token(auth_server):
    auth_server.reset()
    return sign_in(auth_server, token_client(auth_server, RecordingConnect())).access_token


def run(isp, token_map, *, sender=ALICE, subject="submitted", security="starttls", cafile=True):
    port = isp.smtps_port if security == "ssl" else isp.submission_port
    argv = [
        "/usr/bin/python3",
        str(SUBMIT),
        "--map",
        token_map.where,
        "--nexthop",
        f"[localhost]:{port}",
        "--security",
        security,
        "--sender",
        sender,
    ]
    if cafile:
        argv += ["--cafile", str(isp.ca_file)]
    argv.append(f"rcpt@{SINK_DOMAIN}")
    # pipe(8) runs it as an unprivileged user with the system's python3 (oauth2.md snag 7).
    return subprocess.run(
        argv,
        input=MESSAGE.replace(b"{subject}", subject.encode()),
        capture_output=True,
        timeout=60,
        user="mail",
        group="mail",
    )


def test_it_submits_with_a_fresh_token_from_the_map_and_exits_0(isp, token_map, alice_token):
    token_map.answers[ALICE] = f"OK {ALICE}:{alice_token}"
    before = len(isp.sink_files())
    result = run(isp, token_map, subject="via the submitter")
    assert result.returncode == 0, result.stdout
    received = isp.wait_for_sink(before + 1)
    message = next(m for m in received if m["Subject"] == "via the submitter")
    assert ".leading dot stays\n..two dots stay\n" in message.get_content()
    assert ("oauth_token", ALICE) in token_map.requests
    assert any(f"sasl_username={ALICE}" in line for line in isp.sasl_log_lines())


def test_it_submits_over_implicit_tls(isp, token_map, alice_token):
    token_map.answers[ALICE] = f"OK {ALICE}:{alice_token}"
    assert run(isp, token_map, security="ssl").returncode == 0


def test_it_defers_without_sending_when_the_map_has_no_token(isp, token_map):
    token_map.answers[ALICE] = f"TEMP OAuth sign-in for {ALICE} needs renewing"
    before = len(isp.postfix_log_lines())
    result = run(isp, token_map)
    assert result.returncode == 75
    assert b"4.7.0 no usable OAuth token for alice@contoso.test: OAuth sign-in" in result.stdout
    assert not any("connect from" in line for line in isp.postfix_log_lines()[before:])


def test_it_defers_when_the_map_is_unreachable(isp):
    class Nowhere:
        where = "unix:/nonexistent/aamail-mailmap.sock"

    result = run(isp, Nowhere())
    assert result.returncode == 75
    assert b"4.3.0 the token map is unreachable" in result.stdout


def test_it_defers_when_the_isp_refuses_the_token(isp, token_map, expired_alice_token):
    token_map.answers[ALICE] = f"OK {ALICE}:{expired_alice_token}"
    result = run(isp, token_map)
    assert result.returncode == 75
    assert b"refused the OAuth token of alice@contoso.test (error challenge status 401)" in (
        result.stdout
    )
    assert expired_alice_token.encode() not in result.stdout + result.stderr


def test_it_bounces_when_the_isp_refuses_the_sender_for_good(isp, token_map, alice_token):
    token_map.answers[BOB] = f"OK {ALICE}:{alice_token}"  # alice may not send as bob
    result = run(isp, token_map, sender=BOB)
    assert result.returncode == 69
    assert b"5.7.1" in result.stdout


def test_it_defers_when_the_isp_certificate_is_not_trusted(isp, token_map, alice_token):
    token_map.answers[ALICE] = f"OK {ALICE}:{alice_token}"
    result = run(isp, token_map, cafile=False)
    assert result.returncode == 75
    assert b"is not trusted" in result.stdout
