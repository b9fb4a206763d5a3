"""The view Dovecot reads: same SQL on SQLite and PostgreSQL, hashes Dovecot verifies."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from mailservice import dovecot_view
from tests import factories


def _rows(where: str = "", params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT username, password, domain, localpart FROM mail_dovecot_user {where}",
            params,
        )
        return cursor.fetchall()


def _dovecot_verifies(scheme_hash: str, password: str) -> bool:
    result = subprocess.run(
        ["doveadm", "pw", "-t", scheme_hash, "-p", password], capture_output=True, text=True
    )
    return result.returncode == 0 and "(verified)" in result.stdout


@pytest.mark.django_db
def test_it_shows_active_accounts_with_a_password_dovecot_verifies():
    domain = factories.DomainFactory(name="example.com")
    factories.AccountFactory(domain=domain, localpart="support", raw_password="Support-Local-1")

    [(username, password, domain_name, localpart)] = _rows()
    assert (username, domain_name, localpart) == ("support@example.com", "example.com", "support")
    assert password.startswith("{ARGON2ID}$argon2id$v=19$")
    assert _dovecot_verifies(password, "Support-Local-1")
    assert not _dovecot_verifies(password, "wrong")


@pytest.mark.django_db
def test_it_verifies_djangos_default_argon2_cost_too(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    account = factories.AccountFactory(raw_password="Real-Cost-1")
    [(_user, password, _d, _l)] = _rows("WHERE username = %s", [account.address])
    assert "m=102400,t=2,p=8" in password
    assert _dovecot_verifies(password, "Real-Cost-1")


@pytest.mark.django_db
def test_it_verifies_the_mail_hasher_cost():
    from accounts.hashers import MailArgon2PasswordHasher

    encoded = MailArgon2PasswordHasher().encode("Mail-Cost-1", "c2FsdHNhbHRzYWx0")
    assert _dovecot_verifies("{ARGON2ID}" + encoded[len("argon2") :], "Mail-Cost-1")


@pytest.mark.django_db
def test_it_hides_inactive_accounts_domains_and_foreign_hashes():
    domain = factories.DomainFactory(name="example.com")
    factories.AccountFactory(domain=domain, localpart="gone", is_active=False)
    old = factories.AccountFactory(domain=domain, localpart="old")
    old.password = "pbkdf2_sha256$870000$salt$hash"  # Dovecot cannot verify this format
    old.save()
    other = factories.DomainFactory(name="closed.example", is_active=False)
    factories.AccountFactory(domain=other, localpart="someone")
    factories.AccountFactory(domain=domain, localpart="here")
    assert [row[0] for row in _rows()] == ["here@example.com"]


def test_it_keeps_the_migration_and_the_recreated_view_identical():
    migration = importlib.import_module("mailservice.migrations.0003_dovecot_view_quota")
    assert migration.CREATE_VIEW == dovecot_view.CREATE_VIEW


@pytest.mark.django_db(transaction=True)
def test_it_survives_a_migration_that_rebuilds_the_accounts_table():
    # Django rebuilds a SQLite table to alter a column; PostgreSQL refuses to retype a column
    # a view uses. Both are what the pre/post-migrate hooks prevent.
    from django.db import models

    from accounts.models import Account

    dovecot_view.drop_before_migrate(sender=None)
    old = Account._meta.get_field("display_name")
    new = models.CharField("Display name", max_length=250, blank=True)
    new.set_attributes_from_name("display_name")
    new.model = Account
    with connection.schema_editor() as editor:
        editor.alter_field(Account, old, new)
        editor.alter_field(Account, new, old)
    dovecot_view.create_after_migrate(sender=None)
    factories.AccountFactory(localpart="after")
    assert [row[3] for row in _rows()] == ["after"]


@pytest.fixture
def private_base():
    base = Path(tempfile.mkdtemp(prefix="aamail-sqlite-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.mailservice
def test_it_lets_dovecot_read_a_sqlite_file_database(office_tls, private_base):
    """Migrate a fresh SQLite file in a subprocess, then ask a private Dovecot (driver sqlite)."""
    from devserver.processes import Dovecot, free_port
    from mailservice.config import MailConfig, Ports

    if os.getuid() != 0:
        pytest.skip("starting Dovecot needs root")
    base = private_base
    db = base / "db" / "aamail.sqlite3"
    db.parent.mkdir()
    db.parent.chmod(0o755)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)
    create = (
        "from tests import factories;"
        "from django.test.utils import override_settings;"
        "o = override_settings(PASSWORD_HASHERS=['tests.hashers.FastArgon2PasswordHasher']);"
        "o.enable();"
        "factories.AccountFactory(domain=factories.DomainFactory(name='example.com'),"
        " localpart='support', raw_password='Support-Local-1')"
    )
    subprocess.run([*manage, "shell", "-c", create], env=env, check=True, timeout=120)
    db.chmod(0o644)  # Dovecot's auth-worker reads it as the dovecot user

    ports = Ports(*(free_port() for _ in range(7)))
    _ca, cert, key = office_tls
    config = MailConfig.private(
        base,
        ports=ports,
        config_dir=str(base / "etc"),
        run_dir=str(base / "run"),
        tls_cert=str(cert),
        tls_key=str(key),
        mail_root=str(base / "mail"),
        mail_uid=8,
        mail_gid=8,
        auth_penalty=False,
        sql_driver="sqlite",
        sql_connect=str(db),
    )
    from mailservice import config as mailconfig

    for sub in ("run", "state/dovecot", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    mailconfig.write(config)
    dovecot = Dovecot(config.dovecot_conf, Path(config.dovecot_log))
    dovecot.start([config.auth_socket])
    try:
        good = dovecot.doveadm("auth", "test", "support@example.com", "Support-Local-1")
        bad = dovecot.doveadm("auth", "test", "support@example.com", "Wrong-1")
    finally:
        dovecot.stop()
    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode != 0
