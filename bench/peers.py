"""The established fetchers, configured like for like: getmail6 and fetchmail + procmail.

Both run as an unprivileged user (getmail refuses to deliver into a Maildir as root), with
all their state (configuration, UIDL/"oldmail" files, HOME) in a fresh directory per run,
so every run fetches the whole mailbox. Both are told not to add their own trace headers
where they can be (getmail: ``delivered_to``/``received`` off; fetchmail: ``set invisible``,
``no rewrite``); the verifier accepts prepended header fields from them anyway and counts
them. fetchmail talks to the plain port with STARTTLS disabled (``sslproto ''``): it would
otherwise upgrade by itself and then reject the self-signed certificate.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import proc

PEER_USER = "nobody"  # exists on every Debian; see ensure_user()


@dataclass(frozen=True)
class PeerUser:
    name: str
    uid: int
    gid: int


def ensure_user(name: str = PEER_USER) -> PeerUser:
    """The unprivileged user the peers run as; created with useradd if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
        entry = pwd.getpwnam(name)
    return PeerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _own(user: PeerUser, *paths: Path) -> None:
    for path in paths:
        os.chown(path, user.uid, user.gid)


def _maildir(root: Path, user: PeerUser) -> Path:
    maildir = root / "Maildir"
    for path in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
        path.mkdir(mode=0o700)
        _own(user, path)
    return maildir


def _home(root: Path, user: PeerUser) -> Path:
    root.mkdir(mode=0o755, parents=True)
    _own(user, root)
    return root


def getmail(
    root: Path, user: PeerUser, *, port: int, username: str, password: str, timeout: float
) -> tuple[proc.Measured, Path]:
    """getmail6 → its own Maildir delivery; returns the measurement and the Maildir."""
    home = _home(root, user)
    maildir = _maildir(home, user)
    state = home / "getmail"
    state.mkdir(mode=0o700)
    _own(user, state)
    rc = state / "getmailrc"
    rc.write_text(
        "[retriever]\n"
        "type = SimplePOP3Retriever\n"
        "server = 127.0.0.1\n"
        f"port = {port}\n"
        f"username = {username}\n"
        f"password = {password}\n"
        "[destination]\n"
        "type = Maildir\n"
        f"path = {maildir}/\n"
        "[options]\n"
        "verbose = 0\n"
        "read_all = true\n"
        "delete = false\n"
        "delivered_to = false\n"
        "received = false\n"
    )
    rc.chmod(0o600)
    _own(user, rc)
    measured = proc.run(
        ["getmail", f"--getmaildir={state}", f"--rcfile={rc}"],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        cwd=home,
        user=user.uid,
        group=user.gid,
        timeout=timeout,
        log_dir=root.parent / "logs",
        name=f"{root.name}-getmail",
    )
    return measured, maildir


def fetchmail(
    root: Path, user: PeerUser, *, port: int, username: str, password: str, timeout: float
) -> tuple[proc.Measured, Path]:
    """fetchmail with procmail as MDA delivering into a Maildir."""
    home = _home(root, user)
    maildir = _maildir(home, user)
    procmailrc = home / "procmailrc"
    procmailrc.write_text(f"VERBOSE=no\nLOGABSTRACT=no\n:0\n{maildir}/\n")
    procmailrc.chmod(0o644)
    _own(user, procmailrc)
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        "set no bouncemail\n"
        "set invisible\n"
        f"poll 127.0.0.1 service {port} protocol POP3 uidl\n"
        f'  user "{username}" there with password "{password}" is "{user.name}" here\n'
        "  options keep fetchall no rewrite sslproto ''\n"
        f'  mda "/usr/bin/procmail -m {procmailrc}"\n'
    )
    rc.chmod(0o600)
    _own(user, rc)
    measured = proc.run(
        [
            "fetchmail",
            "--nodetach",
            "--silent",
            "-f",
            str(rc),
            "-i",
            str(home / "fetchids"),
            "--pidfile",
            str(home / "fetchmail.pid"),
        ],
        env={
            "HOME": str(home),
            "FETCHMAILHOME": str(home),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
        },
        cwd=home,
        user=user.uid,
        group=user.gid,
        timeout=timeout,
        log_dir=root.parent / "logs",
        name=f"{root.name}-fetchmail",
    )
    return measured, maildir
