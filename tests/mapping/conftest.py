"""Fixtures for the POP3 client and Maildir tests: a private Dovecot and its CA."""

from __future__ import annotations

import os
import shutil
import ssl

import pytest

from tests.servers.dovecot import DOVECOT, Dovecot


def _dovecot_usable() -> str | None:
    if not shutil.which(DOVECOT) and not os.path.exists(DOVECOT):
        return f"{DOVECOT} is not installed"
    if os.geteuid() != 0:
        return "a private Dovecot needs root (mail processes run as uid 8)"
    return None


@pytest.fixture(scope="module")
def dovecot():
    """A private Dovecot with POP3 (+STLS) and POP3S; users are added per test."""
    reason = _dovecot_usable()
    if reason:
        pytest.skip(reason)
    with Dovecot() as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_no_stls():
    """A private Dovecot whose plain POP3 listener does not offer STLS."""
    reason = _dovecot_usable()
    if reason:
        pytest.skip(reason)
    with Dovecot(stls=False) as server:
        yield server


@pytest.fixture
def trusted(dovecot) -> ssl.SSLContext:
    """A verifying TLS context that trusts the private Dovecot's CA."""
    return ssl.create_default_context(cafile=str(dovecot.ca_pem))
