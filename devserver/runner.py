"""The office box as private processes: mailmap + Dovecot + Postfix from one MailConfig.

Used by `manage.py mailserver` (trying it out), the integration tests and the benchmark.
Needs root (Postfix and Dovecot drop privileges themselves) and the Debian packages.
Start order: mailmap (Postfix asks it everything), Dovecot (LMTP and SASL sockets), Postfix.
"""

from __future__ import annotations

import grp
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from mailservice import config as mailconfig
from mailservice.mapserver import BackgroundMapServer

from .processes import (
    Dovecot,
    free_port,
    postfix_flush,
    postfix_prepare,
    postfix_queue_is_empty,
    postfix_start,
    postfix_stop,
    wait_for_tcp,
)

log = logging.getLogger(__name__)


class OfficeMailServer:
    """Private office Postfix + Dovecot (+ the lookup server in this process)."""

    def __init__(self, config: mailconfig.MailConfig, *, with_mailmap: bool = True) -> None:
        self.config = config
        self.mapserver = (
            BackgroundMapServer(
                Path(config.mailmap_socket),
                local_transport=config.local_transport,
                token_path=Path(config.oauth_token_socket),
            )
            if with_mailmap
            else None
        )
        self.dovecot = Dovecot(config.dovecot_conf, Path(config.dovecot_log))
        self._postfix_running = False

    def prepare(self) -> None:
        """Directories with the owners the daemons insist on, and the rendered files."""
        c = self.config
        for path in (c.config_dir, c.run_dir, c.dovecot_state_dir):
            Path(path).mkdir(parents=True, exist_ok=True)
            Path(path).chmod(0o755)
        for log_file in (c.dovecot_log, c.postfix_log):
            if log_file and not log_file.startswith("/dev/"):
                Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        mail_root = Path(c.mail_root)
        mail_root.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            os.chown(mail_root, c.mail_uid, c.mail_gid)
        postfix_prepare(Path(c.postfix_queue_dir), Path(c.postfix_data_dir))
        if c.sql_driver == "sqlite" and os.getuid() == 0:
            _readable_by_dovecot(Path(c.sql_connect))
        mailconfig.write(c)

    def start(self) -> OfficeMailServer:
        self.prepare()
        if self.mapserver is not None:
            self.mapserver.start()
        try:
            self.start_dovecot()
            self.start_postfix()
        except Exception:
            self.stop()
            raise
        return self

    def start_dovecot(self) -> None:
        c = self.config
        self.dovecot.start([c.lmtp_socket, c.auth_socket, ("127.0.0.1", c.ports.imap)])

    def start_postfix(self) -> None:
        c = self.config
        postfix_start(c.postfix_dir, Path(c.postfix_log) if c.postfix_log else None)
        self._postfix_running = True
        wait_for_tcp(c.listen or "127.0.0.1", c.ports.submission)

    def stop(self) -> None:
        if self._postfix_running:
            postfix_stop(self.config.postfix_dir)
            self._postfix_running = False
        self.dovecot.stop()
        if self.mapserver is not None:
            self.mapserver.stop()

    def __enter__(self) -> OfficeMailServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- helpers for tests and operators -----------------------------------------------

    def flush_queue(self) -> None:
        postfix_flush(self.config.postfix_dir)

    def queue_is_empty(self) -> bool:
        return postfix_queue_is_empty(self.config.postfix_dir)

    def doveadm(self, *args: str) -> subprocess.CompletedProcess:
        return self.dovecot.doveadm(*args)

    def postfix_log_lines(self) -> list[str]:
        try:
            return Path(self.config.postfix_log).read_text(errors="replace").splitlines()
        except (FileNotFoundError, TypeError):
            return []


def _readable_by_dovecot(database: Path) -> None:
    """Let Dovecot's auth worker read the SQLite file as its group (it is created 0600)."""
    try:
        gid = grp.getgrnam("dovecot").gr_gid
    except KeyError:
        return
    if database.is_file():
        os.chown(database, -1, gid)
        database.chmod(0o640)


def private_office_config(
    base: Path, *, cert: Path, key: Path, relay_ca_file: Path, **overrides: object
) -> mailconfig.MailConfig:
    """An office box under `base` on free loopback ports, mail owned by Debian's `mail`
    (8:8): the tests' and the benchmark's box, one recipe for both."""
    ports = mailconfig.Ports(*(free_port() for _ in range(7)))
    values = {
        "ports": ports,
        "config_dir": str(base / "etc"),
        "run_dir": str(base / "run"),
        "hostname": "localhost",
        "tls_cert": str(cert),
        "tls_key": str(key),
        "relay_ca_file": str(relay_ca_file),
        "mail_root": str(base / "mail"),
        "mail_uid": 8,
        "mail_gid": 8,
        **overrides,
    }
    return mailconfig.MailConfig.private(base, **values)
