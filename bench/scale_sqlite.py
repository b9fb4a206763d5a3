"""Claims on SQLite (the embedded default): the product's claim vs one statement.

    python -m bench.scale_sqlite --rows 100000 --due 1000 --limit 500 --repeat 3

Run in its own process by ``scale.py`` (Django set up on a fresh SQLite file in a temporary
directory, ``manage.py migrate``, rows filled in SQL like ``scale_claim.fill``). Measures,
from a reset table each time:

- ``product``: ``mapping.claim.bindings_claim`` with the shipped database settings
  (rollback journal, ``synchronous=FULL``): one ``UPDATE … RETURNING`` statement (each
  returned binding column a primary-key subquery);
- ``floor``: ``UPDATE … WHERE binding_id IN (SELECT … ORDER BY next_fetch_at LIMIT n)
  RETURNING binding_id`` on ``mapping_schedule`` in one transaction, same journal;
- ``floor-wal``: the same statement with ``journal_mode=WAL`` and ``synchronous=NORMAL``
  (what stage 2 proposes for SQLite);
- ``release`` and ``release-wal``: one binding's release per binding (its schedule row and
  its status, two UPDATEs in one transaction, as ``Lease.release`` writes one), each its
  own commit, in both journal modes (what an empty poll's release costs).

The stage-1 claim (``before``) read the binding's own due time, gone since stage 4.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FILL = """
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :rows)
INSERT INTO {table} SELECT {columns} FROM (SELECT i, (i * 7919) % :rows AS r FROM s)
"""
NEXT = """CASE WHEN r < :due
    THEN strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (300.0 * (:due - r) / :due) || ' seconds')
    ELSE strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 hour') END"""
FLOOR_SQL = """
UPDATE mapping_schedule SET next_fetch_at = %s, lease_token = %s, lease_expires_at = %s
WHERE binding_id IN (
    SELECT binding_id FROM mapping_schedule
    WHERE next_fetch_at <= %s AND (lease_token IS NULL OR lease_expires_at < %s)
    ORDER BY next_fetch_at LIMIT %s)
RETURNING binding_id
"""
RELEASE_SCHEDULE_SQL = """
UPDATE mapping_schedule SET next_fetch_at = %s, lease_token = NULL, lease_expires_at = NULL,
    lease_holder = ''
WHERE binding_id = %s
"""
RELEASE_STATUS_SQL = """
UPDATE mapping_binding SET state = 'ok', last_check_at = %s, last_success_at = %s,
    last_error = '', consecutive_failures = 0
WHERE id = %s
"""


