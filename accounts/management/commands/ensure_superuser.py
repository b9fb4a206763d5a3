"""Create the first console superuser if there is none (used by the run command)."""

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from aamail.secretfiles import private_dir, write_private


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' when no superuser exists. The password comes from "
        "AAMAIL_ADMIN_PASSWORD, or is generated and written to var/initial-admin-password "
        "(mode 0600), never printed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = os.environ.get("AAMAIL_ADMIN_PASSWORD")
        where = "the password in AAMAIL_ADMIN_PASSWORD"
        if not password:
            password = secrets.token_urlsafe(12)
            path = Path(settings.VAR_DIR) / "initial-admin-password"
            # 0600 from its first byte, even if an older file had another mode.
            write_private(private_dir(path.parent) / path.name, password + "\n")
            where = f"the password stored in {path} (delete that file after first login)"
        User.objects.create_superuser("admin", password=password)
        self.stdout.write(f"Created the console superuser 'admin'; log in with {where}.")
