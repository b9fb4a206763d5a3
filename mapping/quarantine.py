"""Poison messages: what fails run after run is set aside, so the rest of the mailbox flows.

A message whose RETR the ISP refuses (``-ERR``), or at which the session breaks, in
QUARANTINE_AFTER_FAILURES runs in a row is *set aside*: later fetches skip it (it is not
retried every run), nothing ever DELEs it (it was never stored), and the console lists it
with the reason and three actions: retry, download as .eml (when it was read whole: the
bytes as read are kept, in the database, for that domain's administrators) and forget.

Bookkeeping only. ``fetch.py`` calls it at two places: planning (``Suspects.skips``, and
``Suspects.gone`` once the listing is known) and after each batch (``blame``, then
``Suspects.settle``). A binding without rows here costs no statement: its
``quarantine_entries`` count says so. Every write is fenced by the fetch's lease.

Only evidence that points at one message counts (``blame``): an explicit ``-ERR`` to its
RETR; or, when the session broke for the server's or the network's reason while the
replies were in step, the first message of the batch that was not stored (the one being
read or asked for when it broke, or whose reply could not be proven). A pipeline that fell
out of step blames nobody: the next session reads one message at a time and will tell.
Local trouble (a full disk) is not the message's fault and blames nobody either. Messages
of a server without UIDL have no identity before they are read and are not counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .lease import Lease
from .models import Binding, QuarantineChunk, QuarantinedMessage, QuarantineState

CHUNK_BYTES = 1 << 20  # pieces of kept bytes: memory stays flat whatever the size


def threshold() -> int:
    """Runs in a row a message may fail before it is set aside."""
    return max(1, int(settings.QUARANTINE_AFTER_FAILURES))


@dataclass(frozen=True)
class Failure:
    """One message this run's trouble points at, and why, in words."""

    key: str
    reason: str
    size: int
    kept: Path | None = None  # the file holding the bytes as read, when read whole


@dataclass
class _Row:
    pk: int
    state: str
    failures: int


def blame(
    *,
    order: list[int],
    keys: dict[int, str],
    sizes: dict[int, int],
    refused: dict[int, str],
    stored: set[int],
    read_whole: dict[int, Path],
    in_step: bool,
    trouble: str | None,
) -> list[Failure]:
    """The messages of one batch that this run's trouble points at (module docstring).

    ``order``: the batch's message numbers as asked; ``keys``: UIDL identities;
    ``refused``: -ERR words to RETR; ``stored``: published numbers; ``read_whole``: the
    tmp/ files of messages read to their end; ``trouble``: the words of the error that
    broke the session when it was the server's or the network's, else None.
    """
    if not in_step:
        return []
    failures = [
        Failure(
            keys[n],
            f"The ISP refused to hand it out (-ERR to RETR: “{refused[n][:200]}”).",
            sizes.get(n, 0),
        )
        for n in order
        if n in refused and n in keys
    ]
    if trouble is not None:
        culprit = next((n for n in order if n not in stored and n not in refused), None)
        if culprit is not None and culprit in keys:
            reason = f"The download broke at this message. What the fetch saw: {trouble}"
            kept = read_whole.get(culprit)
            failures.append(Failure(keys[culprit], reason, sizes.get(culprit, 0), kept))
    return failures


