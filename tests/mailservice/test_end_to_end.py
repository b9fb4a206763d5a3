"""The whole story: a message arrives at the ISP, the real Celery worker fetches it over POP3
into the employee's Maildir, and the employee reads it over IMAP from the office Dovecot."""

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
from mapping.models import BindingState, LeavePolicy
from tests import factories
from tests.servers.dovecot import Dovecot

from .conftest import SALES_LOCAL, imap_login, wait_for_imap_message

REDIS_URL = "redis://127.0.0.1:6379/14"
ISP_POP3_PASSWORD = "Isp-Pop3-Sesame-7"

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def isp_pop3():
    with Dovecot() as server:
        yield server


def _redis_or_skip():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (the worker's broker)")
    return client


def test_a_message_sent_at_the_isp_is_fetched_by_the_worker_and_read_over_imap(
    office, isp_pop3, tls_context, mail_settings, tmp_path
):
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs the PostgreSQL test database (DATABASE_URL)")
    redis_client = _redis_or_skip()
    domain = factories.DomainFactory()
    sales = factories.AccountFactory(domain=domain, localpart="sales", raw_password=SALES_LOCAL)
    isp_pop3.add_user("ispsales", ISP_POP3_PASSWORD)
    binding = factories.BindingFactory(
        account=sales,
        host="localhost",
        port=isp_pop3.pop3_port,
        security=Security.STARTTLS,
        username="ispsales",
        raw_password=ISP_POP3_PASSWORD,
        leave_policy=LeavePolicy.DELETE,
    )
    isp_pop3.deliver(
        "ispsales",
        b"From: customer@outside.test\nTo: sales@isp.example\nSubject: order 4711\n\n"
        b"Please send 3 boxes.\n",
    )

    prefix = f"aamail-ms-e2e-{uuid.uuid4().hex[:12]}:"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.fetch.e2e_settings",
        "AAMAIL_E2E_PREFIX": prefix,
        "CELERY_BROKER_URL": REDIS_URL,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        # The fetcher writes where the office Dovecot reads, as the user Dovecot runs mail as.
        "MAIL_ROOT": office.config.mail_root,
        "MAIL_UID": str(office.config.mail_uid),
        "MAIL_GID": str(office.config.mail_gid),
        "ISP_CA_FILE": str(isp_pop3.ca_pem),
        "ISP_SECRET_KEYS": ",".join(settings.ISP_SECRET_KEYS),
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aamail", "worker", "-Q", "celery,fetch",
         "--concurrency", "1", "--without-mingle", "--without-gossip", "--without-heartbeat",
         "-n", f"{prefix.rstrip(':')}@%h", "--loglevel", "INFO"],
        cwd=settings.BASE_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    sender = Celery("ms-e2e-sender", broker=REDIS_URL, set_as_current=False)
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
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        sender.close()
        for key in redis_client.scan_iter(match=f"{prefix}*"):
            redis_client.delete(key)

    raw = wait_for_imap_message(office, tls_context, sales.address, SALES_LOCAL, "order 4711")
    assert b"Please send 3 boxes." in raw
    assert isp_pop3.messages("ispsales") == []  # delete policy: gone from the ISP
    # Dovecot could move it new/ -> cur/ and flag it: the file belongs to the mail user.
    client = imap_login(office, tls_context, sales.address, SALES_LOCAL)
    try:
        client.select("INBOX")
        _typ, data = client.search(None, "SUBJECT", '"order 4711"')
        typ, _ = client.store(data[0].split()[-1], "+FLAGS", "\\Seen")
        assert typ == "OK"
    finally:
        client.logout()
