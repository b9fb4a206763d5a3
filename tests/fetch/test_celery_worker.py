"""End to end with a real Celery worker process on the machine's Redis and PostgreSQL.

The test sends what beat sends (mapping.tasks.fetch_claim) to Redis; a worker started as its
own process with the project's settings runs it as a claimer: it claims the due binding
from the database itself and fetches it on one of its session threads; the Maildir fills.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from domains.models import Security
from mapping.models import FetchOutcome, LeavePolicy
from tests.fetch.conftest import assert_exactly
from tests.servers.celeryworker import celery_worker

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_runs_a_claimer_and_fills_the_maildir(isp, make_binding, tmp_path):
    binding = make_binding(security=Security.STARTTLS, leave_policy=LeavePolicy.DELETE)
    messages = [b"Subject: worker %d\n\n.dot\nvia celery\n" % i for i in range(25)]
    for raw in messages:
        isp.deliver(binding.username, raw)
    env = {"MAIL_ROOT": str(settings.MAIL_ROOT), "ISP_CA_FILE": str(isp.ca_pem)}
    with celery_worker(tmp_path, env, concurrency=2) as worker:
        worker.tick()
        worker.wait_until_fetched(binding)
    run = binding.fetch_runs.get()
    assert (run.outcome, run.trigger, run.messages) == (FetchOutcome.OK, "schedule", 25)
    assert_exactly(binding, messages)
    assert isp.messages(binding.username) == []
    worker_log = worker.log.read_text()
    assert "mapping.tasks.fetch_claim" in worker_log
    assert "succeeded" in worker_log
