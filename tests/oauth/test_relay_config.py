"""What `manage.py mailconfig` writes for the relay of senders who sign in (isp_oauth)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from mailservice import config as mailconfig
from mapping.oauth import submit


@pytest.fixture
def production_settings(settings):
    settings.MAIL_HOSTNAME = "mail.example.com"
    settings.MAIL_TLS_CERT_FILE = "/etc/ssl/aamail/fullchain.pem"
    settings.MAIL_TLS_KEY_FILE = "/etc/ssl/aamail/privkey.pem"
    settings.MAIL_ROOT = "/var/mail/aamail"
    settings.MAIL_RUN_DIR = "/run/aamail"
    settings.MAIL_CONFIG_DIR = "/etc/aamail/mail"
    settings.MAIL_DOVECOT_DATABASE_URL = "postgres://dovecot_ro:x@db:5432/aamail"
    return settings


def test_it_renders_the_pipe_transports_and_copies_the_submitter(production_settings, tmp_path):
    call_command("mailconfig", "--out", str(tmp_path))
    master_cf = (tmp_path / "postfix" / "master.cf").read_text()
    main_cf = (tmp_path / "postfix" / "main.cf").read_text()
    for name, security in (("isp_oauth", "starttls"), ("isp_oauth_smtps", "ssl")):
        entry = master_cf.split(f"\n{name} unix", 1)[1].split("\n# ", 1)[0]
        assert " pipe\n" in entry
        submitter = tmp_path / "postfix" / "oauth-submit.py"  # where --out wrote the files
        assert f"user=aamail-relay argv=/usr/bin/python3 {submitter}" in entry
        assert "--map=unix:/run/aamail/oauth-token/token.sock" in entry
        assert f"--security={security}" in entry
        # An address starting with "-" stays an address, never an option.
        assert "--sender=${sender} -- ${recipient}" in entry
        assert f"{name}_destination_recipient_limit = 1" in main_cf
    copy = tmp_path / "postfix" / "oauth-submit.py"
    assert copy.read_bytes() == Path(submit.__file__).read_bytes()
    assert copy.stat().st_mode & 0o777 == 0o755
    checked = subprocess.run(
        ["postconf", "-c", str(tmp_path / "postfix"), "-M", "isp_oauth/unix"],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert "pipe" in checked.stdout, checked.stderr


@pytest.mark.parametrize("user", ["root", "postfix", "bad user"])
def test_it_refuses_a_relay_user_pipe_would_refuse_or_that_breaks_master_cf(
    production_settings, user
):
    production_settings.MAIL_OAUTH_RELAY_USER = user
    with pytest.raises(mailconfig.ConfigError, match="MAIL_OAUTH_RELAY_USER"):
        mailconfig.render(mailconfig.MailConfig.from_settings())
