"""Maildir delivery: exact bytes in new/, nothing left behind, fsync, unique names."""

from __future__ import annotations

import os
import stat
import time

import pytest

from mapping import maildir
from mapping.maildir import MaildirWriter


def listing(root, sub):
    return sorted(os.listdir(root / sub))


def test_it_creates_the_maildir_folders_private(tmp_path):
    MaildirWriter(tmp_path / "example.com" / "bob")
    for sub in ("new", "cur", "tmp"):
        mode = (tmp_path / "example.com" / "bob" / sub).stat().st_mode
        assert stat.S_IMODE(mode) == 0o700


def test_it_commits_exact_bytes_into_new(tmp_path):
    writer = MaildirWriter(tmp_path)
    body = b"Subject: x\n\n\x00\xff\r bare cr\n" + b"z" * 1_000_000 + b"\n"
    delivery = writer.begin()
    assert delivery.tmp_path.parent == tmp_path / "tmp"
    for start in range(0, len(body), 65536):
        delivery.write(body[start : start + 65536])
    final = delivery.commit()
    assert final == tmp_path / "new" / delivery.name
    assert final.read_bytes() == body
    assert listing(tmp_path, "tmp") == []
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


def test_it_prepends_a_trace_header_only_before_writing(tmp_path):
    writer = MaildirWriter(tmp_path)
    with writer.begin() as delivery:
        delivery.prepend_header(b"X-AAMail-Fetched: from pop.isp.example")
        delivery.write(b"Subject: x\n\nbody\n")
        with pytest.raises(RuntimeError):
            delivery.prepend_header(b"X-Late: 1\n")
        path = delivery.commit()
    assert path.read_bytes() == b"X-AAMail-Fetched: from pop.isp.example\nSubject: x\n\nbody\n"


def test_it_leaves_nothing_after_abort(tmp_path):
    writer = MaildirWriter(tmp_path)
    delivery = writer.begin()
    delivery.write(b"partial")
    delivery.abort()
    delivery.abort()
    assert listing(tmp_path, "tmp") == listing(tmp_path, "new") == []


def test_it_aborts_when_the_block_raises(tmp_path):
    writer = MaildirWriter(tmp_path)
    with pytest.raises(OSError), writer.begin() as delivery:
        delivery.write(b"partial")
        raise OSError("connection lost")
    assert listing(tmp_path, "tmp") == listing(tmp_path, "new") == []


def test_it_fsyncs_the_file_and_the_new_directory(tmp_path, monkeypatch):
    writer = MaildirWriter(tmp_path)
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        info = os.fstat(fd)
        synced.append(("dir" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(maildir.os, "fsync", recording_fsync)
    delivery = writer.begin()
    delivery.write(b"Subject: x\n\nbody\n")
    final = delivery.commit()
    assert synced == [
        ("file", final.stat().st_ino),
        ("dir", (tmp_path / "new").stat().st_ino),
    ]


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
    with writer.begin(unique_hint="u1d7a") as delivery:
        delivery.write(b"x\n")
        path = delivery.commit()
    assert "Xu1d7a." in delivery.name
    assert writer.exists(delivery.name)
    assert writer.find_token("u1d7a") == [path]
    # Dovecot moves a seen message to cur/ and appends ":2,<flags>".
    seen = tmp_path / "cur" / f"{delivery.name}:2,S"
    path.rename(seen)
    assert writer.exists(delivery.name)
    assert writer.find_token("u1d7a") == [seen]
    assert not writer.exists(delivery.name[:-1])
    assert writer.find_token("u1d7") == []


def test_it_refuses_hints_that_would_break_the_name(tmp_path):
    writer = MaildirWriter(tmp_path)
    for bad in ("a/b", "a:2,S", "a.b", ""):
        with pytest.raises(ValueError):
            writer.begin(unique_hint=bad)
    assert listing(tmp_path, "tmp") == []


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
    writer = MaildirWriter(tmp_path / "bob", uid=8, gid=8)
    with writer.begin() as delivery:
        delivery.write(b"x\n")
        path = delivery.commit()
    for owned in (path, tmp_path / "bob", tmp_path / "bob" / "new"):
        assert (owned.stat().st_uid, owned.stat().st_gid) == (8, 8)
