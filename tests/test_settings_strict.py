"""Settings come from the environment strictly: NAME_FILE secrets, booleans that refuse typos,
and a deploy check that refuses keys generated for the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from aamail.env import StrictEnv


def settings_in_a_child(tmp_path, **env) -> subprocess.CompletedProcess:
    """Import the settings in a fresh process with this environment (nothing from .env)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY"))}
    code = "import aamail.settings as s; print(s.DEBUG, s.SECRET_KEY[:12])"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**clean, "VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("Yes", True), ("ON", True), ("1", True), ("false", False), ("off", False)],
)
def test_it_reads_the_booleans_people_write(monkeypatch, raw, value):
    monkeypatch.setenv("AAMAIL_TEST_FLAG", raw)
    assert StrictEnv().bool("AAMAIL_TEST_FLAG", default=not value) is value


def test_it_refuses_a_boolean_it_does_not_know(monkeypatch):
    monkeypatch.setenv("AAMAIL_TEST_FLAG", "Ture")
    with pytest.raises(ImproperlyConfigured, match=r"AAMAIL_TEST_FLAG='Ture' is not true or false"):
        StrictEnv().bool("AAMAIL_TEST_FLAG", default=False)


def test_debug_ture_stops_the_product_with_a_sentence(tmp_path):
    result = settings_in_a_child(tmp_path, DEBUG="Ture")
    assert result.returncode != 0
    assert "DEBUG='Ture' is not true or false" in result.stderr


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text("from-a-file-" + "k" * 40)
    result = settings_in_a_child(tmp_path, SECRET_KEY_FILE=str(secret))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "from-a-file-"]


def test_the_deploy_check_refuses_generated_keys_when_debug_is_off(tmp_path):
    check = [sys.executable, "manage.py", "check", "--deploy", "--tag", "security"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "ISP_SECRET"))}
    env.update(VAR_DIR=str(tmp_path / "var"), DEBUG="false", DATABASE_URL="sqlite://:memory:")
    result = subprocess.run(
        check, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "aamail.E030" in result.stderr
    assert "aamail.E031" in result.stderr
    env.update(SECRET_KEY="s" * 60, ISP_SECRET_KEYS="ZmFrZS1rZXktZm9yLXRoZS10ZXN0LTEyMzQ1Njc4OTA=")
    result = subprocess.run(
        check, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert "aamail.E030" not in result.stderr
    assert "aamail.E031" not in result.stderr
