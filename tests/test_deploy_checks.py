"""`manage.py check --deploy`: a cache the web workers share, and no secret file open to all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def _production(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CACHE_URL", "WEB_CONCURRENCY", "WEB_THREADS"}
    }
    env.update(
        {
            "SECRET_KEY": "x" * 20 + Fernet.generate_key().decode(),
            "DEBUG": "false",
            "ALLOWED_HOSTS": "mail.example.com",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "VAR_DIR": str(tmp_path / "var"),
            "ISP_SECRET_KEYS": Fernet.generate_key().decode(),
            "SESSION_COOKIE_SECURE": "true",
            "CSRF_COOKIE_SECURE": "true",
            "SECURE_SSL_REDIRECT": "true",
            "SECURE_HSTS_SECONDS": "31536000",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        }
    )
    env.update(overrides)
    return env


def _deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_it_refuses_a_per_process_cache_with_several_web_workers(tmp_path):
    result = _deploy_check(_production(tmp_path, WEB_CONCURRENCY="3"))
    assert result.returncode != 0
    assert "aamail.E011" in result.stderr
    assert "WEB_CONCURRENCY=3 web processes would each allow the whole budget" in result.stderr
    assert "30 password guesses instead of 10" in result.stderr


def test_it_accepts_the_in_memory_cache_for_one_web_worker(tmp_path):
    result = _deploy_check(_production(tmp_path, WEB_CONCURRENCY="1"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_refuses_a_dummy_cache_whatever_the_workers(tmp_path):
    result = _deploy_check(_production(tmp_path, CACHE_URL="dummycache://"))
    assert result.returncode != 0
    assert "aamail.E010" in result.stderr


def test_the_compose_web_service_passes_with_its_own_settings(tmp_path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    web = compose["services"]["web"]
    # The worker count the check judges is the one gunicorn runs: both read WEB_CONCURRENCY.
    assert "gunicorn -c python:aamail.webserver" in web["command"]
    assert "--workers" not in web["command"]
    settings = {
        key: str(value)
        for key, value in web["environment"].items()
        if key in {"CACHE_URL", "WEB_CONCURRENCY", "WEB_THREADS"}
    }
    assert int(settings["WEB_CONCURRENCY"]) > 1
    settings["CACHE_URL"] = settings["CACHE_URL"].replace("redis://redis:", "redis://127.0.0.1:")
    result = _deploy_check(_production(tmp_path, **settings))
    assert result.returncode == 0, result.stdout + result.stderr
    without_redis = {k: v for k, v in settings.items() if k != "CACHE_URL"}
    assert "aamail.E011" in _deploy_check(_production(tmp_path, **without_redis)).stderr


def test_the_run_command_starts_gunicorn_with_the_same_settings():
    run = (ROOT / "scripts" / "run.sh").read_text()
    [line] = [line for line in run.splitlines() if line.startswith("gunicorn ")]
    assert "-c python:aamail.webserver" in line
    assert "--workers" not in line


def test_it_warns_about_a_secret_file_every_local_user_can_read(tmp_path):
    env = _production(tmp_path)
    database = tmp_path / "db.sqlite3"
    database.touch()
    database.chmod(0o644)
    result = _deploy_check(env)
    assert result.returncode != 0
    assert "aamail.W020" in result.stderr
    assert f"{database} holds secrets and every user of this machine may read it" in result.stderr
    database.chmod(0o640)  # group-readable, for Dovecot's auth worker: fine
    result = _deploy_check(env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_warns_about_a_var_directory_every_local_user_can_list(tmp_path):
    env = _production(tmp_path)
    (tmp_path / "var").mkdir(mode=0o755)
    (tmp_path / "var").chmod(0o755)
    result = _deploy_check(env)
    assert "aamail.W021" in result.stderr
