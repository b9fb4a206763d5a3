"""The claim: one statement takes a batch of due bindings and each one's lease (issue 13).

The database is the queue (design.md, "Scheduling"): one ``mapping_schedule`` row per
binding (``models.Schedule``: due time and lease, one index). A claimer
(``mapping.claimer``) asks for as many bindings as it has free sessions; this module's
single ``UPDATE schedule … FROM binding WHERE ctid = ANY(ARRAY(SELECT … ORDER BY due
LIMIT n FOR UPDATE SKIP LOCKED)) … RETURNING binding columns`` gives each of them a lease
(token, expiry, holder) and returns the binding rows the fetch reads, so a claim IS the
lease: the fetch starts with ``fetch.binding_fetch(lease=…)`` and asks the database
nothing more before it talks to the ISP.

- Only schedule rows are written and locked: the binding row is read in the same statement
  (not locked, not rewritten), the account and domain a fetch needs when it has mail to
  store afterwards, lazily.
- ``next_fetch_at`` becomes the lease's expiry (the claim marker): the claimed row leaves
  the due range, so later claims never step over running fetches, and a claimer killed with
  its batch leaves bindings due again as soon as their leases expire.
- PostgreSQL: ``SKIP LOCKED`` lets any number of claimers on any number of boxes take
  disjoint batches; a row another claimer has committed no longer matches (READ COMMITTED
  re-checks a locking read's WHERE on the new row version).
- SQLite (≥ 3.35 for ``RETURNING``): the same UPDATE without row locks, each returned
  binding column a primary-key lookup (SQLite's RETURNING cannot name a FROM table); SQLite
  runs one writer at a time, so two claims can never take the same row either.

The WHERE and ORDER BY are the partial index ``schedule_due_idx``'s (``next_fetch_at``, the
unscheduled left out): a claim is one index range scan ending at "now", costing what is
due, not what exists.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from functools import cache

from django.db import connection, connections
from django.db.models.base import ModelState

from .lease import Holder, Lease, lease_seconds
from .models import Binding

_PICK = """
    SELECT {key} FROM mapping_schedule
    WHERE next_fetch_at <= %s AND (lease_token IS NULL OR lease_expires_at < %s)
    ORDER BY next_fetch_at
    LIMIT %s{lock}
"""
_SQL = {
    # The picked rows are found again by their physical address (ctid, a TID scan), not by
    # a second primary-key descent each: at 10,000 rows of 1,000,000 that was a third of the
    # claim. As an array (not a join) the planner always sees a few rows: a join on ctid
    # it costed as a hash join over the whole table. A row someone else updated between
    # this statement's snapshot and its lock is not visible at that address: it is left
    # out of this claim (still due, and never taken twice).
    "postgresql": """
UPDATE mapping_schedule AS s
SET lease_token = %s, lease_expires_at = %s, lease_holder = %s, next_fetch_at = %s
FROM mapping_binding AS b
WHERE s.ctid = ANY(ARRAY({pick})) AND b.id = s.binding_id
RETURNING {columns}
""",
    # SQLite's RETURNING cannot name a FROM table: a primary-key lookup per column instead.
    "sqlite": """
UPDATE mapping_schedule
SET lease_token = %s, lease_expires_at = %s, lease_holder = %s, next_fetch_at = %s
WHERE binding_id IN ({pick})
RETURNING {columns}
""",
}


# What a fetch reads of its binding. The rest (the SMTP relay's settings, status texts and
# times, counters) it only writes; reading one of them would cost one query (a deferred
# field). No timestamp is read: Django's time-zone-aware loader parses each one in Python.
_READ = (
    "id", "account", "host", "port", "security", "username", "password_encrypted",
    "auth_method", "leave_policy", "delete_after_days", "fetch_interval_minutes", "enabled",
    "state", "consecutive_failures", "retr_one_at_a_time",
    "quarantine_entries", "fetch_rows",
)  # fmt: skip


@cache
def _returned() -> tuple:
    """The fields a claim returns, in order."""
    return tuple(Binding._meta.get_field(name) for name in _READ)


def claim_sql(vendor: str) -> str:
    """The claim's text on this database (``%s`` parameters, see ``bindings_claim``)."""
    if vendor == "postgresql":
        columns = ", ".join(f"b.{f.column}" for f in _returned())
        pick = _PICK.format(key="ctid", lock=" FOR UPDATE SKIP LOCKED")
        return _SQL[vendor].format(pick=pick, columns=columns)
    columns = ", ".join(
        f"(SELECT b.{f.column} FROM mapping_binding b WHERE b.id = binding_id)"  # noqa: S608
        for f in _returned()
    )
    return _SQL["sqlite"].format(pick=_PICK.format(key="binding_id", lock=""), columns=columns)


def _converters(vendor: str) -> list[tuple[int, list]]:
    """Per returned column, the converters Django's compiler would apply (none on
    PostgreSQL for these types; text to datetime, UUID and bool on SQLite)."""
    found = []
    for index, field in enumerate(_returned()):
        col = field.get_col(Binding._meta.db_table)
        functions = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        if functions:
            found.append((index, functions))
    return found


_CONVERTERS: dict[str, list[tuple[int, list]]] = {}


def _bindings(rows: list[tuple]) -> list[Binding]:
    """Model instances from returned rows, as ``Model.from_db`` makes them for a queryset
    with deferred fields, without running ``__init__`` per row: at thousands of rows per
    claim, ``__init__`` cost more than the statement. Fields not returned load on access.
    """
    real = connections[connection.alias]  # the proxy would cost a lookup per use
    vendor, alias = real.vendor, real.alias
    if vendor not in _CONVERTERS:
        _CONVERTERS[vendor] = _converters(vendor)
    names = [f.attname for f in _returned()]
    converters = _CONVERTERS[vendor]
    new, made = Binding.__new__, []
    for row in rows:
        if converters:  # SQLite only: PostgreSQL returns these types as Python's own
            row = list(row)
            for index, functions in converters:
                for convert in functions:
                    row[index] = convert(row[index], None, real)
        binding = new(Binding)
        state = ModelState()
        state.adding, state.db = False, alias
        # One C-level dict build per row: the loop runs thousands of times per claim.
        values = dict(zip(names, row, strict=True))
        values["_state"] = state
        binding.__dict__ = values
        made.append(binding)
    return made


def bindings_claim(now: datetime, limit: int) -> list[tuple[Binding, Lease]]:
    """Claim up to `limit` due bindings, most overdue first: each row with its lease.

    One statement in autocommit: the leases are committed when it returns. Every lease
    shares the claim's token: a fence names the binding and the token, so one token per
    claim is as safe as one per row.
    """
    if limit <= 0:
        return []
    token, me = uuid.uuid4(), Holder.current()
    ttl = lease_seconds()
    expires = now + timedelta(seconds=ttl)
    ops = connection.ops
    # Raw parameters in the form Django's own queries store: on SQLite a UUID is 32 hex
    # digits and a datetime naive UTC text, or no fence and no comparison would match.
    at, until = ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(expires)
    tok = token if connection.vendor == "postgresql" else token.hex
    params = [tok, until, str(me), until, at, at, limit]
    with connection.cursor() as cursor:
        cursor.execute(claim_sql(connection.vendor), params)
        rows = _bindings(cursor.fetchall())
    renew_at = time.monotonic() + ttl / 4
    return [(row, Lease(row.id, token, renew_at)) for row in rows]
