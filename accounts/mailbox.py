"""Where an account's mail lives, who owns it and how full it is: the one source of truth.

The fetcher writes MAIL_ROOT/<domain>/<local part>/ as a Maildir, Dovecot serves the same
directory (mail_location = maildir:MAIL_ROOT/%Ld/%Ln) and reads it as the mail user. Both
ask this module, so the path and the owner cannot drift apart (design.md: the fetcher's
uid, Dovecot's uid and the lookup socket each had their own default once).

Quotas: Dovecot enforces Account.quota_mb with its Maildir++ quota, kept in the Maildir's
`maildirsize` file (docs/mail-service.md, Quotas). The fetcher stores messages without
Dovecot, so before storing it asks `quota_allows()`, and after storing it appends the message
to that file with `quota_add()`, as every Maildir++ deliverer does; a message that does not
fit stays at the ISP.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from .models import Account

MAILDIR_SUBDIRS = ("tmp", "new", "cur")
QUOTA_FILE = "maildirsize"
MIB = 1024 * 1024  # Dovecot's "M" in quota_rule = *:storage=<N>M


class MailboxPathError(Exception):
    """The account's name cannot be used as a Maildir directory name."""


class MailOwnerError(Exception):
    """Mail files cannot get the owner Dovecot needs; the message says what to do."""


# --- where --------------------------------------------------------------------------------


def mailbox_path(account: Account) -> Path:
    """MAIL_ROOT/<domain>/<local part>: the layout Dovecot serves (docs/mail-service.md)."""
    domain, local = account.domain.name, account.localpart
    for part in (domain, local):
        if not part or "/" in part or "\0" in part or part.startswith("."):
            raise MailboxPathError(
                f"Mail for {account.address} cannot be stored: “{part}” cannot be used "
                "as a directory name. Rename the account."
            )
    return Path(settings.MAIL_ROOT) / domain / local


def mailbox_prepare(account: Account) -> Path:
    """Create the account's Maildir and every missing parent, all owned by the mail owner.

    A parent the fetcher created as root would stop Dovecot from creating the Maildir of a
    colleague who never fetched (LMTP "Permission denied"): so MAIL_ROOT and the domain's
    directory belong to the mail owner too. Returns the Maildir's path.
    """
    uid, gid = mail_owner()
    path = mailbox_path(account)
    root = Path(settings.MAIL_ROOT)
    for directory in (root, path.parent, path, *(path / sub for sub in MAILDIR_SUBDIRS)):
        if directory.is_dir():
            continue
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _chown(directory, uid, gid)
    return path


# --- who ----------------------------------------------------------------------------------


def mail_owner() -> tuple[int, int]:
    """MAIL_UID/MAIL_GID, else Debian's `mail` user (8:8): Dovecot never runs mail as root."""
    uid, gid = settings.MAIL_UID, settings.MAIL_GID
    try:
        if uid is None:
            uid = pwd.getpwnam("mail").pw_uid
        if gid is None:
            gid = grp.getgrnam("mail").gr_gid
    except KeyError:
        raise MailOwnerError(
            "This system has no `mail` user: set MAIL_UID and MAIL_GID to the user Dovecot "
            "reads mail as."
        ) from None
    if uid == 0 or gid == 0:
        raise MailOwnerError("MAIL_UID/MAIL_GID must not be root: Dovecot refuses uid 0 for mail.")
    return uid, gid


