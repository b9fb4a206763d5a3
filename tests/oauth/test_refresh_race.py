"""Two worker processes need a refresh at once, with strict rotation: nothing is lost.

Strict rotation (RFC 9700 §4.14.2, the test server's default) revokes the whole grant when
a refresh token is used twice: two unsynchronised workers would leave the binding needing a
new sign-in (test_token_refresh.py shows it). With the token service's lock and version
re-check, both workers log in and STAT, the provider sees exactly one refresh, and no grant
family is revoked. On PostgreSQL the lock is the credential's row (``select_for_update``);
on SQLite, which has none, a lock file per credential.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from mapping.models import OAuthCredential
from tests.oauth.conftest import new_mailbox

ROOT = Path(__file__).resolve().parents[2]


def child_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    s = django_settings
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": s.SECRET_KEY,
        "ISP_SECRET_KEYS": ",".join(s.ISP_SECRET_KEYS),
        "ISP_CA_FILE": str(s.ISP_CA_FILE),
        "ISP_ALLOW_PRIVATE_ADDRESSES": "true",
        "OAUTH_MICROSOFT_CLIENT_ID": s.OAUTH_MICROSOFT_CLIENT_ID,
        "OAUTH_MICROSOFT_CLIENT_SECRET": s.OAUTH_MICROSOFT_CLIENT_SECRET,
        "OAUTH_MICROSOFT_TENANT": s.OAUTH_MICROSOFT_TENANT,
        "OAUTH_MICROSOFT_AUTHORITY": s.OAUTH_MICROSOFT_AUTHORITY,
        "OAUTH_REDIRECT_BASE_URL": s.OAUTH_REDIRECT_BASE_URL,
    }


def database_url(kind: str, tmp_path: Path, env: dict[str, str]) -> str:
    if kind == "postgresql":
        if connection.vendor != "postgresql":
            pytest.skip("the PostgreSQL race needs DATABASE_URL=postgres://...")
        s = connection.settings_dict
        auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env={**env, "DATABASE_URL": url},
        check=True,
        timeout=120,
    )
    return url


def child(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.oauth.race_child", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def answer(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=90)
    assert out.strip(), err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_it_lets_both_workers_fetch_on_one_refresh_without_revoking_the_grant(
    kind, transactional_db, auth, isp, oauth_isp_settings, tmp_path
):
    address = new_mailbox(isp, b"Subject: one\n\n1\n", b"Subject: two\n\n2\n")
    env = child_env(tmp_path, "")
    env["DATABASE_URL"] = database_url(kind, tmp_path, env)
    binding_id = answer(child(env, "setup", address, str(isp.pop3s_port)))["id"]
    before = auth.stats()
    go = tmp_path / "go"
    workers = [child(env, "fetch", str(binding_id), str(go)) for _ in range(2)]
    time.sleep(2.0)  # both children are up and polling for the start signal
    go.touch()
    results = [answer(worker) for worker in workers]
    after = auth.stats()
    assert all("error" not in r for r in results), results
    assert [r["stat"][0] for r in results] == [2, 2]  # both logged in and read the mailbox
    assert sorted(r["fresh"] for r in results) == [False, True]  # one refreshed, one waited
    assert results[0]["version"] == results[1]["version"]
    assert after["refresh_grants"] == before["refresh_grants"] + 1
    assert after["refresh_refused"] == before["refresh_refused"]
    assert after["families_revoked"] == before["families_revoked"]
    if kind == "postgresql":
        cred = OAuthCredential.objects.get(binding_id=binding_id)
        assert cred.state == "ok"
        assert cred.version == results[0]["version"]
