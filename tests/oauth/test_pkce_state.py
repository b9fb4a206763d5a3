"""PKCE S256 and the single-use state of a console sign-in, kept in the session."""

from __future__ import annotations

import pytest

from mapping.oauth import pkce


def test_it_computes_the_s256_challenge_of_rfc_7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_it_makes_verifiers_of_the_allowed_length_and_alphabet():
    verifier = pkce.new_verifier()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )
    assert verifier != pkce.new_verifier()


def test_it_hands_a_state_back_once_only():
    session: dict = {}
    started = pkce.begin(session, provider="microsoft", admin_id=1, target="binding:5")
    taken = pkce.take(session, started.state, provider="microsoft", admin_id=1, max_age=600)
    assert (taken.verifier, taken.nonce, taken.target) == (
        started.verifier,
        started.nonce,
        "binding:5",
    )
    with pytest.raises(pkce.SignInStateError, match="already used"):
        pkce.take(session, started.state, provider="microsoft", admin_id=1, max_age=600)


def test_it_rejects_a_state_it_never_issued():
    session: dict = {}
    pkce.begin(session, provider="google", admin_id=1, target="binding:5")
    with pytest.raises(pkce.SignInStateError, match="not started here"):
        pkce.take(session, "attacker-state", provider="google", admin_id=1, max_age=600)


def test_it_rejects_an_expired_sign_in_and_forgets_it():
    session: dict = {}
    started = pkce.begin(session, provider="google", admin_id=1, target="binding:5", now=1000.0)
    with pytest.raises(pkce.SignInStateError, match="10 minutes"):
        pkce.take(session, started.state, provider="google", admin_id=1, max_age=600, now=1601.0)
    assert session[pkce.SESSION_KEY] == {}


@pytest.mark.parametrize(("provider", "admin_id"), [("google", 1), ("microsoft", 2)])
def test_it_rejects_a_state_of_another_administrator_or_provider(provider, admin_id):
    session: dict = {}
    started = pkce.begin(session, provider="microsoft", admin_id=1, target="binding:5")
    with pytest.raises(pkce.SignInStateError, match="another administrator or for another"):
        pkce.take(session, started.state, provider=provider, admin_id=admin_id, max_age=600)
    with pytest.raises(pkce.SignInStateError):  # and it is gone: single use even when refused
        pkce.take(session, started.state, provider="microsoft", admin_id=1, max_age=600)


def test_it_keeps_only_the_newest_pending_sign_ins():
    session: dict = {}
    states = [
        pkce.begin(session, provider="google", admin_id=1, target=f"binding:{n}", now=n).state
        for n in range(pkce.MAX_PENDING + 2)
    ]
    assert list(session[pkce.SESSION_KEY]) == states[2:]


def test_it_never_shows_the_verifier_in_a_repr():
    started = pkce.begin({}, provider="google", admin_id=1, target="binding:5")
    assert started.verifier not in repr(started)
    assert started.nonce not in repr(started)
