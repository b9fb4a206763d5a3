"""Maildir delivery: exact bytes in new/, nothing left behind, fsync, unique names."""

from __future__ import annotations

import os
import stat
import time

import pytest

from mapping import maildir
from mapping.maildir import MaildirWriter, Syncer


def listing(root, sub):
    return sorted(os.listdir(root / sub))


def deliver(writer: MaildirWriter, body: bytes, name: str | None = None):
    delivery = writer.begin(name)
    delivery.write(body)
    delivery.sync()
    (path,) = writer.publish([delivery])
    return delivery, path


def test_it_creates_the_maildir_folders_private(tmp_path):
    MaildirWriter(tmp_path / "example.com" / "bob")
    for sub in ("new", "cur", "tmp"):
        mode = (tmp_path / "example.com" / "bob" / sub).stat().st_mode
        assert stat.S_IMODE(mode) == 0o700


def test_it_publishes_exact_bytes_into_new(tmp_path):
    writer = MaildirWriter(tmp_path)
    body = b"Subject: x\n\n\x00\xff\r bare cr\n" + b"z" * 1_000_000 + b"\n"
    delivery = writer.begin()
    assert delivery.tmp_path.parent == tmp_path / "tmp"
    for start in range(0, len(body), 65536):
        delivery.write(body[start : start + 65536])
    delivery.sync()
    assert listing(tmp_path, "new") == []  # synced is not published: nothing to read yet
    (final,) = writer.publish([delivery])
    assert final == tmp_path / "new" / delivery.name
    assert final.read_bytes() == body
    assert listing(tmp_path, "tmp") == []
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


def test_it_publishes_only_what_was_synced(tmp_path):
    writer = MaildirWriter(tmp_path)
    delivery = writer.begin()
    delivery.write(b"x\n")
    with pytest.raises(RuntimeError, match="sync"):
        writer.publish([delivery])
    delivery.abort()


def test_it_prepends_a_trace_header_only_before_writing(tmp_path):
    writer = MaildirWriter(tmp_path)
    delivery = writer.begin()
    delivery.prepend_header(b"X-AAMail-Fetched: from pop.isp.example")
    delivery.write(b"Subject: x\n\nbody\n")
    with pytest.raises(RuntimeError):
        delivery.prepend_header(b"X-Late: 1\n")
    delivery.sync()
    (path,) = writer.publish([delivery])
    assert path.read_bytes() == b"X-AAMail-Fetched: from pop.isp.example\nSubject: x\n\nbody\n"


def test_it_leaves_nothing_after_abort(tmp_path):
    writer = MaildirWriter(tmp_path)
    delivery = writer.begin()
    delivery.write(b"partial")
    delivery.abort()
    delivery.abort()
    assert listing(tmp_path, "tmp") == listing(tmp_path, "new") == []


def test_it_fsyncs_each_file_and_the_new_directory_once(tmp_path, monkeypatch):
    writer = MaildirWriter(tmp_path)
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        info = os.fstat(fd)
        synced.append(("dir" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(maildir.os, "fsync", recording_fsync)
    deliveries = []
    for n in range(3):
        delivery = writer.begin()
        delivery.write(b"Subject: %d\n\nbody\n" % n)
        delivery.sync()
        deliveries.append(delivery)
    paths = writer.publish(deliveries)
    assert synced == [
        *(("file", path.stat().st_ino) for path in paths),
        ("dir", (tmp_path / "new").stat().st_ino),
    ]


def test_it_syncs_on_threads_and_reports_failures(tmp_path):
    writer = MaildirWriter(tmp_path)
    with Syncer(threads=4, in_flight=2) as syncer:
        good = []
        for n in range(20):
            delivery = writer.begin()
            delivery.write(b"message %d\n" % n)
            syncer.submit(delivery)
            good.append(delivery)
        bad = writer.begin()
        bad._file.close()  # a file that can no longer be flushed: sync() fails
        syncer.submit(bad)
        failed = syncer.wait()
    assert [delivery for delivery, _ in failed] == [bad]
    assert all(delivery.synced for delivery in good)
    writer.publish(good)
    assert len(listing(tmp_path, "new")) == 20
    assert listing(tmp_path, "tmp") == []  # the failed one was aborted


def test_it_makes_unique_names_across_10000_deliveries(tmp_path):
    writer = MaildirWriter(tmp_path)
    names = set()
    for _ in range(10_000):
        delivery = writer.begin()
        names.add(delivery.name)
        delivery.abort()
    assert len(names) == 10_000
    assert all("/" not in name and ":" not in name for name in names)


def test_it_finds_delivered_names_in_new_and_cur(tmp_path):
    writer = MaildirWriter(tmp_path)
    delivery, path = deliver(writer, b"x\n")
    other = writer.unique_name()
    assert writer.delivered([delivery.name, other]) == {delivery.name}
    # Dovecot moves a seen message to cur/ and appends ":2,<flags>".
    path.rename(tmp_path / "cur" / f"{delivery.name}:2,S")
    assert writer.delivered([delivery.name, delivery.name[:-1]]) == {delivery.name}


def test_it_cleans_up_only_old_tmp_files(tmp_path):
    writer = MaildirWriter(tmp_path)
    old, fresh = writer.begin(), writer.begin()
    two_days_ago = time.time() - 48 * 3600
    os.utime(old.tmp_path, (two_days_ago, two_days_ago))
    assert writer.cleanup_tmp() == 1
    assert listing(tmp_path, "tmp") == [fresh.name]
    fresh.abort()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_it_gives_files_and_folders_to_the_mail_user(tmp_path):
    writer = MaildirWriter(tmp_path / "example.com" / "bob", uid=8, gid=8)
    _, path = deliver(writer, b"x\n")
    for owned in (path, tmp_path / "example.com", tmp_path / "example.com" / "bob"):
        assert (owned.stat().st_uid, owned.stat().st_gid) == (8, 8)
