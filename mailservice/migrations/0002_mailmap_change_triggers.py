"""PostgreSQL only: NOTIFY the lookup server when a row its maps read changes (snapshot.py).

Statement-level triggers (one notification per statement, folded per transaction and sent
at commit) on domains_domain, accounts_account and mapping_binding. For mapping_binding an
UPDATE notifies only when a column the lookups read changed: the fetcher rewrites its status
columns (state, last_check_at, next_fetch_at, lease, counters) all the time. That test
compares the transition tables in the function body, not in a trigger column list, so no
later ALTER COLUMN is blocked by it; should it ever fail (a column renamed by a later
migration), it notifies anyway: a needless rebuild, never a missed change.

SQLite has no NOTIFY: the lookup server watches the database file there instead.
"""

from django.db import migrations

CHANNEL = "aamail_mailmap"  # snapshot.CHANNEL
BINDING_LOOKUP_COLUMNS = (
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


def _row(alias: str) -> str:
    return "(" + ", ".join(f"{alias}.{column}" for column in BINDING_LOOKUP_COLUMNS) + ")"


CREATE = [
    f"""
CREATE OR REPLACE FUNCTION mailmap_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END
$fn$
""",
    f"""
CREATE OR REPLACE FUNCTION mailmap_notify_binding_update() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (
        SELECT 1 FROM mailmap_new n FULL JOIN mailmap_old o ON o.id = n.id
        WHERE o.id IS NULL OR n.id IS NULL OR {_row("n")} IS DISTINCT FROM {_row("o")}
    ) THEN
        PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END
$fn$
""",
    """
CREATE TRIGGER mailmap_changed_domain
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains_domain
    FOR EACH STATEMENT EXECUTE FUNCTION mailmap_notify()
""",
    """
CREATE TRIGGER mailmap_changed_account
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON accounts_account
    FOR EACH STATEMENT EXECUTE FUNCTION mailmap_notify()
""",
    """
CREATE TRIGGER mailmap_changed_binding
    AFTER INSERT OR DELETE OR TRUNCATE ON mapping_binding
    FOR EACH STATEMENT EXECUTE FUNCTION mailmap_notify()
""",
    """
CREATE TRIGGER mailmap_changed_binding_update
    AFTER UPDATE ON mapping_binding
    REFERENCING OLD TABLE AS mailmap_old NEW TABLE AS mailmap_new
    FOR EACH STATEMENT EXECUTE FUNCTION mailmap_notify_binding_update()
""",
]

DROP = [
    "DROP TRIGGER IF EXISTS mailmap_changed_binding_update ON mapping_binding",
    "DROP TRIGGER IF EXISTS mailmap_changed_binding ON mapping_binding",
    "DROP TRIGGER IF EXISTS mailmap_changed_account ON accounts_account",
    "DROP TRIGGER IF EXISTS mailmap_changed_domain ON domains_domain",
    "DROP FUNCTION IF EXISTS mailmap_notify_binding_update()",
    "DROP FUNCTION IF EXISTS mailmap_notify()",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("mailservice", "0001_dovecot_view"),
        ("accounts", "0001_initial"),
        ("domains", "0001_initial"),
        ("mapping", "0002_binding_due_index"),
    ]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
