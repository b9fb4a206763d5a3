"""The lookup server's in-memory copy of what the maps read, used only while known current.

A message costs Postfix about nine lookups; answering each with a database round trip and a
hand-off to a database thread made the lookup p99 10 to 36 ms on a busy 2-core box (issue 6,
item 8). The lookup server therefore answers from a `Snapshot`: the active domains and the
active accounts with their kind and relay binding's fields — the ISP passwords still
*encrypted* (lookups.RelayRow decrypts one at lookup time; no clear-text password is kept).

A snapshot is used only while a *watch* vouches that the rows have not changed since it was
read. A watch's `token()` is an opaque value that changes whenever the rows may have changed,
or None when the watch cannot tell (then every lookup goes to the database, as before):

- PostgreSQL (`PostgresChanges`): statement-level triggers (migration 0002) send NOTIFY on
  every change of domains_domain, accounts_account and mapping_binding (for the latter only
  when a column the lookups read changes, not the fetcher's status columns). A listener
  thread on its own connection bumps a generation counter on each notification; the token is
  (connection epoch, generation). While that connection is down, or the triggers are
  missing, the token is None.
- SQLite (`SqliteFileWatch`): the database file's and its -wal's (mtime, size, inode), read
  per lookup (two stat calls, microseconds). Within `settle` seconds of the newest write the
  token is None: a file system's time stamps are coarse (a jiffy, or a second), so a second
  write in the same tick could leave them unchanged.
- Anything else (an in-memory SQLite database, another engine, MAILMAP_SNAPSHOT = False):
  no watch, always the database.

`SnapshotCache.current()` gives the snapshot whose token equals the watch's token now, else
None; `refresh()` (in a database thread) rebuilds it. The token is read *before* the rows: a
change that commits while a rebuild reads moves the token on, so that snapshot never counts
as current and the next lookup rebuilds again (no lost invalidation).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from django.conf import settings
from django.db import connection, transaction

from . import lookups

if TYPE_CHECKING:
    import psycopg
    from django.db.backends.base.base import BaseDatabaseWrapper

log = logging.getLogger(__name__)

CHANNEL = "aamail_mailmap"
# Installed by migration 0002 (PostgreSQL only); the listener checks they are all there.
TRIGGERS = (
    "mailmap_changed_domain",
    "mailmap_changed_account",
    "mailmap_changed_binding",
    "mailmap_changed_binding_update",
)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The rows the maps read, as one consistent read found them (a lookups.Source)."""

    domains: dict[str, str]  # active domain name -> domain type
    mailboxes: dict[tuple[str, str], lookups.Mailbox]

    def mailbox(self, address: str) -> lookups.Mailbox | None:
        # Same rule as lookups._MAILBOX_SQL: the exact local part, else without "+extension".
        keys = lookups.mailbox_keys(address)
        if keys is None:
            return None
        domain, localpart, base = keys
        found = self.mailboxes.get((domain, localpart))
        return found if found is not None else self.mailboxes.get((domain, base))

    def domain_type(self, address_or_domain: str) -> str | None:
        return self.domains.get(lookups.hosted_domain(address_or_domain))


def load() -> Snapshot:
    """Read the snapshot in this thread's database connection, in one transaction."""
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost and connection.vendor == "postgresql":
            # Both queries see the same committed state.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(lookups.ALL_DOMAINS_SQL)
        domains = {row[0]: row[1] for row in cursor.fetchall()}
        cursor.execute(lookups.ALL_MAILBOXES_SQL)
        mailboxes = {}
        for row in cursor.fetchall():
            mailbox = lookups.mailbox_from_row(row)
            mailboxes[(mailbox.domain, mailbox.localpart)] = mailbox
    return Snapshot(domains, mailboxes)


