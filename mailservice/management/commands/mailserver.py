"""`manage.py mailserver`: private Dovecot + Postfix + mailmap on loopback high ports."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mailservice.config import ConfigError, MailConfig, Ports
from mailservice.processes import ProcessError
from mailservice.runner import OfficeMailServer, make_self_signed


class Command(BaseCommand):
    help = (
        "Run the office mail service for trying it out: Dovecot, Postfix and the lookup "
        "server on 127.0.0.1, ports PORT_BASE+25/587/465/143/993/110/995. Needs root and "
        "the Debian packages (README). Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-dir", help="State directory (default: var/mailserver).")
        parser.add_argument("--port-base", type=int, default=10000)

    def handle(self, *args, **options):
        if os.getuid() != 0:
            raise CommandError("mailserver needs root: Postfix and Dovecot drop privileges.")
        base = Path(options["base_dir"] or Path(settings.BASE_DIR) / "var" / "mailserver")
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        n = options["port_base"]
        ports = Ports(n + 25, n + 587, n + 465, n + 143, n + 993, n + 110, n + 995)
        hostname = getattr(settings, "MAIL_HOSTNAME", "localhost")
        cert = getattr(settings, "MAIL_TLS_CERT_FILE", "")
        key = getattr(settings, "MAIL_TLS_KEY_FILE", "")
        if not cert:
            cert, key = make_self_signed(base / "tls", hostname)
        try:
            config = MailConfig.private(
                base, ports, hostname=hostname, tls_cert=str(cert), tls_key=str(key)
            )
            server = OfficeMailServer(config)
            server.start()
        except (ConfigError, ProcessError, OSError) as exc:
            raise CommandError(str(exc)) from exc

        self.stdout.write(
            "\n".join(
                [
                    f"AAMail mail service on 127.0.0.1 (state in {base}):",
                    f"  SMTP in (MX role)    {ports.smtp}",
                    f"  submission STARTTLS  {ports.submission}    SSL/TLS {ports.submissions}",
                    f"  IMAP STARTTLS        {ports.imap}    SSL/TLS {ports.imaps}",
                    f"  POP3 STARTTLS        {ports.pop3}    SSL/TLS {ports.pop3s}",
                    f"  lookup server        {config.mailmap_socket}",
                    f"  logs                 {config.postfix_log}, {config.dovecot_log}",
                    f"  set MAIL_DOVECOT_CONFIG={config.dovecot_conf} for the web console",
                    "Ctrl-C stops.",
                ]
            )
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        try:
            stop.wait()
        finally:
            server.stop()
            self.stdout.write("stopped")
