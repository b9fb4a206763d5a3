"""`manage.py mailrole`: the read-only PostgreSQL role Dovecot logs in as."""

from __future__ import annotations

from typing import Any

import environ
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from psycopg import sql

from mailservice.dovecot_view import VIEW_NAME


class Command(BaseCommand):
    help = (
        "Create (or update the password of) the PostgreSQL role named in "
        "MAIL_DOVECOT_DATABASE_URL, allowed to read the view mail_dovecot_user and nothing "
        "else. Run it after `migrate`, as a user that may create roles."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        url = settings.MAIL_DOVECOT_DATABASE_URL
        if not url:
            raise CommandError(
                "MAIL_DOVECOT_DATABASE_URL is not set: Dovecot reads the product's own "
                "database connection, so there is no separate role to create."
            )
        db = environ.Env.db_url_config(url)
        if "postgresql" not in db["ENGINE"] or connection.vendor != "postgresql":
            raise CommandError("A separate Dovecot role exists only on PostgreSQL.")
        role, password = db.get("USER"), db.get("PASSWORD")
        if not role or not password:
            raise CommandError("MAIL_DOVECOT_DATABASE_URL must name a user and a password.")
        if role == connection.settings_dict.get("USER"):
            raise CommandError(
                f"MAIL_DOVECOT_DATABASE_URL names {role}, the product's own user: give Dovecot "
                "a role of its own that can read nothing but the view."
            )
        name = sql.Identifier(role)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(name, sql.Literal(password))
            )
            cursor.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(connection.settings_dict["NAME"]), name
                )
            )
            cursor.execute(
                sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(VIEW_NAME), name)
            )
        done = "created" if verb == "CREATE" else "password updated"
        self.stdout.write(f"Dovecot's role {role}: {done}; it may read {VIEW_NAME} only.")
