"""binding_fetch(): the one place the POP3 client, the Maildir writer and the database meet.

The line a message travels, each step calling only the next (docs/architecture.md):
task -> ``binding_fetch`` -> ``pop3.Client.retrieve`` (an iterator of messages) ->
``maildir`` (tmp/, fsync, new/) -> ``seen`` (the UIDL record) -> DELE -> QUIT.

Exactly once (design.md, "Fetch contract"), per batch of messages:

1. one transaction: prove we own the lease, insert a SeenUidl *intent* per message (its
   UIDL and the unique name its Maildir file will have, ``stored_at`` empty); COMMIT;
2. RETR the batch (pipelined unless this server's replies could not be trusted, then one
   at a time), each body streamed into tmp/<name> and fsync'd on a thread as it ends;
3. keep only the replies whose framing is proven (``pop3.BatchProof``): the rest are
   unlinked and read again one at a time while the session is in step, or left for the
   next run; rename the proven files into new/ and fsync new/ once;
4. one transaction: ``stored_at`` = now for the renamed ones, counters; COMMIT;
5. DELE, per the binding's policy, only for messages whose row says stored; QUIT at the
   end applies them (RFC 1939 §6: a session that drops before QUIT deletes nothing).

A kill between 1 and 4 leaves intents behind: at the next start ``seen.intents_reconcile``
marks those whose file reached new/ or cur/ as stored and drops the others, whose messages
are then fetched again. No transaction is ever open during POP3 I/O.

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
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils import timezone

from accounts.mailbox import (
    MailboxPathError,
    MailOwnerError,
    check_mail_owner,
    mailbox_prepare,
    quota_add,
    quota_limit,
    quota_usage,
)

from . import credentials, outbound, quarantine, seen, status
from .crypto import SecretKeyError
from .lease import Holder, Lease, LeaseLostError, lease_acquire
from .maildir import Delivery, MaildirWriter, Syncer
from .models import Binding, BindingState, FetchRun, LeavePolicy
from .oauth.grants import NeedsSignInError
from .oauth.tokens import OAuthError
from .pop3 import Batch, Client, Pop3AuthError, Pop3Error, Security, protocol
from .tls import isp_ssl_context

# A batch ends at this many messages or bytes (LIST sizes): each costs two commits, and
# the files of a batch wait in tmp/ until its framing is proven.
BATCH_MESSAGES = 256
BATCH_BYTES = 4 << 20

Progress = Callable[[int, int, int], object]  # (messages done, messages to fetch, bytes done)


class FetchTimeLimitError(Exception):
    """The run passed FETCH_TIME_LIMIT in the middle of a message."""


class MailboxFullError(Exception):
    """The account's quota has no room for the next message; the rest waits at the ISP."""


def binding_fetch(
    *,
    binding: Binding,
    trigger: str = "schedule",
    progress: Progress | None = None,
    lease: Lease | None = None,
    releases: status.QuietReleases | None = None,
) -> FetchRun:
    """Fetch one ISP mailbox into its account's Maildir; return the run's history row.

    The returned FetchRun tells the outcome (ok, error, auth_failed, skipped when another
    fetch holds the binding, its ``error`` then naming the holder), ``messages``/``bytes``
    stored (bytes without the trace header), ``deleted`` on the server and ``error`` in
    words. POP3, TLS, outbound-guard, storage and lease trouble is recorded on the binding,
    not raised; anything else (a bug, Celery's soft time limit, Ctrl-C) is recorded and
    then re-raised.

    ``lease``: the binding was claimed (``mapping.claim``) and ``binding`` is the row the
    claim returned; the fetch then asks the database nothing before it talks to the ISP, and
    writes a history row only when something happened (mail, a failure, a change of
    state); ``releases`` (a claimer's) then takes an empty poll's release to write it with
    others. Without it (Fetch now, ``manage.py fetch``) the fetch takes the lease itself and
    its history row exists from the start, for the console's progress.
    """
    claimed = lease is not None
    if lease is None:
        acquired = lease_acquire(binding.pk)
        if isinstance(acquired, Holder):
            return status.record_skipped(binding, trigger, acquired)
        lease = acquired
        run = status.run_start(binding, lease, trigger)
    else:
        run = status.run_new(binding, trigger)
    job = None
    try:
        if not claimed:
            binding = Binding.objects.select_related("account__domain").get(pk=binding.pk)
        job = _Fetch(binding, lease, run, progress)
        note = job.execute()
    except LeaseLostError:
        status.record_lost(run)
    except BaseException as exc:
        failure = _failure(exc)
        if failure is None:  # a bug, Celery's soft time limit, Ctrl-C: noted, re-raised
            with contextlib.suppress(Exception):
                text = f"The fetch stopped unexpectedly ({type(exc).__name__})."
                _fail(lease, run, job, text, "transient")
            raise
        _fail(lease, run, job, *failure)
    else:
        _succeed(lease, run, job, binding, note, releases)
    return run


