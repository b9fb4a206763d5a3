"""`manage.py detect ADDRESS`: the console's Detect report, for an account's bindings.

    manage.py detect support@example.com
    manage.py detect --host mail.isp.example --port 995 --security ssl --user support
    manage.py detect --host ... --user ... --smtp-host mail.isp.example --smtp-port 587

Ad-hoc passwords come from the AAMAIL_DETECT_PASSWORD (and AAMAIL_DETECT_SMTP_PASSWORD)
environment variables or a prompt, never from an argument: arguments are visible to every
user of the machine in `ps` and land in shell history.
"""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Account
from domains.models import Security
from mapping import credentials, detect
from mapping.models import Binding

PASSWORD_ENV = "AAMAIL_DETECT_PASSWORD"
SMTP_PASSWORD_ENV = "AAMAIL_DETECT_SMTP_PASSWORD"


def port_number(text: str) -> int:
    """A TCP port 1-65535, or an argparse error in words (0 used to mean "the default")."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give a number from 1 to 65535 "
            "(leave --port out for the default of the chosen security)."
        )
    return port


class Command(BaseCommand):
    help = "Test the ISP POP3 and SMTP settings of an account's remote POP3 accounts, live."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", nargs="?", help="internal account, e.g. support@example.com")
        parser.add_argument("--host", help="test this POP3 server instead of stored bindings")
        parser.add_argument("--port", type=port_number, help="POP3 port (default: 995, or 110)")
        parser.add_argument("--security", choices=Security.values, default=Security.SSL)
        parser.add_argument("--user", help="ISP account (username)")
        parser.add_argument("--smtp-host", help="also test this SMTP server")
        parser.add_argument("--smtp-port", type=port_number, default=587)
        parser.add_argument("--smtp-security", choices=Security.values, default=Security.STARTTLS)
        parser.add_argument("--smtp-user", help="SMTP account (default: --user)")
        parser.add_argument("--deadline", type=float, help="overall time limit in seconds")
        parser.add_argument(
            "--smtp",
            action="store_true",
            help="test the SMTP relay of stored bindings that do not carry outgoing mail too",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["host"]:
            reports = [self._adhoc(options)]
        elif options["address"]:
            reports = [self._binding_report(b, options) for b in self._bindings(options)]
        else:
            raise CommandError("Give an account address, or --host and --user.")
        for report in reports:
            self.stdout.write(report.as_text())
        failed = sum(not r.ok for r in reports)
        if failed:
            raise CommandError(f"Detect found a problem in {failed} of {len(reports)} run(s).")

    def _bindings(self, options: dict[str, Any]) -> list[Binding]:
        localpart, _, domain = options["address"].strip().lower().rpartition("@")
        account = Account.objects.filter(localpart=localpart, domain__name=domain).first()
        if account is None:
            raise CommandError(f"There is no account {options['address']}.")
        bindings = list(account.bindings.select_related("account__domain").order_by("id"))
        if not bindings:
            raise CommandError(f"{account.address} has no remote POP3 account.")
        return bindings

    def _binding_report(self, binding: Binding, options: dict[str, Any]) -> detect.Report:
        self.stdout.write(f"Remote POP3 account {binding.username} of {binding.account.address}:")
        pop3, smtp = credentials.detect_targets(
            binding, smtp=binding.is_outgoing_relay or options["smtp"]
        )
        return detect.detect(pop3=pop3, smtp=smtp, deadline=options["deadline"])

    def _adhoc(self, options: dict[str, Any]) -> detect.Report:
        if not options["user"]:
            raise CommandError("--user is required with --host.")
        security = options["security"]
        port = options["port"] or (995 if security == Security.SSL else 110)
        password = os.environ.get(PASSWORD_ENV) or getpass.getpass("ISP password: ")
        smtp = None
        if options["smtp_host"]:
            smtp_password = os.environ.get(SMTP_PASSWORD_ENV) or password
            smtp = detect.Target(
                options["smtp_host"],
                options["smtp_port"],
                options["smtp_security"],
                options["smtp_user"] or options["user"],
                smtp_password,
            )
        return detect.detect(
            pop3=detect.Target(options["host"], port, security, options["user"], password),
            smtp=smtp,
            deadline=options["deadline"],
        )
