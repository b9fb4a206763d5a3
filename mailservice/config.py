"""Dovecot 2.3 and Postfix 3.7 configuration rendered from the product's settings.

`MailConfig.from_settings()` gathers every value (hostnames, ports, certificates, MAIL_ROOT,
socket paths, database); `render()` turns it into the four files of mail-service.md §3.3;
`write()` puts them under one directory:

    DIR/dovecot/dovecot.conf   DIR/dovecot/dovecot-sql.conf.ext
    DIR/postfix/main.cf        DIR/postfix/master.cf

Every place shared with another process (Maildirs and their owner, sockets, configuration
directory, ports) comes from accounts/mailbox.py and layout.py, the one source of truth the
fetcher, `mailmap` and the self-service page read too. `MailConfig.private()` (used by
`manage.py mailserver`, the tests and the benchmark) only moves the daemons' own state
(queue, data, logs) under one directory and listens on 127.0.0.1.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from django.template import Context, Engine

from accounts.mailbox import MailOwnerError, mail_owner
from mapping.oauth import submit

from . import layout
from .layout import Ports

__all__ = ["ConfigError", "MailConfig", "Ports", "render", "write"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "mailservice"
SUBMITTER = Path(submit.__file__)  # mapping/oauth/submit.py, the isp_oauth pipe's program
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
SYSTEM_CA_PATH = "/etc/ssl/certs"
DH_FILE = "/usr/share/dovecot/dh.pem"

# Values end up inside Postfix/Dovecot configuration lines and SQL strings.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
_SAFE_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


# What a sender reads when a colleague's mailbox is full (LMTP 552 5.2.2, then the bounce).
QUOTA_MESSAGE = (
    "The recipient's mailbox is full (its quota is used up). Ask them to delete some mail, "
    "or their administrator to raise the quota, then send again."
)


class ConfigError(Exception):
    """A setting cannot be turned into a working configuration; the text says which."""


@dataclass(frozen=True)
class MailConfig:
    hostname: str
    listen: str  # an IPv4 address, or "" for every interface
    ports: Ports
    tls_cert: str
    tls_key: str
    relay_ca_file: str
    mail_root: str
    mail_uid: int
    mail_gid: int
    config_dir: str  # where the rendered files will live (paths inside them point there)
    run_dir: str  # Dovecot's base_dir (LMTP and auth sockets) and the mailmap socket
    mailmap_socket: str
    dovecot_state_dir: str
    dovecot_log: str
    postfix_queue_dir: str
    postfix_data_dir: str
    postfix_log: str  # "" = syslog; "/dev/stdout" in a container
    sql_driver: str
    sql_connect: str
    instance: str = "aamail"
    auth_penalty: bool = True
    auth_cache_ttl: str = "5 min"
    auth_worker_limit: int = 4
    message_size_limit: int = 52_428_800
    doveadm_api_key: str = ""  # enables doveadm's HTTP API (auth cache flush from the web)
    doveadm_http_port: int = 8080
    # Issue 15: the isp_oauth pipe transports (senders who sign in with Microsoft / Google).
    oauth_token_socket: str = ""
    oauth_relay_user: str = "aamail-relay"
    oauth_submit_python: str = "/usr/bin/python3"

    # --- construction ------------------------------------------------------------------

    @classmethod
    def from_settings(cls, config_dir: str | Path | None = None, **overrides: Any) -> MailConfig:
        """Every value from settings (names in docs/mail-service.md); `overrides` win."""
        try:
            uid, gid = mail_owner()
        except MailOwnerError as exc:
            raise ConfigError(str(exc)) from None
        run_dir = str(overrides.pop("run_dir", None) or layout.run_dir())
        values = dict(
            hostname=layout.hostname(),
            listen=settings.MAIL_LISTEN_ADDRESS,
            ports=Ports.from_settings(),
            tls_cert=str(settings.MAIL_TLS_CERT_FILE),
            tls_key=str(settings.MAIL_TLS_KEY_FILE),
            relay_ca_file=str(
                settings.MAIL_RELAY_CA_FILE or settings.ISP_CA_FILE or SYSTEM_CA_FILE
            ),
            mail_root=str(settings.MAIL_ROOT),
            mail_uid=uid,
            mail_gid=gid,
            config_dir=str(config_dir or layout.config_dir()),
            run_dir=run_dir,
            mailmap_socket=str(layout.mailmap_socket(run_dir)),
            dovecot_state_dir=settings.MAIL_DOVECOT_STATE_DIR,
            dovecot_log=settings.MAIL_DOVECOT_LOG,
            postfix_queue_dir=settings.MAIL_POSTFIX_QUEUE_DIR,
            postfix_data_dir=settings.MAIL_POSTFIX_DATA_DIR,
            postfix_log=settings.MAIL_POSTFIX_LOG,
            auth_cache_ttl=settings.MAIL_AUTH_CACHE_TTL,
            auth_worker_limit=settings.MAIL_AUTH_WORKER_LIMIT,
            message_size_limit=settings.MAIL_MESSAGE_SIZE_LIMIT,
            doveadm_api_key=settings.DOVEADM_API_KEY,
            doveadm_http_port=settings.DOVEADM_HTTP_PORT,
            oauth_token_socket=str(layout.oauth_token_socket(run_dir)),
            oauth_relay_user=settings.MAIL_OAUTH_RELAY_USER,
            oauth_submit_python=settings.MAIL_OAUTH_SUBMIT_PYTHON,
        )
        if "sql_driver" not in overrides:
            values.update(dovecot_database())
        values.update(overrides)
        return cls(**values)

    @classmethod
    def private(cls, base_dir: str | Path, **overrides: Any) -> MailConfig:
        """A private instance on 127.0.0.1: the daemons' own state under `base_dir`.

        Queue, data, state and log files go under `base_dir`, so it never touches the
        system's Postfix or Dovecot. Everything shared with other processes (Maildirs,
        sockets, configuration directory, ports, host name) still comes from settings,
        unless the caller overrides it (the tests run several side by side).
        """
        base = Path(base_dir)
        values = dict(
            listen="127.0.0.1",
            dovecot_state_dir=str(base / "state" / "dovecot"),
            dovecot_log=str(base / "log" / "dovecot.log"),
            postfix_queue_dir=str(base / "spool"),
            postfix_data_dir=str(base / "data"),
            postfix_log=str(base / "log" / "postfix.log"),
            instance=f"aamail-{base.name}",
        )
        values.update(overrides)
        return cls.from_settings(**values)

    def with_(self, **changes: Any) -> MailConfig:
        return replace(self, **changes)

    # --- derived paths -----------------------------------------------------------------

    @property
    def dovecot_conf(self) -> Path:
        return layout.dovecot_conf(self.config_dir)

    @property
    def dovecot_sql_conf(self) -> Path:
        return Path(self.config_dir) / "dovecot" / "dovecot-sql.conf.ext"

    @property
    def postfix_dir(self) -> Path:
        return Path(self.config_dir) / "postfix"

    @property
    def dovecot_base_dir(self) -> Path:
        return layout.dovecot_base_dir(self.run_dir)

    @property
    def lmtp_socket(self) -> Path:
        return layout.lmtp_socket(self.run_dir)

    @property
    def auth_socket(self) -> Path:
        return layout.auth_socket(self.run_dir)

    @property
    def local_transport(self) -> str:
        """What mailmap's `transport` map answers for an office mailbox."""
        return layout.local_transport(self.run_dir)

    @property
    def oauth_submitter(self) -> Path:
        """Where `write()` puts the submitter the isp_oauth pipe runs."""
        return layout.oauth_submitter(self.config_dir)

    @property
    def is_private(self) -> bool:
        return self.listen.startswith("127.")

    def validate(self) -> None:
        if not self.tls_cert or not self.tls_key:
            raise ConfigError(
                "MAIL_TLS_CERT_FILE and MAIL_TLS_KEY_FILE must name the box's certificate "
                "and key: submission, IMAP and POP3 run only over TLS."
            )
        for label, value in [
            ("MAIL_ROOT", self.mail_root),
            ("MAIL_TLS_CERT_FILE", self.tls_cert),
            ("MAIL_TLS_KEY_FILE", self.tls_key),
            ("MAIL_RELAY_CA_FILE", self.relay_ca_file),
            ("MAIL_RUN_DIR", self.run_dir),
            ("MAILMAP_SOCKET", self.mailmap_socket),
            ("MAIL_CONFIG_DIR", self.config_dir),
            ("MAIL_OAUTH_TOKEN_SOCKET", self.oauth_token_socket),
            ("MAIL_OAUTH_SUBMIT_PYTHON", self.oauth_submit_python),
        ]:
            if not _SAFE_PATH.match(value):
                raise ConfigError(
                    f"{label} = {value!r}: use an absolute path of letters, digits and . _ - + /"
                )
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", self.oauth_relay_user) or (
            self.oauth_relay_user in ("root", "postfix")
        ):
            # pipe(8) refuses root and the mail_owner; the name goes into master.cf.
            raise ConfigError(
                f"MAIL_OAUTH_RELAY_USER = {self.oauth_relay_user!r}: name an unprivileged "
                "user of its own (not root, not postfix), e.g. aamail-relay."
            )
        if not _SAFE_HOST.match(self.hostname):
            raise ConfigError(f"MAIL_HOSTNAME = {self.hostname!r} is not a host name.")
        if self.listen and not re.match(r"^\d{1,3}(\.\d{1,3}){3}$", self.listen):
            raise ConfigError(f"MAIL_LISTEN_ADDRESS = {self.listen!r} is not an IPv4 address.")
        # A unix socket path longer than sun_path (108 bytes) cannot be bound or reached.
        for label, path in [
            ("MAILMAP_SOCKET", self.mailmap_socket),
            ("MAIL_RUN_DIR", str(self.auth_socket)),
            ("MAIL_OAUTH_TOKEN_SOCKET", self.oauth_token_socket),
        ]:
            if len(path.encode()) > 100:
                raise ConfigError(
                    f"{label}: {path} is too long for a unix socket; use a shorter path."
                )