# What the binding records for each failure a fetch expects, first match first: the kind
# (status.record_failure) when the exception does not say itself that it is transient.
_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (NeedsSignInError, "sign_in"),  # issue 15: only a person signing in again helps
    (OAuthError, "permanent"),  # the token endpoint: down (transient) or misconfigured
    (Pop3AuthError, "auth"),
    (Pop3Error, "permanent"),
    (outbound.TargetRefusedError, "permanent"),
    (outbound.OutboundError, "transient"),  # no such name, nothing answering
    ((SecretKeyError, MailboxPathError, MailOwnerError, MailboxFullError), "permanent"),
    (FetchTimeLimitError, "transient"),
    (OSError, "transient"),  # the local disk: full, read-only, permissions
)


def _failure(exc: BaseException) -> tuple[str, str] | None:
    """(words for the administrator, kind) of an expected failure; None for anything else."""
    for types, kind in _FAILURES:
        if isinstance(exc, types):
            transient = getattr(exc, "transient", False)
            return _failure_words(exc), "transient" if transient else kind
    return None


def _failure_words(exc: BaseException) -> str:
    if isinstance(exc, FetchTimeLimitError):
        return (
            f"The fetch took longer than FETCH_TIME_LIMIT ({settings.FETCH_TIME_LIMIT:g} s) "
            "and was stopped; what was stored is kept and the rest follows at the next run."
        )
    if isinstance(exc, OAuthError | Pop3Error | outbound.OutboundError):
        return exc.message
    if isinstance(exc, OSError):
        return f"Could not store mail locally ({exc.strerror or exc}: {exc.filename or ''})."
    return str(exc)


def _succeed(
    lease: Lease,
    run: FetchRun,
    job: _Fetch,
    binding: Binding,
    note: str,
    releases: status.QuietReleases | None = None,
) -> None:
    next_in = timedelta(minutes=binding.fetch_interval_minutes) if not job.left else timedelta()
    try:
        status.record_success(
            lease,
            run,
            next_in=next_in,
            note=note,
            one_at_a_time=job.one_at_a_time_next,
            rows_left=bool(job.seen),
            quiet=binding.state == BindingState.OK,
            releases=releases,
        )
    except LeaseLostError:
        status.record_lost(run)


def _fail(lease: Lease, run: FetchRun, job: _Fetch | None, message: str, kind: str) -> None:
    if job is not None and job.notes:
        message = f"{message} {' '.join(job.notes)}"
    one_at_a_time = job.one_at_a_time_next if job is not None else None
    try:
        status.record_failure(lease, run, message=message, kind=kind, one_at_a_time=one_at_a_time)
    except (LeaseLostError, Binding.DoesNotExist):  # taken over, or deleted meanwhile
        status.record_lost(run)


def _uid_key(uid: str) -> str:
    # RFC 1939 §7 caps a UIDL at 70 characters; a longer one still needs a bounded key.
    return uid if len(uid) <= 180 else "uidl-sha256:" + hashlib.sha256(uid.encode()).hexdigest()


def _content_key(uid: str | None, digest: str) -> str:
    return f"{_uid_key(uid)} sha256:{digest}" if uid else f"sha256:{digest}"


