"""A read-only view for Dovecot's SQL passdb/userdb (mail-service.md, §3.1).

Django stores "argon2$argon2id$v=19$m=…,t=…,p=…$salt$hash"; Dovecot (libsodium) verifies the
PHC string that follows "argon2" as is, given the scheme prefix "{ARGON2ID}". Only active
accounts of active domains with an argon2id hash appear. `||`, `substr`, `LIKE` and a bare
boolean in WHERE mean the same on SQLite and PostgreSQL, so one statement serves both.
"""

from django.db import migrations

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


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("domains", "0001_initial"),
    ]

    operations = [migrations.RunSQL(CREATE_VIEW, DROP_VIEW)]
