"""The Dovecot view gains the account's quota (Account.quota_mb) for Dovecot's quota plugin.

Dovecot's user_query turns it into `quota_rule = *:storage=<N>M` (none when 0), so LMTP
refuses mail that does not fit (docs/mail-service.md, Quotas). Same SQL on SQLite and
PostgreSQL; dovecot_view.CREATE_VIEW keeps the same text (a test keeps them equal).
"""

from django.db import migrations

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

PREVIOUS_VIEW = """
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


class Migration(migrations.Migration):
    dependencies = [("mailservice", "0002_mailmap_change_triggers")]

    operations = [
        migrations.RunSQL([DROP_VIEW, CREATE_VIEW], [DROP_VIEW, PREVIOUS_VIEW]),
    ]
