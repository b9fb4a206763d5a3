"""A private Dovecot 2.3 playing the ISP: POP3 (+STLS) and POP3S on free loopback ports.

    with Dovecot() as isp:
        isp.add_user("alice", "secret")
        isp.deliver("alice", b"Subject: hi\\n\\nbody\\n")
        Client("127.0.0.1", isp.pop3_port, Security.NONE) ...

Runs `dovecot -F -c <conf>` from a temporary directory (never the system service), with
`passwd-file` users ({PLAIN} passwords) whose mail belongs to Debian's `mail` user (8:8):
Dovecot refuses uid 0 for mail processes. Needs root to start.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devserver.certs import make_ca_and_cert
from devserver.processes import free_port

DOVECOT = "/usr/sbin/dovecot"
MAIL_UID = MAIL_GID = 8  # Debian's `mail` user

_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = {ssl}
{ssl_files}
disable_plaintext_auth = no
auth_mechanisms = plain login
# failing logins must not slow the tests: no failure delay, no anvil penalty
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u/Maildir
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s_port}
    ssl = yes
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


__all__ = ["Dovecot", "free_port"]


class Dovecot:
    """Context manager around one private Dovecot instance."""

    def __init__(self, *, stls: bool = True) -> None:
        self.stls = stls
        self.root = Path(tempfile.mkdtemp(prefix="aamail-dovecot-"))
        # Dovecot's unprivileged helpers (auth worker, mail processes) must traverse it.
        self.root.chmod(0o755)
        (self.root / "mail").mkdir(mode=0o755)
        self.ca_pem, self.cert_pem, self.key_pem = make_ca_and_cert(
            self.root, hostnames=("localhost",), ips=("127.0.0.1",)
        )
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        self._seq = itertools.count(1)
        self._proc: subprocess.Popen | None = None
        self.log_path = self.root / "dovecot.log"

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _write_user(self, name: str, password: str) -> None:
        # One passwd-file per user: Dovecot rereads a changed passwd-file at most once a
        # second, so a user added right after another would not be seen yet.
        users = self.root / "users"
        users.mkdir(mode=0o755, exist_ok=True)
        path = users / name
        home = self.root / "mail" / name
        path.write_text(f"{name}:{{PLAIN}}{password}:{MAIL_UID}:{MAIL_GID}::{home}::\n")
        path.chmod(0o644)

    def start(self) -> None:
        """Start Dovecot and wait until both listeners greet."""
        if not os.path.exists(DOVECOT):
            raise RuntimeError(f"{DOVECOT} is not installed (apt-get install dovecot-pop3d).")
        ssl_files = f"ssl_cert = <{self.cert_pem}\nssl_key = <{self.key_pem}\n" + (
            "ssl_dh = </usr/share/dovecot/dh.pem\n"
            if Path("/usr/share/dovecot/dh.pem").exists()
            else ""
        )
        # Without STLS the plain listener must not offer it: ssl = no everywhere, and the
        # POP3S listener is then not usable (tests of that server use the plain port only).
        conf = _CONF.format(
            root=self.root,
            ssl="yes" if self.stls else "no",
            ssl_files=ssl_files if self.stls else "",
            pop3_port=self.pop3_port,
            pop3s_port=self.pop3s_port if self.stls else 0,
        )
        (self.root / "dovecot.conf").write_text(conf)
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "stderr.log").open("wb"),
        )
        ports = [self.pop3_port] + ([self.pop3s_port] if self.stls else [])
        deadline = time.monotonic() + 10
        while not all(self._listening(p) for p in ports):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Dovecot did not start:\n{self.log_tail()}")
            time.sleep(0.02)

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        """The end of Dovecot's log and stderr, for failure messages."""
        text = ""
        for name in ("stderr.log", "dovecot.log"):
            path = self.root / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the master, wait for it, remove the temporary directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def maildir(self, user: str) -> Path:
        """The user's Maildir (created, owned by mail:mail)."""
        home = self.root / "mail" / user
        maildir = home / "Maildir"
        for path in (home, maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
            if not path.exists():
                path.mkdir(mode=0o700)
                os.chown(path, MAIL_UID, MAIL_GID)
        return maildir

    def add_user(self, name: str, password: str) -> None:
        """Add a user (a changed password may take Dovecot a second to notice)."""
        if not name.isalnum():
            raise ValueError("Test user names are letters and digits only.")
        self._write_user(name, password)
        self.maildir(name)

    def deliver(self, user: str, raw: bytes) -> str:
        """Drop a message into the user's new/ as it would be stored; return its file name."""
        # The time field grows with each delivery, so Dovecot numbers messages in order.
        seq = next(self._seq)
        name = f"{1_600_000_000 + seq}.M{seq}P{os.getpid()}.aamail-test"
        maildir = self.maildir(user)
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, MAIL_UID, MAIL_GID)
        tmp.rename(maildir / "new" / name)
        return name

    def messages(self, user: str) -> list[Path]:
        """Stored message files of a user (new/ and cur/), sorted by name."""
        maildir = self.maildir(user)
        return sorted(
            [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()], key=lambda p: p.name
        )
