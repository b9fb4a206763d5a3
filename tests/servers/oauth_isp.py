"""An ISP that accepts only OAuth: Dovecot POP3 and Postfix submission, XOAUTH2/OAUTHBEARER.

    with OAuthAuthServer() as auth, OAuthIsp(auth) as isp:
        isp.add_mailbox("alice@contoso.test"); isp.deliver("alice@contoso.test", raw)
        POP3S 127.0.0.1:isp.pop3s_port, POP3 + STLS isp.pop3_port      (CA: isp.ca_file)
        SMTP STARTTLS isp.submission_port, implicit TLS isp.smtps_port,
        STARTTLS with Postfix's default line_length_limit (2048) isp.submission_2048_port
        isp.wait_for_sink(n); isp.sasl_log_lines(); isp.auth_log_lines()

Stands in for outlook.office365.com / smtp.office365.com (ported from shared/oauth2-rig).
Dovecot 2.3 validates the bearer token itself (``passdb oauth2``, ``introspection_mode =
local``): an RS256 JWT from ``auth`` (issuer, signature with the public key filed under
``keys/<azp>/RS256/<kid>``, ``exp``/``nbf``, ``email`` = the SASL user name, the scope of
the protocol). One passdb per protocol: Debian 12's 2.3.19.1 (deb12u7) makes ``scope`` an
ALL-of list (oauth2.md §4 snag 1), so one passdb naming the POP and SMTP scopes would demand
both in every token. Postfix asks Dovecot with service "smtp".

Loopback counts as secure for Dovecot, so it offers AUTH before STLS here (snag 5): the
client must refuse by itself to send a token without verified TLS. Runs Dovecot and Postfix
from a temporary directory on free loopback ports (never the system services), stopped by
PID / ``postfix -c DIR stop``. Needs root.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import shutil
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from devserver.certs import make_ca_and_cert
from devserver.processes import (
    Dovecot,
    free_port,
    postfix_prepare,
    postfix_start,
    postfix_stop,
    wait_for_tcp,
)
from tests.servers.oauth_authserver import (
    DEVICE_CLIENT,
    OTHER_CLIENT,
    POP_SCOPE,
    SMTP_SCOPE,
    WEB_CLIENT,
    OAuthAuthServer,
)

SINK_DOMAIN = "outside.test"

_DOVECOT_CONF = """\
# ISP stand-in: POP3 accepting only SASL XOAUTH2/OAUTHBEARER with locally validated JWTs.
instance_name = aamail-oauth-isp-{instance}
base_dir = {base}/run/dovecot
state_dir = {base}/state/dovecot
log_path = {base}/log/dovecot.log
listen = 127.0.0.1
protocols = pop3
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
auth_mechanisms = xoauth2 oauthbearer
auth_verbose = yes
# Failures on purpose must not slow the tests (defaults: 2 s, plus the anvil penalty).
auth_failure_delay = 0
protocol pop3 {{
  passdb {{
    driver = oauth2
    mechanisms = xoauth2 oauthbearer
    args = {base}/oauth2-pop3.conf.ext
  }}
}}
protocol smtp {{
  passdb {{
    driver = oauth2
    mechanisms = xoauth2 oauthbearer
    args = {base}/oauth2-smtp.conf.ext
  }}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/mail/%Ld/%Ln
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1
first_valid_gid = 1
pop3_uidl_format = %08Xu%08Xv
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s_port}
    ssl = yes
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

# Dovecot >= 2.3.11 local validation: the key of a token is looked up as
# /shared/<azp>/<ALG>/<kid>, i.e. the file keys/<azp>/RS256/<kid> holding the PEM public key.
_OAUTH2_EXT = """\
introspection_mode = local
local_validation_key_dict = fs:posix:prefix={base}/keys/
username_attribute = email
issuers = {issuer}
scope = {scope}
openid_configuration_url = {issuer}/.well-known/openid-configuration
"""

_MAIN_CF = """\
# ISP stand-in: submission requiring TLS and SASL, SASL by the OAuth-only Dovecot.
compatibility_level = 3.6
queue_directory = {base}/spool
data_directory = {base}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = oauth-isp
maillog_file = {base}/log/postfix.log
maillog_file_prefixes = {base}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = localhost
mydomain = isp.test
mynetworks = 127.0.0.1/32
biff = no
readme_directory = no
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled
default_transport = error:5.4.4 this test ISP delivers only to {sink_domain}
virtual_mailbox_domains = {sink_domain}
virtual_mailbox_base = {base}
virtual_mailbox_maps = static:sink/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
virtual_transport = virtual
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_sasl_type = dovecot
smtpd_sasl_path = {base}/run/dovecot/auth-postfix
smtpd_sasl_authenticated_header = yes
# An Entra access token's XOAUTH2 initial response on the AUTH line is ~4 KB; smtpd reads
# command lines in pieces of line_length_limit (default 2048), which breaks the base64
# (snag 2). The port "submission_2048" keeps the default to show it.
line_length_limit = 16384
# The authenticated name must own the envelope sender, as Microsoft and Google enforce.
smtpd_sender_login_maps = regexp:{base}/sender_login
"""

_SMTPD = """\
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
"""

_MASTER_CF = (
    """\
127.0.0.1:{submission_port} inet n - n - - smtpd
  -o syslog_name=oauth-isp/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
"""
    + _SMTPD
    + """\
127.0.0.1:{smtps_port} inet n - n - - smtpd
  -o syslog_name=oauth-isp/smtps
  -o smtpd_tls_wrappermode=yes
"""
    + _SMTPD
    + """\
127.0.0.1:{submission_2048_port} inet n - n - - smtpd
  -o syslog_name=oauth-isp/submission-2048
  -o line_length_limit=2048
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
"""
    + _SMTPD
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


class OAuthIsp:
    """A private OAuth-only ISP (Dovecot POP3 + Postfix submission); see the module docstring."""

    host = "localhost"  # the name in its certificate
    ip = "127.0.0.1"

    def __init__(self, auth: OAuthAuthServer, *, smtp: bool = True) -> None:
        self.auth = auth
        self.smtp = smtp
        # Not pytest's tmp_path: that is 0700 root, and Dovecot/Postfix run as other users.
        self.base = Path(tempfile.mkdtemp(prefix="aamail-oauth-isp-"))
        self.base.chmod(0o755)
        ports = set()
        while len(ports) < 5:
            ports.add(free_port())
        (
            self.pop3_port,
            self.pop3s_port,
            self.submission_port,
            self.smtps_port,
            self.submission_2048_port,
        ) = sorted(ports)
        self.ca_file = self.base / "tls" / "ca.pem"
        self.sink = self.base / "sink"
        self.dovecot_log = self.base / "log" / "dovecot.log"
        self.postfix_log = self.base / "log" / "postfix.log"
        self._dovecot: Dovecot | None = None
        self._postfix_running = False
        self._seq = 0

    def __enter__(self) -> OAuthIsp:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configuration, start Dovecot, then Postfix; wait for every listener."""
        mail = pwd.getpwnam("mail")
        base = self.base
        for sub in ("log", "tls", "run", "state", "mail", "postfix"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("", "new", "cur", "tmp"):
            (self.sink / sub).mkdir(parents=True, exist_ok=True)
            os.chown(self.sink / sub, mail.pw_uid, mail.pw_gid)
        os.chown(base / "mail", mail.pw_uid, mail.pw_gid)
        _ca, cert, key = make_ca_and_cert(base / "tls", (self.host,), (self.ip,))
        self._file_signing_key()
        fields = dict(
            base=base,
            instance=base.name,
            cert=cert,
            key=key,
            uid=mail.pw_uid,
            gid=mail.pw_gid,
            issuer=self.auth.issuer,
            sink_domain=SINK_DOMAIN,
            pop3_port=self.pop3_port,
            pop3s_port=self.pop3s_port,
            submission_port=self.submission_port,
            smtps_port=self.smtps_port,
            submission_2048_port=self.submission_2048_port,
        )
        for name, scope in (("pop3", POP_SCOPE), ("smtp", SMTP_SCOPE)):
            (base / f"oauth2-{name}.conf.ext").write_text(_OAUTH2_EXT.format(scope=scope, **fields))
        (base / "dovecot.conf").write_text(_DOVECOT_CONF.format(**fields))
        self._dovecot = Dovecot(base / "dovecot.conf", self.dovecot_log)
        self._dovecot.start(
            [
                (self.ip, self.pop3_port),
                (self.ip, self.pop3s_port),
                base / "run" / "dovecot" / "auth-postfix",
            ]
        )
        if not self.smtp:
            return
        (base / "sender_login").write_text("/^(.*)$/ ${1}\n")
        (base / "postfix" / "main.cf").write_text(_MAIN_CF.format(**fields))
        (base / "postfix" / "master.cf").write_text(_MASTER_CF.format(**fields))
        postfix_prepare(base / "spool", base / "data")
        try:
            postfix_start(base / "postfix", self.postfix_log)
            self._postfix_running = True
            for port in (self.submission_port, self.smtps_port, self.submission_2048_port):
                wait_for_tcp(self.ip, port)
        except Exception:
            self.stop()
            raise

    def _file_signing_key(self) -> None:
        # The same public key for every client id (azp) the authorization server knows.
        for azp in (WEB_CLIENT, DEVICE_CLIENT, OTHER_CLIENT):
            directory = self.base / "keys" / azp / "RS256"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / self.auth.kid).write_bytes(self.auth.public_key_pem)
        for path in [self.base / "keys", *(self.base / "keys").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)

    def stop(self) -> None:
        """Stop Postfix and Dovecot (ours, by their config / PID), remove the directory."""
        if self._postfix_running:
            postfix_stop(self.base / "postfix")
            self._postfix_running = False
        if self._dovecot is not None:
            self._dovecot.stop()
            self._dovecot = None
        if os.environ.get("AAMAIL_KEEP_SERVER_DIRS") != "1":
            shutil.rmtree(self.base, ignore_errors=True)

    # --- mailboxes --------------------------------------------------------------------------

    def maildir(self, address: str) -> Path:
        """The Maildir Dovecot serves for `address` (created, owned by mail)."""
        local, _, domain = address.lower().partition("@")
        mail = pwd.getpwnam("mail")
        home = self.base / "mail" / domain / local
        maildir = home / "Maildir"
        for path in (home.parent, home, maildir, *(maildir / s for s in ("new", "cur", "tmp"))):
            if not path.exists():
                path.mkdir(mode=0o700)
                os.chown(path, mail.pw_uid, mail.pw_gid)
        return maildir

    def deliver(self, address: str, raw: bytes) -> str:
        """Drop a message into the mailbox; return its file name."""
        self._seq += 1
        name = f"{1_600_000_000 + self._seq}.M{self._seq}P{os.getpid()}.oauth-isp"
        maildir = self.maildir(address)
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        mail = pwd.getpwnam("mail")
        os.chown(tmp, mail.pw_uid, mail.pw_gid)
        tmp.rename(maildir / "new" / name)
        return name

    # --- what the ISP saw -------------------------------------------------------------------

    def sink_files(self) -> list[Path]:
        return sorted(p for sub in ("new", "cur") for p in (self.sink / sub).iterdir())

    def received(self) -> list[EmailMessage]:
        """Messages the ISP's Postfix delivered into its sink, oldest first."""
        files = sorted(self.sink_files(), key=lambda p: (p.stat().st_mtime, p.name))
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files
        ]

    def wait_for_sink(self, count: int, timeout: float = 15.0) -> list[EmailMessage]:
        """Wait until at least `count` messages are in the sink; return them."""
        deadline = time.monotonic() + timeout
        while len(self.sink_files()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the ISP sink holds {len(self.sink_files())} of {count} messages; "
                    f"log: {self.postfix_log}"
                )
            time.sleep(0.05)
        return self.received()

    @staticmethod
    def _lines(path: Path) -> list[str]:
        try:
            return path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def auth_log_lines(self) -> list[str]:
        """Dovecot's log: with auth_verbose, why each token was refused."""
        return self._lines(self.dovecot_log)

    def postfix_log_lines(self) -> list[str]:
        return self._lines(self.postfix_log)

    def sasl_log_lines(self) -> list[str]:
        """Postfix lines of accepted logins: "client=…, sasl_method=…, sasl_username=…"."""
        return [
            line
            for line in self.postfix_log_lines()
            if ", sasl_method=" in line and ": client=" in line
        ]
