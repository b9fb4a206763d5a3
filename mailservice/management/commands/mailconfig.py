"""`manage.py mailconfig`: write Dovecot and Postfix configuration from settings."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailservice import config as mailconfig
from mailservice import layout


class Command(BaseCommand):
    help = (
        "Render Dovecot 2.3 (dovecot/dovecot.conf, dovecot/dovecot-sql.conf.ext) and Postfix "
        "3.7 (postfix/main.cf, postfix/master.cf) configuration from AAMail's settings, into "
        "MAIL_CONFIG_DIR."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out", help="Directory to write the files into (default: MAIL_CONFIG_DIR)."
        )
        parser.add_argument(
            "--config-dir",
            help="Where the files will live when used, if not --out (paths inside point there).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out = options["out"] or str(layout.config_dir())
        try:
            config = mailconfig.MailConfig.from_settings(config_dir=options["config_dir"] or out)
            written = mailconfig.write(config, out)
        except mailconfig.ConfigError as exc:
            raise CommandError(str(exc)) from exc
        for path in written:
            self.stdout.write(str(path))
        where = config.config_dir
        self.stdout.write(f"Dovecot: dovecot -c {where}/dovecot/dovecot.conf")
        self.stdout.write(f"Postfix: postfix -c {where}/postfix start")
        self.stdout.write(f"Lookup server (Postfix asks it): {config.mailmap_socket}")
