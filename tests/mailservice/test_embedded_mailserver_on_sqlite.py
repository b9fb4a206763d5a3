"""`manage.py mailserver` on the embedded SQLite file: Dovecot still reads it once it is 0600."""

from __future__ import annotations

import contextlib
import imaplib
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.mailservice

ROOT = Path(__file__).resolve().parents[2]
OFFSETS = (25, 587, 465, 143, 993, 110, 995)


def _free_port_base() -> int:
    for _ in range(50):
        base = random.randrange(20000, 60000, 1000)
        try:
            for offset in OFFSETS:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError("no free block of ports on 127.0.0.1")


def _imap_login(port: int, login: str, password: str) -> tuple:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # its throw-away cert
    client.starttls(ssl_context=context)
    try:
        return client.login(login, password)
    finally:
        client.shutdown()


@pytest.fixture
def base_dir():
    # Not pytest's tmp_path: its parents are 0700 root, and Postfix/Dovecot run as others.
    path = Path(tempfile.mkdtemp(prefix="aamail-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_it_lets_dovecot_read_the_private_sqlite_database(base_dir):
    if os.getuid() != 0:
        pytest.skip("mailserver needs root")
    tmp_path = base_dir
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CACHE_URL"}}
    env["VAR_DIR"] = str(var)
    setup = (
        "from tests import factories\n"
        "domain = factories.DomainFactory(name='example.com')\n"
        "factories.AccountFactory(domain=domain, localpart='support', raw_password='Local-1')\n"
    )
    for args in (("migrate", "-v0"), ("shell", "-c", setup)):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=300, umask=0o022,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert (var / "aamail.sqlite3").stat().st_mode & 0o777 == 0o600
    base = _free_port_base()
    # The ports come from the settings, as for any deployment (mailservice/layout.py).
    names = ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S")
    env.update({f"MAIL_{name}_PORT": str(base + o) for name, o in zip(names, OFFSETS, strict=True)})
    log = tmp_path / "mailserver.log"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "mailserver", "--base-dir", str(tmp_path / "ms")],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops." not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert _imap_login(base + 143, "support@example.com", "Local-1")[0] == "OK"
        assert (var / "aamail.sqlite3").stat().st_mode & 0o777 == 0o640  # group, not world
    finally:
        # The mailserver alone, as an operator's Ctrl-C or `kill` reaches it: it stops its
        # Dovecot and Postfix itself (a crash on the way out once left both running).
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    output = log.read_text()
    assert server.returncode == 0, output
    assert output.rstrip().endswith("stopped"), output
    assert not _dovecots_reading(var), "Dovecot was left running"
    postfix = subprocess.run(
        ["postfix", "-c", str(var / "mail-config" / "postfix"), "status"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert postfix.returncode != 0, f"Postfix was left running: {postfix.stderr}"


def _dovecots_reading(under: Path) -> list[int]:
    """Dovecot masters whose configuration lies under `under` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"dovecot") and str(under).encode() in b" ".join(argv):
                found.append(int(entry.name))
    return found
