"""End to end with a real Celery worker process on the machine's Redis and PostgreSQL.

The test sends the beat tick (mapping.tasks.fetch_tick) to Redis; a worker started as its
own process with the project's settings claims the due binding, enqueues its fetch on the
"fetch" queue, runs it, and the Maildir fills.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection

from domains.models import Security
from mapping.models import BindingState, FetchOutcome, LeavePolicy
from tests.fetch.conftest import assert_exactly

REDIS_URL = "redis://127.0.0.1:6379/14"

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def redis_or_skip():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    return client


def test_a_real_worker_runs_the_tick_and_fills_the_maildir(isp, make_binding, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs the PostgreSQL test database (DATABASE_URL)")
    redis_client = redis_or_skip()
    prefix = f"aamail-e2e-{uuid.uuid4().hex[:12]}:"
    binding = make_binding(security=Security.STARTTLS, leave_policy=LeavePolicy.DELETE)
    messages = [b"Subject: worker %d\n\n.dot\nvia celery\n" % i for i in range(25)]
    for raw in messages:
        isp.deliver(binding.username, raw)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.fetch.e2e_settings",
        "AAMAIL_E2E_PREFIX": prefix,
        "CELERY_BROKER_URL": REDIS_URL,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "MAIL_ROOT": str(settings.MAIL_ROOT),
        "ISP_CA_FILE": str(isp.ca_pem),
        "ISP_SECRET_KEYS": ",".join(settings.ISP_SECRET_KEYS),
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aamail", "worker", "-Q", "celery,fetch",
         "--concurrency", "2", "--without-mingle", "--without-gossip", "--without-heartbeat",
         "-n", f"{prefix.rstrip(':')}@%h", "--loglevel", "INFO"],
        cwd=settings.BASE_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    sender = Celery("e2e-sender", broker=REDIS_URL, set_as_current=False)
    sender.conf.broker_transport_options = {"global_keyprefix": prefix}
    try:
        sender.send_task("mapping.tasks.fetch_tick")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            binding.refresh_from_db()
            if binding.state != BindingState.NEW and not binding.fetch_running:
                break
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert binding.state == BindingState.OK, log.read_text()[-3000:]
    finally:
        worker.terminate()  # warm shutdown
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        sender.close()
        for key in redis_client.scan_iter(match=f"{prefix}*"):
            redis_client.delete(key)
    run = binding.fetch_runs.get()
    assert (run.outcome, run.trigger, run.messages) == (FetchOutcome.OK, "schedule", 25)
    assert_exactly(binding, messages)
    assert isp.messages(binding.username) == []
    worker_log = log.read_text()
    assert "mapping.tasks.fetch_tick" in worker_log and "mapping.tasks.binding_fetch" in worker_log
