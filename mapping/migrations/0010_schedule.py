"""Issue 13: the fetch queue apart from the binding row (``mapping.models.Schedule``).

A claim wrote the wide binding row (every column, every index, the mailmap trigger's
transition tables) only to move its due time and lease; now it writes a narrow row with
one index, and a fetch's status write to the binding moves no indexed column. Each binding
gets its row: due as before when enabled (a never-fetched new one since its creation, which
keeps it ahead of every binding due later), empty otherwise.
"""

import django.db.models.deletion
from django.db import migrations, models

_COPY = """
INSERT INTO mapping_schedule (binding_id, next_fetch_at, lease_token, lease_expires_at,
                              lease_holder)
SELECT id,
       CASE WHEN enabled THEN COALESCE(
           next_fetch_at, CASE WHEN state = 'new' THEN created_at END) END,
       lease_token, lease_expires_at, lease_holder
FROM mapping_binding
"""
_BACK = """
UPDATE mapping_binding SET
    next_fetch_at = (SELECT s.next_fetch_at FROM mapping_schedule s WHERE s.binding_id = mapping_binding.id),
    lease_token = (SELECT s.lease_token FROM mapping_schedule s WHERE s.binding_id = mapping_binding.id),
    lease_expires_at = (SELECT s.lease_expires_at FROM mapping_schedule s WHERE s.binding_id = mapping_binding.id),
    lease_holder = COALESCE((SELECT s.lease_holder FROM mapping_schedule s WHERE s.binding_id = mapping_binding.id), '')
"""


def claim_index_drop(apps, schema_editor):
    schema_editor.execute("DROP INDEX IF EXISTS binding_claim_idx")


class Migration(migrations.Migration):

    dependencies = [
        ('mapping', '0009_binding_fewer_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='Schedule',
            fields=[
                ('binding', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='schedule', serialize=False, to='mapping.binding')),
                ('next_fetch_at', models.DateTimeField(blank=True, null=True, verbose_name='Next fetch')),
                ('lease_token', models.UUIDField(blank=True, editable=False, null=True)),
                ('lease_expires_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('lease_holder', models.CharField(blank=True, db_default='', default='', editable=False, max_length=300)),
            ],
            options={
                'indexes': [models.Index(condition=models.Q(('next_fetch_at__isnull', False)), fields=['next_fetch_at'], name='schedule_due_idx')],
            },
        ),
        migrations.RunSQL(_COPY, _BACK),
        migrations.RunPython(claim_index_drop, migrations.RunPython.noop),
        migrations.RemoveIndex(
            model_name='binding',
            name='binding_due_idx',
        ),
        migrations.RemoveField(
            model_name='binding',
            name='next_fetch_at',
        ),
        migrations.RemoveField(
            model_name='binding',
            name='lease_token',
        ),
        migrations.RemoveField(
            model_name='binding',
            name='lease_expires_at',
        ),
        migrations.RemoveField(
            model_name='binding',
            name='lease_holder',
        ),
    ]
