"""Where the pieces of the office mail service meet: one answer for each shared place.

Postfix asks the lookup server on a socket, delivers to Dovecot's LMTP socket and checks
passwords on Dovecot's auth socket; the web console finds Dovecot's configuration to flush
its auth cache; employees' mail programs use the host name and ports. `manage.py mailconfig`,
`mailmap`, `mailserver`, the self-service page and docker-compose.yml all ask this module (or
the settings it reads), so none of them can keep a default of its own (design.md: the lookup
socket once had two defaults, and every submission got 451 until it was set by hand).

The Maildirs and their owner are the accounts app's (accounts/mailbox.py): the fetcher and
Dovecot's configuration ask there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class Ports:
    """The ports Postfix and Dovecot listen on (settings MAIL_*_PORT)."""

    smtp: int = 25
    submission: int = 587
    submissions: int = 465
    imap: int = 143
    imaps: int = 993
    pop3: int = 110
    pop3s: int = 995

    @classmethod
    def from_settings(cls) -> Ports:
        """The configured ports: what Postfix/Dovecot listen on and what /me/ shows."""
        return cls(
            smtp=settings.MAIL_SMTP_PORT,
            submission=settings.MAIL_SUBMISSION_PORT,
            submissions=settings.MAIL_SUBMISSIONS_PORT,
            imap=settings.MAIL_IMAP_PORT,
            imaps=settings.MAIL_IMAPS_PORT,
            pop3=settings.MAIL_POP3_PORT,
            pop3s=settings.MAIL_POP3S_PORT,
        )


def hostname() -> str:
    """MAIL_HOSTNAME: Postfix's myhostname, Dovecot's hostname, what employees type in."""
    return settings.MAIL_HOSTNAME


def run_dir() -> Path:
    """MAIL_RUN_DIR: the sockets (lookup server, Dovecot's LMTP and auth)."""
    return Path(settings.MAIL_RUN_DIR)


def mailmap_socket(run: str | Path | None = None) -> Path:
    """MAILMAP_SOCKET, else MAIL_RUN_DIR/mailmap/mailmap.sock: where mailmap listens and
    Postfix asks."""
    if settings.MAILMAP_SOCKET:
        return Path(settings.MAILMAP_SOCKET)
    return Path(run or run_dir()) / "mailmap" / "mailmap.sock"


def oauth_token_socket(run: str | Path | None = None) -> Path:
    """MAIL_OAUTH_TOKEN_SOCKET, else MAIL_RUN_DIR/oauth-token/token.sock: where the lookup
    server hands access tokens to the isp_oauth pipe's submitter (issue 15)."""
    if settings.MAIL_OAUTH_TOKEN_SOCKET:
        return Path(settings.MAIL_OAUTH_TOKEN_SOCKET)
    return Path(run or run_dir()) / "oauth-token" / "token.sock"


def oauth_submitter(config: str | Path | None = None) -> Path:
    """The submitter's copy Postfix's pipe runs: MAIL_CONFIG_DIR/postfix/oauth-submit.py
    (readable by the relay user, unlike a checkout under a private home)."""
    return Path(config or config_dir()) / "postfix" / OAUTH_SUBMITTER_NAME


OAUTH_SUBMITTER_NAME = "oauth-submit.py"


def dovecot_base_dir(run: str | Path | None = None) -> Path:
    """Dovecot's base_dir, where it puts the LMTP and auth sockets Postfix uses."""
    return Path(run or run_dir()) / "dovecot"


def lmtp_socket(run: str | Path | None = None) -> Path:
    return dovecot_base_dir(run) / "lmtp"


def auth_socket(run: str | Path | None = None) -> Path:
    return dovecot_base_dir(run) / "auth-postfix"


def local_transport(run: str | Path | None = None) -> str:
    """The Postfix transport that delivers into an office mailbox (Dovecot LMTP)."""
    return f"lmtp:unix:{lmtp_socket(run)}"


def config_dir() -> Path:
    """MAIL_CONFIG_DIR: where `mailconfig` and `mailserver` write Dovecot's and Postfix's files."""
    return Path(settings.MAIL_CONFIG_DIR)


def dovecot_conf(config: str | Path | None = None) -> Path:
    return Path(config or config_dir()) / "dovecot" / "dovecot.conf"


def installed_dovecot_conf() -> str:
    """The dovecot.conf `doveadm` should use on this machine, or "" when there is none.

    MAIL_DOVECOT_CONFIG when set, else the one `mailconfig`/`mailserver` wrote into
    MAIL_CONFIG_DIR, if it is there.
    """
    if settings.MAIL_DOVECOT_CONFIG:
        return settings.MAIL_DOVECOT_CONFIG
    path = dovecot_conf()
    return str(path) if path.is_file() else ""


# --- outgoing mail visible (issue 12) ----------------------------------------------------

# Postfix's copies of bounces go to this address (main.cf bounce_notice_recipient), which the
# transport map sends to a Maildir of its own: MAIL_ROOT/.relay-notices/. ".invalid" can never
# be a hosted domain, and a directory name starting with "." can never be a domain's.
RELAY_NOTICES_ADDRESS = "relay-notices@aamail.invalid"
RELAY_NOTICES_DIR = ".relay-notices"


def relay_notices_maildir(mail_root: str | Path | None = None) -> Path:
    """The Maildir Postfix delivers its bounce copies into (read by `manage.py relaywatch`)."""
    return Path(mail_root or settings.MAIL_ROOT) / RELAY_NOTICES_DIR


def postfix_config_dir(config: str | Path | None = None) -> Path:
    """Where Postfix's main.cf is: what `postqueue -c` is given."""
    return Path(config or config_dir()) / "postfix"
