"""binding_fetch(): the one place the POP3 client, the Maildir writer and the database meet.

Exactly once (design.md, "Fetch contract"), per batch of messages:

1. one transaction: prove we own the lease, insert a SeenUidl *intent* per message (its
   UIDL and the unique name its Maildir file will have, ``stored_at`` empty); COMMIT;
2. RETR the batch, pipelined, each message streamed into tmp/<name>; as each one ends, a
   few threads fsync it, rename it into new/ and fsync new/ (``fetch_commit.py``): ext4
   commits concurrent fsyncs together, so this costs less than one fsync after the other;
3. one transaction: ``stored_at`` = now for the renamed ones, counters; COMMIT;
4. DELE, per the binding's policy, only for messages whose row says stored; QUIT at the
   end applies them (RFC 1939 §6: a session that drops before QUIT deletes nothing).

A kill between 1 and 3 leaves intents behind: at the next start ``intents_reconcile``
marks those whose file reached new/ or cur/ as stored and drops the others, whose
messages are then fetched again. No transaction is ever open during POP3 I/O.

Identity of a message is its UIDL. When the server has no UIDL, or lists one UIDL for
several messages (a server bug), identity falls back to the content: ``sha256:<hex>`` of
the stored bytes (``<uidl> sha256:<hex>`` for a duplicated UIDL). Trade-off: such messages
are downloaded on every run to be hashed (costly in keep mode, free in delete mode, where
they are gone after one run), and two byte-identical messages are stored once; their
intent is written after the download, before the rename. A UIDL once seen duplicated stays
content-identified while it is listed. A server that reuses the UIDL of a deleted message
for a new one cannot be detected by anybody.

Every stored file starts with one trace header line (``Received: ... with POP3 ...``)
followed by the message exactly as RETR gave it (dot-stuffing undone, CRLF as LF).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils import timezone

from accounts.mailbox import MailboxPathError, MailOwnerError, mail_owner, mailbox_path

from . import fetch_state
from .crypto import SecretKeyError
from .fetch_commit import Committer, DeliverySink
from .fetch_state import Lease, LeaseLostError
from .maildir import Delivery, MaildirWriter
from .models import Binding, FetchRun, LeavePolicy
from .pop3 import Client, Pop3AuthError, Pop3Error, Pop3MessageGoneError, Security
from .tls import isp_ssl_context

# A batch ends at this many messages or bytes (LIST sizes): each costs two commits, and
# messages identified by content wait for the end of their batch with files open.
BATCH_MESSAGES = 256
BATCH_BYTES = 4 << 20

Progress = Callable[[int, int, int], object]  # (messages done, messages to fetch, bytes done)


class FetchTimeLimitError(Exception):
    """The run passed FETCH_TIME_LIMIT in the middle of a message."""


def binding_fetch(
    *, binding: Binding, trigger: str = "schedule", progress: Progress | None = None
) -> FetchRun:
    """Fetch one ISP mailbox into its account's Maildir; return the run's history row.

    The returned FetchRun tells the outcome (ok, error, auth_failed, skipped when another
    fetch holds the binding), ``messages``/``bytes`` stored (bytes without the trace
    header), ``deleted`` on the server and ``error`` in words. POP3, TLS, storage and
    lease trouble is recorded on the binding, not raised; anything else (a bug, Celery's
    soft time limit, Ctrl-C) is recorded and then re-raised.
    """
    lease = fetch_state.lease_acquire(binding.pk)
    if lease is None:
        return fetch_state.record_skipped(binding, trigger)
    run = FetchRun.objects.create(binding=binding, started_at=timezone.now(), trigger=trigger)
    try:
        fetch_state.close_interrupted_runs(lease, run)
        binding = Binding.objects.select_related("account__domain").get(pk=binding.pk)
        job = _Fetch(binding, lease, run, progress)
        note = job.execute()
    except LeaseLostError:
        fetch_state.record_lost(run)
    except Pop3AuthError as exc:
        _fail(lease, run, exc.message, "transient" if exc.transient else "auth")
    except Pop3Error as exc:
        _fail(lease, run, exc.message, "transient" if exc.transient else "permanent")
    except (SecretKeyError, MailboxPathError, MailOwnerError) as exc:
        _fail(lease, run, str(exc), "permanent")
    except FetchTimeLimitError:
        text = (
            f"The fetch took longer than FETCH_TIME_LIMIT ({_time_limit():g} s) and was "
            "stopped; what was stored is kept and the rest follows at the next run."
        )
        _fail(lease, run, text, "transient")
    except OSError as exc:  # the local disk: full, read-only, permissions
        text = f"Could not store mail locally ({exc.strerror or exc}: {exc.filename or ''})."
        _fail(lease, run, text, "transient")
    except BaseException as exc:  # a bug, Celery's soft time limit, Ctrl-C: noted, re-raised
        with contextlib.suppress(Exception):
            text = f"The fetch stopped unexpectedly ({type(exc).__name__})."
            _fail(lease, run, text, "transient")
        raise
    else:
        next_in = timedelta(minutes=binding.fetch_interval_minutes) if not job.left else timedelta()
        try:
            fetch_state.record_success(lease, run, next_in=next_in, note=note)
        except LeaseLostError:
            fetch_state.record_lost(run)
    return run


def _fail(lease: Lease, run: FetchRun, message: str, kind: str) -> None:
    try:
        fetch_state.record_failure(lease, run, message=message, kind=kind)
    except (LeaseLostError, Binding.DoesNotExist):  # taken over, or deleted meanwhile
        fetch_state.record_lost(run)


def _time_limit() -> float:
    return float(getattr(settings, "FETCH_TIME_LIMIT", 1200))


def _uid_key(uid: str) -> str:
    # RFC 1939 §7 caps a UIDL at 70 characters; a longer one still needs a bounded key.
    return uid if len(uid) <= 180 else "uidl-sha256:" + hashlib.sha256(uid.encode()).hexdigest()


def _content_key(uid: str | None, digest: str) -> str:
    return f"{_uid_key(uid)} sha256:{digest}" if uid else f"sha256:{digest}"


class _Fetch:
    """One run over one binding, under its lease (see the module docstring)."""

    def __init__(self, binding: Binding, lease: Lease, run: FetchRun, progress) -> None:
        self.binding, self.lease, self.run = binding, lease, run
        self.progress = progress or (lambda done, total, size: None)
        started = time.monotonic()
        # Stop starting batches at 80 % of the limit; abort mid-message at 95 %, before
        # Celery's soft limit (FETCH_TIME_LIMIT) would interrupt us at a random point.
        self.soft_deadline = started + 0.80 * _time_limit()
        self.hard_deadline = started + 0.95 * _time_limit()
        self.seen: dict[str, datetime] = {}  # identity -> first_seen_at of stored messages
        self.writer: MaildirWriter | None = None
        self.client: Client | None = None
        self.sizes: dict[int, int] = {}  # LIST: message number -> octets
        self.uids: dict[int, str] = {}  # UIDL: message number -> unique id
        self.todo: list[int] = []  # message numbers to RETR, in order
        self.keys: dict[int, str] = {}  # identities known before RETR (from UIDL)
        self.probed: set[str] = set()  # identities learnt from content in this run
        self.deleted: list[str] = []
        self.left = 0  # messages left for the next run at the time limit
        self.gone = 0

    def tick(self) -> None:
        if time.monotonic() > self.hard_deadline:
            raise FetchTimeLimitError
        self.lease.renew_if_due()

    def execute(self) -> str:
        uid, gid = mail_owner()
        self.writer = MaildirWriter(mailbox_path(self.binding.account), uid=uid, gid=gid)
        self.writer.cleanup_tmp()
        fetch_state.intents_reconcile(self.lease, self.writer.root)
        self.seen = fetch_state.seen_load(self.binding.pk)
        b = self.binding
        with Client(
            b.host,
            b.port,
            Security(b.security),
            timeout=settings.POP3_TIMEOUT,
            # Plain POP3 needs no context; the client would only build one for TLS.
            ssl_context=isp_ssl_context() if b.security != Security.NONE else None,
        ) as self.client:
            self.client.connect()
            try:
                self.client.login(b.username, b.get_isp_password())  # decrypted just now
            except ValueError as exc:  # a CR, LF or NUL in the credentials: never sent
                raise Pop3AuthError(str(exc)) from None
            self.lease.renew_if_due()
            self._plan()
            self._fetch_all()
            self.client.quit()  # UPDATE state: the DELEs take effect now
        self.run.deleted = len(self.deleted)
        if self.deleted:
            fetch_state.seen_deleted(self.lease, self.deleted)
        if self.left:
            return f"Stopped at the time limit; {self.left} messages follow at the next run."
        return f"{self.gone} listed messages vanished before RETR." if self.gone else ""

    # --- listing --------------------------------------------------------------------

    def _plan(self) -> None:
        """What to RETR (``todo``), with identities where UIDL gives them; DELE what is due."""
        self.sizes = self.client.list()
        listing = self.client.uidl()
        self.uids = {n: u for n, u in (listing or {}).items() if n in self.sizes}
        counts = Counter(self.uids.values())
        ambiguous = {key.partition(" ")[0] for key in self.seen if " sha256:" in key}
        for n in sorted(self.sizes):
            uid = self.uids.get(n)
            if uid is None or counts[uid] > 1 or _uid_key(uid) in ambiguous:
                self.todo.append(n)  # identity by content, known after RETR
            elif (key := _uid_key(uid)) in self.seen:
                self._dele_if_due(n, key)
            else:
                self.keys[n] = key
                self.todo.append(n)
        if listing is not None:
            # A row lives while its UIDL is listed; DELE'd messages leave the listing.
            live = {_uid_key(u) for u in self.uids.values()}
            self._forget([k for k in self.seen if k.partition(" ")[0] not in live])

    def _dele_if_due(self, msgno: int, key: str) -> None:
        policy = self.binding.leave_policy
        if policy == LeavePolicy.KEEP:
            return
        if policy == LeavePolicy.DELETE_AFTER:
            limit = timezone.now() - timedelta(days=self.binding.delete_after_days or 0)
            if self.seen[key] > limit:
                return
        try:
            self.client.dele(msgno)
        except Pop3MessageGoneError:
            return  # someone else deleted it meanwhile: the goal is reached
        self.deleted.append(key)

    def _forget(self, keys: list[str]) -> None:
        if keys:
            fetch_state.seen_forget(self.lease, keys)
        for key in keys:
            self.seen.pop(key, None)

    # --- retrieval ------------------------------------------------------------------

    def _fetch_all(self) -> None:
        todo, done, done_bytes = self.todo, 0, 0
        self.progress(0, len(todo), 0)
        threads = max(1, int(getattr(settings, "FETCH_COMMIT_THREADS", 8)))
        with ThreadPoolExecutor(threads, thread_name_prefix="maildir-commit") as pool:
            for batch in _batches(todo, self.sizes):
                if time.monotonic() > self.soft_deadline:
                    self.left = len(todo) - done
                    break
                done_bytes += self._fetch_batch(batch, Committer(pool))
                done += len(batch)
                self.progress(done, len(todo), done_bytes)
        if not self.left and not self.gone and not self.uids:
            # No UIDL at all: content rows of messages no longer on the server go.
            stale = [k for k in self.seen if k.startswith("sha256:") and k not in self.probed]
            self._forget(stale)

    def _fetch_batch(self, batch: list[int], committer: Committer) -> int:
        """RETR one batch and store it exactly once; return the bytes stored."""
        keys, writer = self.keys, self.writer
        named = {n: writer.unique_name() for n in batch if n in keys}
        if named:  # intents first: each names the file before it can appear in new/
            rows = [(keys[n], name, self.sizes.get(n, 0)) for n, name in named.items()]
            fetch_state.intents_add(self.lease, rows)
        trace = self._trace_header()
        held: list[tuple[int, str, DeliverySink]] = []  # identified by content: no intent yet
        held_keys: set[str] = set()
        known: list[tuple[int, str]] = []  # identified by content and stored before

        def open_sink(n: int) -> DeliverySink:
            delivery = Delivery(writer, named[n]) if n in named else writer.begin()
            delivery.prepend_header(trace)
            return DeliverySink(delivery, None if n in named else hashlib.sha256(), self.tick)

        def on_done(n: int, sink: DeliverySink, octets: int) -> None:
            if n in named:
                return committer.submit(n, keys[n], sink)
            key = _content_key(self.uids.get(n), sink.hasher.hexdigest())
            self.probed.add(key)
            if key in self.seen or key in held_keys:  # stored before, or a byte-equal copy
                sink.delivery.abort()
                known.append((n, key))
            else:
                held.append((n, key, sink))
                held_keys.add(key)

        def on_error(n: int, exc: Pop3Error) -> None:
            self.gone += 1  # deleted by another client between UIDL and RETR

        try:
            abort = lambda n, sink: sink.delivery.abort()  # noqa: E731
            self.client.retr_many(batch, open_sink, on_done, on_error=on_error, on_abort=abort)
            if held:
                rows = [(key, sink.delivery.name, self.sizes.get(n, 0)) for n, key, sink in held]
                fetch_state.intents_add(self.lease, rows)
                for n, key, sink in held:
                    committer.submit(n, key, sink)
                held = []
        finally:
            for _, _, sink in held:
                sink.delivery.abort()
            stored, error = committer.wait()  # every rename done (or failed) before we go on
            # Intents of messages never downloaded go now; one whose rename failed stays
            # for intents_reconcile, which looks for its file.
            unused = [keys[n] for n in named if keys[n] not in committer.submitted]
            if stored or unused:
                now = fetch_state.intents_stored(self.lease, self.run, stored, dropped=unused)
                self.seen.update(dict.fromkeys((key for _, key, _ in stored), now))
        if error is not None:
            raise error
        for n, key in [(n, key) for n, key, _ in stored] + known:
            self._dele_if_due(n, key)
        return sum(size for _, _, size in stored)

    def _trace_header(self) -> bytes:
        b = self.binding
        date = email.utils.format_datetime(timezone.now())
        return (
            f"Received: from {b.host} by {_hostname()} with POP3 (AAMail) "
            f"for <{b.account.address}>; {date}\n"
        ).encode("ascii", "replace")


def _batches(todo: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
    batch: list[int] = []
    total = 0
    for n in todo:
        if batch and (len(batch) >= BATCH_MESSAGES or total + sizes.get(n, 0) > BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(n)
        total += sizes.get(n, 0)
    if batch:
        yield batch


@lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname() or "localhost"
