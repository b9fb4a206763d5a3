"""The database view Dovecot reads (migrations 0001, 0003), kept alive across other migrations.

A view pins the tables it reads: SQLite's table rebuild (how Django alters a column there)
fails with "error in view mail_dovecot_user: no such table", and PostgreSQL refuses to change
the type of a column a view uses. So the view is dropped before every `migrate` and created
again after it, once migration 0001 is applied; other apps' migrations never see it.

Dropping a view drops its grants too: on PostgreSQL, the read-only role Dovecot logs in as
(the user in MAIL_DOVECOT_DATABASE_URL) gets its SELECT back each time (`manage.py mailrole`
creates that role).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

if TYPE_CHECKING:
    from django.apps import AppConfig
    from django.db.backends.base.base import BaseDatabaseWrapper

log = logging.getLogger(__name__)

VIEW_NAME = "mail_dovecot_user"

# Same text as the newest migration that creates it, 0003 (a test keeps them equal).
CREATE_VIEW = """
CREATE VIEW mail_dovecot_user AS
    SELECT a.localpart || '@' || d.name AS username,
           '{ARGON2ID}' || substr(a.password, 7) AS password,
           d.name AS domain,
           a.localpart AS localpart,
           a.quota_mb AS quota_mb
    FROM accounts_account a
    JOIN domains_domain d ON d.id = a.domain_id
    WHERE a.is_active AND d.is_active AND a.password LIKE 'argon2$argon2id$%'
"""

DROP_VIEW = "DROP VIEW IF EXISTS mail_dovecot_user"


def dovecot_role() -> str | None:
    """The PostgreSQL role Dovecot reads the view as (MAIL_DOVECOT_DATABASE_URL), if any."""
    url = settings.MAIL_DOVECOT_DATABASE_URL
    if not url:
        return None
    import environ

    db = environ.Env.db_url_config(url)
    if "postgresql" not in db["ENGINE"] or not db.get("USER"):
        return None
    return db["USER"]


def grant_to_dovecot_role(connection: BaseDatabaseWrapper) -> None:
    """GRANT SELECT on the view (and nothing else) to Dovecot's role, if it exists."""
    role = dovecot_role()
    if connection.vendor != "postgresql" or not role:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            log.warning(
                "Dovecot's database role %s does not exist yet: run `manage.py mailrole`.", role
            )
            return
        quoted = connection.ops.quote_name(role)
        cursor.execute(f"GRANT SELECT ON {VIEW_NAME} TO {quoted}")


def drop_before_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(DROP_VIEW)


def create_after_migrate(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    connection = connections[using]
    recorder = MigrationRecorder(connection)
    if not recorder.has_table():
        return
    applied = recorder.applied_migrations()
    if ("mailservice", "0001_dovecot_view") not in applied:
        return
    with connection.cursor() as cursor:
        cursor.execute(DROP_VIEW)
        cursor.execute(CREATE_VIEW)
    grant_to_dovecot_role(connection)