class _Fetch:
    """One run over one binding, under its lease (see the module docstring)."""

    def __init__(
        self, binding: Binding, lease: Lease, run: FetchRun, progress: Progress | None
    ) -> None:
        self.binding, self.lease, self.run = binding, lease, run
        self.progress = progress or (lambda done, total, size: None)
        started = time.monotonic()
        # Stop starting batches at 80 % of the limit; abort mid-message at 95 %, before
        # Celery's soft limit (FETCH_TIME_LIMIT) would interrupt us at a random point.
        self.soft_deadline = started + 0.80 * settings.FETCH_TIME_LIMIT
        self.hard_deadline = started + 0.95 * settings.FETCH_TIME_LIMIT
        self.seen: dict[str, datetime] = {}  # identity -> first_seen_at of stored messages
        self.writer: MaildirWriter | None = None
        self.client: Client | None = None
        self.sizes: dict[int, int] = {}  # LIST: message number -> octets
        self.uids: dict[int, str] = {}  # UIDL: message number -> unique id
        self.todo: list[int] = []  # message numbers to RETR, in order
        self.keys: dict[int, str] = {}  # identities known before RETR (from UIDL)
        self.probed: set[str] = set()  # identities learnt from content in this run
        self.marked: list[tuple[int, str]] = []  # (number, identity) marked for deletion
        self.refused: dict[int, str] = {}  # number -> the server's -ERR to its RETR
        self.notes: list[str] = []  # what a person should know about this run
        self.left = 0  # messages left for the next run at the time limit
        self.one_at_a_time = binding.retr_one_at_a_time
        self.clean = True  # every reply in step and of the announced size
        self.room: int | None = None  # bytes the quota still allows (None: no quota)
        self.waiting = 0  # messages left at the ISP because the mailbox is full
        # Messages that failed in earlier runs; set-aside ones are skipped (issue 12).
        self.suspects = quarantine.Suspects(binding)
        # Issue 13: nothing an earlier run left to read (no UIDL records, intents, open
        # history row, quarantine): an empty mailbox then costs the database nothing here.
        self.fast = not binding.fetch_rows and not binding.quarantine_entries

    @property
    def one_at_a_time_next(self) -> bool:
        """One RETR at a time next session: yes after a pipeline fell out of step, and
        until a session went clean."""
        return not self.clean

    def tick(self) -> None:
        if time.monotonic() > self.hard_deadline:
            raise FetchTimeLimitError
        self.lease.renew_if_due()

    def _writer(self) -> MaildirWriter:
        """The account's Maildir writer, made when a run first needs it."""
        if self.writer is None:
            uid, gid = check_mail_owner()  # words, not a crash, when files cannot be given
            self.writer = MaildirWriter(mailbox_prepare(self.binding.account), uid=uid, gid=gid)
        return self.writer

    def _settle_earlier_runs(self) -> None:
        """What earlier runs left: tmp/ files, intents, an unfinished history row, records."""
        self._writer().cleanup_tmp()
        if self.run.pk is None:  # a claimed run; one with its row open closed them already
            status.runs_interrupted_close(self.binding.pk)
        seen.intents_reconcile(self.lease, self.writer)
        self.seen = seen.seen_load(self.binding.pk)

    def execute(self) -> str:
        if not self.fast:
            self._settle_earlier_runs()
        b = self.binding
        token = credentials.pop3_token(b)  # a mailbox that needs sign-in costs no connection
        sock, _ = outbound.open_connection(b.host, b.port, timeout=settings.POP3_TIMEOUT)
        with Client(
            b.host,
            b.port,
            Security(b.security),
            timeout=settings.POP3_TIMEOUT,
            # Plain POP3 needs no context; the client would only build one for TLS.
            ssl_context=isp_ssl_context() if b.security != Security.NONE else None,
            min_progress=settings.POP3_MIN_PROGRESS_BYTES,
            progress_window=settings.POP3_MIN_PROGRESS_SECONDS,
        ) as self.client:
            self.client.connect(sock=sock)
            self.lease.renew_if_due()
            credentials.pop3_login(b, self.client, token)  # password or OAuth token (issue 15)
            self.lease.renew_if_due()
            # STAT first: an empty mailbox with nothing recorded ends here, with QUIT.
            count, _ = self.client.stat()
            if count == 0 and self.fast:
                self.client.quit(deletions=False)
                return ""
            self._plan(count)
            self._fetch_all()
            self.client.quit(deletions=bool(self.marked))  # UPDATE state: DELEs apply now
        self.run.deleted = len(self.marked)
        seen.seen_deleted(self.lease, [key for _, key in self.marked])
        if self.waiting:
            account = self.binding.account
            limit = (quota_limit(account) or 0) // (1 << 20)
            raise MailboxFullError(
                f"The mailbox of {account.address} is full (quota {limit} MB): "
                f"{self.waiting} message(s) wait at the ISP, not deleted there, until mail is "
                "deleted or the quota is raised on the account's General tab."
            )
        if self.left:
            self.notes.append(
                f"Stopped at the time limit; {self.left} messages follow at the next run."
            )
        if self.refused:
            self.notes.append(_refused_words(self.refused))
        return " ".join(self.notes)

    # --- listing --------------------------------------------------------------------

    def _plan(self, count: int) -> None:
        """What to RETR (``todo``), with identities where UIDL gives them; DELE what is due."""
        if count == 0:  # STAT said empty: every record and quarantine row is of the past
            self.sizes, listing = {}, {}
        else:
            self.sizes = self.client.list()
            listing = self.client.uidl()
        self.uids = {n: u for n, u in (listing or {}).items() if n in self.sizes}
        counts = Counter(self.uids.values())
        ambiguous = {key.partition(" ")[0] for key in self.seen if " sha256:" in key}
        due = []
        for n in sorted(self.sizes):
            uid = self.uids.get(n)
            if uid is None or counts[uid] > 1 or _uid_key(uid) in ambiguous:
                self.todo.append(n)  # identity by content, known after RETR
            elif (key := _uid_key(uid)) in self.seen:
                due.append((n, key))
            elif self.suspects.skips(key):
                continue  # set aside: not fetched, never deleted (mapping/quarantine.py)
            else:
                self.keys[n] = key
                self.todo.append(n)
        self._dele(due)
        if listing is not None:
            # A row lives while its UIDL is listed; DELE'd messages leave the listing.
            live = {_uid_key(u) for u in self.uids.values()}
            self._forget([k for k in self.seen if k.partition(" ")[0] not in live])
            self.suspects.gone(self.lease, live)

    def _dele(self, stored: list[tuple[int, str]]) -> None:
        """Mark stored messages deleted where the binding's policy says so (pipelined)."""
        policy = self.binding.leave_policy
        if policy == LeavePolicy.KEEP or not stored:
            return
        if policy == LeavePolicy.DELETE_AFTER:
            limit = timezone.now() - timedelta(days=self.binding.delete_after_days or 0)
            stored = [(n, key) for n, key in stored if self.seen.get(key, limit) <= limit]
        keys = dict(stored)
        marked, _refused = self.client.dele_many(keys)
        # A refused DELE (deleted meanwhile by another client) leaves the row as it is.
        self.marked += [(n, keys[n]) for n in marked]

    def _forget(self, keys: list[str]) -> None:
        seen.seen_forget(self.lease, keys)
        for key in keys:
            self.seen.pop(key, None)

    # --- retrieval ------------------------------------------------------------------

    def _fetch_all(self) -> None:
        todo, done, done_bytes = self.todo, 0, 0
        self.progress(0, len(todo), 0)
        if todo:
            self._writer()
            status.run_open(self.run, self.lease)  # history from here on: mail may arrive
        limit = quota_limit(self.binding.account)
        if limit is not None and todo:
            self.room = limit - quota_usage(self.binding.account)[0]
        with Syncer(settings.FETCH_COMMIT_THREADS) as syncer:
            for numbers in _batches(todo, self.sizes):
                if time.monotonic() > self.soft_deadline:
                    self.left = len(todo) - done
                    break
                fits = self._within_quota(numbers)
                done_bytes += self._fetch_batch(fits, syncer) if fits else 0
                done += len(numbers)
                self.progress(done, len(todo), done_bytes)
                if len(fits) < len(numbers):
                    self.waiting = len(todo) - done + len(numbers) - len(fits)
                    break
        if not self.left and not self.refused and not self.uids:
            # No UIDL at all: content rows of messages no longer on the server go.
            stale = [k for k in self.seen if k.startswith("sha256:") and k not in self.probed]
            self._forget(stale)

    def _within_quota(self, numbers: list[int]) -> list[int]:
        """The first messages of a batch that fit the quota, by their LIST size (never
        smaller than what is stored: CRLF is stored as LF) and a trace header."""
        if self.room is None:
            return numbers
        fits = []
        for n in numbers:
            need = self.sizes[n] + 200
            if need > self.room:
                break
            self.room -= need
            fits.append(n)
        return fits

    def _fetch_batch(self, numbers: list[int], syncer: Syncer) -> int:
        """RETR one batch, store what is proven exactly once; return the bytes stored."""
        named = {n: self.writer.unique_name() for n in numbers if n in self.keys}
        # Intents first: each names the file before it can appear in new/.
        seen.intents_add(
            self.lease, [(self.keys[n], name, self.sizes[n]) for n, name in named.items()]
        )
        got = _Got(named)
        failure: Exception | None = None
        try:
            batch = self.client.retrieve(numbers, self.sizes, pipeline=not self.one_at_a_time)
            self._read(batch, got, syncer)
            if batch.leftover:
                # In step but not proven (a size the server did not announce): read those
                # again one at a time, now, and so for the rest of this session.
                self._discard(batch.leftover, got, syncer)
                self.one_at_a_time = True
                self._read(
                    self.client.retrieve(batch.leftover, self.sizes, pipeline=False), got, syncer
                )
        except LeaseLostError:
            self._discard(list(got.deliveries), got, syncer)
            raise
        except Exception as exc:  # the session is over; what was proven is still stored
            failure = exc
        self._judge(got.proofs)
        try:
            stored_bytes = self._store(numbers, got, syncer)
            self._settle(numbers, got, failure)
        finally:
            for delivery in got.deliveries.values():
                delivery.abort()  # the ones not published; a published one stays
        if failure is not None:
            raise failure
        return stored_bytes

    def _settle(self, numbers: list[int], got: _Got, failure: Exception | None) -> None:
        """Count the batch's failures per UIDL; set aside what failed too often (issue 12)."""
        stored = {n for n, delivery in got.deliveries.items() if delivery.path is not None}
        # Read and proven but not published (a copy already stored): not where it broke.
        proven = {r.number for proof in got.proofs for r in proof.proven if r.number in got.sizes}
        failed = quarantine.blame(
            order=numbers,
            keys=self.keys,
            sizes=self.sizes,
            refused=self.refused,
            stored=stored | proven,
            read_whole={n: got.deliveries[n].tmp_path for n in got.sizes if n in got.deliveries},
            in_step=all(proof.in_step or not proof.pipelined for proof in got.proofs),
            trouble=_trouble_words(failure),
        )
        keys = [self.keys[n] for n in stored if n in got.named]
        for words in self.suspects.settle(self.lease, stored=keys, failed=failed):
            self._note(words)

    def _read(self, batch: Batch, got: _Got, syncer: Syncer) -> None:
        """Stream a batch's bodies into tmp/ (fsync on the syncer's threads)."""
        got.proofs.append(batch.proof)
        trace = self._trace_header()
        for message in batch:
            n = message.number
            if message.refused is not None:
                self.refused[n] = message.refused
                continue
            delivery = self.writer.begin(got.named.get(n))
            got.deliveries[n] = delivery
            delivery.prepend_header(trace)
            hasher = None if n in got.named else hashlib.sha256()
            size = 0
            for piece in message:
                delivery.write(piece)
                size += len(piece)
                if hasher is not None:
                    hasher.update(piece)
                self.tick()
            got.sizes[n] = size
            if hasher is not None:
                got.hashes[n] = hasher.hexdigest()
            syncer.submit(delivery)

    def _discard(self, numbers: list[int], got: _Got, syncer: Syncer) -> None:
        syncer.wait()  # no fsync may still run on a file we unlink
        for n in numbers:
            if n in got.deliveries:
                got.deliveries.pop(n).abort()

    def _judge(self, proofs: list[protocol.BatchProof]) -> None:
        """Whether this session stayed clean, and what a person should know, in words."""
        for proof in proofs:
            inexact = proof.first_inexact()
            if proof.in_step and inexact is None:
                continue
            self.clean = False
            if not proof.pipelined:
                continue  # one at a time, a reply is proven by the status line after it
            if not proof.in_step:
                unproven = len(proof.unproven)
                words = (
                    f"The pipelined replies fell out of step ({proof.problem}); "
                    f"{unproven} downloaded message(s) could not be proven and were not stored."
                )
            else:
                words = (
                    f"Message {inexact.number} did not arrive with the size announced for it "
                    f"({protocol.size_words(inexact.octets, inexact.listed or 0)}), so the "
                    "pipelined replies after it could not be trusted and were read again one "
                    "at a time."
                )
            self._note(
                f"{words} AAMail fetches one message at a time from this server until a "
                "session goes clean."
            )

    def _note(self, words: str) -> None:
        if words not in self.notes:
            self.notes.append(words)

    def _store(self, numbers: list[int], got: _Got, syncer: Syncer) -> int:
        """Publish the proven deliveries into new/ and record them; unlink the rest."""
        failed = {delivery.name for delivery, _ in syncer.wait()}
        proven = {r.number for proof in got.proofs for r in proof.proven}
        keep: list[tuple[int, str]] = []  # (number, identity) to publish
        content_rows, batch_keys = [], set()
        known: list[tuple[int, str]] = []  # identified by content and stored before
        for n in numbers:
            delivery = got.deliveries.get(n)
            if delivery is None or n not in proven or delivery.name in failed:
                continue
            if n in got.named:
                keep.append((n, self.keys[n]))
                continue
            key = _content_key(self.uids.get(n), got.hashes[n])
            self.probed.add(key)
            if key in self.seen or key in batch_keys:  # stored before, or a byte-equal copy
                known.append((n, key))
                continue
            batch_keys.add(key)
            keep.append((n, key))
            content_rows.append((key, delivery.name, self.sizes[n]))
        seen.intents_add(self.lease, content_rows)  # before their rename, like the others
        # Deliveries not published are unlinked by the caller, after the quarantine has kept
        # the bytes of a message set aside now (issue 12).
        published = {n for n, _ in keep}
        self.writer.publish(got.deliveries[n] for n, _ in keep)
        if keep:  # Maildir++ counts what Dovecot will count: the files as written
            quota_add(self.binding.account, sum(got.deliveries[n].size for n, _ in keep), len(keep))
        stored = [(key, got.sizes[n]) for n, key in keep]
        # Intents of messages not stored go; they are fetched again at the next run.
        dropped = [self.keys[n] for n in got.named if n not in published]
        now = seen.intents_stored(self.lease, self.run, stored, dropped=dropped)
        self.seen.update(dict.fromkeys((key for key, _ in stored), now))
        if not self.client.broken:
            self._dele(keep + known)
        return sum(size for _, size in stored)

    def _trace_header(self) -> bytes:
        b = self.binding
        date = email.utils.format_datetime(timezone.now())
        return (
            f"Received: from {b.host} by {_hostname()} with POP3 (AAMail) "
            f"for <{b.account.address}>; {date}\n"
        ).encode("ascii", "replace")


