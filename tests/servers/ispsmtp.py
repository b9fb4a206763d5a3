"""A fake ISP SMTP server: a second real Postfix that requires TLS + AUTH.

It proves interoperability with a real SMTP AUTH server (TLS before AUTH,
``smtpd_tls_auth_only``), logs ``sasl_username=`` and writes ``(Authenticated sender: …)``
into ``Received:``, and delivers every accepted message, whatever the recipient domain,
into one sink Maildir (mail-service.md, §3).

Its users live in the passwd-file of an auth-only private Dovecot; they have nothing to do
with the office's local passwords.

    with FakeIspSmtp() as isp:
        isp.add_user("isp-support-7731", "Isp:Secret support")
        smtplib.SMTP(isp.ip, isp.submission_port)  # STARTTLS required before AUTH
        smtplib.SMTP_SSL(isp.ip, isp.smtps_port, context=ssl.create_default_context(
            cafile=isp.ca_file))                    # implicit TLS; verify name isp.host
        isp.wait_for_messages(1); isp.received(); isp.sasl_usernames()

Stable API: ``host``, ``ip``, ``submission_port``, ``smtps_port``, ``ca_file``,
``log_path``, ``add_user()``, ``received()``, ``wait_for_messages()``,
``sasl_log_lines()``, ``sasl_usernames()``, ``start()``, ``stop()``.
Everything listens on 127.0.0.1 high ports picked at start; all state is in ``base_dir``.
"""

from __future__ import annotations

import email
import email.policy
import grp
import hashlib
import os
import pwd
import re
import shutil
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from devserver.processes import (
    Dovecot,
    free_port,
    postfix_prepare,
    postfix_start,
    postfix_stop,
    wait_for_tcp,
)

_MAIN_CF = """\
# Fake ISP SMTP (tests only): requires TLS + AUTH, delivers everything to one sink Maildir.
compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = isp-postfix
maillog_file = {log}
maillog_file_prefixes = {base}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {host}
mydomain = isp.test
mynetworks = 127.0.0.1/32
biff = no
readme_directory = no
smtp_host_lookup = native
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled
default_transport = error:5.4.4 the fake ISP delivers only to its sink
relayhost =

# Every recipient domain goes to the sink: the ISP "delivers to the internet".
virtual_mailbox_domains = static:all
virtual_mailbox_base = {base}
virtual_mailbox_maps = static:sink/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
virtual_transport = virtual
message_size_limit = 52428800
virtual_mailbox_limit = 0

smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 1
smtpd_sasl_type = dovecot
smtpd_sasl_path = {base}/run/dovecot/auth-postfix
smtpd_sasl_authenticated_header = yes
"""

# A recipient whose local part is "refused" is rejected with 550 after AUTH, so a test can
# make the office bounce a relayed message (issue 12: bounces are counted per sender).
_REFUSED = "/^refused@/ REJECT 5.1.1 This mailbox does not exist at the ISP\n"

_SMTPD_OPTS = (
    "  -o smtpd_sasl_auth_enable=yes\n"
    "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
    "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
    "  -o smtpd_recipient_restrictions=check_recipient_access,regexp:{base}/refused,"
    "permit_sasl_authenticated,reject\n"
)

