"""One fetch of a binding at a time: a lease with a fence, a known holder and a short life.

A fetch owns a binding through a lease: a random token, an expiry, and who holds it (host,
process id and the process's start time), taken with a conditional UPDATE (healthchecks'
`sendalerts` claim). The lease lives `lease_seconds()` (90 s by default) and the fetch
renews it at every sign of progress, so a lease outlives its holder by little: a fetch on
another host waits at most that long after a crash, and a fetch on the same host takes over
at once when the holder process is gone (design.md: "A lease sized to the longest fetch
blocks the next fetch for that long after a crash").

A lease can still expire under a paused worker, so every later write is fenced: it names the
token in its WHERE clause and raises `LeaseLostError` when no row changed, so a worker that
lost the lease cannot overwrite the new owner's progress ("A lock that can expire needs a
fence").
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .models import Binding, Schedule


class LeaseLostError(Exception):
    """Another fetch took the binding over (our lease expired); stop writing."""


def lease_seconds() -> float:
    """How long a lease lasts without renewal (FETCH_LEASE_SECONDS)."""
    return float(settings.FETCH_LEASE_SECONDS)


def unleased(now: datetime) -> Q:
    """Schedules no fetch holds right now (no lease, or an expired one)."""
    return Q(lease_token__isnull=True) | Q(lease_expires_at__lt=now)


# What of a fetch's writes lives on the schedule row; the rest goes to the binding.
_SCHEDULE_FIELDS = frozenset({"next_fetch_at", "lease_token", "lease_expires_at", "lease_holder"})


def _split(fields: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    ours = {name: value for name, value in fields.items() if name in _SCHEDULE_FIELDS}
    return ours, {name: value for name, value in fields.items() if name not in ours}


def _start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (/proc/<pid>/stat, field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = stat.read().rpartition(b")")[2].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@cache
def _own_start_ticks(pid: int) -> int:
    """This process's start, read once per process id (a claimer asks at every claim)."""
    return _start_ticks(pid) or 0


# A child may later get a pid its ancestors' cache knew: it reads its own start again.
os.register_at_fork(after_in_child=_own_start_ticks.cache_clear)


@cache
def _host() -> str:
    return (socket.gethostname() or "localhost").replace("|", "_")


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: host, process id, the process's start, and since when."""

    host: str
    pid: int
    started: int  # clock ticks since boot; tells a reused process id from the holder
    since: datetime

    @classmethod
    def current(cls) -> Holder:
        pid = os.getpid()  # asked each time: a forked worker child is another holder
        return cls(_host(), pid, _own_start_ticks(pid), timezone.now())

    def __str__(self) -> str:
        return f"{self.host}|{self.pid}|{self.started}|{self.since.timestamp():.0f}"

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            host, pid, started, since = text.rsplit("|", 3)
            moment = datetime.fromtimestamp(int(since), tz=UTC)
            return cls(host, int(pid), int(started), moment)
        except (ValueError, OverflowError):
            return None

    def describe(self) -> str:
        """'process 4711 on worker-2, since 2026-12-03 10:02:03 UTC' for a person."""
        return f"process {self.pid} on {self.host}, since {self.since:%Y-%m-%d %H:%M:%S %Z}"

    def is_gone(self) -> bool:
        """On this host: the holder process no longer runs (its id may have been reused)."""
        if self.host != _host():
            return False
        started = _start_ticks(self.pid)
        if started is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return not os.path.isdir("/proc")  # /proc exists but the pid has no entry
        return bool(self.started) and started != self.started


@dataclass(slots=True)  # thousands per claim: no per-instance dict
class Lease:
    """Our claim on one binding; every fenced write proves we still own it and extends it."""

    binding_id: int
    token: uuid.UUID
    renew_at: float = field(default=0.0)
    took_over: Holder | None = None  # a dead holder on this host we replaced

    def _extend(self, **fields: object) -> None:
        ttl = lease_seconds()
        ours, status = _split(
            {"lease_expires_at": timezone.now() + timedelta(seconds=ttl), **fields}
        )
        changed = Schedule.objects.filter(pk=self.binding_id, lease_token=self.token).update(**ours)
        if changed != 1:
            raise LeaseLostError
        if status:  # inside fenced(): the schedule row stays locked until the commit
            Binding.objects.filter(pk=self.binding_id).update(**status)
        self.renew_at = time.monotonic() + ttl / 4

    def renew_if_due(self) -> None:
        """The heartbeat: extend the lease when a quarter of it has passed (cheap otherwise)."""
        if time.monotonic() >= self.renew_at:
            self._extend()

    def release(self, **fields: object) -> None:
        """Give the binding back with its new status: one fenced UPDATE in autocommit.
        Raises ``LeaseLostError`` like every fence. Plain values only (no F())."""
        if leases_release([(self, fields)]):
            raise LeaseLostError

    @contextmanager
    def fenced(self, **fields: object) -> Iterator[None]:
        """A transaction that starts by proving we own the lease (and extending it).

        On PostgreSQL the UPDATE also row-locks the schedule until commit, so nobody can
        take the lease over in the middle of the block.
        """
        with transaction.atomic():
            self._extend(**fields)
            yield


