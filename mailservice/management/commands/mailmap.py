"""`manage.py mailmap`: the lookup server Postfix asks (socketmap on a unix socket)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailservice import lookups
from mailservice.mapserver import LatencyStats, build_server, socket_path
from mailservice.socketmap import Request, SocketmapClient

log = logging.getLogger("mailservice.mailmap")


class Command(BaseCommand):
    help = (
        "Serve Postfix's lookups (domains, mailboxes, sender ownership, local-staff rule, "
        "per-sender ISP relay and credentials) on a unix socket (socketmap protocol)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--socket", help="Socket path (default: setting MAILMAP_SOCKET).")
        parser.add_argument(
            "--query",
            nargs=2,
            metavar=("MAP", "KEY"),
            help="Ask a running server one question and print the answer (like postmap -q).",
        )
        parser.add_argument(
            "--stats",
            metavar="FILE",
            help="On exit, write per-map answer times (n, p50, p99, max in ms) as JSON.",
        )
        parser.add_argument(
            "--local",
            action="store_true",
            help="With --query: answer from the database in this process, no server needed.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["socket"] or socket_path()
        if options["query"]:
            name, key = options["query"]
            if options["local"]:
                request = Request(name, key)
                token_map = name in lookups.TOKEN_MAPS
                reply = lookups.token_answer(request) if token_map else lookups.answer(request)
            else:
                try:
                    with SocketmapClient(path) as client:
                        reply = client.query(name, key)
                except OSError as exc:
                    raise CommandError(f"No lookup server answers on {path}: {exc}") from exc
            secret = name in lookups.SECRET_MAPS and reply.status == "OK"
            shown = "(secret)" if secret else reply.data
            self.stdout.write(f"{reply.status} {shown}".rstrip())
            return

        stats = LatencyStats() if options["stats"] else None
        try:
            server = build_server(path, stats)
        except (OSError, PermissionError) as exc:
            raise CommandError(f"Cannot listen on {path}: {exc}") from exc
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        log.info("mailmap: listening on %s (uids allowed: %s)", path, sorted(server.allowed_uids))
        log.info("mailmap: answers from %s", server.cache.watch.description)
        token = server.token_server
        log.info("mailmap: tokens on %s (uids allowed: %s)", token.path, sorted(token.allowed_uids))
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            server.server_close()
            if stats is not None:
                Path(options["stats"]).write_text(json.dumps(stats.summary(), indent=2))
            log.info("mailmap: stopped")
