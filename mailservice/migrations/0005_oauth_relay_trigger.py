"""PostgreSQL only: the lookup server's snapshot also follows mapping_binding.auth_method.

Issue 15: ``relay_transport`` answers the isp_oauth pipe transport for a relay binding that
signs in, so a change of the sign-in method must reach the lookup server like a change of
the SMTP server does. Same function as migration 0002, with one column more.
"""

from django.db import migrations

CHANNEL = "aamail_mailmap"  # snapshot.CHANNEL
BEFORE = (
    "account_id",
    "enabled",
    "is_outgoing_relay",
    "host",
    "username",
    "password_encrypted",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_username",
    "smtp_password_encrypted",
)
AFTER = (*BEFORE, "auth_method")


def _function(columns):
    def row(alias):
        return "(" + ", ".join(f"{alias}.{column}" for column in columns) + ")"

    return f"""
CREATE OR REPLACE FUNCTION mailmap_notify_binding_update() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (
        SELECT 1 FROM mailmap_new n FULL JOIN mailmap_old o ON o.id = n.id
        WHERE o.id IS NULL OR n.id IS NULL OR {row("n")} IS DISTINCT FROM {row("o")}
    ) THEN
        PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END
$fn$
"""


def _run(columns):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(_function(columns), params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("mailservice", "0004_outgoing_relay_explicit"),
        ("mapping", "0007_oauth_credential"),
    ]

    operations = [migrations.RunPython(_run(AFTER), _run(BEFORE))]