def leases_release(releases: Sequence[tuple[Lease, dict[str, object]]]) -> list[Lease]:
    """Give many bindings back at once, each with its own status; return the leases found
    lost (the fence failed: somebody took the binding over), whose rows were left alone.

    Issue 13: the end of an empty poll. On PostgreSQL one statement for the batch (the
    schedules' fenced ``UPDATE … FROM unnest(…)`` in a WITH, the bindings' status from what
    it returned): one commit and one firing of the mailmap trigger, however many polls
    ended. Elsewhere one transaction of single-row UPDATEs (one commit). Written in SQL
    from the fields' own conversions: the ORM's query building cost more CPU than the
    statement. Plain values only (no F()); every entry names the same fields.
    """
    if not releases:
        return []
    cleared = {"lease_token": None, "lease_expires_at": None, "lease_holder": ""}
    rows = [(lease, {**fields, **cleared}) for lease, fields in releases]
    if connection.vendor == "postgresql":
        released = _release_unnest(rows)
        return [lease for lease, _ in rows if lease.binding_id not in released]
    ours, status = _split(rows[0][1])
    fence = _update_sql(Schedule, list(ours), "binding_id = %s AND lease_token = %s")
    write = _update_sql(Binding, list(status), "id = %s") if status else ""
    token_field = Schedule._meta.get_field("lease_token")
    lost = []
    together = transaction.atomic() if len(rows) > 1 or status else contextlib.nullcontext()
    with together, connection.cursor() as cursor:
        for lease, values in rows:
            token = token_field.get_db_prep_value(lease.token, connection)
            cursor.execute(fence, [*_values(Schedule, ours, values), lease.binding_id, token])
            if cursor.rowcount != 1:
                lost.append(lease)
            elif write:
                cursor.execute(write, [*_values(Binding, status, values), lease.binding_id])
    return lost


def _values(model: type, names: dict, values: dict) -> list:
    return [_prep(model, name, values[name]) for name in names]


def _prep(model: type, name: str, value: object) -> object:
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def _update_sql(model: type, names: list[str], where: str) -> str:
    """One row's UPDATE (names from the model's meta, every value a parameter)."""
    meta, ops = model._meta, connection.ops
    sets = [f"{ops.quote_name(meta.get_field(name).column)} = %s" for name in names]
    return f"UPDATE {ops.quote_name(meta.db_table)} SET {', '.join(sets)} WHERE {where}"  # noqa: S608


def _release_unnest(rows: list[tuple[Lease, dict[str, object]]]) -> set[int]:
    """PostgreSQL: the batch in one statement; a value the batch shares is one parameter,
    the others one array each. Returns the ids released."""
    ours, status = _split(rows[0][1])
    ids = [lease.binding_id for lease, _ in rows]
    arrays = [("id", Binding._meta.pk.rel_db_type(connection), ids)]
    arrays.append(("token", "uuid", [lease.token for lease, _ in rows]))
    shared: list = []

    def assignments(model: type, names: dict) -> str:
        sets = []
        for name in names:
            field = model._meta.get_field(name)
            values = [_prep(model, name, row[name]) for _, row in rows]
            if all(value == values[0] for value in values):
                sets.append(f'"{field.column}" = %s')
                shared.append(values[0])
            else:
                sets.append(f'"{field.column}" = r."{field.column}"')
                arrays.append((field.column, field.db_type(connection), values))
        return ", ".join(sets)

    fenced, written = assignments(Schedule, ours), assignments(Binding, status)
    casts = ", ".join(f"%s::{db_type}[]" for _, db_type, _ in arrays)
    labels = ", ".join(f'"{label}"' for label, _, _ in arrays)
    # The binding's status is written only where the fence held (the rows s returned).
    tail = (
        f"UPDATE mapping_binding AS b SET {written} FROM s JOIN r ON r.id = s.binding_id "  # noqa: S608
        "WHERE b.id = s.binding_id RETURNING b.id"
        if written
        else "SELECT binding_id FROM s"
    )
    sql = (
        f"WITH r AS (SELECT * FROM unnest({casts}) AS r({labels})), "  # noqa: S608 (meta names)
        f"s AS (UPDATE mapping_schedule AS s SET {fenced} FROM r "
        "WHERE s.binding_id = r.id AND s.lease_token = r.token RETURNING s.binding_id) " + tail
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(values for _, _, values in arrays), *shared])
        return {row[0] for row in cursor.fetchall()}


def lease_acquire(binding_id: int) -> Lease | Holder:
    """Take the binding's lease; or, when a live fetch holds it, say who (a ``Holder``).

    A lease left by a process of this host that no longer runs is taken over at once.
    """
    now = timezone.now()
    token, me = uuid.uuid4(), Holder.current()
    expires = now + timedelta(seconds=lease_seconds())
    fields = {"lease_token": token, "lease_expires_at": expires, "lease_holder": str(me)}
    if Schedule.objects.filter(pk=binding_id).filter(unleased(now)).update(**fields) == 1:
        return Lease(binding_id, token, renew_at=time.monotonic() + lease_seconds() / 4)
    row = Schedule.objects.filter(pk=binding_id).values_list("lease_token", "lease_holder")
    found = row.first()
    if found is None:
        raise Binding.DoesNotExist("The binding was deleted meanwhile.")
    old_token, text = found
    holder = Holder.parse(text) or Holder("another host", 0, 0, now)
    if holder.is_gone() and (
        Schedule.objects.filter(pk=binding_id, lease_token=old_token).update(**fields) == 1
    ):
        lease = Lease(binding_id, token, renew_at=time.monotonic() + lease_seconds() / 4)
        lease.took_over = holder
        return lease
    return holder
