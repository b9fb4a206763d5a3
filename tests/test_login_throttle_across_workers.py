"""Three gunicorn workers on the compose settings share one login budget (issue 11: 3x)."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from tests import factories
from tests.servers.webserver import console_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_counts_failed_logins_once_across_every_web_worker(tmp_path):
    admin = factories.AdminAccountFactory()
    env = {
        "WEB_CONCURRENCY": "3",
        "CACHE_URL": "redis://127.0.0.1:6379/1",
        "CACHE_KEY_PREFIX": f"aamail-test-{uuid.uuid4().hex}",
        "LOGIN_RATE_LIMIT": "3/300",
    }
    with console_server(tmp_path, env) as web:
        answers = []
        for number in range(12):  # each on a new connection: any of the three workers
            _status, page = web.request(
                "POST", reverse("login"), {"username": admin.address, "password": f"no-{number}"}
            )
            answers.append("Too many failed logins" in page)
        status, page = web.request(
            "POST",
            reverse("login"),
            {"username": admin.address, "password": factories.LOCAL_PASSWORD},
        )
    assert answers == [False] * 3 + [True] * 9
    assert status == 200
    assert "Too many failed logins" in page
