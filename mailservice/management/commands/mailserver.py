"""`manage.py mailserver`: the office mail service on this machine, for trying it out.

Dovecot, Postfix and the lookup server run as private instances on 127.0.0.1 with the very
settings the rest of the product reads (MAIL_HOSTNAME, MAIL_*_PORT, MAIL_ROOT, MAIL_UID/GID,
MAIL_RUN_DIR, MAIL_CONFIG_DIR): the fetcher, `mailmap --query`, the web console and /me/ see
the same sockets, Maildirs and ports. Only the daemons' own queue, state and logs live apart,
under --base-dir, so the system's Postfix and Dovecot are never touched.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.mailbox import MailOwnerError, check_mail_owner
from mailservice.config import ConfigError, MailConfig
from mailservice.relaywatch import RelayWatchThread


class Command(BaseCommand):
    help = (
        "Run the office mail service for trying it out: Dovecot, Postfix and the lookup "
        "server on 127.0.0.1, on the ports of the MAIL_*_PORT settings. Needs root and the "
        "Debian packages (docs/mail-service.md). Ctrl-C stops everything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-dir", help="The daemons' queue, state and logs (default: var/mailserver)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            from devserver.certs import make_self_signed
            from devserver.processes import ProcessError
            from devserver.runner import OfficeMailServer
        except ImportError as exc:
            raise CommandError(
                "mailserver needs the development harness (the devserver package of the "
                "source tree); it is not part of the container images."
            ) from exc
        if os.getuid() != 0:
            raise CommandError("mailserver needs root: Postfix and Dovecot drop privileges.")
        try:
            check_mail_owner()
        except MailOwnerError as exc:
            raise CommandError(str(exc)) from exc
        base = Path(options["base_dir"] or Path(settings.VAR_DIR) / "mailserver")
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        hostname = settings.MAIL_HOSTNAME
        cert, key = settings.MAIL_TLS_CERT_FILE, settings.MAIL_TLS_KEY_FILE
        if not cert:
            # Kept across restarts: a mail program that accepted it once keeps accepting it.
            cert, key = make_self_signed(base / "tls", (hostname,), ("127.0.0.1",), reuse=True)
        try:
            config = MailConfig.private(base, tls_cert=str(cert), tls_key=str(key))
            server = OfficeMailServer(config)
            server.start()
        except (ConfigError, ProcessError, OSError) as exc:
            raise CommandError(str(exc)) from exc

        # Outgoing mail that waits or bounces, shown per account (issue 12).
        watch = RelayWatchThread(
            postfix_dir=config.postfix_dir,
            mail_root=config.mail_root,
            interval=settings.RELAY_WATCH_SECONDS,
        )
        watch.start()
        ports = config.ports
        self.stdout.write(
            "\n".join(
                [
                    f"AAMail mail service for {hostname} on 127.0.0.1 (state in {base}):",
                    f"  SMTP in (port 25 role)  {ports.smtp}",
                    f"  submission STARTTLS     {ports.submission}    SSL/TLS {ports.submissions}",
                    f"  IMAP STARTTLS           {ports.imap}    SSL/TLS {ports.imaps}",
                    f"  POP3 STARTTLS           {ports.pop3}    SSL/TLS {ports.pop3s}",
                    f"  certificate             {cert}",
                    f"  lookup server           {config.mailmap_socket}",
                    f"  configuration           {config.config_dir}",
                    f"  logs                    {config.postfix_log}, {config.dovecot_log}",
                    "Ctrl-C stops.",
                ]
            ),
        )
        self.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        try:
            stop.wait()
        finally:
            watch.stop()
            server.stop()
            self.stdout.write("stopped")
