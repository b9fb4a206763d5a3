"""Re-encrypt every stored ISP secret (passwords, OAuth tokens) under the newest key."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from audit import services as audit
from domains.models import Domain
from mapping import crypto
from mapping.models import Binding, OAuthCredential


class Command(BaseCommand):
    help = (
        "Re-encrypt all ISP passwords and OAuth tokens with the first key in ISP_SECRET_KEYS. "
        "Put a new key first, run this, then remove the old key. --generate prints a new key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--generate", action="store_true", help="print a new key and exit")

    def handle(self, *args: Any, generate: bool = False, **options: Any) -> None:
        if generate:
            self.stdout.write(crypto.generate_key())
            return
        count = 0
        with transaction.atomic():
            for binding in Binding.objects.select_for_update().only(
                "id", "password_encrypted", "smtp_password_encrypted"
            ):
                fields = {}
                for name in ("password_encrypted", "smtp_password_encrypted"):
                    token = getattr(binding, name)
                    if token:
                        fields[name] = crypto.reencrypt(token)
                # update(), not save(): rotation must not trip unrelated validation.
                Binding.objects.filter(pk=binding.pk).update(**fields)
                count += 1
            # Issue 15: the OAuth grants' refresh and access tokens, under the same keys.
            for cred in OAuthCredential.objects.select_for_update().only(*_TOKENS):
                fields = {
                    name: crypto.reencrypt(getattr(cred, name))
                    for name in _TOKENS[1:]
                    if getattr(cred, name)
                }
                OAuthCredential.objects.filter(pk=cred.pk).update(**fields)
            # Alert webhook secrets are under the same keys (issue 12).
            for pk, token in Domain.objects.exclude(alert_webhook_secret_encrypted="").values_list(
                "pk", "alert_webhook_secret_encrypted"
            ):
                Domain.objects.filter(pk=pk).update(
                    alert_webhook_secret_encrypted=crypto.reencrypt(token)
                )
            audit.record(
                "manage.py rotate_isp_keys", "keys.rotated", detail=f"{count} bindings re-encrypted"
            )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {count} bindings."))


_TOKENS = ("id", "refresh_token_encrypted", "access_token_encrypted")
