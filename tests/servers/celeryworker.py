"""A real Celery worker process on the machine's Redis and the PostgreSQL test database.

Every broker key of a run carries its own prefix (tests/servers/celery_settings.py), so the
test's queues never meet another run's or a real deployment's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection

from mapping.models import Binding, BindingState

REDIS_URL = "redis://127.0.0.1:6379/14"


def redis_or_skip():
    """A Redis client for the tests' database number, or a skip saying what is missing."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (the worker's broker)")
    return client


class Worker:
    def __init__(self, process: subprocess.Popen, sender: Celery, log: Path) -> None:
        self.process, self.sender, self.log = process, sender, log

    def tick(self) -> None:
        """What Celery beat sends: a claimer task, which claims and fetches due bindings."""
        self.sender.send_task("mapping.tasks.fetch_claim", queue="fetch")

    def wait_until_fetched(self, binding: Binding, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            binding.refresh_from_db()
            if binding.state != BindingState.NEW and not binding.fetch_running:
                break
            assert self.process.poll() is None, self.log_tail()
            time.sleep(0.2)
        assert binding.state == BindingState.OK, self.log_tail()

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]


@contextlib.contextmanager
def celery_worker(tmp_path: Path, env: dict[str, str], concurrency: int = 1) -> Iterator[Worker]:
    """Start `celery worker` with the project's settings plus `env`; stop it afterwards."""
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs the PostgreSQL test database (DATABASE_URL)")
    redis_client = redis_or_skip()
    prefix = f"aamail-e2e-{uuid.uuid4().hex[:12]}:"
    db = connection.settings_dict
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.servers.celery_settings",
        "AAMAIL_E2E_PREFIX": prefix,
        "CELERY_BROKER_URL": REDIS_URL,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "ISP_SECRET_KEYS": ",".join(settings.ISP_SECRET_KEYS),
        "LOG_LEVEL": "INFO",
        "ISP_ALLOW_PRIVATE_ADDRESSES": "true",  # the test "ISP" servers are on loopback
        **env,
    }
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aamail", "worker", "-Q", "celery,fetch",
         "--concurrency", str(concurrency), "--without-mingle", "--without-gossip",
         "--without-heartbeat", "-n", f"{prefix.rstrip(':')}@%h", "--loglevel", "INFO"],
        cwd=settings.BASE_DIR, env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    sender = Celery("e2e-sender", broker=REDIS_URL, set_as_current=False)
    sender.conf.broker_transport_options = {"global_keyprefix": prefix}
    try:
        yield Worker(process, sender, log)
    finally:
        process.terminate()  # warm shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        sender.close()
        for key in redis_client.scan_iter(match=f"{prefix}*"):
            redis_client.delete(key)