def _conninfo_value(value: object) -> str:
    # libpq connection strings: quote with '…' and escape \ and '.
    text = str(value)
    if text and re.match(r"^[A-Za-z0-9._/-]+$", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dovecot_database() -> dict[str, str]:
    """Dovecot's `driver` and `connect` for the database the view lives in.

    MAIL_DOVECOT_DATABASE_URL (a read-only role with SELECT on mail_dovecot_user only) if
    set, else the product's own connection.
    """
    url = settings.MAIL_DOVECOT_DATABASE_URL
    if url:
        import environ

        db = environ.Env.db_url_config(url)
    else:
        db = connections["default"].settings_dict
    engine = db["ENGINE"]
    if engine.endswith("sqlite3"):
        name = str(db["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise ConfigError(
                "Dovecot cannot read an in-memory SQLite database: use a file or PostgreSQL."
            )
        # A SQLite path is read by Dovecot's auth-worker (user dovecot): see the docs.
        return {"sql_driver": "sqlite", "sql_connect": name}
    if "postgresql" in engine:
        parts = {
            "host": db.get("HOST") or "127.0.0.1",
            "port": db.get("PORT") or "5432",
            "dbname": db["NAME"],
            "user": db.get("USER") or "",
            "password": db.get("PASSWORD") or "",
        }
        connect = " ".join(f"{k}={_conninfo_value(v)}" for k, v in parts.items() if v)
        return {"sql_driver": "pgsql", "sql_connect": connect}
    raise ConfigError(f"Dovecot cannot read a {engine} database (SQLite or PostgreSQL only).")


_engine = Engine(dirs=[str(TEMPLATE_DIR)], autoescape=False)

FILES = {
    "dovecot/dovecot.conf": "dovecot.conf",
    "dovecot/dovecot-sql.conf.ext": "dovecot-sql.conf.ext",
    "postfix/main.cf": "main.cf",
    "postfix/master.cf": "master.cf",
}


def render(config: MailConfig) -> dict[str, str]:
    """{relative path: file text} for the four configuration files."""
    config.validate()
    listen_prefix = f"{config.listen}:" if config.listen else ""
    context = Context(
        {
            "c": config,
            "p": config.ports,
            "listen_prefix": listen_prefix,
            "dovecot_listen": config.listen or "*",
            "inet_interfaces": config.listen or "all",
            "relay_ca_path": SYSTEM_CA_PATH,
            "dh_file": DH_FILE,
            "log_prefixes": _log_prefixes(config),
            "quota_message": QUOTA_MESSAGE,
            "relay_notices_address": layout.RELAY_NOTICES_ADDRESS,
            "relay_notices_dir": layout.RELAY_NOTICES_DIR,
            "oauth_submitter": config.oauth_submitter,
        },
        autoescape=False,  # configuration files, not HTML
    )
    return {path: _engine.get_template(name).render(context) for path, name in FILES.items()}


def _log_prefixes(config: MailConfig) -> str:
    # maillog_file must start with one of these (its default does not allow /tmp or /dev).
    return config.postfix_log


def write(config: MailConfig, out_dir: str | Path | None = None) -> list[Path]:
    """Render and write the files under `out_dir` (default: config.config_dir)."""
    out = Path(out_dir or config.config_dir)
    written = []
    for relative, text in render(config).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        # The SQL file may hold the read-only role's password: root and dovecot only.
        path.chmod(0o640 if relative.endswith("sql.conf.ext") else 0o644)
        if relative.endswith("sql.conf.ext"):
            _chgrp(path, "dovecot")
        written.append(path)
    written.append(_write_submitter(out / "postfix"))
    return written


def _write_submitter(directory: Path) -> Path:
    # A copy where pipe(8)'s unprivileged user can read it: the checkout may live under a
    # private home (oauth2.md §4 snag 7). Standard library only, so no virtualenv needed.
    path = directory / layout.OAUTH_SUBMITTER_NAME
    shutil.copyfile(SUBMITTER, path)
    path.chmod(0o755)
    return path


def _chgrp(path: Path, group: str) -> None:
    try:
        if os.getuid() == 0:
            os.chown(path, 0, grp.getgrnam(group).gr_gid)
    except KeyError:
        pass