class _Got:
    """What one batch brought: its proofs, the deliveries in tmp/, sizes and content hashes."""

    def __init__(self, named: dict[int, str]) -> None:
        self.named = named  # number -> Maildir name, for UIDL-identified messages
        self.proofs: list[protocol.BatchProof] = []
        self.deliveries: dict[int, Delivery] = {}
        self.sizes: dict[int, int] = {}  # body bytes, without the trace header
        self.hashes: dict[int, str] = {}  # sha256 hex, for content-identified messages


def _trouble_words(failure: Exception | None) -> str | None:
    """Words of a session's end that may be a message's fault (the server's or the
    network's); None for no failure or local trouble (a full disk is no message's fault)."""
    if isinstance(failure, Pop3Error):
        return failure.message
    if isinstance(failure, FetchTimeLimitError):
        limit = settings.FETCH_TIME_LIMIT
        return f"it could not be downloaded within FETCH_TIME_LIMIT ({limit:g} s)."
    return None


def _refused_words(refused: dict[int, str]) -> str:
    numbers = sorted(refused)
    shown = ", ".join(map(str, numbers[:10])) + (" …" if len(numbers) > 10 else "")
    said = refused[numbers[0]][:120]
    return (
        f"The server refused to hand out {len(numbers)} listed message(s) (-ERR to RETR: "
        f"{shown}; it said “{said}”). They stay on the server and are tried again."
    )


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
