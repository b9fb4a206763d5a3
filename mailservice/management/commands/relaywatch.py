"""`manage.py relaywatch`: the relay watch (mailservice/relaywatch.py) on a schedule."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from mailservice import layout
from mailservice.relaywatch import RelayWatchError, relay_watch_once, relay_watch_pass_logged


class Command(BaseCommand):
    help = (
        "Read Postfix's queue (postqueue -j) and its bounce notices every RELAY_WATCH_SECONDS "
        "and show, per account, outgoing mail that waits or was returned (the POP3 remote "
        "tab, /me/, alerts). Runs where Postfix's queue is: as root or postfix."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")
        parser.add_argument(
            "--postfix-dir", help="Postfix's configuration (default: MAIL_CONFIG_DIR/postfix)."
        )

    def handle(
        self, *args: Any, once: bool = False, postfix_dir: str | None = None, **options: Any
    ) -> None:
        postfix = postfix_dir or str(layout.postfix_config_dir())
        mail_root = settings.MAIL_ROOT
        if once:
            try:
                summary = relay_watch_once(postfix_dir=postfix, mail_root=mail_root)
            except RelayWatchError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(
                f"{summary.failing} relays failing, {summary.waiting} messages waiting, "
                f"{summary.returned} returned to their senders."
            )
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        self.stdout.write(f"relay watch: every {settings.RELAY_WATCH_SECONDS} s, {postfix}")
        while not stop.is_set():
            close_old_connections()
            relay_watch_pass_logged(postfix_dir=postfix, mail_root=mail_root)
            stop.wait(settings.RELAY_WATCH_SECONDS)
