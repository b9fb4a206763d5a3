"""Configuration rendered from settings, checked by Dovecot's and Postfix's own parsers."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management import CommandError, call_command

from mailservice import config as mailconfig


@pytest.fixture
def production_settings(settings, tmp_path):
    settings.MAIL_HOSTNAME = "mail.example.com"
    settings.MAIL_TLS_CERT_FILE = "/etc/ssl/aamail/fullchain.pem"
    settings.MAIL_TLS_KEY_FILE = "/etc/ssl/aamail/privkey.pem"
    settings.MAIL_ROOT = "/var/mail/aamail"
    settings.MAIL_UID = 8
    settings.MAIL_GID = 8
    settings.MAIL_DOVECOT_DATABASE_URL = "postgres://dovecot_ro:s3cret'x@db:5432/aamail"
    settings.MAIL_RUN_DIR = "/run/aamail"
    return settings


def test_it_renders_the_four_files_from_settings(production_settings, tmp_path):
    call_command("mailconfig", "--out", str(tmp_path))
    main_cf = (tmp_path / "postfix" / "main.cf").read_text()
    master_cf = (tmp_path / "postfix" / "master.cf").read_text()
    dovecot = (tmp_path / "dovecot" / "dovecot.conf").read_text()
    sql = (tmp_path / "dovecot" / "dovecot-sql.conf.ext").read_text()

    assert "myhostname = mail.example.com" in main_cf
    assert "default_transport = error:5.7.1" in main_cf
    assert "smtp_tls_CAfile = /etc/ssl/certs/ca-certificates.crt" in main_cf
    assert "virtual_transport = lmtp:unix:/run/aamail/dovecot/lmtp" in main_cf
    assert "mailmap = socketmap:unix:/run/aamail/mailmap/mailmap.sock" in main_cf
    assert (
        "transport_maps = inline:{relay-notices@aamail.invalid=aamail_notices:}, "
        "${mailmap}:transport" in main_cf
    )
    # Bounces are copied to a Maildir the relay watch reads (issue 12).
    assert "bounce_notice_recipient = relay-notices@aamail.invalid" in main_cf
    assert "-o virtual_mailbox_base=/var/mail/aamail" in master_cf
    assert "smtpd_sender_restrictions = check_sender_access ${mailmap}:outside_sender" in main_cf
    assert master_cf.count("-o max_use=1") == 3  # every smtpd: no stale 451 after an outage
    assert "quota = maildir:User quota" in dovecot
    assert "lmtp_rcpt_check_quota = yes" in dovecot
    assert "'*:storage=' || quota_mb || 'M'" in sql
    assert "\n587 inet n - n - - smtpd\n" in master_cf
    assert "\n465 inet n - n - - smtpd\n" in master_cf
    assert "\n25 inet n - n - - smtpd\n" in master_cf
    assert "smtp_tls_security_level=secure" in master_cf
    assert "mail_location = maildir:/var/mail/aamail/%Ld/%Ln" in dovecot
    assert "ssl = required" in dovecot
    assert "auth_failure_delay = 0" not in dovecot  # production keeps the penalty
    assert "driver = pgsql" in sql
    assert r"password='s3cret\'x'" in sql
    assert (tmp_path / "dovecot" / "dovecot-sql.conf.ext").stat().st_mode & 0o777 == 0o640


def test_it_passes_postfixs_own_check(production_settings, tmp_path):
    call_command("mailconfig", "--out", str(tmp_path))
    result = subprocess.run(
        ["postconf", "-c", str(tmp_path / "postfix"), "-n"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    result = subprocess.run(
        ["postconf", "-c", str(tmp_path / "postfix"), "-M"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "isp_smtps" in result.stdout


def test_it_passes_dovecots_own_check(production_settings, tmp_path, office_tls):
    _ca, cert, key = office_tls
    production_settings.MAIL_TLS_CERT_FILE = str(cert)
    production_settings.MAIL_TLS_KEY_FILE = str(key)
    call_command("mailconfig", "--out", str(tmp_path))
    result = subprocess.run(
        ["doveconf", "-c", str(tmp_path / "dovecot" / "dovecot.conf"), "-n"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "mail_uid = 8" in result.stdout


def test_it_refuses_settings_that_cannot_work(production_settings, tmp_path):
    production_settings.MAIL_TLS_CERT_FILE = ""
    with pytest.raises(CommandError, match="MAIL_TLS_CERT_FILE"):
        call_command("mailconfig", "--out", str(tmp_path))
    production_settings.MAIL_TLS_CERT_FILE = "/etc/ssl/a b.pem"
    with pytest.raises(CommandError, match="absolute path"):
        call_command("mailconfig", "--out", str(tmp_path))
    production_settings.MAIL_TLS_CERT_FILE = "/etc/ssl/cert.pem"
    production_settings.MAIL_UID = 0
    with pytest.raises(CommandError, match="root"):
        call_command("mailconfig", "--out", str(tmp_path))


def test_it_refuses_an_in_memory_sqlite_database(settings):
    settings.MAIL_DOVECOT_DATABASE_URL = "sqlite://:memory:"
    with pytest.raises(mailconfig.ConfigError, match="in-memory"):
        mailconfig.dovecot_database()


def test_it_points_dovecot_at_a_sqlite_file(settings):
    settings.MAIL_DOVECOT_DATABASE_URL = "sqlite:////var/lib/aamail/aamail.sqlite3"
    assert mailconfig.dovecot_database() == {
        "sql_driver": "sqlite",
        "sql_connect": "/var/lib/aamail/aamail.sqlite3",
    }


def test_postfix_asks_the_socket_mailmap_listens_on_by_default(production_settings, tmp_path):
    # One source of truth (issue 10, item 1): no MAILMAP_SOCKET set anywhere.
    from mailservice import layout
    from mailservice.mapserver import socket_path

    production_settings.MAILMAP_SOCKET = None
    production_settings.MAIL_RUN_DIR = tmp_path / "run"
    call_command("mailconfig", "--out", str(tmp_path / "etc"))
    main_cf = (tmp_path / "etc" / "postfix" / "main.cf").read_text()
    assert f"mailmap = socketmap:unix:{socket_path()}\n" in main_cf
    assert socket_path() == tmp_path / "run" / "mailmap" / "mailmap.sock"
    dovecot = (tmp_path / "etc" / "dovecot" / "dovecot.conf").read_text()
    assert f"base_dir = {layout.dovecot_base_dir()}\n" in dovecot
    assert f"virtual_transport = {layout.local_transport()}\n" in main_cf


def test_it_writes_into_mail_config_dir_where_the_console_finds_dovecot(
    production_settings, tmp_path
):
    from mailservice import layout

    production_settings.MAIL_CONFIG_DIR = tmp_path / "mail-config"
    production_settings.MAIL_DOVECOT_CONFIG = ""
    assert layout.installed_dovecot_conf() == ""  # nothing rendered yet: nothing to flush
    call_command("mailconfig")
    assert layout.installed_dovecot_conf() == str(tmp_path / "mail-config/dovecot/dovecot.conf")
