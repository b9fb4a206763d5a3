"""The database view Dovecot reads (migration 0001), kept alive across other migrations.

A view pins the tables it reads: SQLite's table rebuild (how Django alters a column there)
fails with "error in view mail_dovecot_user: no such table", and PostgreSQL refuses to change
the type of a column a view uses. So the view is dropped before every `migrate` and created
again after it, once migration 0001 is applied; other apps' migrations never see it.
"""

from __future__ import annotations

from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

VIEW_NAME = "mail_dovecot_user"

# Same text as migrations/0001_dovecot_view.py (a test keeps them equal).
CREATE_VIEW = """
CREATE VIEW mail_dovecot_user AS
    SELECT a.localpart || '@' || d.name AS username,
           '{ARGON2ID}' || substr(a.password, 7) AS password,
           d.name AS domain,
           a.localpart AS localpart
    FROM accounts_account a
    JOIN domains_domain d ON d.id = a.domain_id
    WHERE a.is_active AND d.is_active AND a.password LIKE 'argon2$argon2id$%'
"""

DROP_VIEW = "DROP VIEW IF EXISTS mail_dovecot_user"


def drop_before_migrate(sender, using: str = "default", **kwargs) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(DROP_VIEW)


def create_after_migrate(sender, using: str = "default", **kwargs) -> None:
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
