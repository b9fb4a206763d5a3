"""Dovecot's read-only PostgreSQL role: created by `manage.py mailrole`, kept by `migrate`."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from mailservice import dovecot_view
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dovecot_role(settings):
    if connection.vendor != "postgresql":
        pytest.skip("a separate Dovecot role exists only on PostgreSQL")
    role, password = f"dovecot_ro_{uuid.uuid4().hex[:8]}", "Ro-Pass'word-1"
    db = connection.settings_dict
    settings.MAIL_DOVECOT_DATABASE_URL = (
        f"postgres://{role}:{password.replace(chr(39), '%27')}@{db['HOST']}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )
    yield role, password
    with connection.cursor() as cursor:  # roles belong to the cluster, not the test database
        cursor.execute(f'DROP OWNED BY "{role}"')
        cursor.execute(f'DROP ROLE IF EXISTS "{role}"')


def _connect(role: str, password: str) -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"], user=role, password=password
    )


def test_it_creates_a_role_that_reads_the_view_and_nothing_else(dovecot_role):
    role, password = dovecot_role
    factories.AccountFactory(localpart="support")
    call_command("mailrole")
    call_command("mailrole")  # again: the password is set, nothing fails
    with _connect(role, password) as conn:
        rows = conn.execute("SELECT username FROM mail_dovecot_user").fetchall()
        assert [r[0].split("@")[0] for r in rows] == ["support"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT password FROM accounts_account")


def test_migrate_gives_the_recreated_view_back_to_the_role(dovecot_role):
    role, password = dovecot_role
    call_command("mailrole")
    dovecot_view.drop_before_migrate(sender=None)
    dovecot_view.create_after_migrate(sender=None)
    with _connect(role, password) as conn:
        conn.execute("SELECT count(*) FROM mail_dovecot_user").fetchone()


def test_it_refuses_to_reuse_the_products_own_user(settings):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    db = connection.settings_dict
    settings.MAIL_DOVECOT_DATABASE_URL = f"postgres://{db['USER']}:x@{db['HOST']}/{db['NAME']}"
    with pytest.raises(CommandError, match="a role of its own"):
        call_command("mailrole")