class Suspects:
    """A binding's quarantine rows for one fetch run, read only when it has any."""

    def __init__(self, binding: Binding) -> None:
        self.binding_id = binding.pk
        self.rows: dict[str, _Row] = {}
        if binding.quarantine_entries:
            rows = QuarantinedMessage.objects.filter(binding_id=binding.pk)
            for pk, uidl, state, failures in rows.values_list("pk", "uidl", "state", "failures"):
                self.rows[uidl] = _Row(pk, state, failures)

    def skips(self, key: str) -> bool:
        """Set aside or forgotten: planning leaves the message where it is."""
        row = self.rows.get(key)
        return row is not None and row.state != QuarantineState.SUSPECT

    def gone(self, lease: Lease, live: set[str]) -> None:
        """Drop the rows of messages no longer on the server (the listing is ``live``)."""
        stale = [key for key in self.rows if key not in live]
        if not stale:
            return
        pks = [self.rows.pop(key).pk for key in stale]
        with lease.fenced(quarantine_entries=len(self.rows)):
            QuarantinedMessage.objects.filter(pk__in=pks).delete()

    def settle(self, lease: Lease, *, stored: Iterable[str], failed: list[Failure]) -> list[str]:
        """After a batch: clear rows of stored messages, count failures; return words about
        the messages set aside now."""
        cleared = [self.rows.pop(key).pk for key in stored if key in self.rows]
        failed = [f for f in failed if not self.skips(f.key)]
        if not cleared and not failed:
            return []
        now = timezone.now()
        notes: list[str] = []
        created: list[tuple[Failure, QuarantinedMessage]] = []
        updated: list[tuple[Failure, _Row]] = []
        for failure in failed:
            row = self.rows.get(failure.key)
            if row is None:
                obj = QuarantinedMessage(
                    binding_id=self.binding_id,
                    uidl=failure.key,
                    failures=0,
                    reason=failure.reason,
                    size=failure.size,
                    first_failed_at=now,
                    last_failed_at=now,
                )
                created.append((failure, obj))
                row = self.rows[failure.key] = _Row(0, QuarantineState.SUSPECT, 0)
            else:
                updated.append((failure, row))
            row.failures += 1
            if row.failures >= threshold():
                row.state = QuarantineState.HELD
                notes.append(_held_words(failure, row.failures))
        with lease.fenced(quarantine_entries=len(self.rows)):
            if cleared:
                QuarantinedMessage.objects.filter(pk__in=cleared).delete()
            for failure, obj in created:
                row = self.rows[failure.key]
                obj.failures, obj.state = row.failures, row.state
                obj.held_at = now if row.state == QuarantineState.HELD else None
                obj.save(force_insert=True)
                row.pk = obj.pk
            for failure, row in updated:
                QuarantinedMessage.objects.filter(pk=row.pk).update(
                    failures=row.failures,
                    state=row.state,
                    reason=failure.reason,
                    last_failed_at=now,
                    held_at=now if row.state == QuarantineState.HELD else None,
                )
            for failure in failed:
                row = self.rows[failure.key]
                if row.state == QuarantineState.HELD and failure.kept is not None:
                    _keep(row.pk, failure.kept)
        return notes


def _held_words(failure: Failure, failures: int) -> str:
    return (
        f"Message {failure.key} was set aside after {failures} failed run(s) in a row and is "
        f"no longer tried at every run: {failure.reason} It stays on the server; the POP3 "
        "remote tab lists it (retry, download, forget)."
    )


def _keep(pk: int, path: Path) -> None:
    """Copy the bytes as read into the database, a piece at a time (never whole in memory)."""
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as file:
        size = path.stat().st_size
        if size > settings.QUARANTINE_KEEP_BYTES:
            return
        seq = 0
        while piece := file.read(CHUNK_BYTES):
            QuarantineChunk.objects.create(message_id=pk, seq=seq, data=piece)
            seq += 1
        QuarantinedMessage.objects.filter(pk=pk).update(kept_bytes=size)


# --- the console's actions (no lease: they change a row's state, never its existence) ----


def quarantine_retry(*, message: QuarantinedMessage) -> None:
    """Try the message again at the next fetch; one more failure sets it aside again."""
    with transaction.atomic():
        QuarantineChunk.objects.filter(message=message).delete()
        QuarantinedMessage.objects.filter(pk=message.pk).update(
            state=QuarantineState.SUSPECT,
            failures=threshold() - 1,
            held_at=None,
            kept_bytes=None,
        )


def quarantine_forget(*, message: QuarantinedMessage) -> None:
    """Stop listing the message and drop its kept bytes; it stays on the server, unfetched,
    until it leaves the server listing."""
    with transaction.atomic():
        QuarantineChunk.objects.filter(message=message).delete()
        QuarantinedMessage.objects.filter(pk=message.pk).update(
            state=QuarantineState.FORGOTTEN, kept_bytes=None
        )


def quarantine_bytes(*, message: QuarantinedMessage) -> Iterator[bytes]:
    """The kept bytes of a set-aside message, a piece per query."""
    seq = 0
    while True:
        piece = (
            QuarantineChunk.objects.filter(message=message, seq=seq)
            .values_list("data", flat=True)
            .first()
        )
        if piece is None:
            return
        yield bytes(piece)
        seq += 1
