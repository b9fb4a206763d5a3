"""Issue 13: two indexes fewer on mapping_binding. Each claim and each release moves
next_fetch_at, so PostgreSQL writes a new entry into every index of the table for it: the
account's own index repeated the leading column of binding_unique_mailbox, and the plain one
on next_fetch_at the partial binding_due_idx (every query by due time asks for enabled rows).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('mapping', '0008_scale_claim'),
    ]

    operations = [
        migrations.AlterField(
            model_name='binding',
            name='account',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='bindings', to='accounts.account'),
        ),
        migrations.AlterField(
            model_name='binding',
            name='next_fetch_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='Next fetch'),
        ),
    ]
