"""Where an account's mail lives and who owns it: the one source of truth.

The fetcher writes MAIL_ROOT/<domain>/<local part>/ as a Maildir, Dovecot serves the same
directory (mail_location = maildir:MAIL_ROOT/%Ld/%Ln) and reads it as the mail user. Both
ask this module, so the path and the owner cannot drift apart (design.md: the fetcher's
uid, Dovecot's uid and the lookup socket each had their own default once).
"""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

from django.conf import settings

from .models import Account


class MailboxPathError(Exception):
    """The account's name cannot be used as a Maildir directory name."""


class MailOwnerError(Exception):
    """The mail owner is not usable; the message says what to set."""


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
