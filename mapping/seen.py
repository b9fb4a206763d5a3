"""The UIDL record: which messages of a remote mailbox are stored, written in the contract's order.

A SeenUidl row is the truth for "already fetched". It is written as an *intent* (identity,
the Maildir file name the message will get, ``stored_at`` empty) and committed before the
file can appear in new/, completed once the file is there (``intents_stored``), and marked
when the server applied our DELE. A kill between the two leaves an intent that the next
fetch settles by looking for its file (``intents_reconcile``): stored if it reached new/ or
cur/, else dropped so the message is fetched again. Every write here is fenced by the
fetch's lease (``lease.Lease.fenced``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from .lease import Lease
from .maildir import MaildirWriter
from .models import FetchRun, SeenUidl


def seen_load(binding_id: int) -> dict[str, datetime]:
    """Identity -> first_seen_at of every message recorded for the binding."""
    rows = SeenUidl.objects.filter(binding_id=binding_id).values_list("uidl", "first_seen_at")
    return dict(rows)


def intents_reconcile(lease: Lease, writer: MaildirWriter) -> None:
    """Settle intents a killed run left: stored if the file reached new/ or cur/, else dropped
    (the message is then fetched again)."""
    pending = list(
        SeenUidl.objects.filter(binding_id=lease.binding_id, stored_at__isnull=True).values_list(
            "pk", "maildir_name", "size"
        )
    )
    if not pending:
        return
    present = writer.delivered(name for _, name, _ in pending)
    stored = [(pk, size) for pk, name, size in pending if name in present]
    dropped = [pk for pk, name, _ in pending if name not in present]
    # A run killed before it marked them stored never counted them either.
    with lease.fenced(**_counters(len(stored), sum(size for _, size in stored))):
        SeenUidl.objects.filter(pk__in=[pk for pk, _ in stored]).update(stored_at=timezone.now())
        SeenUidl.objects.filter(pk__in=dropped).delete()


def intents_add(lease: Lease, rows: list[tuple[str, str, int]]) -> None:
    """Record (identity, Maildir file name, size) intents; commit before any rename."""
    if not rows:
        return
    now = timezone.now()
    # fetch_rows: the next fetch must read the records (issue 13; cleared by a run that
    # ends with none left).
    with lease.fenced(fetch_rows=True):
        SeenUidl.objects.bulk_create(
            SeenUidl(
                binding_id=lease.binding_id,
                uidl=key,
                maildir_name=name,
                size=size,
                first_seen_at=now,
            )
            for key, name, size in rows
        )


def intents_stored(
    lease: Lease, run: FetchRun, stored: list[tuple[str, int]], *, dropped: list[str]
) -> datetime:
    """Mark (identity, size) messages stored once their files are in new/, count them, and
    drop the intents of messages that were not stored (unproven, refused, aborted)."""
    count, size = len(stored), sum(s for _, s in stored)
    now = timezone.now()
    with lease.fenced(**_counters(count, size)):
        mine = SeenUidl.objects.filter(binding_id=lease.binding_id)
        for chunk in _chunks([key for key, _ in stored]):
            mine.filter(uidl__in=chunk).update(stored_at=now)
        for chunk in _chunks(dropped):
            mine.filter(uidl__in=chunk, stored_at__isnull=True).delete()
        if count:
            FetchRun.objects.filter(pk=run.pk).update(
                messages=run.messages + count, bytes=run.bytes + size
            )
    run.messages += count
    run.bytes += size
    return now


def seen_forget(lease: Lease, keys: list[str]) -> None:
    """Drop the records of messages no longer on the server."""
    if not keys:
        return
    with lease.fenced():
        for chunk in _chunks(keys):
            SeenUidl.objects.filter(binding_id=lease.binding_id, uidl__in=chunk).delete()


def seen_deleted(lease: Lease, keys: list[str]) -> None:
    """Note that the server applied our DELEs (QUIT answered +OK)."""
    if not keys:
        return  # an empty poll asks the database nothing here
    now = timezone.now()
    with lease.fenced():
        for chunk in _chunks(keys):
            SeenUidl.objects.filter(binding_id=lease.binding_id, uidl__in=chunk).update(
                deleted_on_server_at=now
            )


def _counters(count: int, size: int) -> dict:
    if not count:
        return {}
    return {
        "messages_fetched": F("messages_fetched") + count,
        "bytes_fetched": F("bytes_fetched") + size,
    }


def _chunks(items: list, size: int = 500) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
