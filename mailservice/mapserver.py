"""The product's socketmap server for Postfix (`manage.py mailmap`), built from settings."""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from django.conf import settings
from django.db import connection

from . import layout, lookups, snapshot
from .socketmap import Reply, Request, SocketmapServer, temp

log = logging.getLogger(__name__)


def socket_path() -> Path:
    """Where the lookup server listens: the socket the generated Postfix configuration asks."""
    return layout.mailmap_socket()


def allowed_uids() -> set[int]:
    """root, this process, and the users in MAILMAP_ALLOWED_USERS (default: postfix)."""
    uids = {0, os.getuid()}
    for name in settings.MAILMAP_ALLOWED_USERS:
        # No such user (e.g. no postfix in this container): nobody to allow.
        with contextlib.suppress(KeyError):
            uids.add(int(name) if str(name).isdigit() else pwd.getpwnam(name).pw_uid)
    return uids


def _postfix_gid() -> int | None:
    try:
        return grp.getgrnam("postfix").gr_gid
    except KeyError:
        return None


class LatencyStats:
    """Time spent answering each request, per map (for `mailmap --stats` and the benchmark)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def wrap(self, answer: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
        def timed(request: Request) -> Reply:
            start = time.perf_counter()
            try:
                return answer(request)
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self.samples[request.name].append(elapsed)

        return timed

    def summary(self) -> dict[str, dict]:
        """{map: {n, p50_ms, p99_ms, max_ms}}."""
        result = {}
        with self._lock:
            items = [(name, sorted(values)) for name, values in self.samples.items()]
        for name, values in sorted(items):
            result[name] = {
                "n": len(values),
                "p50_ms": round(_quantile(values, 0.50) * 1000, 3),
                "p99_ms": round(_quantile(values, 0.99) * 1000, 3),
                "max_ms": round(values[-1] * 1000, 3),
            }
        return result


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class LookupWorkers:
    """A fixed set of threads that use the database, each keeping one database connection.

    Postfix opens and closes socketmap connections as its processes come and go; opening a
    database connection for each (several ms on PostgreSQL) was the slowest part of a lookup.
    Connection threads answer from the snapshot themselves and hand a request over here only
    when the snapshot must be rebuilt or cannot be trusted (see SnapshotAnswer), which also
    bounds the database connections to `size` however many Postfix processes ask.
    """

    def __init__(self, answer: Callable[[Request], Reply], size: int, timeout: float) -> None:
        self.answer = answer
        self.timeout = timeout
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"mailmap-db-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def __call__(self, request: Request) -> Reply:
        future: Future = Future()
        self._queue.put((request, future))
        try:
            return future.result(self.timeout)
        except FutureTimeout:
            return temp("lookup timed out")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                lookups.thread_finished()
                return
            request, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(self.answer(request))
                except BaseException as exc:  # answer() already turns errors into TEMP
                    future.set_exception(exc)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(5)


class SnapshotAnswer:
    """Answer in the connection thread from the current snapshot; else via a database thread.

    In a database thread: rebuild the snapshot if the watch vouches for a new one and answer
    from it, or answer from the database directly (watch down, or the rows changed again
    while the snapshot was read). A failed rebuild answers TEMP, never NOTFOUND.
    """

    def __init__(self, cache: snapshot.SnapshotCache, local_transport: str | None = None) -> None:
        self.cache = cache
        self.local_transport = local_transport or layout.local_transport()
        self.workers: LookupWorkers | None = None

    def __call__(self, request: Request) -> Reply:
        current = self.cache.current()
        if current is not None:
            return lookups.answer(request, current, local_transport=self.local_transport)
        return self.workers(request)

    def in_database_thread(self, request: Request) -> Reply:
        if request.name not in lookups.MAPS:
            return lookups.answer(request)  # PERM, no database needed
        try:
            current = self.cache.refresh()
        except Exception as exc:
            if not connection.in_atomic_block:
                connection.close()
            log.error("mailmap: reading the lookup snapshot failed: %s", type(exc).__name__)
            return temp("lookup failed")
        # current None: from the database
        return lookups.answer(request, current, local_transport=self.local_transport)


class MapServer(SocketmapServer):
    """The socketmap server with its lookup workers and snapshot; closing it closes all."""

    workers: LookupWorkers
    cache: snapshot.SnapshotCache
    token_server: SocketmapServer | None = None

    def server_close(self) -> None:
        super().server_close()
        if self.token_server is not None:
            self.token_server.shutdown()
            self.token_server.server_close()
        self.workers.close()
        self.cache.close()


def relay_user() -> tuple[int, int] | None:
    """(uid, gid) of MAIL_OAUTH_RELAY_USER, the isp_oauth pipe's user; None if it does not
    exist here (then only root may ask for tokens, and OAuth senders' mail is deferred)."""
    name = settings.MAIL_OAUTH_RELAY_USER
    try:
        entry = pwd.getpwuid(int(name)) if str(name).isdigit() else pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def build_token_server(path: Path | None = None) -> SocketmapServer:
    """The token socket (issue 15): only ``oauth_token``, only for root and the relay user.

    Its own socket, so that Postfix's processes (which may ask every other map) cannot get
    a token, and the relay user gets no other secret. Each connection answers in its own
    thread from the database (never a snapshot) and closes its database connection when
    the submitter hangs up: one submission, one connection, whatever a refresh costs.
    """
    relay = relay_user()
    uids = {0, os.getuid()} | ({relay[0]} if relay else set())
    path = path or layout.oauth_token_socket()
    if relay is None:
        log.warning(
            "mailmap: no user %s: mail of senders who sign in will wait (deferred) until it "
            "exists (docs/oauth2.md)",
            settings.MAIL_OAUTH_RELAY_USER,
        )
    return SocketmapServer(
        path,
        lookups.token_answer,
        allowed_uids=uids,
        group=relay[1] if relay else None,
        max_request=settings.MAILMAP_MAX_REQUEST,
        idle_timeout=settings.MAILMAP_IDLE_TIMEOUT,
        on_connection_closed=lookups.thread_finished,
    )


def build_server(
    path: Path | None = None,
    stats: LatencyStats | None = None,
    *,
    local_transport: str | None = None,
    token_path: Path | None = None,
) -> MapServer:
    """The lookup server on `path` (default: the configured socket), not yet serving; its
    token socket (`token_path`, default the configured one) serves already, in a thread.

    `local_transport` is how Postfix reaches Dovecot's LMTP (default: the configured
    socket); the tests' private instances pass their own.
    """
    cache = snapshot.SnapshotCache(snapshot.watch_for(connection))
    answer = SnapshotAnswer(cache, local_transport or layout.local_transport())
    workers = LookupWorkers(
        answer.in_database_thread,
        size=settings.MAILMAP_DB_WORKERS,
        timeout=settings.MAILMAP_LOOKUP_TIMEOUT,
    )
    answer.workers = workers
    server = MapServer(
        path or socket_path(),
        stats.wrap(answer) if stats else answer,
        allowed_uids=allowed_uids(),
        group=_postfix_gid(),
        max_request=settings.MAILMAP_MAX_REQUEST,
        idle_timeout=settings.MAILMAP_IDLE_TIMEOUT,
    )
    server.workers = workers
    server.cache = cache
    cache.start()
    server.token_server = build_token_server(token_path)
    threading.Thread(
        target=server.token_server.serve_forever,
        kwargs={"poll_interval": 0.2},
        name="mailmap-token",
        daemon=True,
    ).start()
    return server


class BackgroundMapServer:
    """The lookup server in a thread of this process (tests, `mailserver`)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        local_transport: str | None = None,
        token_path: Path | None = None,
    ) -> None:
        self.path = path or socket_path()
        self.local_transport = local_transport
        self.token_path = token_path
        self.server: SocketmapServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> BackgroundMapServer:
        self.server = build_server(
            self.path, local_transport=self.local_transport, token_path=self.token_path
        )
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.server = None
