"""What the lookup server tells Postfix and the submitter about a sender who signs in."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from mailservice import lookups, snapshot
from mailservice.mapserver import build_token_server
from mailservice.socketmap import Request
from mapping.models import OAuthCredential, OAuthState
from tests import factories
from tests.oauth.conftest import ALICE, sign_in_binding

pytestmark = pytest.mark.django_db


@pytest.fixture
def sender(domain, oauth_settings, auth):
    account = factories.AccountFactory(domain=domain, localpart="alice")
    binding = factories.BindingFactory(
        account=account,
        host="localhost",
        username=ALICE,
        auth_method="oauth2_microsoft",
        smtp_host="localhost",
        smtp_port=587,
        smtp_security="starttls",
        is_outgoing_relay=True,
    )
    sign_in_binding(auth, binding)
    return account.address, binding


def ask(name: str, key: str, source=None):
    return lookups.answer(Request(name, key), source, local_transport="lmtp:unix:/x")


def test_it_routes_the_sender_to_the_oauth_pipe_with_no_password(sender):
    address, binding = sender
    assert ask("relay_transport", address).data == "isp_oauth:[localhost]:587"
    assert ask("relay_credentials", address).status == "NOTFOUND"
    binding.smtp_security, binding.smtp_port = "ssl", 465
    binding.save()
    assert ask("relay_transport", address).data == "isp_oauth_smtps:[localhost]:465"
    # The snapshot the lookup server answers from says the same.
    current = snapshot.load()
    assert ask("relay_transport", address, current).data == "isp_oauth_smtps:[localhost]:465"


def test_it_never_serves_tokens_on_postfixs_socket(sender):
    address, _ = sender
    assert ask("oauth_token", address).status == "PERM"


def test_it_hands_the_submitter_a_fresh_token_or_says_why_not(sender):
    address, binding = sender
    reply = lookups.token_answer(Request("oauth_token", address))
    login, _, token = reply.data.partition(":")
    assert reply.status == "OK"
    assert login == ALICE
    assert token.count(".") == 2
    OAuthCredential.objects.filter(binding=binding).update(
        state=OAuthState.NEEDS_SIGN_IN, last_error="Microsoft no longer accepts …"
    )
    held = lookups.token_answer(Request("oauth_token", address))
    assert held.status == "TEMP"
    assert "needs a new sign-in" in held.data
    password_sender = factories.BindingFactory(is_outgoing_relay=True).account.address
    assert lookups.token_answer(Request("oauth_token", password_sender)).status == "NOTFOUND"
    assert lookups.token_answer(Request("relay_credentials", address)).status == "PERM"


def test_it_answers_the_token_socket_to_the_relay_user_only(sender, settings, transactional_db):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as other users")
    try:
        pwd.getpwnam(settings.MAIL_OAUTH_RELAY_USER)
    except KeyError:
        pytest.skip("no aamail-relay user: run scripts/system-packages.sh")
    address, _ = sender
    base = Path(tempfile.mkdtemp(prefix="aamail-token-sock-"))
    base.chmod(0o755)
    server = build_token_server(base / "oauth-token" / "token.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        relay = as_user(settings.MAIL_OAUTH_RELAY_USER, server.path, address)
        other = as_user("nobody", server.path, address)
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(base, ignore_errors=True)
    assert relay.startswith(f"OK {ALICE}:"), relay
    assert "refused" in other or "Permission denied" in other, other


QUERY = """
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
    q = ("oauth_token " + sys.argv[2]).encode()
    s.sendall(b"%d:%s," % (len(q), q))
    data = s.recv(100000)
    print(data.split(b":", 1)[1][:-1].decode() if data else "refused: closed")
except OSError as exc:
    print("refused:", exc)
"""


def as_user(user: str, path: Path, address: str) -> str:
    """Ask the token socket as `user` (another process, as pipe(8) runs the submitter)."""
    done = subprocess.run(
        [sys.executable if user == "root" else "/usr/bin/python3", "-c", QUERY, str(path), address],
        capture_output=True,
        text=True,
        timeout=30,
        user=user,
        group=pwd.getpwnam(user).pw_gid,  # as pipe(8): the user's uid and primary group
        extra_groups=[],
    )
    return (done.stdout or done.stderr).strip()
