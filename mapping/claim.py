"""The claim: one statement takes a batch of due bindings and each one's lease (issue 13).

The database is the queue (design.md, "Scheduling"). A claimer (``mapping.claimer``)
asks for as many bindings as it has free sessions; this module's single
``UPDATE … WHERE id IN (SELECT … ORDER BY due LIMIT n FOR UPDATE SKIP LOCKED) RETURNING``
gives each of them a lease (token, expiry, holder) and returns the binding rows the fetch
reads, so a claim IS the lease: the fetch starts with ``fetch.binding_fetch(lease=…)`` and
asks the database nothing more before it talks to the ISP.

- Only ``mapping_binding`` rows are locked: the account and domain a fetch needs when it
  has mail to store are read afterwards, lazily (no join in the locking read, which is what
  made two of the old ticks get less than one).
- ``next_fetch_at`` becomes the lease's expiry (the claim marker): a claimer killed with its
  batch leaves bindings due again as soon as their leases expire, not a tick later.
- PostgreSQL: ``SKIP LOCKED`` lets any number of claimers on any number of boxes take
  disjoint batches; a row another claimer has committed no longer matches (READ COMMITTED
  re-checks a locking read's WHERE on the new row version).
- SQLite (≥ 3.35 for ``RETURNING``): the same statement without row locks; SQLite runs one
  writer at a time, so two claims can never take the same row either.

The WHERE and ORDER BY repeat the partial index of migration 0008 (``binding_claim_idx``)
word for word: a claim is one index range scan ending at "now", costing what is due, not
what exists. A new binding (``next_fetch_at`` empty, state new) comes first.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from functools import cache

from django.db import connection, connections
from django.db.models.base import ModelState

from .lease import Holder, Lease, lease_seconds
from .models import Binding, BindingState

_SQL = """
UPDATE mapping_binding
SET lease_token = %s, lease_expires_at = %s, lease_holder = %s, next_fetch_at = %s
WHERE id IN (
    SELECT id FROM mapping_binding
    WHERE enabled AND (next_fetch_at IS NOT NULL OR state = '{new}')
      AND {due} <= %s
      AND (lease_token IS NULL OR lease_expires_at < %s)
    ORDER BY {due}
    LIMIT %s{lock}
)
RETURNING {columns}
"""
_DUE = {
    "postgresql": "COALESCE(next_fetch_at, '-infinity'::timestamptz)",
    "sqlite": "COALESCE(next_fetch_at, '')",
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
    due = _DUE.get(vendor, _DUE["sqlite"])
    lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    # The state is written as a literal: the partial index's predicate must be provable
    # from the query's text even when a driver binds parameters on the server.
    columns = ", ".join(f.column for f in _returned())
    return _SQL.format(due=due, lock=lock, columns=columns, new=BindingState.NEW.value)


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
    made = []
    for row in rows:
        values = list(row)
        for index, functions in converters:
            for convert in functions:
                values[index] = convert(values[index], None, real)
        binding = Binding.__new__(Binding)
        binding.__dict__.update(zip(names, values, strict=True))
        binding._state = ModelState()
        binding._state.adding, binding._state.db = False, alias
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
    return [(row, Lease(row.pk, token, renew_at=renew_at)) for row in rows]
