"""Files with secrets are created readable by their owner only, whatever the umask (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_OURS = {"DATABASE_URL", "SECRET_KEY", "ISP_SECRET_KEYS", "AAMAIL_ADMIN_PASSWORD", "CACHE_URL"}


def _manage(var: Path, *args: str) -> subprocess.CompletedProcess:
    # The embedded default: nothing configured, so the database, keys and the first admin
    # password are all made under VAR_DIR, with the usual umask of a login shell.
    env = {key: value for key, value in os.environ.items() if key not in _OURS}
    env["VAR_DIR"] = str(var)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, umask=0o022,
    )  # fmt: skip


def test_it_creates_the_database_keys_and_admin_password_for_the_owner_only(tmp_path):
    var = tmp_path / "var"
    for args in (("migrate", "--noinput", "-v0"), ("ensure_superuser",)):
        result = _manage(var, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    modes = {
        name: (var / name).stat().st_mode & 0o777
        for name in ("aamail.sqlite3", "secret_key", "isp_secret_key", "initial-admin-password")
    }
    assert modes == dict.fromkeys(modes, 0o600)
    assert (var.stat().st_mode & 0o077) == 0o011  # others may pass through, never list
    result = _manage(var, "check", "--deploy", "--tag", "security")
    assert "aamail.W02" not in result.stderr  # nothing of ours to warn about


def test_it_rewrites_an_old_admin_password_file_with_the_owner_only_mode(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    stale = var / "initial-admin-password"
    stale.write_text("from an earlier install\n")
    stale.chmod(0o644)
    result = _manage(var, "migrate", "--noinput", "-v0")
    assert result.returncode == 0, result.stderr
    assert _manage(var, "ensure_superuser").returncode == 0
    assert stale.stat().st_mode & 0o777 == 0o600
    assert stale.read_text() != "from an earlier install\n"


def test_the_embedded_database_keeps_its_rollback_journal(tmp_path):
    """Issue 13 asked for WAL; Dovecot's auth worker reads the file as another user with read
    access only, and a WAL reader must write the -shm file (docs/mail-service.md). SQLite
    would give -wal and -shm the file's 0600, so secrecy is not what rules WAL out."""
    import sqlite3

    var = tmp_path / "var"
    result = _manage(var, "migrate", "--noinput", "-v0")
    assert result.returncode == 0, result.stdout + result.stderr
    conn = sqlite3.connect(var / "aamail.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