def _fill(cursor, rows: int, due: int) -> None:
    domains = -(-rows // 20)
    cursor.execute(
        FILL.format(
            table="domains_domain (name, domain_type, pop3_host, pop3_port, pop3_security, "
            "smtp_host, smtp_port, smtp_security, is_active, created_at, updated_at)",
            columns="'office' || i || '.scale.example', 'map', '', 995, 'ssl', '', 587, "
            "'starttls', 1, datetime('now'), datetime('now')",
        ).replace(":rows", str(domains))
    )
    cursor.execute(
        FILL.format(
            table="accounts_account (localpart, display_name, kind, password, quota_mb, "
            "is_active, created_at, updated_at, domain_id)",
            columns="'user' || i, '', 'normal', '!', 0, 1, datetime('now'), datetime('now'), "
            "1 + (i - 1) / 20",
        ).replace(":rows", str(rows))
    )
    cursor.execute(
        FILL.format(
            table="mapping_binding (host, port, security, username, password_encrypted, "
            "leave_policy, fetch_interval_minutes, enabled, smtp_host, smtp_port, "
            "smtp_security, smtp_username, smtp_password_encrypted, is_outgoing_relay, state, "
            "last_error, consecutive_failures, messages_fetched, bytes_fetched, "
            "created_at, updated_at, account_id)",
            columns="'pop.isp.example', 995, 'ssl', 'user' || i, 'gAAAAA', 'keep', 5, "
            "NOT (r >= :due AND r % 50 = 0), '', 587, 'starttls', '', '', 0, 'ok', '', 0, "
            "0, 0, datetime('now'), datetime('now'), i",
        )
        .replace(":rows", str(rows))
        .replace(":due", str(due))
    )
    # Every binding's queue row (a disabled one has no due time); r again from the account.
    schedule = (
        "INSERT INTO mapping_schedule (binding_id, next_fetch_at, lease_token, "
        f"lease_expires_at, lease_holder) SELECT id, CASE WHEN enabled THEN {NEXT} END, "
        "NULL, NULL, '' FROM (SELECT id, enabled, (account_id * 7919) % :rows AS r "
        "FROM mapping_binding)"
    )
    cursor.execute(schedule.replace(":rows", str(rows)).replace(":due", str(due)))
    cursor.execute(
        "CREATE TABLE scale_due AS SELECT binding_id AS id, next_fetch_at FROM mapping_schedule "
        "WHERE next_fetch_at <= strftime('%Y-%m-%d %H:%M:%f', 'now')"
    )


def _reset(cursor) -> None:
    cursor.execute(
        "UPDATE mapping_schedule SET next_fetch_at = (SELECT s.next_fetch_at FROM scale_due s "
        "WHERE s.id = mapping_schedule.binding_id), lease_token = NULL, lease_expires_at = NULL, "
        "lease_holder = '' WHERE binding_id IN (SELECT id FROM scale_due)"
    )


def _journal(cursor, wal: bool) -> None:
    cursor.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
    cursor.execute(f"PRAGMA synchronous={'NORMAL' if wal else 'FULL'}")


def measure(rows: int, due: int, limit: int, repeat: int) -> dict:
    import uuid

    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from mapping import claim

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        _fill(cursor, rows, due)
    made = connection.cursor().execute("SELECT count(*) FROM scale_due").fetchone()[0]
    timings: dict[str, list[float]] = {}
    counts: dict[str, int] = {}

    def floor_claim() -> int:
        now = timezone.now()
        until = now + timedelta(seconds=90)  # the claim marker is the lease's expiry
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # Django opens the transaction lazily
            params = [until, uuid.uuid4().hex, until, now, now, limit]
            cursor.execute(FLOOR_SQL, params)
            return len(cursor.fetchall())

    def release(ids: list[int]) -> int:
        for binding_id in ids:
            now = timezone.now()
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(RELEASE_SCHEDULE_SQL, [now + timedelta(minutes=5), binding_id])
                cursor.execute(RELEASE_STATUS_SQL, [now, now, binding_id])
        return len(ids)

    def product_claim() -> int:
        return len(claim.bindings_claim(timezone.now(), limit))

    due_ids = [r[0] for r in connection.cursor().execute("SELECT id FROM scale_due LIMIT 100")]
    plan = [
        ("product", False, product_claim),
        ("floor", False, floor_claim),
        ("floor-wal", True, floor_claim),
        ("release", False, lambda: release(due_ids)),
        ("release-wal", True, lambda: release(due_ids)),
    ]
    for _ in range(repeat):
        for name, wal, action in plan:
            with connection.cursor() as cursor:
                _journal(cursor, wal)
                _reset(cursor)
            start = time.perf_counter()
            counts[name] = action()
            timings.setdefault(name, []).append(time.perf_counter() - start)
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    return {
        "rows": rows,
        "due": made,
        "limit": limit,
        "repeat": repeat,
        "median_ms": medians,
        "claimed": counts,
        "release_ms_each": {
            name: medians[name] / counts[name] for name in ("release", "release-wal")
        },
        "sqlite": connection.cursor().execute("SELECT sqlite_version()").fetchone()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Claims on SQLite.")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wt_scale_sqlite_") as work:
        os.environ["DATABASE_URL"] = f"sqlite:///{work}/scale.sqlite3"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aamail.settings")
        os.environ.setdefault("SECRET_KEY", "aamail-scale-bench-not-secret-" + "x" * 30)
        from cryptography.fernet import Fernet

        os.environ.setdefault("ISP_SECRET_KEYS", Fernet.generate_key().decode())
        import django

        django.setup()
        result = measure(args.rows, args.due, args.limit, args.repeat)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
