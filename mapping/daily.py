"""Daily fetch totals per binding (FetchDay), written as a run ends, for the Overview's chart.

One statement per run that stored mail or failed: an upsert that adds to the day's row
(``INSERT … ON CONFLICT … DO UPDATE``, the same text on PostgreSQL and SQLite), so
concurrent writers never lose a count. An empty poll writes nothing here (issue 12: an empty
poll is being cut to two statements).
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from .models import FetchOutcome, FetchRun

_FAILED = (FetchOutcome.ERROR, FetchOutcome.AUTH_FAILED)

# SELECT … WHERE EXISTS: a binding deleted meanwhile took its history with it.
_ADD = (
    "INSERT INTO mapping_fetchday (binding_id, day, runs, failures, messages, bytes) "
    "SELECT %s, %s, 1, %s, %s, %s WHERE EXISTS (SELECT 1 FROM mapping_binding WHERE id = %s) "
    "ON CONFLICT (binding_id, day) DO UPDATE SET "
    "runs = mapping_fetchday.runs + 1, "
    "failures = mapping_fetchday.failures + excluded.failures, "
    "messages = mapping_fetchday.messages + excluded.messages, "
    "bytes = mapping_fetchday.bytes + excluded.bytes"
)


def fetch_day_add(run: FetchRun) -> None:
    """Add a finished run to its binding's totals for today, if it stored mail or failed."""
    failed = run.outcome in _FAILED
    if not run.messages and not failed:
        return
    day = timezone.localdate(run.finished_at or timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            _ADD, [run.binding_id, day, int(failed), run.messages, run.bytes, run.binding_id]
        )