_MASTER_CF = (
    """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{submission_port} inet n - n - - smtpd
  -o syslog_name=isp-postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
"""
    + _SMTPD_OPTS
    + """\
127.0.0.1:{smtps_port} inet n - n - - smtpd
  -o syslog_name=isp-postfix/smtps
  -o smtpd_tls_wrappermode=yes
"""
    + _SMTPD_OPTS
    + """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
)

_DOVECOT_CONF = """\
# Fake ISP: a Dovecot used only as the SASL back end of the ISP's Postfix.
instance_name = aamail-isp-{instance}
base_dir = {base}/run/dovecot
state_dir = {base}/state/dovecot
log_path = {base}/log/dovecot.log
listen = 127.0.0.1
protocols = none
ssl = no
auth_mechanisms = plain login
auth_verbose = yes
# Tests try wrong passwords on purpose: no 2 s failure delay, no 2 s..15 s penalty per IP.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home=/nonexistent
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


# "<queue id>: client=host[ip], sasl_method=PLAIN, sasl_username=LOGIN" (a failed AUTH is
# logged as a warning that also carries sasl_username=, so match the accepted form only).
_SASL_OK = re.compile(r": client=\S+, sasl_method=\S+, sasl_username=")


def _password_entry(login: str, password: str) -> str:
    # SHA512.HEX: a ':' in the password cannot break the passwd-file line.
    if any(ch in login for ch in ":\r\n\x00") or "\n" in password:
        raise ValueError("login must not contain ':' or line breaks")
    return f"{login}:{{SHA512.HEX}}{hashlib.sha512(password.encode()).hexdigest()}\n"


class FakeIspSmtp:
    """A private ISP Postfix (+ auth-only Dovecot) on loopback; see the module docstring."""

    host = "localhost"  # the name in its certificate: verify TLS against this
    ip = "127.0.0.1"

    def __init__(
        self,
        base_dir: Path | None = None,
        certs: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self._own_base = base_dir is None
        # Not pytest's tmp_path: that is 0700 root, and Postfix/virtual(8) run as other users.
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="aamail-isp-"))
        self._certs = certs
        self.submission_port = 0
        self.smtps_port = 0
        self.log_path = self.base_dir / "log" / "isp-postfix.log"
        self.ca_file = self.base_dir / "tls" / "ca.pem"
        self.sink = self.base_dir / "sink"
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()
        self._dovecot: Dovecot | None = None
        self._postfix_dir = self.base_dir / "postfix"
        self._running = False

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeIspSmtp:
        mail = pwd.getpwnam("mail")
        base = self.base_dir
        for sub in ("log", "tls", "run", "state", "postfix"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        for sub in ("new", "cur", "tmp"):
            (self.sink / sub).mkdir(parents=True, exist_ok=True)
        for path in [self.sink, *(self.sink / s for s in ("new", "cur", "tmp"))]:
            os.chown(path, mail.pw_uid, mail.pw_gid)
        cert, key = self._make_certs()
        self._write_users()
        self.submission_port = free_port()
        self.smtps_port = free_port()
        while self.smtps_port == self.submission_port:
            self.smtps_port = free_port()

        fields = dict(
            base=base,
            log=self.log_path,
            host=self.host,
            cert=cert,
            key=key,
            uid=mail.pw_uid,
            gid=mail.pw_gid,
            instance=base.name,
            submission_port=self.submission_port,
            smtps_port=self.smtps_port,
        )
        (base / "dovecot.conf").write_text(_DOVECOT_CONF.format(**fields))
        (base / "refused").write_text(_REFUSED)
        (self._postfix_dir / "main.cf").write_text(_MAIN_CF.format(**fields))
        (self._postfix_dir / "master.cf").write_text(_MASTER_CF.format(**fields))
        postfix_prepare(base / "spool", base / "data")

        self._dovecot = Dovecot(base / "dovecot.conf", base / "log" / "dovecot.log")
        self._dovecot.start([base / "run" / "dovecot" / "auth-postfix"])
        try:
            postfix_start(self._postfix_dir, self.log_path)
            wait_for_tcp(self.ip, self.submission_port)
            wait_for_tcp(self.ip, self.smtps_port)
        except Exception:
            self._dovecot.stop()
            raise
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            postfix_stop(self._postfix_dir)
        if self._dovecot is not None:
            self._dovecot.stop()
            self._dovecot = None
        self._running = False
        if self._own_base and os.environ.get("AAMAIL_KEEP_SERVER_DIRS") != "1":
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> FakeIspSmtp:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _make_certs(self) -> tuple[Path, Path]:
        tls = self.base_dir / "tls"
        if self._certs is None:
            from devserver.certs import make_ca_and_cert

            ca, cert, key = make_ca_and_cert(tls, hostnames=(self.host,), ips=(self.ip,))
        else:
            ca, cert, key = self._certs
        ca, cert, key = Path(ca), Path(cert), Path(key)
        if ca != self.ca_file:
            shutil.copyfile(ca, self.ca_file)
        return cert, key

    # --- users -------------------------------------------------------------------------

    def add_user(self, login: str, password: str) -> None:
        """Create (or change the password of) an ISP SMTP account; effective at once."""
        _password_entry(login, password)  # validate before storing
        with self._lock:
            self._users[login] = password
            if self._running or (self.base_dir / "users").exists():
                self._write_users()

    def _write_users(self) -> None:
        # Dovecot re-reads a passwd-file whose mtime changed: write and rename atomically,
        # and bump the mtime so two writes in the same second are still seen.
        path = self.base_dir / "users"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(_password_entry(u, p) for u, p in self._users.items()))
        # Dovecot's auth process reads it as the dovecot user.
        tmp.chmod(0o640)
        os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
        now = time.time()
        previous = path.stat().st_mtime if path.exists() else 0
        stamp = max(now, previous + 1)
        os.utime(tmp, (stamp, stamp))
        tmp.replace(path)

    # --- what the ISP saw --------------------------------------------------------------

    def _message_files(self) -> list[Path]:
        files = [p for sub in ("new", "cur") for p in (self.sink / sub).iterdir() if p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def received(self) -> list[EmailMessage]:
        """Messages delivered into the sink so far, oldest first."""
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in self._message_files()
        ]

    def wait_for_messages(self, count: int, timeout: float = 15.0) -> list[EmailMessage]:
        """Wait until at least `count` messages are in the sink; return them all."""
        deadline = time.monotonic() + timeout
        while len(self._message_files()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the fake ISP received {len(self._message_files())} of {count} messages;"
                    f" log: {self.log_path}"
                )
            time.sleep(0.05)
        return self.received()

    def clear(self) -> None:
        """Empty the sink (between tests sharing one server)."""
        for path in self._message_files():
            path.unlink()

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def sasl_log_lines(self) -> list[str]:
        """Postfix log lines recording a successful AUTH (``… sasl_username=LOGIN``)."""
        return [line for line in self.log_lines() if _SASL_OK.search(line)]

    def sasl_usernames(self) -> list[str]:
        """The logins that authenticated, in log order."""
        return [
            line.split("sasl_username=", 1)[1].split(",", 1)[0].strip()
            for line in self.sasl_log_lines()
        ]
