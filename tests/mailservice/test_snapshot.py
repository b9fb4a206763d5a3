"""The lookup server's in-memory snapshot: same answers as the database, and never stale.

Invalidation is tested on both paths: PostgreSQL's NOTIFY (triggers of migration 0002 and
the listener thread, including the loss of its connection) and SQLite's file stat.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from accounts.models import AccountKind
from domains.models import DomainType, Security
from mailservice import lookups, snapshot
from mailservice.mapserver import LookupWorkers, SnapshotAnswer, build_server
from mailservice.socketmap import Reply, Request, SocketmapClient
from mapping.models import Binding
from tests import factories

MAPS_AND_KEYS = [
    (name, key)
    for name in lookups.MAPS
    for key in (
        "example.com",
        "EXAMPLE.com",
        "support@example.com",
        "Support+News@Example.com",
        "support+eu@example.com",
        "frontdesk@example.com",
        "nobody@example.com",
        "someone@outside.test",
        "std.example",
        "boss@std.example",
        "nobody@std.example",
        "",
        "@",
        "[smtp.isp.example]:587",
    )
]


@pytest.fixture
def office_rows():
    domain = factories.DomainFactory(name="example.com")
    factories.DomainFactory(name="closed.example", is_active=False)
    support = factories.AccountFactory(domain=domain, localpart="support")
    factories.AccountFactory(domain=domain, localpart="support+eu")
    factories.AccountFactory(domain=domain, localpart="gone", is_active=False)
    desk = factories.AccountFactory(
        domain=domain, localpart="frontdesk", kind=AccountKind.SPECIAL_LOCAL_STAFF
    )
    factories.BindingFactory(account=support, smtp_host="first.isp.example")
    factories.BindingFactory(
        account=support,
        username="isp-support",
        raw_password="Isp:Secret",
        smtp_host="smtp.isp.example",
        smtp_security=Security.SSL,
        smtp_port=465,
        is_outgoing_relay=True,
    )
    factories.BindingFactory(account=desk, smtp_host="smtp.isp.example", is_outgoing_relay=True)
    standard = factories.DomainFactory(name="std.example", domain_type=DomainType.STANDARD)
    factories.AccountFactory(domain=standard, localpart="boss")
    return {"domain": domain, "support": support, "desk": desk}


# --- the snapshot answers as the database does (SQLite and PostgreSQL) ----------------------


@pytest.mark.django_db
def test_the_snapshot_answers_every_map_as_the_database_does(office_rows, settings):
    settings.MAIL_SMART_HOSTS = {}
    current = snapshot.load()
    assert "example.com" in current.domains
    assert "closed.example" not in current.domains
    for name, key in MAPS_AND_KEYS:
        request = Request(name, key)
        assert lookups.answer(request, current) == lookups.answer(request), (name, key)


@pytest.mark.django_db
def test_the_snapshot_keeps_passwords_encrypted(office_rows):
    current = snapshot.load()
    relay = current.mailbox("support@example.com").relay
    assert relay.password_encrypted
    assert "Isp:Secret" not in repr(current.mailboxes)
    assert relay.credentials() == ("isp-support", "Isp:Secret")  # decrypted at lookup time


# --- the cache: current only while the watch vouches for it ---------------------------------


class FakeWatch:
    def __init__(self) -> None:
        self.value: object | None = 1

    def token(self):
        return self.value

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _snap(*domains: str) -> snapshot.Snapshot:
    return snapshot.Snapshot(dict.fromkeys(domains, "standard"), {})


def test_the_cache_serves_a_snapshot_only_while_its_token_holds():
    watch, loads = FakeWatch(), []
    cache = snapshot.SnapshotCache(watch, lambda: loads.append(1) or _snap(f"d{len(loads)}"))
    assert cache.current() is None  # nothing read yet
    assert set(cache.refresh().domains) == {"d1"}
    assert set(cache.current().domains) == {"d1"}
    assert set(cache.refresh().domains) == {"d1"}
    assert len(loads) == 1
    watch.value = 2  # a change
    assert cache.current() is None
    assert set(cache.refresh().domains) == {"d2"}
    watch.value = None  # the watch cannot tell: always the database
    assert cache.current() is None
    assert cache.refresh() is None
    assert len(loads) == 2


def test_a_change_during_a_rebuild_is_not_lost():
    watch = FakeWatch()

    def load_while_a_change_commits():
        watch.value = 2  # NOTIFY arrives while the rows are being read
        return _snap("old")

    cache = snapshot.SnapshotCache(watch, load_while_a_change_commits)
    assert cache.refresh() is None  # this lookup: from the database
    assert cache.current() is None  # and the next one rebuilds
    cache.loader = lambda: _snap("new")
    assert set(cache.refresh().domains) == {"new"}
    assert set(cache.current().domains) == {"new"}


def test_a_failed_rebuild_answers_temp_never_notfound():
    watch = FakeWatch()

    def broken():
        raise RuntimeError("database is down")

    answer = SnapshotAnswer(snapshot.SnapshotCache(watch, broken))
    answer.workers = LookupWorkers(answer.in_database_thread, size=1, timeout=5)
    try:
        for name in ("domains", "mailboxes", "relay_credentials", "internal_only"):
            assert answer(Request(name, "support@example.com")) == Reply("TEMP", "lookup failed")
        assert answer(Request("passwords", "x")).status == "PERM"
    finally:
        answer.workers.close()


def test_answers_from_a_current_snapshot_need_no_database_thread():
    watch = FakeWatch()
    cache = snapshot.SnapshotCache(watch, lambda: _snap("example.com"))
    cache.refresh()
    answer = SnapshotAnswer(cache)  # no workers: a hand-off would fail
    assert answer(Request("domains", "example.com")) == Reply("OK", "example.com")
    assert answer(Request("internal_only", "a@outside.test")).data.startswith("REJECT")


# --- SQLite: the file's stat --------------------------------------------------------------


@pytest.fixture
def sqlite_file():
    directory = Path(tempfile.mkdtemp(prefix="aamail-snap-"))
    path = directory / "db.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    yield path, db
    db.close()
    for file in directory.iterdir():
        file.unlink()
    directory.rmdir()


def _age(path: Path, seconds: float) -> None:
    """Pretend the last write was `seconds` ago (files of a quiet database)."""
    for file in (path, Path(f"{path}-wal")):
        if file.exists():
            past = time.time_ns() - int(seconds * 1e9)
            os.utime(file, ns=(past, past))


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_watch_moves_on_with_every_write(sqlite_file, journal):
    path, db = sqlite_file
    db.execute(f"PRAGMA journal_mode={journal}")
    _age(path, 10)
    watch = snapshot.SqliteFileWatch(path, settle=0)
    before = watch.token()
    assert before is not None
    assert watch.token() == before
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    assert watch.token() != before
    # Just written: a second write in the same clock tick might not move the time stamps,
    # so a watch that lets writes settle cannot vouch for anything yet.
    assert snapshot.SqliteFileWatch(path, settle=0.5).token() is None


def test_sqlite_watch_cannot_vouch_for_a_missing_or_in_memory_database(tmp_path, settings):
    assert snapshot.SqliteFileWatch(tmp_path / "none.sqlite3").token() is None

    class Memory:
        vendor = "sqlite"
        settings_dict = {"NAME": ":memory:"}

    assert isinstance(snapshot.watch_for(Memory()), snapshot.NoWatch)
    settings.MAILMAP_SNAPSHOT = False
    assert isinstance(snapshot.watch_for(connection), snapshot.NoWatch)


def test_sqlite_file_database_snapshot_is_rebuilt_after_a_change(sqlite_file):
    path, db = sqlite_file
    _age(path, 10)
    watch = snapshot.SqliteFileWatch(path, settle=0.5)
    cache = snapshot.SnapshotCache(
        watch, lambda: _snap(*(r[0] for r in db.execute("SELECT x FROM t")))
    )
    assert cache.refresh().domains == {}
    db.execute("INSERT INTO t VALUES ('example.com')")
    db.commit()
    assert cache.current() is None
    assert cache.refresh() is None
    _age(path, 5)
    assert cache.current() is None
    assert set(cache.refresh().domains) == {"example.com"}
    assert set(cache.current().domains) == {"example.com"}


# --- PostgreSQL: NOTIFY from the triggers, and the listener's connection ----------------------

postgres_only = pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""),
    reason="PostgreSQL NOTIFY path (DATABASE_URL=postgres://...)",
)


def _wait_for(condition, timeout: float = 3.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached")
        time.sleep(0.001)
    return time.monotonic() - start


@pytest.fixture
def listener(transactional_db):
    # Request it after the rows' fixture: their inserts are then not notified to it.
    watch = snapshot.watch_for(connection)
    assert isinstance(watch, snapshot.PostgresChanges)
    watch.start()
    assert watch.wait_listening(), "not listening: are migration 0002's triggers there?"
    yield watch
    watch.stop()


@postgres_only
def test_postgres_notifies_changes_of_the_rows_the_maps_read(
    transactional_db, office_rows, listener
):
    changes = [
        lambda: office_rows["domain"].save(),
        lambda: factories.AccountFactory(domain=office_rows["domain"], localpart="new"),
        lambda: Binding.objects.filter(account=office_rows["support"]).update(smtp_port=2525),
        lambda: Binding.objects.filter(account=office_rows["desk"]).delete(),
    ]
    for change in changes:
        before = listener.token()
        change()
        _wait_for(lambda before=before: listener.token() != before)


@postgres_only
def test_postgres_ignores_the_fetchers_status_writes(transactional_db, office_rows, listener):
    binding = Binding.objects.filter(account=office_rows["support"]).first()
    before = listener.token()
    Binding.objects.filter(pk=binding.pk).update(
        state="retrying", last_error="", consecutive_failures=0, messages_fetched=7
    )
    binding.last_error = "timeout"
    binding.save(update_fields=["last_error"])
    # A change that does notify, after them: once it is seen, they would have been too.
    office_rows["domain"].save()
    _wait_for(lambda: listener.token() != before)
    assert listener.token()[1] == before[1] + 1


@postgres_only
def test_a_kind_change_is_answered_by_the_server_after_its_notification(
    transactional_db, office_rows, listener
):
    socket_dir = Path(tempfile.mkdtemp(prefix="aamail-snap-"))
    server = build_server(socket_dir / "map.sock")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        assert server.cache.watch.wait_listening()
        with SocketmapClient(socket_dir / "map.sock") as client:
            support = "support@example.com"
            assert client.query("sasl_class", support).status == "NOTFOUND"
            assert server.cache.current() is not None  # answered from memory
            rebuilds = server.cache.rebuilds
            assert client.query("sasl_class", support).status == "NOTFOUND"
            assert server.cache.rebuilds == rebuilds  # no rebuild without a change

            before = server.cache.watch.token()
            office_rows["support"].kind = AccountKind.SPECIAL_LOCAL_STAFF
            office_rows["support"].save()
            _wait_for(lambda: server.cache.watch.token() != before)
            assert client.query("sasl_class", support) == Reply("OK", "internal_only")
            assert client.query("relay_transport", support).status == "NOTFOUND"
            assert server.cache.rebuilds == rebuilds + 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        os.rmdir(socket_dir)


@postgres_only
def test_losing_the_listener_connection_falls_back_to_the_database(
    transactional_db, office_rows, listener
):
    from django.db import connections

    cache = snapshot.SnapshotCache(listener)
    assert cache.refresh() is not None
    epoch = listener.token()[0]
    pid = listener._conn.info.backend_pid
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    _wait_for(lambda: listener.token() is None or listener.token()[0] != epoch)
    # Nothing vouches for the old snapshot any more: not current, whatever happens meanwhile.
    assert cache.current() is None
    office_rows["desk"].kind = AccountKind.NORMAL
    office_rows["desk"].save()
    answer = SnapshotAnswer(cache)
    answer.workers = LookupWorkers(answer.in_database_thread, size=1, timeout=5)
    try:
        # Down or just back: either way the answer is the database's, never the old copy's.
        assert answer(Request("sasl_class", "frontdesk@example.com")).status == "NOTFOUND"
        _wait_for(lambda: listener.token() is not None)
        assert listener.token()[0] == epoch + 1  # a new epoch: the old snapshot never returns
        assert answer(Request("sasl_class", "frontdesk@example.com")).status == "NOTFOUND"
        assert cache.current() is not None  # from memory again
    finally:
        answer.workers.close()
