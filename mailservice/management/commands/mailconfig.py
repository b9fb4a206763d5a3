"""`manage.py mailconfig --out DIR`: write Dovecot and Postfix configuration from settings."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from mailservice import config as mailconfig


class Command(BaseCommand):
    help = (
        "Render Dovecot 2.3 (dovecot/dovecot.conf, dovecot/dovecot-sql.conf.ext) and Postfix "
        "3.7 (postfix/main.cf, postfix/master.cf) configuration from AAMail's settings."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Directory to write the files into.")
        parser.add_argument(
            "--config-dir",
            help="Where the files will live when used, if not --out (paths inside point there).",
        )

    def handle(self, *args, **options):
        out = options["out"]
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
