"""Fixtures for the fetch tests: one private Dovecot "ISP" per session, bindings bound to it."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from accounts.mailbox import mailbox_path
from domains.models import Security
from mapping.models import Binding, LeavePolicy
from tests.factories import BindingFactory
from tests.mapping.conftest import _dovecot_usable
from tests.servers.dovecot import Dovecot

ISP_PASSWORD = "Isp-Sesame-7"
TRACE_PREFIX = b"Received: from "
_users = itertools.count(1)


@pytest.fixture(scope="session")
def isp():
    """A private Dovecot playing the ISP for the whole session (users are per test)."""
    reason = _dovecot_usable()
    if reason:
        pytest.skip(reason)
    with Dovecot() as server:
        yield server


def new_isp_user(isp: Dovecot, password: str = ISP_PASSWORD) -> str:
    name = f"fetch{next(_users)}"
    isp.add_user(name, password)
    return name


@pytest.fixture
def make_binding(isp, settings, db):
    """make_binding(security=..., leave_policy=..., ...) -> a Binding on a fresh ISP user."""
    settings.ISP_CA_FILE = str(isp.ca_pem)

    def make(*, security: str = Security.NONE, user: str | None = None, **fields) -> Binding:
        user = user or new_isp_user(isp)
        port = isp.pop3s_port if security == Security.SSL else isp.pop3_port
        fields.setdefault("leave_policy", LeavePolicy.KEEP)
        return BindingFactory(
            host="127.0.0.1",
            port=port,
            security=security,
            username=user,
            raw_password=ISP_PASSWORD,
            **fields,
        )

    return make


def as_fetched(stored: bytes) -> bytes:
    """What the Maildir must hold (after the trace header) for a message the ISP stores.

    POP3 sends a stored CRLF as a line end and cannot say "no final newline", so Dovecot
    adds one (peers.md); a bare CR is content and stays.
    """
    expected = stored.replace(b"\r\n", b"\n")
    return expected if expected.endswith(b"\n") else expected + b"\n"


def maildir_files(root: Path) -> list[Path]:
    return sorted([*(root / "new").glob("*"), *(root / "cur").glob("*")])


def stored_messages(binding: Binding) -> list[bytes]:
    """Every message in the binding's Maildir, trace header checked and removed."""
    root = mailbox_path(binding.account)
    if not root.exists():
        return []
    messages = []
    for path in maildir_files(root):
        data = path.read_bytes()
        header, _, body = data.partition(b"\n")
        assert header.startswith(TRACE_PREFIX), f"{path.name} lacks the trace header"
        messages.append(body)
    return messages


def assert_exactly(binding: Binding, delivered: list[bytes]) -> None:
    """The Maildir holds each delivered message exactly once, byte for byte."""
    got = Counter(stored_messages(binding))
    want = Counter(as_fetched(raw) for raw in delivered)
    missing, extra = want - got, got - want
    counts = (
        f"{sum(missing.values())} lost, {sum(extra.values())} duplicated or corrupted "
        f"(of {len(delivered)})"
    )
    assert not missing, counts
    assert not extra, counts
