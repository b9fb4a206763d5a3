"""python manage.py fetch [--all | ADDRESS ...]: fetch in the foreground, for operators and scripts.

Runs the same service as the workers (mapping.fetch.binding_fetch), one binding after the
other, with a progress bar on stderr (when it is a terminal) and a summary table on
stdout. Exit status 1 when any fetch failed or was skipped. A binding whose fetch is
running elsewhere is reported as skipped, naming who holds it, not waited for; a fetch
left by a process of this host that no longer runs is taken over at once.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.defaultfilters import filesizeformat

from mapping import selectors
from mapping.fetch import binding_fetch
from mapping.models import Binding, FetchOutcome, FetchRun


class ProgressBar:
    """One redrawn line on a terminal: [#####.....] done/total messages, size, label."""

    def __init__(self, stream: TextIO, label: str, width: int = 30) -> None:
        self.stream, self.label, self.width = stream, label, width
        self.enabled = stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int, done_bytes: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < total):
            return
        self._last = now
        filled = self.width * done // total if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        line = f"\r[{bar}] {done}/{total} messages, {filesizeformat(done_bytes)}  {self.label}"
        self.stream.write(line[:200])
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Command(BaseCommand):
    help = "Fetch remote POP3 accounts now, in the foreground (all, or those of ADDRESSes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addresses", nargs="*", metavar="ADDRESS", help="local@domain")
        parser.add_argument(
            "--all", action="store_true", dest="fetch_all", help="every enabled binding"
        )

    def handle(self, *args: Any, addresses: list[str], fetch_all: bool, **options: Any) -> None:
        if fetch_all == bool(addresses):
            raise CommandError("Give either --all or one or more account addresses.")
        if fetch_all:
            bindings = Binding.objects.filter(enabled=True).select_related("account__domain")
            bindings = bindings.order_by("account__domain__name", "account__localpart", "pk")
        else:
            bindings = selectors.bindings_for_addresses(addresses=addresses)
            found = {b.account.address for b in bindings}
            missing = [a for a in addresses if a.strip().lower() not in found]
            if missing:
                raise CommandError(f"No remote POP3 account for: {', '.join(missing)}")
        rows = []
        for binding in bindings:
            label = f"{binding.account.address} <- {binding.username}@{binding.host}"
            bar = ProgressBar(sys.stderr, label)
            started = time.monotonic()
            try:
                run = binding_fetch(binding=binding, trigger="command", progress=bar)
            finally:
                bar.close()
            rows.append((binding, run, time.monotonic() - started))
        self._summary(rows)
        failed = [
            r for _, r, _ in rows if r.outcome in (FetchOutcome.ERROR, FetchOutcome.AUTH_FAILED)
        ]
        skipped = [r for _, r, _ in rows if r.outcome == FetchOutcome.SKIPPED]
        if failed or skipped:
            parts = [f"{len(failed)} of {len(rows)} fetches failed"] if failed else []
            parts += [f"{len(skipped)} skipped (another fetch holds them)"] if skipped else []
            raise CommandError("; ".join(parts) + ".", returncode=1)

    def _summary(self, rows: list[tuple[Binding, FetchRun, float]]) -> None:
        header = ("Account", "ISP account", "Outcome", "Messages", "Size", "Deleted", "Time")
        table = [
            (
                b.account.address,
                f"{b.username}@{b.host}:{b.port}",
                run.get_outcome_display(),
                str(run.messages),
                filesizeformat(run.bytes),
                str(run.deleted),
                f"{seconds:.1f} s",
            )
            for b, run, seconds in rows
        ]
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
        for line in [header, tuple("-" * w for w in widths), *table]:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
            )
        for b, run, _ in rows:
            if run.error:
                self.stdout.write(f"{b.account.address} ({b.username}): {run.error}")