class Watch(Protocol):
    description: str

    def token(self) -> object | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class NoWatch:
    """Nothing tells us about changes: never trust a snapshot."""

    description = "the database (one query per lookup)"

    def token(self) -> None:
        return None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class SqliteFileWatch:
    """The SQLite file's and its write-ahead log's stat, checked on every lookup."""

    description = "memory, checked against the SQLite file's stat on every lookup"

    def __init__(self, path: str | os.PathLike, settle: float = 2.0) -> None:
        self.path = os.fspath(path)
        self.wal = self.path + "-wal"
        self.settle_ns = int(settle * 1e9)

    def token(self) -> tuple | None:
        try:
            main = os.stat(self.path)
            try:
                wal = os.stat(self.wal)
            except FileNotFoundError:
                wal_key, newest = None, main.st_mtime_ns
            else:
                wal_key = (wal.st_mtime_ns, wal.st_size, wal.st_ino)
                newest = max(main.st_mtime_ns, wal.st_mtime_ns)
        except OSError:
            return None
        if time.time_ns() - newest < self.settle_ns:
            return None  # a write this recent could be followed by one in the same tick
        return (main.st_mtime_ns, main.st_size, main.st_ino, wal_key)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class PostgresChanges:
    """LISTEN on its own connection; the token moves on every NOTIFY and is None while down."""

    description = "memory, invalidated by PostgreSQL NOTIFY (the database while not listening)"

    def __init__(
        self,
        conn_params: dict,
        *,
        poll: float = 0.25,
        check_every: float = 10.0,
        retry_max: float = 5.0,
    ) -> None:
        self.conn_params = conn_params
        self.poll = poll
        self.check_every = check_every
        self.retry_max = retry_max
        # Written only by the listener thread; read (one attribute, atomically) by lookups.
        self._state: tuple[int, int] | None = None
        self._epoch = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None

    def token(self) -> tuple[int, int] | None:
        return self._state

    @property
    def listening(self) -> bool:
        return self._state is not None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mailmap-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._state = None

    def wait_listening(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._state is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._state is not None

    def _connect(self) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(autocommit=True, **self.conn_params)

    def _triggers_missing(self, conn: psycopg.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgname = ANY(%s) AND tgenabled <> 'D'",
            [list(TRIGGERS)],
        ).fetchall()
        return sorted(set(TRIGGERS) - {row[0] for row in rows})

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._conn = self._connect()
                self._listen(conn)
                delay = 0.05
                self._follow(conn)
            except _NotReadyError:
                self._state = None
                delay = self.retry_max
            except Exception as exc:  # the connection is gone, or cannot be made
                self._state = None
                if not self._stop.is_set():
                    log.warning(
                        "mailmap: change listener has no database connection (%s); "
                        "answering every lookup from the database until it is back",
                        type(exc).__name__,
                    )
            finally:
                self._state = None
                self._conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
            self._stop.wait(delay)
            delay = min(self.retry_max, delay * 2)

    def _listen(self, conn: psycopg.Connection) -> None:
        """LISTEN, then vouch for snapshots in a new epoch; _NotReadyError without triggers."""
        conn.execute(f"LISTEN {CHANNEL}")
        missing = self._triggers_missing(conn)
        if missing:
            log.error(
                "mailmap: change triggers %s missing (run `manage.py migrate`); "
                "answering every lookup from the database",
                ", ".join(missing),
            )
            raise _NotReadyError
        # Listening before the epoch starts: a change committed from now on is
        # notified; one committed before is in the next snapshot read.
        self._epoch += 1
        self._state = (self._epoch, 0)
        log.info("mailmap: listening for changes; answering from memory")

    def _follow(self, conn: psycopg.Connection) -> None:
        """Move the token on every NOTIFY until stopped; re-check the triggers now and then."""
        generation = 0
        checked = time.monotonic()
        while not self._stop.is_set():
            for _notify in conn.notifies(timeout=self.poll):
                generation += 1
                self._state = (self._epoch, generation)
            if time.monotonic() - checked >= self.check_every:
                if self._triggers_missing(conn):
                    raise _NotReadyError
                checked = time.monotonic()


class _NotReadyError(Exception):
    pass


def watch_for(conn: BaseDatabaseWrapper = connection) -> Watch:
    """The watch that fits this database (NoWatch when none can vouch for a snapshot)."""
    if not settings.MAILMAP_SNAPSHOT:
        return NoWatch()
    if conn.vendor == "postgresql":
        params = conn.get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(key, None)
        return PostgresChanges(params)
    if conn.vendor == "sqlite":
        name = str(conn.settings_dict["NAME"])
        if name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
            return NoWatch()
        return SqliteFileWatch(name)
    return NoWatch()


class SnapshotCache:
    """The current snapshot, if the watch vouches for it; rebuilt on demand, one at a time."""

    def __init__(self, watch: Watch, loader: Callable[[], Snapshot] = load) -> None:
        self.watch = watch
        self.loader = loader
        self.rebuilds = 0
        self._lock = threading.Lock()
        self._current: tuple[object, Snapshot] | None = None

    def current(self) -> Snapshot | None:
        """The snapshot if it is current now, else None (no I/O beyond the watch's)."""
        token = self.watch.token()
        held = self._current
        if token is None or held is None or held[0] != token:
            return None
        return held[1]

    def refresh(self) -> Snapshot | None:
        """Rebuild if needed (in a database thread). None: answer from the database.

        Raises what the database raised: the caller answers TEMP.
        """
        with self._lock:
            token = self.watch.token()
            if token is None:
                return None
            held = self._current
            if held is not None and held[0] == token:
                return held[1]
            self._current = None
            started = time.perf_counter()
            snapshot = self.loader()
            self._current = (token, snapshot)
            self.rebuilds += 1
            log.debug(
                "mailmap: snapshot rebuilt (%d domains, %d mailboxes) in %.1f ms",
                len(snapshot.domains),
                len(snapshot.mailboxes),
                (time.perf_counter() - started) * 1000,
            )
        # Changed again while it was read: this one answers from the database.
        return snapshot if self.watch.token() == token else None

    def start(self) -> None:
        self.watch.start()

    def close(self) -> None:
        self.watch.stop()
        self._current = None
