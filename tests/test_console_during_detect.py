"""Detects waiting on a silent ISP server do not stall the console (issue 11: 19 s pages)."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests import factories
from tests.servers.faultpop import FaultPop
from tests.servers.webserver import console_server

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 6  # DETECT_DEADLINE_SECONDS for the server under test


def test_it_serves_console_pages_at_once_while_detects_wait_on_a_silent_server(tmp_path):
    superuser = factories.SuperuserFactory()
    account = factories.AccountFactory()
    client = Client()
    client.force_login(superuser)
    env = {
        # The embedded default's web server: WEB_CONCURRENCY and WEB_THREADS left unset.
        "DETECT_ALLOW_PRIVATE": "true",
        "DETECT_DEADLINE_SECONDS": str(DEADLINE),
    }
    with FaultPop([], faults={"hang_greeting"}) as silent, console_server(tmp_path, env) as web:
        web.cookies["sessionid"] = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert web.get(reverse("domain-list"))[0] == 200  # warm: the first request imports
        fields = {
            "host": "127.0.0.1", "port": silent.port, "security": "none", "username": "dave",
            "isp_password": "Isp-Secret-1", "smtp_host": "127.0.0.1", "smtp_port": silent.port,
            "smtp_security": "none", "smtp_username": "", "smtp_password": "",
            "is_outgoing_relay": "on",  # so both halves wait: POP3, then SMTP
        }  # fmt: skip
        detect_url = reverse("binding-detect-new", args=[account.pk])
        answers: list[tuple[int, str, float]] = []

        def detect() -> None:
            started = time.monotonic()
            status, body = web.request("POST", detect_url, fields)
            answers.append((status, body, time.monotonic() - started))

        runs = [threading.Thread(target=detect) for _ in range(2)]
        for run in runs:
            run.start()
        time.sleep(1.5)  # both Detects are now connected to the silent server

        started = time.monotonic()
        status, page = web.get(reverse("domain-list"))
        page_seconds = time.monotonic() - started
        for run in runs:
            run.join(timeout=DEADLINE + 30)

    assert status == 200, page
    assert page_seconds < 2.0, f"a console page took {page_seconds:.1f} s during two Detects"
    assert len(answers) == 2
    for detect_status, body, seconds in answers:
        assert detect_status == 200, body
        # They really were in flight for most of their deadline, and ended by it.
        assert DEADLINE - 2 < seconds < DEADLINE + 10, seconds
        assert "Detect failed" in body