def check_mail_owner() -> tuple[int, int]:
    """The mail owner, if this process can give mail files that owner; else MailOwnerError.

    Root can give files any owner; any other user only its own uid and one of its groups.
    The Celery worker refuses to start on this error (aamail/celery.py), so nothing is ever
    stored that Dovecot cannot read.
    """
    uid, gid = mail_owner()
    euid = os.geteuid()
    if euid != 0:
        if euid != uid:
            raise MailOwnerError(
                f"This process runs as {_user_name(euid)} (uid {euid}), but mail files must "
                f"belong to {_user_name(uid)} (uid {uid}), the user Dovecot reads mail as "
                "(MAIL_UID). Run the worker as root or as that user, or set MAIL_UID and "
                "MAIL_GID to the user Dovecot runs mail as."
            )
        if gid != os.getegid() and gid not in os.getgroups():
            raise MailOwnerError(
                f"This process (uid {euid}) is not in group {gid} (MAIL_GID), so it cannot "
                "give mail files the group Dovecot reads them with. Run the worker with that "
                "group, as root, or set MAIL_GID to one of its groups."
            )
    root = Path(settings.MAIL_ROOT)
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "MAIL_ROOT" if existing == root else f"{existing}, where MAIL_ROOT would be made,"
        raise MailOwnerError(
            f"{where} ({root}) is not writable by uid {euid}: mail cannot be stored. Give that "
            "directory to the mail user, or run the worker as root."
        )
    return uid, gid


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _chown(path: Path, uid: int, gid: int) -> None:
    # As the mail user itself (compose) the owner is already right; chown would be refused.
    if os.geteuid() == 0:
        os.chown(path, uid, gid)


# --- how full -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaUsage:
    """What an account's mailbox holds against its quota (limit None: no limit)."""

    bytes: int
    messages: int
    limit: int | None

    @property
    def percent(self) -> int | None:
        if not self.limit:
            return None
        return min(100, round(100 * self.bytes / self.limit))

    @property
    def full(self) -> bool:
        return self.limit is not None and self.bytes >= self.limit


def quota_limit(account: Account) -> int | None:
    """The quota in bytes, None for no limit (quota 0): what Dovecot's quota_rule says."""
    return account.quota_mb * MIB if account.quota_mb else None


def quota_usage(account: Account) -> tuple[int, int]:
    """(bytes, messages) stored in the account's Maildir, as Dovecot's quota counts them.

    From `maildirsize` when Dovecot keeps one, else by walking the Maildir (what Dovecot
    does itself when the file is missing).
    """
    path = mailbox_path(account)
    counted = _read_maildirsize(path / QUOTA_FILE)
    return counted if counted is not None else _walk(path)


def quota_status(account: Account) -> QuotaUsage:
    """Usage and limit together, for the General tab and the self-service page."""
    used, messages = quota_usage(account)
    return QuotaUsage(used, messages, quota_limit(account))


def quota_allows(account: Account, size: int) -> bool:
    """Whether a message of `size` bytes fits (Dovecot applies the same rule, no grace)."""
    limit = quota_limit(account)
    if limit is None:
        return True
    used, _messages = quota_usage(account)
    return used + size <= limit


def quota_add(account: Account, size: int, count: int = 1) -> None:
    """Count a message the fetcher stored: append "<size> <count>" to `maildirsize`.

    Maildir++ deliverers append one line per delivery, in one write (O_APPEND keeps
    concurrent appends whole). No file yet: nothing to do, Dovecot counts the files when
    it creates it.
    """
    path = mailbox_path(account) / QUOTA_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.write(fd, f"{int(size)} {int(count)}\n".encode())
    finally:
        os.close(fd)


def _read_maildirsize(path: Path) -> tuple[int, int] | None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    total_bytes = total_messages = 0
    for line in lines[1:]:  # the first line is the limit
        fields = line.split()
        if not fields:
            continue
        try:
            total_bytes += int(fields[0])
            total_messages += int(fields[1]) if len(fields) > 1 else 0
        except ValueError:
            return None  # not a file we understand: count the files instead
    return max(total_bytes, 0), max(total_messages, 0)


def _walk(path: Path) -> tuple[int, int]:
    # INBOX and every Maildir++ folder (".Sent", ".Trash", …); tmp/ holds no message yet.
    total_bytes = total_messages = 0
    folders = [path]
    with contextlib.suppress(FileNotFoundError):
        folders += [p for p in path.iterdir() if p.name.startswith(".") and p.is_dir()]
    for folder in folders:
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(folder / sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False):
                        total_bytes += entry.stat(follow_symlinks=False).st_size
                        total_messages += 1
    return total_bytes, total_messages
