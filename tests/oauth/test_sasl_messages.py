"""The SASL messages and the error challenge in words, byte for byte against the documents."""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import pytest

from mapping.oauth import sasl


def test_it_builds_the_xoauth2_response_google_documents():
    # developers.google.com/gmail/imap/xoauth2-protocol, "Initial client response" example
    response = sasl.xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert base64.b64encode(response) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbG"
        b"NrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )


def test_it_builds_the_oauthbearer_response_of_rfc_7628():
    # RFC 7628 §4.1, with ^A written as \x01
    response = sasl.oauthbearer(
        "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", "server.example.com", 143
    )
    assert response == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143"
        b"\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


def test_it_escapes_comma_and_equals_in_the_oauthbearer_authzid():
    response = sasl.oauthbearer("a=b,c@example.com", "t", "h", 1)
    assert response.startswith(b"n,a=a=3Db=2Cc@example.com,\x01")


@pytest.mark.parametrize("bad", ["a\x01b", "a\r\nAUTH PLAIN", "a\x00", ""])
def test_it_refuses_values_that_would_break_the_message(bad):
    with pytest.raises(ValueError, match="control character"):
        sasl.xoauth2(bad, "token")
    with pytest.raises(ValueError, match="control character"):
        sasl.xoauth2("user@example.com", bad)


def test_it_decodes_the_error_challenge_base64_or_already_decoded():
    payload = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
    encoded = base64.b64encode(json.dumps(payload).encode())
    assert sasl.decode_challenge(encoded) == payload
    assert sasl.decode_challenge(json.dumps(payload).encode()) == payload  # smtplib's form
    assert sasl.decode_challenge(b"not json") == {"raw": "not json"}


def test_it_says_what_a_refused_token_means():
    text = sasl.describe_challenge({"status": "401", "scope": "https://mail.google.com/"})
    assert "expired, was revoked, or was issued for another mailbox" in text
    assert "https://mail.google.com/" in text
    assert "status invalid_token" in sasl.describe_challenge({"status": "invalid_token"})


def test_it_explains_microsofts_smtp_auth_tenant_switch():
    advice = sasl.explain_refusal(
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
        "the Tenant."
    )
    assert "Authenticated SMTP" in advice
    assert sasl.explain_refusal("535 5.7.8 Error: authentication failed") is None


def test_it_builds_the_same_xoauth2_response_in_the_standalone_submitter():
    path = Path(__file__).resolve().parents[2] / "mapping" / "oauth" / "submit.py"
    spec = importlib.util.spec_from_file_location("standalone_submit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ("alice@contoso.test", "eyJ.token-value.sig")
    assert module.xoauth2(*args) == sasl.xoauth2(*args)
