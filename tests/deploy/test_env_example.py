"""`.env.example` lists what docker-compose.yml asks for, and compose shares one place each."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))


def test_it_lists_every_value_compose_takes_from_env():
    compose = (ROOT / "docker-compose.yml").read_text()
    wanted = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", compose))
    assert wanted, "the compose file takes nothing from .env?"
    assert wanted <= _example_names(), wanted - _example_names()


def test_it_names_each_shared_place_once_in_compose():
    compose = (ROOT / "docker-compose.yml").read_text()
    for setting in ("MAIL_ROOT", "MAIL_RUN_DIR", "MAIL_CONFIG_DIR", "MAIL_UID", "MAIL_GID"):
        assert len(re.findall(rf"^\s+{setting}:", compose, re.MULTILINE)) == 1, setting
    # The volumes mount exactly where those settings point.
    assert "mailrun:/run/aamail" in compose
    assert "MAIL_RUN_DIR: /run/aamail" in compose
    assert "mailconf:/etc/aamail/mail" in compose
    assert "MAIL_CONFIG_DIR: /etc/aamail/mail" in compose
    assert "maildirs:/var/mail/aamail" in compose
    assert "MAIL_ROOT: /var/mail/aamail" in compose


def test_it_marks_every_compose_only_value():
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name in ("DOVECOT_DB_PASSWORD", "DOVEADM_API_KEY", "AAMAIL_ADMIN_PASSWORD"):
        index = next(i for i, line in enumerate(lines) if re.match(rf"^(# )?{name}=", line))
        comment = " ".join(lines[max(0, index - 4) : index])
        assert "compose:" in comment, name
