"""The outgoing relay is now only the binding marked "Outgoing relay" (issue 10, item 8).

Until now an account without a marked binding relayed through its first enabled one. So that
no account silently loses its outside mail with this change, that binding is marked now: the
lookups then answer exactly as before, and unticking it afterwards really means "no relay".
"""

from django.db import migrations


def mark_the_binding_that_relayed(apps, schema_editor):
    Binding = apps.get_model("mapping", "Binding")
    marked = Binding.objects.filter(is_outgoing_relay=True).values("account_id")
    first_per_account: dict[int, int] = {}
    for binding_id, account_id in (
        Binding.objects.filter(enabled=True)
        .exclude(account_id__in=marked)
        .order_by("id")
        .values_list("id", "account_id")
    ):
        first_per_account.setdefault(account_id, binding_id)
    Binding.objects.filter(id__in=first_per_account.values()).update(is_outgoing_relay=True)


class Migration(migrations.Migration):
    dependencies = [
        ("mailservice", "0003_dovecot_view_quota"),
        ("mapping", "0002_binding_due_index"),
    ]

    operations = [migrations.RunPython(mark_the_binding_that_relayed, migrations.RunPython.noop)]
