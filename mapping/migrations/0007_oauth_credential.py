"""Issue 15: a sign-in method per binding, the OAuth grant (tokens encrypted), "Needs sign-in"."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mapping', '0006_ops_quarantine_daily_totals'),
    ]

    operations = [
        migrations.AddField(
            model_name='binding',
            name='auth_method',
            field=models.CharField(choices=[('password', 'ISP password'), ('oauth2_microsoft', 'Sign in with Microsoft'), ('oauth2_google', 'Sign in with Google'), ('oauth2_generic', 'Sign in with the ISP (OAUTHBEARER)')], db_default='password', default='password', max_length=20, verbose_name='Sign-in'),
        ),
        migrations.AlterField(
            model_name='binding',
            name='state',
            field=models.CharField(choices=[('new', 'Not fetched yet'), ('ok', 'OK'), ('retrying', 'Temporary error, retrying'), ('needs_attention', 'Needs attention'), ('needs_sign_in', 'Needs sign-in')], default='new', max_length=20),
        ),
        migrations.AlterField(
            model_name='fetchrun',
            name='outcome',
            field=models.CharField(choices=[('running', 'Running'), ('ok', 'OK'), ('error', 'Error'), ('auth_failed', 'Password rejected'), ('needs_sign_in', 'Needs sign-in'), ('skipped', 'Skipped (another fetch holds the mailbox)')], default='running', max_length=16),
        ),
        migrations.CreateModel(
            name='OAuthCredential',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('provider', models.CharField(max_length=16)),
                ('remote_login', models.CharField(max_length=255, verbose_name='Signed-in mailbox')),
                ('scopes', models.TextField(blank=True)),
                ('refresh_token_encrypted', models.TextField(editable=False)),
                ('access_token_encrypted', models.TextField(blank=True, editable=False)),
                ('access_expires_at', models.DateTimeField(blank=True, null=True)),
                ('version', models.PositiveIntegerField(default=0)),
                ('state', models.CharField(choices=[('ok', 'Signed in'), ('needs_sign_in', 'Needs sign-in')], default='ok', max_length=16)),
                ('last_error', models.TextField(blank=True)),
                ('signed_in_at', models.DateTimeField()),
                ('signed_in_by', models.CharField(blank=True, max_length=255)),
                ('last_refresh_at', models.DateTimeField(blank=True, null=True)),
                ('binding', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='oauth_credential', to='mapping.binding')),
            ],
            options={
                'verbose_name': 'OAuth sign-in',
            },
        ),
    ]
