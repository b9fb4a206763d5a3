"""The console under real gunicorn, started as scripts/run.sh and compose start it.

    with console_server(tmp_path, {"WEB_CONCURRENCY": "1"}) as server:
        server.get("/login/")

Same command line as the run command (`gunicorn -c python:aamail.webserver aamail.wsgi`),
on a free loopback port, against the PostgreSQL test database of the calling test (whose
rows must be committed: use transactional_db). A session made with Client.force_login in the
test is valid there: same database, same SECRET_KEY.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ConsoleServer:
    port: int
    log: Path
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, fields: dict | None = None, timeout: float = 60
    ) -> tuple[int, str]:
        """One request on a new connection, with the session and CSRF cookies set."""
        csrf = self.cookies.setdefault("csrftoken", secrets.token_hex(16))  # 32 characters
        headers = {
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "X-CSRFToken": csrf,
            "HX-Request": "true",
        }
        body = None
        if fields is not None:
            body = urllib.parse.urlencode(fields)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 60) -> tuple[int, str]:
        return self.request("GET", path, timeout=timeout)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def console_server(tmp_path: Path, env: dict[str, str]) -> Iterator[ConsoleServer]:
    """gunicorn with the project's web server settings plus `env`; stopped afterwards."""
    if connection.vendor != "postgresql":
        pytest.skip("the gunicorn process needs the PostgreSQL test database (DATABASE_URL)")
    db = connection.settings_dict
    port = _free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "ISP_SECRET_KEYS": ",".join(settings.ISP_SECRET_KEYS),
        # Static files from the finders (no collectstatic in tests), as in conftest.
        "DEBUG": "true",
        **env,
    }
    log = tmp_path / "gunicorn.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:aamail.webserver", "aamail.wsgi",
         "--bind", f"127.0.0.1:{port}"],
        cwd=settings.BASE_DIR, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gunicorn did not listen within 60 s"
            time.sleep(0.1)
        yield ConsoleServer(port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
