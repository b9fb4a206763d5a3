"""RelayStatus: what the relay watch saw of each binding's outgoing relay (issue 12)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mailservice", "0005_oauth_relay_trigger"),
        ("mapping", "0007_oauth_credential"),
    ]

    operations = [
        migrations.CreateModel(
            name="RelayStatus",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("state", models.CharField(choices=[("ok", "OK"), ("failing", "Failing")], default="ok", max_length=16)),
                ("failing_since", models.DateTimeField(blank=True, null=True, verbose_name="Failing since")),
                ("last_error", models.TextField(blank=True, verbose_name="Last error")),
                ("deferred", models.PositiveIntegerField(default=0, verbose_name="Waiting in the queue")),
                ("bounced", models.PositiveIntegerField(default=0, verbose_name="Returned to the sender")),
                ("checked_at", models.DateTimeField(blank=True, null=True, verbose_name="Last check")),
                ("binding", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="relay_status", to="mapping.binding")),
            ],
            options={
                "verbose_name": "outgoing relay status",
                "verbose_name_plural": "outgoing relay statuses",
            },
        ),
    ]
