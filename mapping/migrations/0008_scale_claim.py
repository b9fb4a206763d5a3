"""Issue 13: workers claim due bindings themselves (mapping.claim).

``fetch_rows`` tells an empty poll it has nothing to read; ``binding_claim_idx`` is the
claim's partial index: ordered by the due time with a never-scheduled new binding first
(``COALESCE``), over exactly the rows the claim's WHERE can match, so a claim is one
index range scan that stops at "now" whatever the table holds. Django's ``Index`` cannot
say ``'-infinity'`` portably, so the index is made in SQL per vendor; the claim's text
(mapping/claim.py) repeats these expressions word for word, or the planners ignore it.
"""

from django.db import migrations, models

_PG = (
    "CREATE INDEX IF NOT EXISTS binding_claim_idx ON mapping_binding "
    "(COALESCE(next_fetch_at, '-infinity'::timestamptz)) "
    "WHERE enabled AND (next_fetch_at IS NOT NULL OR state = 'new')"
)
_SQLITE = (
    "CREATE INDEX IF NOT EXISTS binding_claim_idx ON mapping_binding "
    "(COALESCE(next_fetch_at, '')) "
    "WHERE enabled AND (next_fetch_at IS NOT NULL OR state = 'new')"
)


def index_create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    schema_editor.execute(_PG if vendor == "postgresql" else _SQLITE)


def index_drop(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS binding_claim_idx")


class Migration(migrations.Migration):

    dependencies = [
        ('mapping', '0007_oauth_credential'),
    ]

    operations = [
        migrations.AddField(
            model_name='binding',
            name='fetch_rows',
            field=models.BooleanField(db_default=True, default=True, editable=False),
        ),
        migrations.RunPython(index_create, index_drop),
    ]
